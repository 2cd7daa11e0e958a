// Package ledger is apbatch's source of truth for what a batch is and whether
// it is complete: batches (one per object version), published part files and
// the rows each part holds. It runs on SQLite (embedded mode) and PostgreSQL
// (production) through the same sqlx code.
package ledger

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // registers driver "pgx"
	"github.com/jmoiron/sqlx"
	_ "modernc.org/sqlite" // registers driver "sqlite"
)

// ErrNotFound is returned when a batch does not exist.
var ErrNotFound = errors.New("ledger: not found")

// Store is a ledger database. Safe for concurrent use.
type Store struct {
	db      *sqlx.DB
	dialect string
	now     func() time.Time

	// insertCalls and insertRows are the multi-row INSERTs of
	// RecordCalls and RecordPart.
	insertCalls, insertRows *bulkInsert

	// unindexed counts the calls recorded since the identity index was
	// last extended (identities.go), which happens every identityRun.
	unindexedMu sync.Mutex
	unindexed   int
	identityRun int
}

// Open connects to the ledger at dbURL and applies pending migrations.
// Accepted forms: "sqlite://PATH" (a file, created if needed), "sqlite::memory:",
// and "postgres://..." / "postgresql://...".
func Open(ctx context.Context, dbURL string) (*Store, error) {
	var (
		driver, dsn, dialect string
	)
	switch {
	case strings.HasPrefix(dbURL, "postgres://"), strings.HasPrefix(dbURL, "postgresql://"):
		driver, dsn, dialect = "pgx", dbURL, "postgres"
	case strings.HasPrefix(dbURL, "sqlite://"), strings.HasPrefix(dbURL, "sqlite:"):
		path := strings.TrimPrefix(strings.TrimPrefix(dbURL, "sqlite://"), "sqlite:")
		if path == "" {
			return nil, errors.New("ledger: sqlite URL has no path (want sqlite://PATH)")
		}
		if path != ":memory:" {
			if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
				return nil, fmt.Errorf("ledger: create folder for %s: %w", path, err)
			}
		}
		q := url.Values{}
		// busy_timeout first: switching to WAL takes a lock that processes
		// opening the ledger together must wait for, not fail on.
		q.Add("_pragma", "busy_timeout(5000)")
		q.Add("_pragma", "journal_mode(WAL)")
		// In WAL mode, NORMAL survives a killed process; only a power
		// loss may drop the last commits (the embedded mode's broker does
		// not fsync either). PostgreSQL is the durable production store.
		q.Add("_pragma", "synchronous(NORMAL)")
		q.Add("_pragma", "foreign_keys(1)")
		// The audit trail's identity index takes random keys, so each
		// commit touches pages all over it: a page cache holding it spares
		// re-reading them (8 MiB; SQLite's default is 2 MiB).
		q.Add("_pragma", "cache_size(-8192)")
		// Statement journals and temporary sort tables in memory, not in
		// temporary files (nothing durable lives there).
		q.Add("_pragma", "temp_store(MEMORY)")
		// Checkpoint the WAL into the database every 10,000 pages (about
		// 40 MiB of WAL) rather than 1,000: a page the audit inserts
		// rewrite in many commits is copied back once per checkpoint, and
		// checkpoints (each with an fsync) are ten times rarer. A commit
		// still survives a killed process (it is in the WAL when it
		// returns); a power loss, which may drop the commits made since
		// the last checkpoint (see synchronous above), may drop up to
		// ten times more of them.
		q.Add("_pragma", "wal_autocheckpoint(10000)")
		q.Add("_time_format", "sqlite")
		driver, dsn, dialect = "sqlite", "file:"+path+"?"+q.Encode(), "sqlite"
	default:
		return nil, fmt.Errorf("ledger: unsupported database URL scheme (want sqlite://PATH or postgres://...)")
	}
	db, err := sqlx.Open(driver, dsn)
	if err != nil {
		return nil, fmt.Errorf("ledger: open %s: %w", dialect, err)
	}
	if dialect == "sqlite" {
		// One writer: SQLite serialises writes anyway, and a single
		// connection avoids SQLITE_BUSY between our own goroutines.
		db.SetMaxOpenConns(1)
	}
	// SQLite: a process switching the file to WAL holds a lock the busy
	// handler does not wait for; processes opening it together retry.
	err = db.PingContext(ctx)
	for attempt := 0; err != nil && dialect == "sqlite" && strings.Contains(err.Error(), "SQLITE_BUSY") && attempt < 100; attempt++ {
		select {
		case <-ctx.Done():
		case <-time.After(50 * time.Millisecond):
		}
		err = db.PingContext(ctx)
	}
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("ledger: connect %s: %w", dialect, err)
	}
	s := &Store{db: db, dialect: dialect, now: time.Now, identityRun: defaultIdentityRun}
	if err := s.migrate(ctx); err != nil {
		db.Close()
		return nil, err
	}
	// On SQLite, parsing a statement of hundreds of rows is a good share of
	// running it (a third of RecordPart's time): prepare the bulk inserts
	// once. (The PostgreSQL driver caches statements by text on each
	// connection.)
	insertCalls := `INSERT INTO calls (at, tenant, batch_id, row_number, rows, check_name, route,
		http_status, error_code, request_id, latency_ms, attempt, identity_hmac) VALUES `
	if dialect == "sqlite" {
		// A failing row then aborts the whole transaction (what
		// PostgreSQL does and what RecordCalls wants) rather than only the
		// statement, which spares SQLite a statement journal: a copy of
		// every page the statement changes.
		insertCalls = strings.Replace(insertCalls, "INSERT INTO", "INSERT OR ROLLBACK INTO", 1)
	}
	s.insertCalls = &bulkInsert{head: insertCalls, columns: 13, rebind: db.Rebind}
	s.insertRows = &bulkInsert{head: `INSERT INTO result_rows (batch_id, row_number, check_name, status, calls, part_no) VALUES `,
		tail: ` ON CONFLICT DO NOTHING`, columns: 6, rebind: db.Rebind}
	if dialect == "sqlite" {
		for _, b := range []*bulkInsert{s.insertCalls, s.insertRows} {
			if err := b.prepare(ctx, db.DB); err != nil {
				s.Close()
				return nil, fmt.Errorf("ledger: prepare inserts: %w", err)
			}
		}
	}
	return s, nil
}

// Close closes the database.
func (s *Store) Close() error {
	ierr := s.indexOnClose()
	s.insertCalls.close()
	s.insertRows.close()
	if err := s.db.Close(); err != nil {
		return err
	}
	return ierr
}

// Ping checks that the database answers.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.db.PingContext(ctx); err != nil {
		return fmt.Errorf("ledger: ping %s: %w", s.dialect, err)
	}
	return nil
}

// Dialect returns "sqlite" or "postgres".
func (s *Store) Dialect() string { return s.dialect }

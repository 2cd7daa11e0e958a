// Package ledger is apbatch's source of truth for what a batch is and whether
// it is complete: batches (one per object version), published part files and
// the rows each part holds. It runs on SQLite (embedded mode) and PostgreSQL
// (production) through the same sqlx code; dialect.go holds the few
// differences.
//
// Store's methods are grouped by aggregate: batches.go (batches and their
// states), parts.go (published parts and result rows), calls.go and
// identities.go (the audit trail), coordination.go (budget slots, answered
// jobs, token leases), cursors.go and refresh.go, retention.go (purges);
// migrate.go applies schemas.Migrations.
package ledger

import (
	"context"
	"errors"
	"fmt"
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
	dialect dialect
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
	d, driver, dsn, err := parseURL(dbURL)
	if err != nil {
		return nil, err
	}
	db, err := sqlx.Open(driver, dsn)
	if err != nil {
		return nil, fmt.Errorf("ledger: open %s: %w", d, err)
	}
	db.SetMaxOpenConns(d.maxOpenConns())
	// Processes opening a SQLite ledger together retry while one of them
	// switches it to WAL.
	err = db.PingContext(ctx)
	for attempt := 0; d.busy(err) && attempt < 100; attempt++ {
		select {
		case <-ctx.Done():
		case <-time.After(50 * time.Millisecond):
		}
		err = db.PingContext(ctx)
	}
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("ledger: connect %s: %w", d, err)
	}
	s := &Store{db: db, dialect: d, now: time.Now, identityRun: defaultIdentityRun}
	if err := s.migrate(ctx); err != nil {
		db.Close()
		return nil, err
	}
	// A failing row of RecordCalls aborts the whole transaction (what it
	// wants) on both databases.
	s.insertCalls = &bulkInsert{head: d.insertAborting() + ` calls (at, tenant, batch_id, row_number, rows, check_name, route,
		http_status, error_code, request_id, latency_ms, attempt, identity_hmac) VALUES `, columns: 13, rebind: db.Rebind}
	s.insertRows = &bulkInsert{head: `INSERT INTO result_rows (batch_id, row_number, check_name, status, calls, part_no) VALUES `,
		tail: ` ON CONFLICT DO NOTHING`, columns: 6, rebind: db.Rebind}
	if d.preparesInserts() {
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
func (s *Store) Dialect() string { return s.dialect.String() }

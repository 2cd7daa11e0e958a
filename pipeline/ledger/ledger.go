// Package ledger is apbatch's source of truth for what a batch is and whether
// it is complete: batches (one per object version), published part files and
// the rows each part holds. It runs on SQLite (embedded mode) and PostgreSQL
// (production) through the same sqlx code.
package ledger

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // registers driver "pgx"
	"github.com/jmoiron/sqlx"
	_ "modernc.org/sqlite" // registers driver "sqlite"

	"github.com/apbatch/apbatch/schemas"
)

// Batch states.
const (
	StateCreated  = "created"  // recorded, not split yet
	StateSplit    = "split"    // rows counted, jobs produced
	StateComplete = "complete" // every row published, manifest written
	StateFailed   = "failed"   // file-level failure; Error says why
	// StateCancelled: stopped by `apbatch cancel`; no call is made for it
	// since, and what it had is published with a manifest saying so
	// (ManifestKey set once it is).
	StateCancelled = "cancelled"
)

// ErrNotFound is returned when a batch does not exist.
var ErrNotFound = errors.New("ledger: not found")

// Batch is one verification of one uploaded object version.
type Batch struct {
	ID       string `db:"id"`
	Tenant   string `db:"tenant"`
	Campaign string `db:"campaign"`
	// Checks are the batch's checks, as schemas.JoinChecks writes them.
	Checks        string `db:"check_name"`
	Bucket        string `db:"bucket"`
	ObjectKey     string `db:"object_key"`
	ObjectVersion string `db:"object_version"`
	// ObjectETag is the ETag of the version verified (unquoted); "" for
	// batches recorded before it was kept.
	ObjectETag   string `db:"object_etag"`
	Period       string `db:"period"`
	Recipient    string `db:"recipient"`
	State        string `db:"state"`
	RowsTotal    *int64 `db:"rows_total"`
	LookupsTotal *int64 `db:"lookups_total"`
	// CallsSaved is how many results share another row's call (the same
	// person, check and period in one file).
	CallsSaved int64 `db:"calls_saved"`
	// JobsProduced is how many of its jobs a split interrupted by a crash
	// had produced: the split that resumes it starts after them.
	JobsProduced int64      `db:"jobs_produced"`
	Error        string     `db:"error"`
	ManifestKey  string     `db:"manifest_key"`
	CreatedAt    time.Time  `db:"created_at"`
	SplitAt      *time.Time `db:"split_at"`
	CompletedAt  *time.Time `db:"completed_at"`
	// ActiveAt is the last time a worker held one of its jobs.
	ActiveAt *time.Time `db:"active_at"`
	// SplitAttempts counts the splits started.
	SplitAttempts int `db:"split_attempts"`
	// PricedFrom, for a batch that re-prices another's results with a new
	// tariff grid (no call made), is that batch.
	PricedFrom string `db:"priced_from"`
}

// BatchID derives a batch id from the object version it verifies, so that
// every process recording the same upload agrees on the id.
func BatchID(bucket, key, version string) string {
	h := sha256.Sum256([]byte(bucket + "\x00" + key + "\x00" + version))
	return "b" + hex.EncodeToString(h[:])[:19]
}

// Part is one result file of a batch.
type Part struct {
	BatchID   string    `db:"batch_id"`
	PartNo    int       `db:"part_no"`
	ObjectKey string    `db:"object_key"`
	Rows      int64     `db:"rows"`
	Size      int64     `db:"size"`
	CreatedAt time.Time `db:"created_at"`
}

// Published reports whether the batch's results are published: complete,
// or cancelled with its manifest written.
func (b Batch) Published() bool {
	return b.State == StateComplete || b.State == StateCancelled && b.ManifestKey != ""
}

// Ended reports whether nothing more happens to the batch: published, or
// failed.
func (b Batch) Ended() bool { return b.Published() || b.State == StateFailed }

// CheckList returns the batch's checks.
func (b Batch) CheckList() []schemas.Check { return schemas.SplitChecks(b.Checks) }

// RowKey names one result of a batch: a row, for one check.
type RowKey struct {
	Row   int64
	Check schemas.Check
}

// RowStatus records that a row's result for one check is in a part.
type RowStatus struct {
	RowNumber int64          `db:"row_number"`
	Check     schemas.Check  `db:"check_name"`
	Status    schemas.Status `db:"status"`
	// Calls is the provider calls this row accounts for (the lookup's
	// attempts on its primary row, 0 on the others).
	Calls int32 `db:"calls"`
}

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

func (s *Store) migrate(ctx context.Context) error {
	// Processes starting together may race to create the table
	// (PostgreSQL can then refuse one CREATE ... IF NOT EXISTS): retry.
	var err error
	for attempt := 0; attempt < 3; attempt++ {
		if _, err = s.db.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (version TEXT PRIMARY KEY)`); err == nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil {
		return fmt.Errorf("ledger: create schema_migrations: %w", err)
	}
	dir := "migrations/" + s.dialect
	entries, err := fs.ReadDir(schemas.Migrations, dir)
	if err != nil {
		return fmt.Errorf("ledger: read migrations: %w", err)
	}
	names := make([]string, 0, len(entries))
	for _, e := range entries {
		names = append(names, e.Name())
	}
	sort.Strings(names)
	for _, name := range names {
		var n int
		if err := s.db.GetContext(ctx, &n, s.db.Rebind(`SELECT COUNT(*) FROM schema_migrations WHERE version = ?`), name); err != nil {
			return fmt.Errorf("ledger: check migration %s: %w", name, err)
		}
		if n > 0 {
			continue
		}
		body, err := fs.ReadFile(schemas.Migrations, dir+"/"+name)
		if err != nil {
			return fmt.Errorf("ledger: read migration %s: %w", name, err)
		}
		tx, err := s.db.BeginTxx(ctx, nil)
		if err != nil {
			return fmt.Errorf("ledger: begin migration %s: %w", name, err)
		}
		// Claim the migration first: processes starting together (roles
		// on one ledger) wait here for whoever claimed it, then find it
		// applied.
		res, err := tx.ExecContext(ctx, tx.Rebind(`INSERT INTO schema_migrations (version) VALUES (?) ON CONFLICT DO NOTHING`), name)
		if err != nil {
			tx.Rollback()
			return fmt.Errorf("ledger: claim migration %s: %w", name, err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			tx.Rollback()
			continue
		}
		for _, stmt := range strings.Split(string(body), ";") {
			if strings.TrimSpace(stmt) == "" {
				continue
			}
			if _, err := tx.ExecContext(ctx, stmt); err != nil {
				tx.Rollback()
				return fmt.Errorf("ledger: apply migration %s: %w", name, err)
			}
		}
		if err := tx.Commit(); err != nil {
			return fmt.Errorf("ledger: commit migration %s: %w", name, err)
		}
	}
	return nil
}

// CreateBatch records b (its ID derived by BatchID when empty) unless a batch
// already exists for the same object version. It returns the stored batch and
// whether this call created it.
func (s *Store) CreateBatch(ctx context.Context, b Batch) (Batch, bool, error) {
	if b.ID == "" {
		b.ID = BatchID(b.Bucket, b.ObjectKey, b.ObjectVersion)
	}
	if b.State == "" {
		b.State = StateCreated
	}
	b.CreatedAt = s.now().UTC()
	res, err := s.db.NamedExecContext(ctx, `INSERT INTO batches
		(id, tenant, campaign, check_name, bucket, object_key, object_version, object_etag, period, recipient, state, created_at, priced_from)
		VALUES (:id, :tenant, :campaign, :check_name, :bucket, :object_key, :object_version, :object_etag, :period, :recipient, :state, :created_at, :priced_from)
		ON CONFLICT DO NOTHING`, b)
	if err != nil {
		return Batch{}, false, fmt.Errorf("ledger: create batch: %w", err)
	}
	n, _ := res.RowsAffected()
	stored, err := s.Batch(ctx, b.ID)
	return stored, n == 1, err
}

// Batch returns the batch with id, or ErrNotFound.
func (s *Store) Batch(ctx context.Context, id string) (Batch, error) {
	var b Batch
	err := s.db.GetContext(ctx, &b, s.db.Rebind(`SELECT * FROM batches WHERE id = ?`), id)
	if errors.Is(err, sql.ErrNoRows) {
		return b, fmt.Errorf("ledger: batch %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return b, fmt.Errorf("ledger: get batch %s: %w", id, err)
	}
	return b, nil
}

// Batches returns batches in creation order, optionally only those in one of
// states.
func (s *Store) Batches(ctx context.Context, states ...string) ([]Batch, error) {
	q := `SELECT * FROM batches`
	var args []any
	if len(states) > 0 {
		var err error
		q, args, err = sqlx.In(q+` WHERE state IN (?)`, states)
		if err != nil {
			return nil, fmt.Errorf("ledger: list batches: %w", err)
		}
	}
	var bs []Batch
	if err := s.db.SelectContext(ctx, &bs, s.db.Rebind(q+` ORDER BY created_at, id`), args...); err != nil {
		return nil, fmt.Errorf("ledger: list batches: %w", err)
	}
	return bs, nil
}

// SetSplit records that the batch's file was split into rows and lookups.
func (s *Store) SetSplit(ctx context.Context, id string, rows, lookups, saved int64) error {
	_, err := s.db.ExecContext(ctx, s.db.Rebind(`UPDATE batches SET state = ?, rows_total = ?, lookups_total = ?, calls_saved = ?, split_at = ?
		WHERE id = ? AND state = ?`), StateSplit, rows, lookups, saved, s.now().UTC(), id, StateCreated)
	if err != nil {
		return fmt.Errorf("ledger: set batch %s split: %w", id, err)
	}
	return nil
}

// SetJobsProduced records that a batch's split has produced its first n
// jobs, so that a split resumed after a crash does not produce them again.
func (s *Store) SetJobsProduced(ctx context.Context, id string, n int64) error {
	if _, err := s.db.ExecContext(ctx, s.db.Rebind(`UPDATE batches SET jobs_produced = ?, active_at = ? WHERE id = ? AND state = ?`), n, s.now().UTC(), id, StateCreated); err != nil {
		return fmt.Errorf("ledger: split progress of %s: %w", id, err)
	}
	return nil
}

// Fail marks the batch failed with a message for the user (no personal
// data), unless it is complete or cancelled.
func (s *Store) Fail(ctx context.Context, id, msg string) error {
	_, err := s.db.ExecContext(ctx, s.db.Rebind(`UPDATE batches SET state = ?, error = ?, completed_at = ? WHERE id = ? AND state NOT IN (?, ?)`),
		StateFailed, msg, s.now().UTC(), id, StateComplete, StateCancelled)
	if err != nil {
		return fmt.Errorf("ledger: fail batch %s: %w", id, err)
	}
	return nil
}

// Complete marks the batch complete once its manifest is written.
func (s *Store) Complete(ctx context.Context, id, manifestKey string) error {
	_, err := s.db.ExecContext(ctx, s.db.Rebind(`UPDATE batches SET state = ?, manifest_key = ?, completed_at = ? WHERE id = ? AND state = ?`),
		StateComplete, manifestKey, s.now().UTC(), id, StateSplit)
	if err != nil {
		return fmt.Errorf("ledger: complete batch %s: %w", id, err)
	}
	return nil
}

// Active records that the batches ids, when unfinished, are being worked
// on: a worker holds some of their jobs.
func (s *Store) Active(ctx context.Context, ids []string) error {
	if len(ids) == 0 {
		return nil
	}
	q, args, err := sqlx.In(`UPDATE batches SET active_at = ? WHERE id IN (?) AND state IN (?)`, s.now().UTC(), ids, []string{StateCreated, StateSplit})
	if err != nil {
		return fmt.Errorf("ledger: activity: %w", err)
	}
	if _, err := s.db.ExecContext(ctx, s.db.Rebind(q), args...); err != nil {
		return fmt.Errorf("ledger: activity: %w", err)
	}
	return nil
}

// StartSplit counts one more split of batch id and returns how many were
// started, this one included.
func (s *Store) StartSplit(ctx context.Context, id string) (int, error) {
	if _, err := s.db.ExecContext(ctx, s.db.Rebind(`UPDATE batches SET split_attempts = split_attempts + 1 WHERE id = ?`), id); err != nil {
		return 0, fmt.Errorf("ledger: start split of %s: %w", id, err)
	}
	var n int
	if err := s.db.GetContext(ctx, &n, s.db.Rebind(`SELECT split_attempts FROM batches WHERE id = ?`), id); err != nil {
		return 0, fmt.Errorf("ledger: start split of %s: %w", id, err)
	}
	return n, nil
}

// Stalled returns the unfinished batches with no sign of progress since
// before: created, split, held by a worker and part written all earlier.
func (s *Store) Stalled(ctx context.Context, before time.Time) ([]Batch, error) {
	var bs []Batch
	before = before.UTC()
	err := s.db.SelectContext(ctx, &bs, s.db.Rebind(`SELECT * FROM batches b WHERE state IN (?, ?) AND created_at < ?
		AND (split_at IS NULL OR split_at < ?) AND (active_at IS NULL OR active_at < ?)
		AND NOT EXISTS (SELECT 1 FROM parts p WHERE p.batch_id = b.id AND p.created_at >= ?)
		ORDER BY created_at, id`), StateCreated, StateSplit, before, before, before, before)
	if err != nil {
		return nil, fmt.Errorf("ledger: stalled batches: %w", err)
	}
	return bs, nil
}

// Cancel marks a batch that has not ended cancelled, with msg for the
// user; false when it had ended (complete, failed or cancelled already).
func (s *Store) Cancel(ctx context.Context, id, msg string) (bool, error) {
	res, err := s.db.ExecContext(ctx, s.db.Rebind(`UPDATE batches SET state = ?, error = ? WHERE id = ? AND state IN (?, ?)`),
		StateCancelled, msg, id, StateCreated, StateSplit)
	if err != nil {
		return false, fmt.Errorf("ledger: cancel batch %s: %w", id, err)
	}
	n, _ := res.RowsAffected()
	return n == 1, nil
}

// Unpublished returns the cancelled batches whose manifest is not written
// yet.
func (s *Store) Unpublished(ctx context.Context) ([]Batch, error) {
	var bs []Batch
	if err := s.db.SelectContext(ctx, &bs, s.db.Rebind(`SELECT * FROM batches WHERE state = ? AND manifest_key = '' ORDER BY created_at, id`), StateCancelled); err != nil {
		return nil, fmt.Errorf("ledger: cancelled batches: %w", err)
	}
	return bs, nil
}

// PublishCancelled records the manifest of a cancelled batch; false when
// it had one already.
func (s *Store) PublishCancelled(ctx context.Context, id, manifestKey string) (bool, error) {
	res, err := s.db.ExecContext(ctx, s.db.Rebind(`UPDATE batches SET manifest_key = ?, completed_at = ? WHERE id = ? AND state = ? AND manifest_key = ''`),
		manifestKey, s.now().UTC(), id, StateCancelled)
	if err != nil {
		return false, fmt.Errorf("ledger: publish cancelled batch %s: %w", id, err)
	}
	n, _ := res.RowsAffected()
	return n == 1, nil
}

// MovePart records that part n of a batch is now at key.
func (s *Store) MovePart(ctx context.Context, batchID string, n int, key string) error {
	if _, err := s.db.ExecContext(ctx, s.db.Rebind(`UPDATE parts SET object_key = ? WHERE batch_id = ? AND part_no = ?`), key, batchID, n); err != nil {
		return fmt.Errorf("ledger: move part %d of %s: %w", n, batchID, err)
	}
	return nil
}

// NextPartNo returns the number the batch's next part file takes.
func (s *Store) NextPartNo(ctx context.Context, batchID string) (int, error) {
	var n sql.NullInt64
	if err := s.db.GetContext(ctx, &n, s.db.Rebind(`SELECT MAX(part_no) FROM parts WHERE batch_id = ?`), batchID); err != nil {
		return 0, fmt.Errorf("ledger: next part of %s: %w", batchID, err)
	}
	if !n.Valid {
		return 1, nil
	}
	return int(n.Int64) + 1, nil
}

// RecordPart records an uploaded part file and the rows it holds, in one
// transaction. Rows already recorded in another part make the whole call fail
// with ErrDuplicateRow, so that a row is never published twice.
func (s *Store) RecordPart(ctx context.Context, p Part, rows []RowStatus) error {
	p.CreatedAt = s.now().UTC()
	tx, err := s.db.BeginTxx(ctx, nil)
	if err != nil {
		return fmt.Errorf("ledger: begin part %s/%d: %w", p.BatchID, p.PartNo, err)
	}
	defer tx.Rollback()
	if _, err := tx.NamedExecContext(ctx, `INSERT INTO parts (batch_id, part_no, object_key, rows, size, created_at)
		VALUES (:batch_id, :part_no, :object_key, :rows, :size, :created_at)`, p); err != nil {
		return fmt.Errorf("ledger: record part %s/%d: %w", p.BatchID, p.PartNo, err)
	}
	args := make([]any, 0, s.insertRows.columns*min(len(rows), maxRowsPerInsert))
	batchID, partNo := any(p.BatchID), any(p.PartNo) // boxed once, not per row
	for rest := rows; len(rest) > 0; {
		n := rowsPerInsert(len(rest))
		args = args[:0]
		for _, r := range rest[:n] {
			args = append(args, batchID, r.RowNumber, string(r.Check), string(r.Status), r.Calls, partNo)
		}
		res, err := s.insertRows.exec(ctx, tx, n, args)
		if err != nil {
			return fmt.Errorf("ledger: record rows of part %s/%d: %w", p.BatchID, p.PartNo, err)
		}
		if m, _ := res.RowsAffected(); m != int64(n) {
			return fmt.Errorf("ledger: part %s/%d: %w", p.BatchID, p.PartNo, ErrDuplicateRow)
		}
		rest = rest[n:]
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("ledger: commit part %s/%d: %w", p.BatchID, p.PartNo, err)
	}
	return nil
}

// ErrDuplicateRow is returned by RecordPart when a row is already published.
var ErrDuplicateRow = errors.New("row already recorded in another part")

// DoneRows returns the results of the batch already recorded in parts.
func (s *Store) DoneRows(ctx context.Context, batchID string) (map[RowKey]struct{}, error) {
	rows, err := s.db.QueryxContext(ctx, s.db.Rebind(`SELECT row_number, check_name FROM result_rows WHERE batch_id = ?`), batchID)
	if err != nil {
		return nil, fmt.Errorf("ledger: done rows of %s: %w", batchID, err)
	}
	defer rows.Close()
	done := make(map[RowKey]struct{})
	for rows.Next() {
		var k RowKey
		if err := rows.Scan(&k.Row, &k.Check); err != nil {
			return nil, fmt.Errorf("ledger: done rows of %s: %w", batchID, err)
		}
		done[k] = struct{}{}
	}
	return done, rows.Err()
}

// Counts summarises a batch's recorded rows.
type Counts struct {
	Rows          int64
	ByStatus      map[schemas.Status]int64
	ByCheck       map[schemas.Check]map[schemas.Status]int64
	ProviderCalls int64
}

// Counts returns the rows recorded for the batch, by status, and the
// provider calls they took.
func (s *Store) Counts(ctx context.Context, batchID string) (Counts, error) {
	var rows []struct {
		Check  string `db:"check_name"`
		Status string `db:"status"`
		N      int64  `db:"n"`
		Calls  int64  `db:"calls"`
	}
	err := s.db.SelectContext(ctx, &rows, s.db.Rebind(`SELECT check_name, status, COUNT(*) AS n, COALESCE(SUM(calls), 0) AS calls
		FROM result_rows WHERE batch_id = ? GROUP BY check_name, status`), batchID)
	if err != nil {
		return Counts{}, fmt.Errorf("ledger: counts of %s: %w", batchID, err)
	}
	c := Counts{ByStatus: make(map[schemas.Status]int64), ByCheck: make(map[schemas.Check]map[schemas.Status]int64)}
	for _, r := range rows {
		c.Add(schemas.Check(r.Check), schemas.Status(r.Status), r.N, r.Calls)
	}
	return c, nil
}

// Add counts n rows of check with status, which took calls provider calls.
func (c *Counts) Add(check schemas.Check, status schemas.Status, n, calls int64) {
	if c.ByStatus == nil {
		c.ByStatus = make(map[schemas.Status]int64)
	}
	if c.ByCheck == nil {
		c.ByCheck = make(map[schemas.Check]map[schemas.Status]int64)
	}
	c.ByStatus[status] += n
	if c.ByCheck[check] == nil {
		c.ByCheck[check] = make(map[schemas.Status]int64)
	}
	c.ByCheck[check][status] += n
	c.Rows += n
	c.ProviderCalls += calls
}

// LeaseSlot takes up to want units of slot (a time slot of a shared
// budget named scope) whose capacity is limit, and returns how many it got
// (0 when the slot is spent). Every process sharing the ledger draws from
// the same slots, which is how worker replicas behind one egress IP share
// its budget. Slots more than an hour older than slot are dropped.
func (s *Store) LeaseSlot(ctx context.Context, scope string, slot int64, want, limit int) (int, error) {
	if want <= 0 || limit <= 0 {
		return 0, nil
	}
	tx, err := s.db.BeginTxx(ctx, nil)
	if err != nil {
		return 0, fmt.Errorf("ledger: lease %s: %w", scope, err)
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, tx.Rebind(`INSERT INTO budget_slots (scope, slot, used) VALUES (?, ?, 0) ON CONFLICT DO NOTHING`), scope, slot); err != nil {
		return 0, fmt.Errorf("ledger: lease %s: %w", scope, err)
	}
	q := `SELECT used FROM budget_slots WHERE scope = ? AND slot = ?`
	if s.dialect == "postgres" {
		q += ` FOR UPDATE`
	}
	var used int
	if err := tx.GetContext(ctx, &used, tx.Rebind(q), scope, slot); err != nil {
		return 0, fmt.Errorf("ledger: lease %s: %w", scope, err)
	}
	got := min(want, limit-used)
	if got <= 0 {
		return 0, nil
	}
	if _, err := tx.ExecContext(ctx, tx.Rebind(`UPDATE budget_slots SET used = used + ? WHERE scope = ? AND slot = ?`), got, scope, slot); err != nil {
		return 0, fmt.Errorf("ledger: lease %s: %w", scope, err)
	}
	if slot%600 == 0 {
		if _, err := tx.ExecContext(ctx, tx.Rebind(`DELETE FROM budget_slots WHERE scope = ? AND slot < ?`), scope, slot-7200); err != nil {
			return 0, fmt.Errorf("ledger: lease %s: %w", scope, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return 0, fmt.Errorf("ledger: lease %s: %w", scope, err)
	}
	return got, nil
}

// SaveAnswered records which jobs of a partition a worker has answered
// (results produced) beyond the first offset it has not committed, base;
// offsets is their encoding, opaque here. The partition's next owner skips
// them rather than calling the provider again.
func (s *Store) SaveAnswered(ctx context.Context, group, topic string, partition int, base int64, offsets string) error {
	_, err := s.db.ExecContext(ctx, s.db.Rebind(`INSERT INTO answered_jobs (consumer_group, topic, partition_no, base_offset, offsets)
		VALUES (?, ?, ?, ?, ?) ON CONFLICT (consumer_group, topic, partition_no)
		DO UPDATE SET base_offset = excluded.base_offset, offsets = excluded.offsets`), group, topic, partition, base, offsets)
	if err != nil {
		return fmt.Errorf("ledger: save answered jobs of %s/%d: %w", topic, partition, err)
	}
	return nil
}

// Answered returns what SaveAnswered last recorded for the partition
// (base 0 and no offsets when nothing was).
func (s *Store) Answered(ctx context.Context, group, topic string, partition int) (base int64, offsets string, err error) {
	var row struct {
		Base    int64  `db:"base_offset"`
		Offsets string `db:"offsets"`
	}
	err = s.db.GetContext(ctx, &row, s.db.Rebind(`SELECT base_offset, offsets FROM answered_jobs
		WHERE consumer_group = ? AND topic = ? AND partition_no = ?`), group, topic, partition)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, "", nil
	}
	if err != nil {
		return 0, "", fmt.Errorf("ledger: answered jobs of %s/%d: %w", topic, partition, err)
	}
	return row.Base, row.Offsets, nil
}

// Published returns how many results of the batch are in recorded parts:
// cheap enough to poll for progress (Counts reads every result).
func (s *Store) Published(ctx context.Context, batchID string) (int64, error) {
	var n int64
	if err := s.db.GetContext(ctx, &n, s.db.Rebind(`SELECT COALESCE(SUM(rows), 0) FROM parts WHERE batch_id = ?`), batchID); err != nil {
		return 0, fmt.Errorf("ledger: published results of %s: %w", batchID, err)
	}
	return n, nil
}

// Parts returns the batch's part files in order.
func (s *Store) Parts(ctx context.Context, batchID string) ([]Part, error) {
	var ps []Part
	if err := s.db.SelectContext(ctx, &ps, s.db.Rebind(`SELECT * FROM parts WHERE batch_id = ? ORDER BY part_no`), batchID); err != nil {
		return nil, fmt.Errorf("ledger: parts of %s: %w", batchID, err)
	}
	return ps, nil
}

// RecordCalls appends provider calls to the audit trail.
func (s *Store) RecordCalls(ctx context.Context, calls []schemas.CallRecord) error {
	if len(calls) == 0 {
		return nil
	}
	tx, err := s.db.BeginTxx(ctx, nil)
	if err != nil {
		return fmt.Errorf("ledger: record %d calls: %w", len(calls), err)
	}
	defer tx.Rollback()
	args := make([]any, 0, s.insertCalls.columns*min(len(calls), maxRowsPerInsert))
	for rest := calls; len(rest) > 0; {
		n := rowsPerInsert(len(rest))
		args = args[:0]
		for _, c := range rest[:n] {
			args = append(args, c.At.UTC(), c.Tenant, c.BatchID, c.RowNumber, c.Rows, c.Check, c.Route,
				c.HTTPStatus, c.ErrorCode, c.RequestID, c.LatencyMS, c.Attempt, c.IdentityHMAC)
		}
		if _, err := s.insertCalls.exec(ctx, tx, n, args); err != nil {
			return fmt.Errorf("ledger: record %d calls: %w", n, err)
		}
		rest = rest[n:]
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("ledger: record %d calls: %w", len(calls), err)
	}
	s.notedCalls(ctx, len(calls))
	return nil
}

// PurgeCalls deletes audit records older than before and returns how many.
func (s *Store) PurgeCalls(ctx context.Context, before time.Time) (int64, error) {
	tx, err := s.db.BeginTxx(ctx, nil)
	if err != nil {
		return 0, fmt.Errorf("ledger: purge calls: %w", err)
	}
	defer tx.Rollback()
	if s.dialect == "sqlite" {
		if _, err := tx.ExecContext(ctx, `DELETE FROM call_identities WHERE call_id IN (SELECT id FROM calls WHERE at < ?)`, before.UTC()); err != nil {
			return 0, fmt.Errorf("ledger: purge calls: %w", err)
		}
	}
	res, err := tx.ExecContext(ctx, tx.Rebind(`DELETE FROM calls WHERE at < ?`), before.UTC())
	if err != nil {
		return 0, fmt.Errorf("ledger: purge calls: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return 0, fmt.Errorf("ledger: purge calls: %w", err)
	}
	n, _ := res.RowsAffected()
	return n, nil
}

// Tenants returns every tenant the ledger knows of (batches and audit
// trail), sorted.
func (s *Store) Tenants(ctx context.Context) ([]string, error) {
	var ts []string
	if err := s.db.SelectContext(ctx, &ts, `SELECT tenant FROM batches UNION SELECT tenant FROM calls ORDER BY tenant`); err != nil {
		return nil, fmt.Errorf("ledger: list tenants: %w", err)
	}
	return ts, nil
}

// PurgeRequest is what Purge removes from the ledger for one tenant.
type PurgeRequest struct {
	Tenant string
	// Batches are batches of Tenant whose results are past retention:
	// they go with their parts and result rows. Ids of other tenants are
	// left alone.
	Batches []string
	// CallsBefore, when not zero, removes Tenant's audit records older
	// than it.
	CallsBefore time.Time
	// DryRun counts what would go and removes nothing.
	DryRun bool
}

// PurgeCounts is what Purge removed (or would remove).
type PurgeCounts struct {
	Batches    int64 `json:"batches"`
	Parts      int64 `json:"parts"`
	ResultRows int64 `json:"result_rows"`
	Calls      int64 `json:"calls"`
}

// Purge removes, in one transaction, what r names; with r.DryRun it
// counts the same rows and rolls back.
func (s *Store) Purge(ctx context.Context, r PurgeRequest) (PurgeCounts, error) {
	var c PurgeCounts
	tx, err := s.db.BeginTxx(ctx, nil)
	if err != nil {
		return c, fmt.Errorf("ledger: purge: %w", err)
	}
	defer tx.Rollback()
	exec := func(n *int64, q string, args ...any) error {
		res, err := tx.ExecContext(ctx, tx.Rebind(q), args...)
		if err != nil {
			return fmt.Errorf("ledger: purge: %w", err)
		}
		m, _ := res.RowsAffected()
		*n += m
		return nil
	}
	const chunk = 200
	for i := 0; i < len(r.Batches); i += chunk {
		ids := r.Batches[i:min(i+chunk, len(r.Batches))]
		owned := `SELECT id FROM batches WHERE tenant = ? AND id IN (?)`
		for _, q := range []struct {
			n    *int64
			stmt string
		}{
			{&c.ResultRows, `DELETE FROM result_rows WHERE batch_id IN (` + owned + `)`},
			{&c.Parts, `DELETE FROM parts WHERE batch_id IN (` + owned + `)`},
			{&c.Batches, `DELETE FROM batches WHERE id IN (` + owned + `)`},
		} {
			stmt, args, err := sqlx.In(q.stmt, r.Tenant, ids)
			if err != nil {
				return c, fmt.Errorf("ledger: purge: %w", err)
			}
			if err := exec(q.n, stmt, args...); err != nil {
				return c, err
			}
		}
	}
	if !r.CallsBefore.IsZero() {
		if s.dialect == "sqlite" {
			var indexed int64
			if err := exec(&indexed, `DELETE FROM call_identities WHERE call_id IN
				(SELECT id FROM calls WHERE tenant = ? AND at < ?)`, r.Tenant, r.CallsBefore.UTC()); err != nil {
				return c, err
			}
		}
		if err := exec(&c.Calls, `DELETE FROM calls WHERE tenant = ? AND at < ?`, r.Tenant, r.CallsBefore.UTC()); err != nil {
			return c, err
		}
	}
	if r.DryRun {
		return c, nil
	}
	if err := tx.Commit(); err != nil {
		return c, fmt.Errorf("ledger: purge: %w", err)
	}
	return c, nil
}

// CallsSince counts the provider calls of a batch made at or after since.
func (s *Store) CallsSince(ctx context.Context, batchID string, since time.Time) (int64, error) {
	var n int64
	if err := s.db.GetContext(ctx, &n, s.db.Rebind(`SELECT COUNT(*) FROM calls WHERE batch_id = ? AND at >= ?`), batchID, since.UTC()); err != nil {
		return 0, fmt.Errorf("ledger: recent calls of %s: %w", batchID, err)
	}
	return n, nil
}

// BatchCalls returns the audit trail of one batch, oldest first.
func (s *Store) BatchCalls(ctx context.Context, batchID string) ([]schemas.CallRecord, error) {
	var out []schemas.CallRecord
	if err := s.db.SelectContext(ctx, &out, s.db.Rebind(`SELECT `+callColumns+` FROM calls WHERE batch_id = ? ORDER BY at`), batchID); err != nil {
		return nil, fmt.Errorf("ledger: calls of batch %s: %w", batchID, err)
	}
	return out, nil
}

// WatchCursor returns how far the listing watcher of bucket/prefix has
// gone: the latest LastModified (the S3 service's clock) of the objects it
// has handled, or the zero time when it never ran.
func (s *Store) WatchCursor(ctx context.Context, bucket, prefix string) (time.Time, error) {
	var t time.Time
	err := s.db.GetContext(ctx, &t, s.db.Rebind(`SELECT modified_at FROM watch_cursors WHERE bucket = ? AND prefix = ?`), bucket, prefix)
	if errors.Is(err, sql.ErrNoRows) {
		return time.Time{}, nil
	}
	if err != nil {
		return time.Time{}, fmt.Errorf("ledger: watch cursor of %s/%s: %w", bucket, prefix, err)
	}
	return t.UTC(), nil
}

// AdvanceWatchCursor moves the cursor of bucket/prefix to modified; a cursor
// already later stays where it is.
func (s *Store) AdvanceWatchCursor(ctx context.Context, bucket, prefix string, modified time.Time) error {
	_, err := s.db.ExecContext(ctx, s.db.Rebind(`INSERT INTO watch_cursors (bucket, prefix, modified_at, updated_at) VALUES (?, ?, ?, ?)
		ON CONFLICT (bucket, prefix) DO UPDATE SET modified_at = excluded.modified_at, updated_at = excluded.updated_at
		WHERE watch_cursors.modified_at < excluded.modified_at`), bucket, prefix, modified.UTC(), s.now().UTC())
	if err != nil {
		return fmt.Errorf("ledger: advance watch cursor of %s/%s: %w", bucket, prefix, err)
	}
	return nil
}

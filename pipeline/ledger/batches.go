package ledger

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/jmoiron/sqlx"

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

// TenantsWithResults returns, sorted, the tenants that have a complete
// batch.
func (s *Store) TenantsWithResults(ctx context.Context) ([]string, error) {
	var ts []string
	if err := s.db.SelectContext(ctx, &ts, s.db.Rebind(`SELECT DISTINCT tenant FROM batches WHERE state = ? ORDER BY tenant`), StateComplete); err != nil {
		return nil, fmt.Errorf("ledger: list tenants: %w", err)
	}
	return ts, nil
}

// TenantBatches returns the batches of tenant, in creation order; with
// campaign set, only those of that campaign.
func (s *Store) TenantBatches(ctx context.Context, tenant, campaign string) ([]Batch, error) {
	q, args := `SELECT * FROM batches WHERE tenant = ?`, []any{tenant}
	if campaign != "" {
		q, args = q+` AND campaign = ?`, append(args, campaign)
	}
	var bs []Batch
	if err := s.db.SelectContext(ctx, &bs, s.db.Rebind(q+` ORDER BY created_at, id`), args...); err != nil {
		return nil, fmt.Errorf("ledger: batches of %s: %w", tenant, err)
	}
	return bs, nil
}

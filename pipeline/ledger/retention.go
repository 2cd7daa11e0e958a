package ledger

import (
	"context"
	"fmt"
	"time"

	"github.com/jmoiron/sqlx"
)

// PurgeCalls deletes audit records older than before and returns how many.
func (s *Store) PurgeCalls(ctx context.Context, before time.Time) (int64, error) {
	tx, err := s.db.BeginTxx(ctx, nil)
	if err != nil {
		return 0, fmt.Errorf("ledger: purge calls: %w", err)
	}
	defer tx.Rollback()
	if s.dialect.identityIndex() {
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
		if s.dialect.identityIndex() {
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

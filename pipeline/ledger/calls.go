package ledger

import (
	"context"
	"fmt"
	"time"

	"github.com/apbatch/apbatch/schemas"
)

// callColumns are the calls table's columns of a schemas.CallRecord.
const callColumns = `at, tenant, batch_id, row_number, rows, check_name, route,
	http_status, error_code, request_id, latency_ms, attempt, identity_hmac`

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

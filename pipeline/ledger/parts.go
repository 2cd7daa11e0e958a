package ledger

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/apbatch/apbatch/schemas"
)

// Part is one result file of a batch.
type Part struct {
	BatchID   string    `db:"batch_id"`
	PartNo    int       `db:"part_no"`
	ObjectKey string    `db:"object_key"`
	Rows      int64     `db:"rows"`
	Size      int64     `db:"size"`
	CreatedAt time.Time `db:"created_at"`
}

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

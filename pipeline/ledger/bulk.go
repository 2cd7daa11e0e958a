package ledger

import (
	"context"
	"database/sql"
	"strings"

	"github.com/jmoiron/sqlx"
)

// maxRowsPerInsert bounds the rows of one multi-row INSERT: its bound values
// stay far under both databases' limits.
const maxRowsPerInsert = 256

// rowsPerInsert returns how many of n pending rows the next INSERT takes:
// the largest power of two not above n (nor maxRowsPerInsert). Statements of
// these few sizes, each parsed once, write any number of rows, at most
// log2(maxRowsPerInsert)+1 statements beyond the full ones.
func rowsPerInsert(n int) int {
	size := maxRowsPerInsert
	for size > n {
		size /= 2
	}
	return size
}

// bulkInsert is a multi-row INSERT of one table in the sizes rowsPerInsert
// returns: head, then one placeholder group of columns values per row, then
// tail.
type bulkInsert struct {
	head, tail string
	columns    int
	rebind     func(string) string
	// prepared holds the statement of each size, once prepare ran.
	prepared map[int]*sql.Stmt
}

// query returns the statement of n rows.
func (b *bulkInsert) query(n int) string {
	group := "(" + strings.Repeat("?, ", b.columns-1) + "?)"
	var sb strings.Builder
	sb.Grow(len(b.head) + n*(len(group)+1) + len(b.tail))
	sb.WriteString(b.head)
	for i := 0; i < n; i++ {
		if i > 0 {
			sb.WriteString(",")
		}
		sb.WriteString(group)
	}
	sb.WriteString(b.tail)
	return b.rebind(sb.String())
}

// prepare prepares the statement of every size on db, to be kept until
// close. Call it outside any transaction: SQLite's only connection would
// be busy.
func (b *bulkInsert) prepare(ctx context.Context, db *sql.DB) error {
	b.prepared = make(map[int]*sql.Stmt)
	for n := maxRowsPerInsert; n >= 1; n /= 2 {
		st, err := db.PrepareContext(ctx, b.query(n))
		if err != nil {
			return err
		}
		b.prepared[n] = st
	}
	return nil
}

// exec inserts n rows, whose values args holds in column order, in tx.
func (b *bulkInsert) exec(ctx context.Context, tx *sqlx.Tx, n int, args []any) (sql.Result, error) {
	if st := b.prepared[n]; st != nil {
		return tx.StmtContext(ctx, st).ExecContext(ctx, args...)
	}
	return tx.ExecContext(ctx, b.query(n), args...)
}

// close releases the prepared statements. A nil b is a no-op.
func (b *bulkInsert) close() {
	if b == nil {
		return
	}
	for _, st := range b.prepared {
		st.Close()
	}
	b.prepared = nil
}

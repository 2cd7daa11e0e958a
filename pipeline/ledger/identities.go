package ledger

import (
	"context"
	"fmt"
	"time"

	"github.com/apbatch/apbatch/schemas"
)

// The audit trail answers "was this person looked up" through an index of
// identity hashes. Those hashes are random, so on SQLite an index kept by
// the calls table itself takes each commit of a few hundred calls into a
// few hundred pages all over the file, each page written whole to the WAL
// at every commit: 300,000 page writes for 100,000 calls, a fifth of the
// time of a batch without rate limits. SQLite therefore appends calls with
// a growing id only, and call_identities, the index, is filled behind them
// in sorted runs of defaultIdentityRun calls (a page written once per run),
// keyed by the hash's first 64 bits (16 bytes an entry, not 100);
// call_identities_upto holds the last call id it covers. A lookup reads the
// index plus the calls past its end, so an audit never misses a recorded
// call. SQLite has one writer at a time, so ids are committed in order and
// nothing is skipped.
//
// PostgreSQL keeps a plain index (calls_identity): its writers commit ids
// out of order, and it inserts index keys without rewriting whole pages.

// defaultIdentityRun is how many calls a Store records before indexing
// their identities: it bounds the calls a lookup reads past the index (per
// process writing the ledger).
const defaultIdentityRun = 20000

// notedCalls counts n calls recorded by s and indexes their identities once
// Store.identityRun are waiting (SQLite only). A failed run leaves them past the
// index's end, where lookups read them too, for the next run.
func (s *Store) notedCalls(ctx context.Context, n int) {
	if !s.dialect.identityIndex() {
		return
	}
	s.unindexedMu.Lock()
	s.unindexed += n
	due := s.unindexed >= s.identityRun
	s.unindexedMu.Unlock()
	if due {
		_ = s.IndexIdentities(ctx)
	}
}

// IndexIdentities adds the identities of the calls recorded since the last
// run to the audit trail's identity index (SQLite; a no-op on PostgreSQL).
// Stores run it themselves every defaultIdentityRun calls and on Close.
func (s *Store) IndexIdentities(ctx context.Context) error {
	if !s.dialect.identityIndex() {
		return nil
	}
	s.unindexedMu.Lock()
	defer s.unindexedMu.Unlock()
	tx, err := s.db.BeginTxx(ctx, nil)
	if err != nil {
		return fmt.Errorf("ledger: index audit identities: %w", err)
	}
	defer tx.Rollback()
	// The write comes first, so the transaction holds the write lock
	// before it reads where the index ends: no call committed in between.
	for _, q := range []string{
		`INSERT INTO call_identities (identity_prefix, call_id)
			SELECT substr(identity_hmac, 1, 16), id FROM calls WHERE id > (SELECT upto FROM call_identities_upto)
			ORDER BY 1, 2`,
		`UPDATE call_identities_upto SET upto = (SELECT COALESCE(MAX(id), upto) FROM calls)`,
	} {
		if _, err := tx.ExecContext(ctx, q); err != nil {
			return fmt.Errorf("ledger: index audit identities: %w", err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("ledger: index audit identities: %w", err)
	}
	s.unindexed = 0
	return nil
}

// indexOnClose indexes the calls this store recorded since its last run,
// so that the next lookup finds them in the index.
func (s *Store) indexOnClose() error {
	s.unindexedMu.Lock()
	n := s.unindexed
	s.unindexedMu.Unlock()
	if n == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return s.IndexIdentities(ctx)
}

// CallsOf returns the audit trail of one identity hash, oldest first.
func (s *Store) CallsOf(ctx context.Context, identityHMAC string) ([]schemas.CallRecord, error) {
	q := `SELECT ` + callColumns + ` FROM calls WHERE identity_hmac = ? ORDER BY at`
	args := []any{identityHMAC}
	if s.dialect.identityIndex() {
		q = `SELECT ` + callColumns + ` FROM calls
			WHERE id IN (SELECT call_id FROM call_identities WHERE identity_prefix = substr(?, 1, 16))
				AND identity_hmac = ?
			UNION ALL
			SELECT ` + callColumns + ` FROM calls
			WHERE id > (SELECT upto FROM call_identities_upto) AND identity_hmac = ?
			ORDER BY at`
		args = append(args, identityHMAC, identityHMAC)
	}
	var out []schemas.CallRecord
	if err := s.db.SelectContext(ctx, &out, s.db.Rebind(q), args...); err != nil {
		return nil, fmt.Errorf("ledger: calls of an identity: %w", err)
	}
	return out, nil
}

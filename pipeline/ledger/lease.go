package ledger

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// LeaseToken gives holder the lease of a token until until, unless another
// holder's lease is still running at now. key identifies the token (a hash:
// never the token). It returns the lease as it was before (holder "" when
// there was none) and whether holder now has it. A holder renews its own
// lease the same way.
func (s *Store) LeaseToken(ctx context.Context, key, holder string, now, until time.Time) (prevHolder string, prevUntil time.Time, ok bool, err error) {
	var prev struct {
		Holder    string `db:"holder"`
		ExpiresNS int64  `db:"expires_ns"`
	}
	err = s.db.GetContext(ctx, &prev, s.db.Rebind(`SELECT holder, expires_ns FROM token_leases WHERE token_key = ?`), key)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return "", time.Time{}, false, fmt.Errorf("ledger: read token lease: %w", err)
	}
	// Taken only if free or already ours, in one statement: two holders
	// racing cannot both win.
	res, err := s.db.ExecContext(ctx, s.db.Rebind(`INSERT INTO token_leases (token_key, holder, expires_ns) VALUES (?, ?, ?)
		ON CONFLICT (token_key) DO UPDATE SET holder = excluded.holder, expires_ns = excluded.expires_ns
		WHERE token_leases.holder = excluded.holder OR token_leases.expires_ns < ?`), key, holder, until.UnixNano(), now.UnixNano())
	if err != nil {
		return "", time.Time{}, false, fmt.Errorf("ledger: take token lease: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return "", time.Time{}, false, fmt.Errorf("ledger: take token lease: %w", err)
	}
	if prev.Holder != "" {
		prevUntil = time.Unix(0, prev.ExpiresNS).UTC()
	}
	return prev.Holder, prevUntil, n == 1, nil
}

// ReleaseToken ends holder's lease of a token at at (its last call), if it
// still holds it.
func (s *Store) ReleaseToken(ctx context.Context, key, holder string, at time.Time) error {
	_, err := s.db.ExecContext(ctx, s.db.Rebind(`UPDATE token_leases SET expires_ns = ? WHERE token_key = ? AND holder = ? AND expires_ns > ?`),
		at.UnixNano(), key, holder, at.UnixNano())
	if err != nil {
		return fmt.Errorf("ledger: release token lease: %w", err)
	}
	return nil
}

package ledger

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

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
	var used int
	if err := tx.GetContext(ctx, &used, tx.Rebind(`SELECT used FROM budget_slots WHERE scope = ? AND slot = ?`+s.dialect.forUpdate()), scope, slot); err != nil {
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

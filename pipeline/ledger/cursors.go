package ledger

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

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

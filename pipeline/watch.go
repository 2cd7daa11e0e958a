package pipeline

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/rs/zerolog"

	"github.com/apbatch/apbatch/pipeline/ledger"
	"github.com/apbatch/apbatch/pipeline/s3"
)

// ObjectLister lists and describes the objects of one bucket; *s3.Client
// implements it.
type ObjectLister interface {
	Bucket() string
	List(ctx context.Context, prefix string) ([]s3.ObjectInfo, error)
	Head(ctx context.Context, key string) (s3.ObjectInfo, error)
}

// DefaultWatchGrace is how far before its cursor the watcher looks again.
const DefaultWatchGrace = time.Hour

// Watcher starts batches for S3 services that send no notifications: every
// Interval it lists incoming/ (ListObjectsV2) and starts a batch for each
// object version that has none, the version named as notifications name it
// (the version id from a HEAD, else the ETag), so that the watcher and
// notifications, running together, still start one batch per version.
//
// Its cursor, kept in the ledger, is the latest LastModified it has seen
// (the S3 service's clock, never ours). A pass looks only at objects modified
// at most Grace before the cursor: uploads finishing late (S3 dates a
// multipart upload from its start) are still found, older objects cost
// nothing but the listing. The first pass, without a cursor, looks at every
// object under incoming/; those that already have a batch are skipped.
// A pass that fails leaves the cursor where it was and the next one tries
// again, so a restart never loses an upload, and the ledger's batch identity
// means none starts twice. Each pass sees the latest version of each key:
// versions overwritten between two passes are not verified.
//
// Run one watcher per bucket: the ledger keeps batches unique, but two
// watchers may split the same new batch at once.
type Watcher struct {
	S3     ObjectLister
	Ledger *ledger.Store
	// Start starts (or resumes) the batch of an upload: Ingester.Start.
	Start func(ctx context.Context, up Upload) error
	// Interval between passes. Required.
	Interval time.Duration
	// Grace is how far before the cursor a pass looks again.
	// Default: DefaultWatchGrace.
	Grace time.Duration
	Log   zerolog.Logger
}

// Validate reports the first missing or invalid field.
func (w *Watcher) Validate() error {
	switch {
	case w.S3 == nil || w.Ledger == nil || w.Start == nil:
		return errors.New("watch: S3, Ledger and Start are required")
	case w.Interval <= 0:
		return errors.New("watch: Interval must be positive")
	case w.Grace < 0:
		return errors.New("watch: Grace must not be negative")
	}
	return nil
}

func (w *Watcher) grace() time.Duration {
	if w.Grace > 0 {
		return w.Grace
	}
	return DefaultWatchGrace
}

// Run makes a pass at once, then one every Interval, until ctx ends; it
// returns nil then. A failed pass is logged and retried at the next tick.
func (w *Watcher) Run(ctx context.Context) error {
	if err := w.Validate(); err != nil {
		return err
	}
	log := w.Log.With().Str("component", "watch").Logger()
	t := time.NewTicker(w.Interval)
	defer t.Stop()
	for {
		n, err := w.Pass(ctx)
		switch {
		case ctx.Err() != nil:
			return nil
		case err != nil:
			log.Warn().Err(err).Msg("watch pass failed; tried again at the next interval")
		case n > 0:
			log.Info().Int("started", n).Msg("watch pass")
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// Pass lists incoming/ once, starts the batches of new object versions and
// advances the cursor. It returns how many uploads it handed to Start.
func (w *Watcher) Pass(ctx context.Context) (int, error) {
	log := w.Log.With().Str("component", "watch").Logger()
	bucket := w.S3.Bucket()
	cursor, err := w.Ledger.WatchCursor(ctx, bucket, IncomingPrefix)
	if err != nil {
		return 0, err
	}
	objs, err := w.S3.List(ctx, IncomingPrefix)
	if err != nil {
		return 0, fmt.Errorf("watch: list %s: %w", IncomingPrefix, err)
	}
	from := cursor.Add(-w.grace())
	latest := cursor
	started := 0
	for _, o := range objs {
		if o.LastModified.After(latest) {
			latest = o.LastModified
		}
		if !cursor.IsZero() && o.LastModified.Before(from) {
			continue
		}
		ik, err := ParseIncomingKey(o.Key)
		if err != nil {
			log.Debug().Err(err).Str("tenant", keyTenant(o.Key)).Str("key_sha256", KeyDigest(o.Key)).Msg("object under incoming/ is not an upload; skipped")
			continue
		}
		// Unversioned buckets: the listed ETag names the version, and a
		// batch for it means there is nothing to do, without a HEAD.
		if o.ETag != "" {
			if done, err := w.done(ctx, bucket, o.Key, ObjectVersion("", o.ETag, "")); err != nil || done {
				if err != nil {
					return started, err
				}
				continue
			}
		}
		head, err := w.S3.Head(ctx, o.Key)
		if errors.Is(err, s3.ErrNotFound) {
			continue // deleted since the listing
		}
		if err != nil {
			return started, fmt.Errorf("watch: head an upload (key_sha256 %s): %w", KeyDigest(o.Key), withoutKey(err))
		}
		up := Upload{Bucket: bucket, Key: ik, Version: ObjectVersion(head.VersionID, head.ETag, ""), VersionID: head.VersionID, ETag: head.ETag}
		if up.VersionID == "null" {
			up.VersionID = ""
		}
		if done, err := w.done(ctx, bucket, o.Key, up.Version); err != nil || done {
			if err != nil {
				return started, err
			}
			continue
		}
		if err := w.Start(ctx, up); err != nil {
			return started, err
		}
		started++
	}
	if latest.After(cursor) {
		if err := w.Ledger.AdvanceWatchCursor(ctx, bucket, IncomingPrefix, latest); err != nil {
			return started, err
		}
	}
	return started, nil
}

// done reports whether the object version has a batch past its creation
// (a batch only created is resumed by Start).
func (w *Watcher) done(ctx context.Context, bucket, key, version string) (bool, error) {
	if version == "" {
		return false, nil
	}
	b, err := w.Ledger.Batch(ctx, ledger.BatchID(bucket, key, version))
	if errors.Is(err, ledger.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return b.State != ledger.StateCreated, nil
}

// withoutKey drops the outer message of an s3 package error, which names
// the object key, keeping the service's error.
func withoutKey(err error) error {
	if inner := errors.Unwrap(err); inner != nil {
		return inner
	}
	return err
}

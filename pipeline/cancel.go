package pipeline

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/apbatch/apbatch/pipeline/ledger"
	"github.com/apbatch/apbatch/pipeline/s3"
	"github.com/apbatch/apbatch/schemas"
)

// newManifest is the manifest of batch b whose published parts are parts,
// with counts of their rows.
func newManifest(b ledger.Batch, parts []ledger.Part, counts ledger.Counts, state string, now time.Time) schemas.Manifest {
	var rows int64
	if b.RowsTotal != nil {
		rows = *b.RowsTotal
	}
	m := schemas.Manifest{
		SchemaVersion: schemas.ResultSchemaVersion, BatchID: b.ID, Tenant: b.Tenant, Campaign: b.Campaign,
		Checks: b.CheckList(), Source: b.ObjectKey, RowsTotal: rows, ResultsTotal: counts.Rows,
		RowsByStatus: counts.ByStatus, ResultsByCheck: counts.ByCheck,
		ProviderCalls: counts.ProviderCalls, CallsSaved: b.CallsSaved, CompletedAt: now.UTC().Format(schemas.ManifestTimeFormat),
		State: state,
	}
	for _, p := range parts {
		m.Files = append(m.Files, schemas.ManifestFile{Key: p.ObjectKey, Rows: p.Rows, Size: p.Size})
	}
	return m
}

// publishParts moves batch b's parts from staging/ to results/, each
// recorded at its new key before its staging copy is deleted (a publish
// cut short starts again from the ledger), deletes what else is left in
// the batch's staging folder (a copy a crash kept there after its move was
// recorded), and returns the parts as moved.
func publishParts(ctx context.Context, client *s3.Client, store *ledger.Store, b ledger.Batch, parts []ledger.Part) ([]ledger.Part, error) {
	out := make([]ledger.Part, len(parts))
	for i, p := range parts {
		out[i] = p
		rest, staged := strings.CutPrefix(p.ObjectKey, StagingPrefix)
		if !staged {
			continue
		}
		key := ResultsPrefix + rest
		if _, err := client.Copy(ctx, p.ObjectKey, key); err != nil {
			return nil, fmt.Errorf("publish part %d of %s: %w", p.PartNo, p.BatchID, err)
		}
		if err := store.MovePart(ctx, p.BatchID, p.PartNo, key); err != nil {
			return nil, err
		}
		if err := client.Delete(ctx, p.ObjectKey); err != nil {
			return nil, fmt.Errorf("publish part %d of %s: %w", p.PartNo, p.BatchID, err)
		}
		out[i].ObjectKey = key
	}
	left, err := client.List(ctx, StagingFolder(b.Tenant, b.Campaign, b.ID))
	if err != nil {
		return nil, fmt.Errorf("publish %s: %w", b.ID, err)
	}
	for _, o := range left {
		if err := client.Delete(ctx, o.Key); err != nil {
			return nil, fmt.Errorf("publish %s: %w", b.ID, err)
		}
	}
	return out, nil
}

// putManifest writes m as the batch's _manifest.json and returns its key.
func putManifest(ctx context.Context, client *s3.Client, m schemas.Manifest) (string, error) {
	body, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return "", fmt.Errorf("encode manifest of %s: %w", m.BatchID, err)
	}
	key := ResultFolder(m.Tenant, m.Campaign, m.BatchID) + ManifestName
	if _, err := client.Put(ctx, key, bytes.NewReader(body), int64(len(body)), "application/json"); err != nil {
		return "", fmt.Errorf("write manifest: %w", err)
	}
	return key, nil
}

// PublishCancelled publishes what cancelled batch b has: the parts the
// ledger records, under a manifest whose state is cancelled. tariff is the
// version of the grid that priced them ("" if unknown or none). Publishing
// twice is harmless: the ledger keeps the first.
func PublishCancelled(ctx context.Context, client *s3.Client, store *ledger.Store, b ledger.Batch, tariff string, now time.Time) error {
	parts, err := store.Parts(ctx, b.ID)
	if err != nil {
		return err
	}
	if parts, err = publishParts(ctx, client, store, b, parts); err != nil {
		return err
	}
	counts, err := store.Counts(ctx, b.ID)
	if err != nil {
		return err
	}
	m := newManifest(b, parts, counts, schemas.ManifestCancelled, now)
	m.Tariff = tariff
	key, err := putManifest(ctx, client, m)
	if err != nil {
		return err
	}
	_, err = store.PublishCancelled(ctx, b.ID, key)
	return err
}

// ErrNotCancellable is returned by CancelBatch for a batch that has ended.
var ErrNotCancellable = errors.New("batch has ended")

// CancelBatch cancels batch id: no call is made for it once the workers
// see it (within a second), and what it has is published with a manifest
// saying cancelled. The writer that holds its results publishes them; when
// none has within wait (no write role running), CancelBatch publishes the
// parts already written itself. It returns the batch as it ends.
func CancelBatch(ctx context.Context, client *s3.Client, store *ledger.Store, id string, wait time.Duration) (ledger.Batch, error) {
	ok, err := store.Cancel(ctx, id, "lot annulé à la demande de la collectivité ; les lignes vérifiées avant l'annulation sont publiées, les autres n'ont pas de résultat")
	if err != nil {
		return ledger.Batch{}, err
	}
	b, err := store.Batch(ctx, id)
	if err != nil {
		return b, err
	}
	if !ok && (b.State != ledger.StateCancelled || b.ManifestKey != "") {
		// Ended; a cancel interrupted before its publication goes on.
		return b, fmt.Errorf("batch %s is %s: %w", id, b.State, ErrNotCancellable)
	}
	deadline := time.Now().Add(wait)
	for b.ManifestKey == "" && time.Now().Before(deadline) {
		select {
		case <-ctx.Done():
			return b, ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
		if b, err = store.Batch(ctx, id); err != nil {
			return b, err
		}
	}
	if b.ManifestKey != "" {
		return b, nil
	}
	if err := PublishCancelled(ctx, client, store, b, "", time.Now()); err != nil {
		return b, err
	}
	return store.Batch(ctx, id)
}

// publishCancelled writes what the writer holds of cancelled batch ob and
// publishes it.
func (w *ResultWriter) publishCancelled(ctx context.Context, log zerolog.Logger, ob *openBatch) error {
	if err := w.flushBatch(ctx, log, ob); err != nil {
		return err
	}
	tariff := ""
	if ob.tariff != nil {
		tariff = ob.tariff.Version
	}
	if err := PublishCancelled(ctx, w.S3, w.Ledger, ob.b, tariff, w.now()); err != nil {
		return err
	}
	delete(w.batches, ob.b.ID)
	if w.Notify != nil {
		// Published: a count that fails does not undo it.
		counts, err := w.Ledger.Counts(ctx, ob.b.ID)
		if err != nil {
			log.Warn().Str("component", "notify").Str("batch_id", ob.b.ID).Err(err).Msg("cancelled batch notified without its counts")
		}
		w.Notify.Notify(NewBatchEvent(ob.b, ledger.StateCancelled, counts, w.now()))
	}
	log.Info().Str("batch_id", ob.b.ID).Str("tenant", ob.b.Tenant).Int("results", len(ob.done)).Msg("cancelled batch published")
	return nil
}

// publishCancelledBatches publishes the cancelled batches not published
// yet, flushing first what this writer holds of them.
func (w *ResultWriter) publishCancelledBatches(ctx context.Context, log zerolog.Logger) error {
	bs, err := w.Ledger.Unpublished(ctx)
	if err != nil {
		return err
	}
	for _, b := range bs {
		ob, ok := w.batches[b.ID]
		if !ok {
			ob = &openBatch{b: b, checks: b.CheckList(), buffered: map[ledger.RowKey]struct{}{}}
		}
		ob.b = b
		if err := w.publishCancelled(ctx, log, ob); err != nil {
			return err
		}
	}
	return nil
}

// Cancellations tells workers whether a batch was cancelled, from the
// ledger, each batch's answer at most MaxAge old.
type Cancellations struct {
	Ledger *ledger.Store
	// MaxAge is how long an answer is kept. Default: one second.
	MaxAge time.Duration

	mu   sync.Mutex
	seen map[string]cancelState
}

type cancelState struct {
	cancelled bool
	at        time.Time
}

// Cancelled reports whether batch id is cancelled. An unreadable ledger
// answers false (the batch goes on).
func (c *Cancellations) Cancelled(ctx context.Context, id string) bool {
	maxAge := c.MaxAge
	if maxAge <= 0 {
		maxAge = time.Second
	}
	c.mu.Lock()
	st, ok := c.seen[id]
	c.mu.Unlock()
	now := time.Now()
	if ok && (st.cancelled || now.Sub(st.at) < maxAge) {
		return st.cancelled
	}
	b, err := c.Ledger.Batch(ctx, id)
	if err != nil {
		return false
	}
	st = cancelState{cancelled: b.State == ledger.StateCancelled, at: now}
	c.mu.Lock()
	if c.seen == nil {
		c.seen = map[string]cancelState{}
	}
	if len(c.seen) > 10000 {
		clear(c.seen)
	}
	c.seen[id] = st
	c.mu.Unlock()
	return st.cancelled
}

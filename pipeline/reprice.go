package pipeline

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"time"

	"github.com/apbatch/apbatch/pipeline/ledger"
	"github.com/apbatch/apbatch/pipeline/parquet"
	"github.com/apbatch/apbatch/pipeline/s3"
	"github.com/apbatch/apbatch/schemas"
)

// PricedVersionSep separates, in a re-priced batch's object version, the
// roster's version from the grid's digest.
const PricedVersionSep = "#tarif-"

// Reprice gives the published results of batch src the prices of grid,
// without any call (the quotient familial does not depend on the grid):
// when a price changes, they are published again as a new batch whose
// PricedFrom is src, with its own manifest; src stays as it was. It
// returns that batch and true, or src and false when the grid prices every
// row as src's results already are. Calling it again with the same grid
// returns the same batch.
func Reprice(ctx context.Context, client *s3.Client, store *ledger.Store, src ledger.Batch, grid schemas.TariffGrid, now time.Time) (ledger.Batch, bool, error) {
	if src.State != ledger.StateComplete || src.RowsTotal == nil {
		return src, false, fmt.Errorf("reprice: batch %s is %s, not complete", src.ID, src.State)
	}
	raw, err := json.Marshal(grid)
	if err != nil {
		return src, false, fmt.Errorf("reprice: %w", err)
	}
	sum := sha256.Sum256(raw)
	version := src.ObjectVersion + PricedVersionSep + hex.EncodeToString(sum[:8])
	id := ledger.BatchID(src.Bucket, src.ObjectKey, version)
	if b, err := store.Batch(ctx, id); err == nil && b.State == ledger.StateComplete {
		return b, true, nil
	}
	rows, err := BatchResults(ctx, client, store, src.ID)
	if err != nil {
		return src, false, fmt.Errorf("reprice: %w", err)
	}
	changed := false
	for i := range rows {
		r := &rows[i]
		oldTranche, oldTarif := r.Tranche, r.Tarif
		grid.ApplyRow(r)
		changed = changed || !equalPtr(oldTranche, r.Tranche) || !equalPtr(oldTarif, r.Tarif)
		r.BatchID = id
	}
	if !changed {
		return src, false, nil
	}
	b, _, err := store.CreateBatch(ctx, ledger.Batch{ID: id, Tenant: src.Tenant, Campaign: src.Campaign, Checks: src.Checks,
		Bucket: src.Bucket, ObjectKey: src.ObjectKey, ObjectVersion: version, ObjectETag: src.ObjectETag, Period: src.Period, Recipient: src.Recipient, PricedFrom: src.ID})
	if err != nil {
		return src, false, err
	}
	if b.State == ledger.StateComplete {
		return b, true, nil
	}
	// One part, in row order (the source's parts are), unless a crash
	// left it written already.
	if parts, err := store.Parts(ctx, id); err != nil {
		return src, false, err
	} else if len(parts) == 0 {
		var buf bytes.Buffer
		if err := parquet.Encode(&buf, rows); err != nil {
			return src, false, fmt.Errorf("reprice: %w", err)
		}
		key := StagingPartKey(b.Tenant, b.Campaign, id, 1)
		if _, err := client.Put(ctx, key, bytes.NewReader(buf.Bytes()), int64(buf.Len()), "application/vnd.apache.parquet"); err != nil {
			return src, false, fmt.Errorf("reprice: %w", err)
		}
		statuses := make([]ledger.RowStatus, len(rows))
		for i, r := range rows {
			statuses[i] = ledger.RowStatus{RowNumber: r.RowNumber, Check: schemas.Check(r.Check), Status: schemas.Status(r.Status)}
		}
		if err := store.RecordPart(ctx, ledger.Part{BatchID: id, PartNo: 1, ObjectKey: key, Rows: int64(len(rows)), Size: int64(buf.Len())}, statuses); err != nil {
			return src, false, err
		}
	}
	if err := store.SetSplit(ctx, id, *src.RowsTotal, 0, 0); err != nil {
		return src, false, err
	}
	if b, err = store.Batch(ctx, id); err != nil {
		return src, false, err
	}
	parts, err := store.Parts(ctx, id)
	if err != nil {
		return src, false, err
	}
	if parts, err = publishParts(ctx, client, store, b, parts); err != nil {
		return src, false, fmt.Errorf("reprice: %w", err)
	}
	counts, err := store.Counts(ctx, id)
	if err != nil {
		return src, false, err
	}
	m := newManifest(b, parts, counts, schemas.ManifestComplete, now)
	m.Tariff, m.PricedFrom = grid.Version, src.ID
	key, err := putManifest(ctx, client, m)
	if err != nil {
		return src, false, fmt.Errorf("reprice: %w", err)
	}
	if err := store.Complete(ctx, id, key); err != nil {
		return src, false, err
	}
	b, err = store.Batch(ctx, id)
	return b, true, err
}

func equalPtr[T comparable](a, b *T) bool {
	return a == nil && b == nil || a != nil && b != nil && *a == *b
}

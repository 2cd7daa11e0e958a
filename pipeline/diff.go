package pipeline

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"sort"

	"github.com/rs/zerolog"

	"github.com/apbatch/apbatch/pipeline/ledger"
	"github.com/apbatch/apbatch/pipeline/parquet"
	"github.com/apbatch/apbatch/pipeline/s3"
	"github.com/apbatch/apbatch/schemas"
)

// DiffBatches lists the results that changed between prev (the previous
// campaign's batch) and cur, one row per result (row and check): status,
// bracket or price changed, or present in one batch only. Results are
// matched by the roster's reference when every row of both batches has
// one (the n-th row of a reference with the n-th, so siblings sharing a
// family number pair in order), else by row number. Rows come in row
// order, then check name.
func DiffBatches(prev, cur ledger.Batch, prevRows, curRows []schemas.ResultRow) []schemas.DiffRow {
	return diffResults(prev, cur, compactResults(prevRows), compactResults(curRows))
}

// compared is what a diff compares of a result: a fraction of its row,
// so that two large batches fit in memory at once.
type compared struct {
	row     int64
	ref     *string
	check   string
	status  string
	qf      *int64
	tranche *string
	tarif   *int64
}

func compactResults(rows []schemas.ResultRow) []compared {
	out := make([]compared, len(rows))
	for i, r := range rows {
		out[i] = compared{row: r.RowNumber, ref: r.Reference, check: r.Check, status: r.Status, qf: r.QFValue, tranche: r.Tranche, tarif: r.Tarif}
	}
	return out
}

func diffResults(prev, cur ledger.Batch, prevRows, curRows []compared) []schemas.DiffRow {
	byRef := hasReferences(prevRows) && hasReferences(curRows)
	old := keyResults(prevRows, byRef)
	now := keyResults(curRows, byRef)
	var out []schemas.DiffRow
	base := func(kind string) schemas.DiffRow {
		return schemas.DiffRow{BatchID: cur.ID, PreviousBatchID: prev.ID, Tenant: cur.Tenant, Campaign: cur.Campaign,
			PreviousCampaign: prev.Campaign, Change: kind}
	}
	for k, n := range now {
		o, ok := old[k]
		var kind string
		switch {
		case !ok:
			kind = schemas.ChangeAdded
		case o.status != n.status:
			kind = schemas.ChangeStatus
		case !sameString(o.tranche, n.tranche):
			kind = schemas.ChangeTranche
		case !sameInt(o.tarif, n.tarif):
			kind = schemas.ChangeTarif
		case o.tranche == nil && n.tranche == nil && !sameInt(o.qf, n.qf):
			kind = schemas.ChangeQF
		default:
			continue
		}
		d := base(kind)
		d.Check, d.Reference = n.check, n.ref
		d.RowNumber, d.NewStatus, d.NewQF, d.NewTranche, d.NewTarif = ptr(n.row), ptr(n.status), n.qf, n.tranche, n.tarif
		if ok {
			d.PreviousRowNumber, d.OldStatus, d.OldQF, d.OldTranche, d.OldTarif = ptr(o.row), ptr(o.status), o.qf, o.tranche, o.tarif
		}
		out = append(out, d)
	}
	for k, o := range old {
		if _, ok := now[k]; ok {
			continue
		}
		d := base(schemas.ChangeRemoved)
		d.Check, d.Reference = o.check, o.ref
		d.PreviousRowNumber, d.OldStatus, d.OldQF, d.OldTranche, d.OldTarif = ptr(o.row), ptr(o.status), o.qf, o.tranche, o.tarif
		out = append(out, d)
	}
	at := func(d schemas.DiffRow) int64 {
		if d.RowNumber != nil {
			return *d.RowNumber
		}
		return *d.PreviousRowNumber
	}
	sort.Slice(out, func(i, j int) bool {
		if a, b := at(out[i]), at(out[j]); a != b {
			return a < b
		}
		if out[i].Check != out[j].Check {
			return out[i].Check < out[j].Check
		}
		return out[i].Change < out[j].Change
	})
	return out
}

// resultKey matches a result across two batches.
type resultKey struct {
	check string
	ref   string
	n     int64 // occurrence of ref, or the row number
}

func hasReferences(rows []compared) bool {
	for _, r := range rows {
		if r.ref == nil || *r.ref == "" {
			return false
		}
	}
	return len(rows) > 0
}

func keyResults(rows []compared, byRef bool) map[resultKey]compared {
	sorted := append([]compared(nil), rows...)
	sort.SliceStable(sorted, func(i, j int) bool { return sorted[i].row < sorted[j].row })
	out := make(map[resultKey]compared, len(rows))
	seen := map[resultKey]int64{}
	for _, r := range sorted {
		k := resultKey{check: r.check, n: r.row}
		if byRef {
			c := resultKey{check: r.check, ref: *r.ref}
			k = resultKey{check: r.check, ref: *r.ref, n: seen[c]}
			seen[c]++
		}
		out[k] = r
	}
	return out
}

func ptr[T any](v T) *T { return &v }

func sameString(a, b *string) bool { return (a == nil) == (b == nil) && (a == nil || *a == *b) }

func sameInt(a, b *int64) bool { return (a == nil) == (b == nil) && (a == nil || *a == *b) }

// CountChanges counts diff rows by change kind.
func CountChanges(rows []schemas.DiffRow) map[string]int64 {
	out := make(map[string]int64)
	for _, r := range rows {
		out[r.Change]++
	}
	return out
}

// BatchResults reads the published part files of batch id.
func BatchResults(ctx context.Context, client *s3.Client, store *ledger.Store, id string) ([]schemas.ResultRow, error) {
	var out []schemas.ResultRow
	err := eachPart(ctx, client, store, id, func(rows []schemas.ResultRow) { out = append(out, rows...) })
	return out, err
}

// eachPart calls f with the rows of each published part file of batch id,
// one part at a time.
func eachPart(ctx context.Context, client *s3.Client, store *ledger.Store, id string, f func([]schemas.ResultRow)) error {
	parts, err := store.Parts(ctx, id)
	if err != nil {
		return err
	}
	for _, p := range PublishedParts(parts) {
		body, _, err := client.Open(ctx, p.ObjectKey)
		if err != nil {
			return err
		}
		raw, err := io.ReadAll(body)
		body.Close()
		if err != nil {
			return fmt.Errorf("read %s: %w", p.ObjectKey, err)
		}
		rows, err := parquet.Decode(raw)
		if err != nil {
			return fmt.Errorf("%s: %w", p.ObjectKey, err)
		}
		f(rows)
	}
	return nil
}

// comparedResults reads what a diff compares of batch id's results.
func comparedResults(ctx context.Context, client *s3.Client, store *ledger.Store, id string) ([]compared, error) {
	var out []compared
	err := eachPart(ctx, client, store, id, func(rows []schemas.ResultRow) { out = append(out, compactResults(rows)...) })
	return out, err
}

// writeDiff writes diff.parquet for batch b when the tenant has a previous
// campaign's batch of the same roster (see ledger.Store.PreviousBatch) and
// returns its summary for the manifest; nil when there is nothing to
// compare with. It runs once per batch, when the batch is published.
func (w *ResultWriter) writeDiff(ctx context.Context, log zerolog.Logger, b ledger.Batch) (*schemas.ManifestChanges, error) {
	prev, err := w.Ledger.PreviousBatch(ctx, b)
	if errors.Is(err, ledger.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("write: previous batch of %s: %w", b.ID, err)
	}
	prevRows, err := comparedResults(ctx, w.S3, w.Ledger, prev.ID)
	if errors.Is(err, s3.ErrNotFound) {
		// Results past their retention: nothing to compare with.
		log.Warn().Str("batch_id", b.ID).Str("previous_batch_id", prev.ID).Msg("previous results gone; no diff")
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("write: diff of %s: %w", b.ID, err)
	}
	curRows, err := comparedResults(ctx, w.S3, w.Ledger, b.ID)
	if err != nil {
		return nil, fmt.Errorf("write: diff of %s: %w", b.ID, err)
	}
	rows := diffResults(prev, b, prevRows, curRows)
	var buf bytes.Buffer
	if err := parquet.EncodeDiff(&buf, rows); err != nil {
		return nil, fmt.Errorf("write: diff of %s: %w", b.ID, err)
	}
	key := DiffKey(b.Tenant, b.Campaign, b.ID)
	if _, err := w.S3.Put(ctx, key, bytes.NewReader(buf.Bytes()), int64(buf.Len()), "application/vnd.apache.parquet"); err != nil {
		return nil, fmt.Errorf("write: %w", err)
	}
	ch := &schemas.ManifestChanges{PreviousBatchID: prev.ID, PreviousCampaign: prev.Campaign, Key: key,
		Total: int64(len(rows)), ByKind: CountChanges(rows)}
	log.Info().Str("batch_id", b.ID).Str("previous_batch_id", prev.ID).Int64("changes", ch.Total).Msg("diff written")
	return ch, nil
}

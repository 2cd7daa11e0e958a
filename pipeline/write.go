package pipeline

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"time"

	"github.com/rs/zerolog"
	kafkago "github.com/segmentio/kafka-go"

	"github.com/apbatch/apbatch/pipeline/ledger"
	"github.com/apbatch/apbatch/pipeline/parquet"
	"github.com/apbatch/apbatch/pipeline/s3"
	"github.com/apbatch/apbatch/schemas"
)

// ResultWriter turns result messages into Parquet part files on S3. A part
// is uploaded, then recorded in the ledger with its rows, and only then are
// the offsets of its messages committed; rows already published are dropped,
// so a redelivered result is never written twice. When every row of a batch
// is published, the writer uploads _manifest.json (published = listed there)
// and marks the batch complete.
type ResultWriter struct {
	Results MessageReader // topic apbatch.results
	S3      *s3.Client
	Ledger  *ledger.Store
	Log     zerolog.Logger
	// FlushInterval bounds how long a result waits in memory before its
	// part is written. Default: DefaultFlushInterval.
	FlushInterval time.Duration
	// StallAfter is how long an unfinished batch may go without progress
	// before the watchdog logs it, once, at error level (see Stalled).
	// Default: DefaultStallAfter; negative: no watchdog.
	StallAfter time.Duration
	// PartRows is the largest part file, in rows; it also bounds the
	// results a batch buffers in memory. Default: 25000.
	PartRows int
	// MaxBuffered is how many fetched messages may wait for a flush before
	// fetching pauses. Default: 200000.
	MaxBuffered int
	// Now is the clock. Default: time.Now.
	Now func() time.Time
	// Metrics, when set, counts the rows written and the batches
	// completed. Default: nil (none).
	Metrics *Metrics
	// Notify, when set, is told of the batches this writer completes or
	// publishes cancelled. Default: nil (none).
	Notify *Notifier

	batches map[string]*openBatch
	pending offsets
}

type openBatch struct {
	b      ledger.Batch
	checks []schemas.Check
	tariff *schemas.TariffGrid // nil: the tenant has none
	done   map[ledger.RowKey]struct{}
	// buf holds the results waiting for a part, in arrival order, and
	// buffered their keys.
	buf      resultBuffer
	buffered map[ledger.RowKey]struct{}
	// counts are the rows this writer recorded in parts: when they are
	// all the batch's parts hold, the manifest takes them rather than
	// reading every result row back (0.1 s per 100,000 rows on SQLite,
	// after the last result).
	counts ledger.Counts
}

// Chunk sizes of a resultBuffer whose batch total is not known yet: the
// first chunks are small (a small batch holds little), each later one as
// large as all before it, up to maxResultChunk (2 MB of results).
const (
	firstResultChunk = 64
	maxResultChunk   = 4096
)

// resultBuffer holds results in chunks that are never grown: appending
// copies none of the results held. A batch still being split (its total
// unknown) cannot size one slice up front, and growing one by append would
// copy every result it holds at each growth (about five times its size
// allocated in all).
type resultBuffer struct {
	chunks [][]schemas.Result
	n      int
}

func (b *resultBuffer) len() int { return b.n }

// add appends a copy of r. want, when positive, is how many results are
// still expected: the size of a new chunk; otherwise chunks double.
func (b *resultBuffer) add(r *schemas.Result, want int) {
	last := len(b.chunks) - 1
	if last < 0 || len(b.chunks[last]) == cap(b.chunks[last]) {
		size := want
		if size <= 0 {
			size = min(max(b.n, firstResultChunk), maxResultChunk)
		}
		b.chunks = append(b.chunks, make([]schemas.Result, 0, size))
		last++
	}
	b.chunks[last] = append(b.chunks[last], *r)
	b.n++
}

// all returns a pointer to every result held, in arrival order.
func (b *resultBuffer) all() []*schemas.Result {
	out := make([]*schemas.Result, 0, b.n)
	for _, c := range b.chunks {
		for i := range c {
			out = append(out, &c[i])
		}
	}
	return out
}

// offsets are the positions of the fetched messages not yet committed: only
// what a commit needs, not the messages (nor their values).
type offsets struct {
	topics []string // distinct topics, in order of arrival
	pos    []position
}

type position struct {
	topic     int32 // index in topics
	partition int32
	offset    int64
}

func (o *offsets) add(m kafkago.Message) {
	t := slices.Index(o.topics, m.Topic)
	if t < 0 {
		t = len(o.topics)
		o.topics = append(o.topics, m.Topic)
	}
	o.pos = append(o.pos, position{topic: int32(t), partition: int32(m.Partition), offset: m.Offset})
}

func (o *offsets) len() int { return len(o.pos) }

// messages returns the positions as the messages CommitMessages takes.
func (o *offsets) messages() []kafkago.Message {
	msgs := make([]kafkago.Message, len(o.pos))
	for i, p := range o.pos {
		msgs[i] = kafkago.Message{Topic: o.topics[p.topic], Partition: int(p.partition), Offset: p.offset}
	}
	return msgs
}

func (o *offsets) reset() { o.pos = o.pos[:0] }

func (w *ResultWriter) now() time.Time {
	if w.Now != nil {
		return w.Now()
	}
	return time.Now()
}

// Run consumes results until ctx ends, flushing what it holds before it
// returns. It returns nil on cancellation.
func (w *ResultWriter) Run(ctx context.Context) error {
	log := w.Log.With().Str("component", "write").Logger()
	interval := w.FlushInterval
	if interval <= 0 {
		interval = DefaultFlushInterval
	}
	maxBuf := w.MaxBuffered
	if maxBuf <= 0 {
		maxBuf = 200000
	}
	w.batches = make(map[string]*openBatch)

	fetchCtx, stopFetch := context.WithCancel(ctx)
	defer stopFetch()
	msgs := make(chan kafkago.Message, 1024)
	fetchErr := make(chan error, 1)
	go func() {
		defer close(msgs)
		for {
			m, err := w.Results.FetchMessage(fetchCtx)
			if err != nil {
				if fetchCtx.Err() == nil {
					fetchErr <- fmt.Errorf("write: fetch result: %w", err)
				}
				return
			}
			select {
			case msgs <- m:
			case <-fetchCtx.Done():
				return
			}
		}
	}()

	dog := &watchdog{after: w.StallAfter, every: min(max(w.StallAfter/15, time.Second), time.Minute)}
	if dog.after == 0 {
		dog.after = DefaultStallAfter
	}
	tick := time.NewTicker(min(interval, time.Second))
	defer tick.Stop()
	lastFlush := w.now()
	for {
		select {
		case <-ctx.Done():
			// Flush with a fresh deadline: what is durable need not be redone.
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
			err := w.flushAll(fctx, log)
			cancel()
			return err
		case err := <-fetchErr:
			return err
		case m, ok := <-msgs:
			if !ok {
				select {
				case err := <-fetchErr:
					return err
				default:
					return nil
				}
			}
			complete, err := w.add(ctx, log, m)
			if err != nil {
				return err
			}
			if complete || w.pending.len() >= maxBuf || w.largestBuffer() >= w.partRows() {
				if err := w.flushAll(ctx, log); err != nil {
					return err
				}
				lastFlush = w.now()
			}
		case <-tick.C:
			if err := w.refreshTotals(ctx, log); err != nil {
				return err
			}
			if err := w.publishCancelledBatches(ctx, log); err != nil && ctx.Err() == nil {
				return err
			}
			if err := dog.check(ctx, w.Ledger, log, w.now()); err != nil && ctx.Err() == nil {
				log.Warn().Err(err).Msg("watchdog: stalled batches not read")
			}
			if w.pending.len() > 0 && w.now().Sub(lastFlush) >= interval {
				if err := w.flushAll(ctx, log); err != nil {
					return err
				}
				lastFlush = w.now()
			}
		}
	}
}

func (w *ResultWriter) partRows() int {
	if w.PartRows <= 0 {
		return 25000
	}
	return w.PartRows
}

func (w *ResultWriter) largestBuffer() int {
	n := 0
	for _, ob := range w.batches {
		n = max(n, ob.buf.len())
	}
	return n
}

// add buffers one message and reports whether its batch now has every row.
func (w *ResultWriter) add(ctx context.Context, log zerolog.Logger, m kafkago.Message) (bool, error) {
	// Only the position is kept for the commit, not the value.
	w.pending.add(m)
	res, err := schemas.DecodeResult(m.Value)
	if err != nil {
		log.Error().Err(err).Int64("offset", m.Offset).Int("partition", m.Partition).Msg("result message dropped")
		return false, nil
	}
	ob, err := w.open(ctx, res.BatchID)
	if errors.Is(err, ledger.ErrNotFound) {
		log.Error().Str("batch_id", res.BatchID).Str("tenant", res.Tenant).Msg("result for an unknown batch dropped")
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if ob.b.State == ledger.StateCancelled && ob.b.ManifestKey != "" {
		// Published as cancelled: a late result (a call in flight when
		// the batch was cancelled) stays out of it.
		delete(w.batches, ob.b.ID)
		log.Debug().Str("batch_id", ob.b.ID).Msg("result of a cancelled batch dropped")
		return false, nil
	}
	if res.Tenant != ob.b.Tenant || res.Campaign != ob.b.Campaign {
		// The prefix comes from the ledger's batch, never from the
		// message: a result claiming another tenant or campaign than its
		// batch is corrupt or forged, and kept out of every folder.
		log.Error().Str("batch_id", res.BatchID).Str("tenant", ob.b.Tenant).Msg("result claims another tenant or campaign than its batch; dropped")
		return false, nil
	}
	ob.share(&res)
	k := ledger.RowKey{Row: res.RowNumber, Check: res.Check}
	if _, dup := ob.done[k]; dup {
		return false, nil
	}
	if _, dup := ob.buffered[k]; dup {
		return false, nil
	}
	ob.buffered[k] = struct{}{}
	ob.buf.add(&res, ob.expected(w.partRows())-ob.buf.len())
	return ob.complete(), nil
}

// expected is how many results the batch may buffer before a part is full,
// when known (0 otherwise): what its buffer is sized for.
func (ob *openBatch) expected(partRows int) int {
	n, ok := ob.results()
	if !ok {
		return 0
	}
	return int(min(max(n-int64(len(ob.done)), 1), int64(partRows)))
}

// rank is c's place among the batch's checks (0 for another check).
func (ob *openBatch) rank(c schemas.Check) int {
	return max(slices.Index(ob.checks, c), 0)
}

// share points the strings every result of the batch repeats at one copy
// (the batch's, or the check's and status's names), so that a buffered
// result holds only its own values.
func (ob *openBatch) share(r *schemas.Result) {
	r.BatchID, r.Tenant, r.Campaign = ob.b.ID, ob.b.Tenant, ob.b.Campaign
	if i := slices.Index(ob.checks, r.Check); i >= 0 {
		r.Check = ob.checks[i]
	}
	if i := slices.Index(schemas.Statuses, r.Status); i >= 0 {
		r.Status = schemas.Statuses[i]
	}
}

// results is how many results the batch publishes: one per row and check.
func (ob *openBatch) results() (int64, bool) {
	if ob.b.RowsTotal == nil {
		return 0, false
	}
	return *ob.b.RowsTotal * int64(len(ob.checks)), true
}

func (ob *openBatch) complete() bool {
	n, ok := ob.results()
	return ok && int64(len(ob.done)+ob.buf.len()) >= n
}

// published reports whether every result of the batch is in a part.
func (ob *openBatch) published() bool {
	n, ok := ob.results()
	return ok && int64(len(ob.done)) >= n
}

func (w *ResultWriter) open(ctx context.Context, id string) (*openBatch, error) {
	if ob, ok := w.batches[id]; ok {
		return ob, nil
	}
	b, err := w.Ledger.Batch(ctx, id)
	if err != nil {
		return nil, err
	}
	done, err := w.Ledger.DoneRows(ctx, id)
	if err != nil {
		return nil, err
	}
	ob := &openBatch{b: b, checks: b.CheckList(), done: done, buffered: make(map[ledger.RowKey]struct{})}
	if slices.Contains(ob.checks, schemas.CheckQuotientFamilial) {
		if ob.tariff, err = w.tariff(ctx, b.Tenant); err != nil {
			return nil, err
		}
	}
	w.batches[id] = ob
	return ob, nil
}

// refreshTotals learns the row count of batches that were still being split
// when their first results arrived, and finishes those now complete.
func (w *ResultWriter) refreshTotals(ctx context.Context, log zerolog.Logger) error {
	for id, ob := range w.batches {
		if ob.b.RowsTotal != nil {
			continue
		}
		b, err := w.Ledger.Batch(ctx, id)
		if err != nil {
			return err
		}
		ob.b = b
		if b.State == ledger.StateFailed {
			// The file was refused after some rows were read: nothing
			// of it is published.
			log.Info().Str("batch_id", id).Str("tenant", b.Tenant).Int("results", ob.buf.len()).Msg("results of a failed batch dropped")
			delete(w.batches, id)
			continue
		}
		if ob.complete() {
			if err := w.flushAll(ctx, log); err != nil {
				return err
			}
		}
	}
	return nil
}

// flushAll writes a part for every batch holding results, finishes complete
// batches, then commits every pending offset.
func (w *ResultWriter) flushAll(ctx context.Context, log zerolog.Logger) error {
	ids := make([]string, 0, len(w.batches))
	for id := range w.batches {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		ob := w.batches[id]
		if err := w.flushBatch(ctx, log, ob); err != nil {
			return err
		}
		if ob.published() {
			if ob.b.State == ledger.StateSplit {
				if err := w.finish(ctx, log, ob); err != nil {
					return err
				}
			}
			delete(w.batches, id)
		}
	}
	if w.pending.len() == 0 {
		return nil
	}
	if err := w.Results.CommitMessages(ctx, w.pending.messages()...); err != nil {
		return fmt.Errorf("write: commit %d result offsets: %w", w.pending.len(), err)
	}
	w.pending.reset()
	return nil
}

func (w *ResultWriter) flushBatch(ctx context.Context, log zerolog.Logger, ob *openBatch) error {
	if ob.buf.len() == 0 {
		return nil
	}
	// Pointers are sorted, not the results (each a few hundred bytes).
	rows := ob.buf.all()
	// Row order, then the batch's check order within a row (keys are
	// unique: no two results compare equal).
	slices.SortFunc(rows, func(a, b *schemas.Result) int {
		if c := cmp.Compare(a.RowNumber, b.RowNumber); c != 0 {
			return c
		}
		return cmp.Compare(ob.rank(a.Check), ob.rank(b.Check))
	})
	for start := 0; start < len(rows); start += w.partRows() {
		chunk := rows[start:min(start+w.partRows(), len(rows))]
		if err := w.writePart(ctx, log, ob, chunk); err != nil {
			// What is not written stays buffered.
			var rest resultBuffer
			for _, r := range rows[start:] {
				rest.add(r, len(rows)-start)
			}
			ob.buf = rest
			return err
		}
		// Written and recorded: buffered no more.
		for _, r := range chunk {
			delete(ob.buffered, ledger.RowKey{Row: r.RowNumber, Check: r.Check})
		}
	}
	ob.buf = resultBuffer{}
	return nil
}

func (w *ResultWriter) writePart(ctx context.Context, log zerolog.Logger, ob *openBatch, rows []*schemas.Result) error {
	b := ob.b
	n, err := w.Ledger.NextPartNo(ctx, b.ID)
	if err != nil {
		return err
	}
	var buf bytes.Buffer
	pw, err := parquet.NewWriter(&buf)
	if err != nil {
		return fmt.Errorf("write: %w", err)
	}
	statuses := make([]ledger.RowStatus, 0, len(rows))
	for _, p := range rows {
		r := *p // the price goes to the part, not to the buffered result
		if ob.tariff != nil {
			ob.tariff.Apply(&r)
		}
		if err := pw.Write(r.Row()); err != nil {
			return fmt.Errorf("write: encode row %d of %s: %w", r.RowNumber, b.ID, err)
		}
		calls := int32(0)
		if r.Primary {
			calls = r.Attempts
		}
		statuses = append(statuses, ledger.RowStatus{RowNumber: r.RowNumber, Check: r.Check, Status: r.Status, Calls: calls})
	}
	if err := pw.Close(); err != nil {
		return fmt.Errorf("write: finish part of %s: %w", b.ID, err)
	}
	key := StagingPartKey(b.Tenant, b.Campaign, b.ID, n)
	size := int64(buf.Len())
	if _, err := w.S3.Put(ctx, key, bytes.NewReader(buf.Bytes()), size, "application/vnd.apache.parquet"); err != nil {
		return fmt.Errorf("write: %w", err)
	}
	if err := w.Ledger.RecordPart(ctx, ledger.Part{BatchID: b.ID, PartNo: n, ObjectKey: key, Rows: int64(len(rows)), Size: size}, statuses); err != nil {
		return err
	}
	for _, r := range rows {
		ob.done[ledger.RowKey{Row: r.RowNumber, Check: r.Check}] = struct{}{}
	}
	for _, st := range statuses {
		ob.counts.Add(st.Check, st.Status, 1, int64(st.Calls))
	}
	w.Metrics.rowsWritten(b.Tenant, rows)
	log.Info().Str("batch_id", b.ID).Str("tenant", b.Tenant).Int("part", n).Int("rows", len(rows)).Msg("part written")
	return nil
}

func (w *ResultWriter) finish(ctx context.Context, log zerolog.Logger, ob *openBatch) error {
	b := ob.b
	parts, err := w.Ledger.Parts(ctx, b.ID)
	if err != nil {
		return err
	}
	counts, inParts := ob.counts, int64(0)
	for _, p := range parts {
		inParts += p.Rows
	}
	if counts.Rows != inParts || counts.ByStatus == nil {
		// Some parts were recorded by another writer, or before a
		// restart: count what the ledger holds.
		if counts, err = w.Ledger.Counts(ctx, b.ID); err != nil {
			return err
		}
	}
	// Cancelled since it was opened: published as such.
	if cur, err := w.Ledger.Batch(ctx, b.ID); err != nil {
		return err
	} else if cur.State == ledger.StateCancelled {
		ob.b = cur
		return w.publishCancelled(ctx, log, ob)
	}
	if parts, err = publishParts(ctx, w.S3, w.Ledger, b, parts); err != nil {
		return fmt.Errorf("write: %w", err)
	}
	m := newManifest(b, parts, counts, schemas.ManifestComplete, w.now())
	if ob.tariff != nil {
		m.Tariff = ob.tariff.Version
	}
	// The diff is written before the manifest: listed there, it is
	// published with the results.
	if m.Changes, err = w.writeDiff(ctx, log, b); err != nil {
		return err
	}
	key, err := putManifest(ctx, w.S3, m)
	if err != nil {
		return fmt.Errorf("write: %w", err)
	}
	if err := w.Ledger.Complete(ctx, b.ID, key); err != nil {
		return err
	}
	ob.b.State = ledger.StateComplete
	w.Metrics.batchCompleted(b.Tenant, b.CreatedAt, w.now())
	w.Notify.Notify(NewBatchEvent(b, ledger.StateComplete, counts, w.now()))
	log.Info().Str("batch_id", b.ID).Str("tenant", b.Tenant).Int64("rows", counts.Rows).
		Int64("provider_calls", counts.ProviderCalls).Int("parts", len(parts)).Msg("batch complete")
	return nil
}

// tariff loads the tenant's tariff grid, or nil when it has none. A grid
// that does not parse is reported and ignored: results are still written,
// without prices.
func (w *ResultWriter) tariff(ctx context.Context, tenant string) (*schemas.TariffGrid, error) {
	if !ValidTenant(tenant) {
		// A batch recorded before tenant names were narrowed: its key
		// could reach another tenant's folder, so no grid.
		w.Log.Error().Str("component", "write").Err(ErrTenantName).Msg("tariff grid not read")
		return nil, nil
	}
	raw, err := ReadConfig(ctx, w.S3, TariffKey(tenant))
	if raw == nil || err != nil {
		return nil, err
	}
	g, err := schemas.ParseTariffGrid(raw)
	if err != nil {
		w.Log.Error().Str("component", "write").Str("tenant", tenant).Err(err).Msg("tariff grid ignored")
		return nil, nil
	}
	return &g, nil
}

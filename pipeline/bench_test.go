package pipeline

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/rs/zerolog"
	json "github.com/segmentio/encoding/json"
	kafkago "github.com/segmentio/kafka-go"

	"github.com/apbatch/apbatch/pipeline/keys"
	"github.com/apbatch/apbatch/pipeline/ledger"
	"github.com/apbatch/apbatch/schemas"
)

// discardWriter drops what it is given.
type discardWriter struct{ n int }

func (d *discardWriter) WriteMessages(_ context.Context, msgs ...kafkago.Message) error {
	d.n += len(msgs)
	return nil
}

// benchRoster returns n rows of distinct people, every 10th row a second
// row for the person before it, every 50th row invalid.
func benchRoster(n int) []byte {
	names := []string{"MARTIN", "BERNARD", "DUBOIS", "THOMAS", "ROBERT", "RICHARD", "PETIT", "DURAND", "LEROY", "MOREAU"}
	firsts := []string{"ALEXIS", "ELODIE", "JEAN PIERRE", "MARIE", "LÉA", "CHLOÉ", "HUGO", "LOUIS"}
	var b bytes.Buffer
	b.WriteString("reference;nom_naissance;prenoms;sexe;date_naissance;code_insee_pays_naissance;code_insee_commune_naissance\n")
	for i := 0; i < n; i++ {
		p := i
		if i%10 == 9 {
			p = i - 1 // the same person again: one lookup for two rows
		}
		date := fmt.Sprintf("%04d-%02d-%02d", 1950+p%60, 1+p%12, 1+p%28)
		if i%50 == 49 {
			date = "1990-13-45"
		}
		sexe := "F"
		if p%2 == 1 {
			sexe = "M"
		}
		fmt.Fprintf(&b, "SYN-%07d;%s;%s;%s;%s;99100;%05d\n", i+1, names[p%len(names)], firsts[(p/7)%len(firsts)], sexe, date, 8000+p%900)
	}
	return b.Bytes()
}

// BenchmarkSplit splits a 20,000-row roster (sealed identities) into
// discarded jobs and results: the S3 reads and the ledger writes included.
func BenchmarkSplit(b *testing.B) {
	const n = 20000
	ctx := context.Background()
	client, store := bucketAndLedger(b)
	kek := make([]byte, keys.KeySize)
	rand.Read(kek)
	local, err := keys.NewLocal(kek)
	if err != nil {
		b.Fatal(err)
	}
	ring, err := keys.New(local)
	if err != nil {
		b.Fatal(err)
	}
	key := IncomingKey{Tenant: "ville-a", Campaign: "2026-09", File: "liste.csv"}.String()
	body := benchRoster(n)
	if _, err := client.Put(ctx, key, bytes.NewReader(body), int64(len(body)), "text/csv"); err != nil {
		b.Fatal(err)
	}
	jobs, results := &discardWriter{}, &discardWriter{}
	s := &Splitter{S3: client, Ledger: store, Jobs: jobs, Results: results, Log: zerolog.Nop(), Identities: ring}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		b.StopTimer()
		i++
		batch, _, err := store.CreateBatch(ctx, ledger.Batch{Tenant: "ville-a", Campaign: "2026-09", Checks: "quotient_familial",
			Bucket: "apbatch", ObjectKey: key, ObjectVersion: strconv.Itoa(i), Period: "2026-09"})
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		if err := s.Split(ctx, batch); err != nil {
			b.Fatal(err)
		}
	}
	if jobs.n == 0 || results.n == 0 {
		b.Fatalf("%d jobs, %d results", jobs.n, results.n)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/row")
}

// benchReader serves messages, then blocks; it reports how many offsets
// were committed.
type benchReader struct {
	msgs      []kafkago.Message
	next      int
	committed int
	done      chan struct{}
}

func (r *benchReader) FetchMessage(ctx context.Context) (kafkago.Message, error) {
	if r.next < len(r.msgs) {
		r.next++
		return r.msgs[r.next-1], nil
	}
	<-ctx.Done()
	return kafkago.Message{}, ctx.Err()
}

func (r *benchReader) CommitMessages(_ context.Context, msgs ...kafkago.Message) error {
	r.committed += len(msgs)
	if r.committed == len(r.msgs) {
		close(r.done)
	}
	return nil
}

// benchResults returns n result messages of a batch, as workers produce
// them: quotient familial answers, some not found.
func benchResults(b testing.TB, batchID string, n int) []kafkago.Message {
	at := time.Date(2026, 9, 14, 8, 30, 0, 0, time.UTC)
	msgs := make([]kafkago.Message, n)
	for i := range msgs {
		r := schemas.Result{Version: schemas.ResultVersion, BatchID: batchID, Tenant: "ville-a", Campaign: "2026-09",
			RowNumber: int64(i + 1), Reference: fmt.Sprintf("SYN-%07d", i+1), Check: schemas.CheckQuotientFamilial,
			Status: schemas.StatusOK, Provider: "CNAF", RequestID: fmt.Sprintf("req-%012d", i), Attempts: 1, Primary: true,
			CheckedAt: at.Add(time.Duration(i) * time.Millisecond)}
		if i%7 == 3 {
			r.Status, r.ErrorCode, r.ErrorMessage, r.Provider = schemas.StatusNotFound, "37003", "Dossier allocataire absent CNAV", ""
		} else {
			qf, y, m, c := int64(300+i%2000), int32(2026), int32(8), int32(i%4)
			r.QFValue, r.QFYear, r.QFMonth, r.QFCalcYear, r.QFCalcMonth, r.ChildrenCount = &qf, &y, &m, &y, &m, &c
		}
		v, err := json.Marshal(r)
		if err != nil {
			b.Fatal(err)
		}
		msgs[i] = kafkago.Message{Topic: schemas.TopicResults, Partition: i % 3, Offset: int64(i / 3), Value: v}
	}
	return msgs
}

// benchBatch records the i-th version of a roster of ville-a, for the
// writer benchmarks.
func benchBatch(b *testing.B, store *ledger.Store, i int) ledger.Batch {
	b.Helper()
	batch, _, err := store.CreateBatch(context.Background(), ledger.Batch{Tenant: "ville-a", Campaign: "2026-09", Checks: "quotient_familial",
		Bucket: "apbatch", ObjectKey: "incoming/ville-a/2026-09/liste.csv", ObjectVersion: strconv.Itoa(i)})
	if err != nil {
		b.Fatal(err)
	}
	return batch
}

// runWriter runs w until it has committed every message of r, then stops
// it.
func runWriter(tb testing.TB, ctx context.Context, w *ResultWriter, r *benchReader) {
	tb.Helper()
	wctx, stop := context.WithCancel(ctx)
	errc := make(chan error, 1)
	go func() { errc <- w.Run(wctx) }()
	select {
	case <-r.done:
	case err := <-errc:
		tb.Fatalf("writer stopped: %v", err)
	case <-ctx.Done():
		tb.Fatal("results not committed")
	}
	stop()
	if err := <-errc; err != nil {
		tb.Fatal(err)
	}
}

// BenchmarkResultWriter writes the 25,000 results of a batch: decoding,
// one Parquet part, its upload and ledger records, the manifest.
func BenchmarkResultWriter(b *testing.B) {
	const n = 25000
	ctx := context.Background()
	client, store := bucketAndLedger(b)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		b.StopTimer()
		i++
		batch := benchBatch(b, store, i)
		if err := store.SetSplit(ctx, batch.ID, n, n, 0); err != nil {
			b.Fatal(err)
		}
		r := &benchReader{msgs: benchResults(b, batch.ID, n), done: make(chan struct{})}
		w := &ResultWriter{Results: r, S3: client, Ledger: store, Log: zerolog.Nop(), FlushInterval: time.Hour}
		b.StartTimer()
		runWriter(b, ctx, w, r)
		b.StopTimer()
		if got, _ := store.Batch(ctx, batch.ID); got.State != ledger.StateComplete {
			b.Fatalf("batch %s", got.State)
		}
		b.StartTimer()
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/row")
}

// BenchmarkResultWriter_TotalUnknown buffers the 25,000 results of a batch
// whose split has not ended (its row count is not known yet: the writer
// cannot size its buffer), then writes them as one part.
func BenchmarkResultWriter_TotalUnknown(b *testing.B) {
	const n = 25000
	ctx := context.Background()
	client, store := bucketAndLedger(b)
	log := zerolog.Nop()
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		b.StopTimer()
		i++
		batch := benchBatch(b, store, i)
		r := &benchReader{msgs: benchResults(b, batch.ID, n), done: make(chan struct{})}
		w := &ResultWriter{Results: r, S3: client, Ledger: store, Log: log, batches: make(map[string]*openBatch)}
		b.StartTimer()
		for _, m := range r.msgs {
			if _, err := w.add(ctx, log, m); err != nil {
				b.Fatal(err)
			}
		}
		if err := w.flushAll(ctx, log); err != nil {
			b.Fatal(err)
		}
		if r.committed != n {
			b.Fatalf("%d offsets committed", r.committed)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/row")
}

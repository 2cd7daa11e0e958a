package workers_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	kafkago "github.com/segmentio/kafka-go"

	"github.com/apbatch/apbatch/pipeline/kafka"
	"github.com/apbatch/apbatch/schemas"
	"github.com/apbatch/apbatch/workers"
	"github.com/apbatch/apbatch/workers/sandbox"
)

// syncAnswered is an AnsweredLog in memory that several pools share, as
// they share the ledger.
type syncAnswered struct {
	mu      sync.Mutex
	base    map[int]int64
	offsets map[int]string
}

func (a *syncAnswered) SaveAnswered(_ context.Context, _, _ string, p int, base int64, offsets string) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.base[p], a.offsets[p] = base, offsets
	return nil
}

func (a *syncAnswered) Answered(_ context.Context, _, _ string, p int) (int64, string, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.base[p], a.offsets[p], nil
}

// rowResults counts the results produced per row.
type rowResults struct {
	mu   sync.Mutex
	rows map[int64]int
	n    int
}

func (r *rowResults) WriteMessages(_ context.Context, msgs ...kafkago.Message) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, m := range msgs {
		res, err := schemas.DecodeResult(m.Value)
		if err != nil {
			return err
		}
		r.rows[res.RowNumber]++
		r.n++
	}
	return nil
}

func (r *rowResults) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.n
}

// ownership records when each worker held each partition: from the
// moment its generation's loop opened the partition to the moment the loop
// closed it (after the claim was revoked).
type ownership struct {
	mu    sync.Mutex
	spans map[string]map[int][]span // worker → partition → spans
}

type span struct{ from, to time.Time } // to zero: still held

func (o *ownership) claim(worker string, p int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.spans[worker] == nil {
		o.spans[worker] = map[int][]span{}
	}
	o.spans[worker][p] = append(o.spans[worker][p], span{from: time.Now()})
}

func (o *ownership) release(worker string, p int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	s := o.spans[worker][p]
	s[len(s)-1].to = time.Now()
}

// held tells whether worker held p at t, within slack after a release (a
// call decided just before its claim ended may leave a moment later).
func (o *ownership) held(worker string, p int, t time.Time, slack time.Duration) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, s := range o.spans[worker][p] {
		if !t.Before(s.from) && (s.to.IsZero() || t.Before(s.to.Add(slack))) {
			return true
		}
	}
	return false
}

// watched is a worker's consumer group whose partition readers report to
// an ownership record.
type watched struct {
	workers.Generations
	worker string
	own    *ownership
}

func (w *watched) Partition(topic string, p int, offset int64) workers.PartitionReader {
	w.own.claim(w.worker, p)
	return &watchedReader{PartitionReader: w.Generations.Partition(topic, p, offset), release: func() { w.own.release(w.worker, p) }}
}

type watchedReader struct {
	workers.PartitionReader
	release func()
}

func (r *watchedReader) Close() error {
	r.release()
	return r.PartitionReader.Close()
}

// callLog is a worker's audit trail: the calls it sent, row and time.
type callLog struct {
	mu    sync.Mutex
	calls []schemas.CallRecord
}

func (c *callLog) RecordCalls(_ context.Context, calls []schemas.CallRecord) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.calls = append(c.calls, calls...)
	return nil
}

// TestPool_ConsumerGroupRebalance: a second worker joins the group while
// the first has fetched every job ahead and is calling, then the first
// leaves. Each time, the worker losing partitions drops the jobs it fetched
// for them, without a call, lets its calls in flight finish and commits;
// the next owner takes them from the committed offsets. Every row gets one
// result; no worker calls for a partition it does not hold (each call's
// time against the spans its generations held the row's partition); no
// lookup is called twice.
func TestPool_ConsumerGroupRebalance(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	b := &kafka.Broker{DataDir: t.TempDir()}
	if err := b.Open(ctx); err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	const partitions = 8
	cfg := kafka.Config{Brokers: b.Addrs(), Partitions: partitions}
	const topic = "jobs"
	if err := kafka.EnsureTopics(ctx, cfg, topic); err != nil {
		t.Fatal(err)
	}
	const jobs = 300
	pop := sandbox.NewPopulation(jobs, 3)
	sb, err := sandbox.New(sandbox.Config{Population: pop, Limits: sandbox.Limits{PerSecond: 1000, IPPerMinute: 100000},
		Faults: sandbox.Faults{LatencyP50: 20 * time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(sb)
	defer srv.Close()
	tok, _ := sandbox.Token([]byte(sandbox.DefaultSecret), sandbox.AllScopes, time.Now().Add(time.Hour))

	w := kafka.NewWriter(cfg, topic)
	var msgs []kafkago.Message
	partitionOf := map[int64]int{} // row → partition, as the writer's balancer puts its job
	all := make([]int, partitions)
	for i := range all {
		all[i] = i
	}
	for i := 0; i < jobs; i++ {
		tenant := fmt.Sprint("ville-", i%16)
		job := schemas.Job{Version: schemas.JobVersion, BatchID: "b1", Tenant: tenant, Check: schemas.CheckQuotientFamilial,
			LookupID: fmt.Sprint("l", i), Recipient: "13002526500013", Rows: []schemas.RowRef{{Number: int64(i + 1)}},
			Identity: pop.Person(i).Identity()}
		v, _ := json.Marshal(job)
		m := kafkago.Message{Key: []byte(tenant), Value: v}
		partitionOf[int64(i+1)] = (&kafkago.Hash{}).Balance(m, all...)
		msgs = append(msgs, m)
	}
	if err := w.WriteMessages(ctx, msgs...); err != nil {
		t.Fatal(err)
	}
	kafka.CloseWriter(w)

	fr := &rowResults{rows: map[int64]int{}}
	answered := &syncAnswered{base: map[int]int64{}, offsets: map[int]string{}}
	own := &ownership{spans: map[string]map[int][]span{}}
	audits := map[string]*callLog{}
	newPool := func(name string) *workers.Pool {
		g, err := kafka.NewGroup(cfg, "workers", topic)
		if err != nil {
			t.Fatal(err)
		}
		audits[name] = &callLog{}
		return &workers.Pool{ConsumerGroup: &watched{Generations: g, worker: name, own: own}, AllowClearJobs: true,
			Results: fr, Client: &workers.Client{BaseURL: srv.URL}, Audit: audits[name], AuditKey: []byte("k"),
			Tokens: func(string) (string, error) { return tok, nil }, Log: zerolog.Nop(),
			// 40 calls a second: the run lasts about 8 s; the second
			// worker joins when a fifth is done, the first leaves at half.
			Limit: 40, IPLimit: -1, MaxInFlight: 4, AnsweredLog: answered, Group: "workers"}
	}
	first, second := newPool("first"), newPool("second")
	var wg sync.WaitGroup
	run := func(ctx context.Context, p *workers.Pool) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := p.Run(ctx); err != nil && ctx.Err() == nil {
				t.Errorf("pool: %v", err)
			}
		}()
	}
	waitFor := func(what string, done func() bool) {
		t.Helper()
		for deadline := time.Now().Add(60 * time.Second); !done(); {
			if time.Now().After(deadline) {
				t.Fatalf("%s: not within 60 s (%d rows answered)", what, fr.count())
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	firstCtx, stopFirst := context.WithCancel(ctx)
	defer stopFirst()
	run(firstCtx, first)
	waitFor("the first worker's calls", func() bool { return first.Calls() >= jobs/5 })
	run(ctx, second)
	waitFor("half the rows", func() bool { return fr.count() >= jobs/2 })
	stopFirst() // the first leaves the group
	waitFor("every row", func() bool { return fr.count() >= jobs })
	time.Sleep(500 * time.Millisecond) // a duplicate would show now
	cancel()
	wg.Wait()

	for i := int64(1); i <= jobs; i++ {
		if n := fr.rows[i]; n != 1 {
			t.Errorf("row %d has %d results, want 1", i, n)
		}
	}
	calls := 0
	for name, log := range audits {
		for _, c := range log.calls {
			calls++
			if p := partitionOf[c.RowNumber]; !own.held(name, p, c.At, 50*time.Millisecond) {
				t.Errorf("the %s worker called for row %d at %s, when it did not hold partition %d", name, c.RowNumber, c.At.Format("15:04:05.000"), p)
			}
		}
	}
	t.Logf("calls: first worker %d, second %d, for %d rows", len(audits["first"].calls), len(audits["second"].calls), jobs)
	if twice := calls - jobs; twice > jobs/200 {
		t.Errorf("%d calls made twice (%d calls for %d lookups), want at most 0.5 %%", twice, calls, jobs)
	}
	if len(audits["second"].calls) == 0 || len(audits["first"].calls) == 0 {
		t.Error("both workers should have called")
	}
}

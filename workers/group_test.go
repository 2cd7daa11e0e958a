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

// TestPool_ConsumerGroupRebalance: a second worker joins the group while
// the first has fetched every job ahead and is calling. The first drops the
// jobs it fetched for the partitions it loses, without a call, lets its
// calls in flight finish and commits; the second takes those partitions
// from the committed offsets. Every lookup is called once, every row gets
// one result, and both workers called.
func TestPool_ConsumerGroupRebalance(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	b := &kafka.Broker{DataDir: t.TempDir()}
	if err := b.Open(ctx); err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	cfg := kafka.Config{Brokers: b.Addrs(), Partitions: 8}
	const topic = "jobs"
	if err := kafka.EnsureTopics(ctx, cfg, topic); err != nil {
		t.Fatal(err)
	}
	const jobs = 240
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
	for i := 0; i < jobs; i++ {
		tenant := fmt.Sprint("ville-", i%16)
		job := schemas.Job{Version: schemas.JobVersion, BatchID: "b1", Tenant: tenant, Check: schemas.CheckQuotientFamilial,
			LookupID: fmt.Sprint("l", i), Recipient: "13002526500013", Rows: []schemas.RowRef{{Number: int64(i + 1)}},
			Identity: pop.Person(i).Identity()}
		v, _ := json.Marshal(job)
		msgs = append(msgs, kafkago.Message{Key: []byte(tenant), Value: v})
	}
	if err := w.WriteMessages(ctx, msgs...); err != nil {
		t.Fatal(err)
	}
	kafka.CloseWriter(w)

	fr := &rowResults{rows: map[int64]int{}}
	answered := &syncAnswered{base: map[int]int64{}, offsets: map[int]string{}}
	newPool := func() *workers.Pool {
		g, err := kafka.NewGroup(cfg, "workers", topic)
		if err != nil {
			t.Fatal(err)
		}
		return &workers.Pool{ConsumerGroup: g, AllowClearJobs: true, Results: fr, Client: &workers.Client{BaseURL: srv.URL},
			Tokens: func(string) (string, error) { return tok, nil }, Log: zerolog.Nop(),
			// 40 calls a second: the whole run lasts about 6 s, and the
			// second worker joins when a third is done.
			Limit: 40, IPLimit: -1, MaxInFlight: 4, AnsweredLog: answered, Group: "workers"}
	}
	first, second := newPool(), newPool()
	var wg sync.WaitGroup
	run := func(p *workers.Pool) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := p.Run(ctx); err != nil && ctx.Err() == nil {
				t.Errorf("pool: %v", err)
			}
		}()
	}
	run(first)
	for deadline := time.Now().Add(30 * time.Second); first.Calls() < jobs/3; {
		if time.Now().After(deadline) {
			t.Fatalf("the first worker made %d calls in 30 s", first.Calls())
		}
		time.Sleep(10 * time.Millisecond)
	}
	run(second)
	for deadline := time.Now().Add(60 * time.Second); fr.count() < jobs; {
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d rows answered", fr.count(), jobs)
		}
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(500 * time.Millisecond) // a duplicate would show now
	cancel()
	wg.Wait()

	for i := int64(1); i <= jobs; i++ {
		if n := fr.rows[i]; n != 1 {
			t.Errorf("row %d has %d results, want 1", i, n)
		}
	}
	if first.Calls()+second.Calls() != jobs {
		t.Errorf("%d + %d calls for %d lookups: jobs fetched ahead for a revoked partition were called", first.Calls(), second.Calls(), jobs)
	}
	t.Logf("calls: first worker %d, second %d", first.Calls(), second.Calls())
	if second.Calls() == 0 {
		t.Error("the second worker made no call: no partition moved to it")
	}
}

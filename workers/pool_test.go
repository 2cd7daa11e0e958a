package workers

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	kafkago "github.com/segmentio/kafka-go"

	"github.com/apbatch/apbatch/schemas"
	"github.com/apbatch/apbatch/workers/sandbox"
)

func TestAckTracker_CommitsOnlyContiguous(t *testing.T) {
	a := newAckTracker()
	msg := func(p int, off int64) kafkago.Message {
		return kafkago.Message{Topic: "jobs", Partition: p, Offset: off}
	}
	for off := int64(10); off < 15; off++ {
		a.fetched(msg(0, off))
	}
	a.fetched(msg(1, 3))
	if got := a.committable(); len(got) != 0 {
		t.Fatalf("nothing done yet, committable = %v", got)
	}
	a.done(msg(0, 11))
	a.done(msg(0, 12))
	if got := a.committable(); len(got) != 0 {
		t.Fatalf("offset 10 not done, committable = %v", got)
	}
	a.done(msg(0, 10))
	a.done(msg(1, 3))
	got := a.committable()
	want := map[int]int64{0: 12, 1: 3}
	if len(got) != 2 {
		t.Fatalf("committable = %v", got)
	}
	for _, m := range got {
		if want[m.Partition] != m.Offset {
			t.Fatalf("partition %d: commit %d, want %d", m.Partition, m.Offset, want[m.Partition])
		}
	}
	a.committed(got)
	a.done(msg(0, 14))
	if got := a.committable(); len(got) != 0 {
		t.Fatalf("13 not done, committable = %v", got)
	}
	a.done(msg(0, 13))
	if got := a.committable(); len(got) != 1 || got[0].Offset != 14 {
		t.Fatalf("committable = %v", got)
	}
}

// fakeJobs is a hand-written JobReader over a fixed list of messages.
type fakeJobs struct {
	mu        sync.Mutex
	msgs      []kafkago.Message
	next      int
	committed map[int]int64 // partition → highest committed offset
}

func (f *fakeJobs) FetchMessage(ctx context.Context) (kafkago.Message, error) {
	f.mu.Lock()
	if f.next < len(f.msgs) {
		m := f.msgs[f.next]
		f.next++
		f.mu.Unlock()
		return m, nil
	}
	f.mu.Unlock()
	<-ctx.Done()
	return kafkago.Message{}, ctx.Err()
}

func (f *fakeJobs) CommitMessages(_ context.Context, msgs ...kafkago.Message) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, m := range msgs {
		if m.Offset > f.committed[m.Partition] {
			f.committed[m.Partition] = m.Offset
		}
	}
	return nil
}

// fakeResults is a hand-written ResultWriter keeping what it is given.
type fakeResults struct {
	mu      sync.Mutex
	results []schemas.Result
}

func (f *fakeResults) WriteMessages(_ context.Context, msgs ...kafkago.Message) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, m := range msgs {
		r, err := schemas.DecodeResult(m.Value)
		if err != nil {
			return err
		}
		f.results = append(f.results, r)
	}
	return nil
}

func TestPool_AgainstSandbox(t *testing.T) {
	sb, err := sandbox.New(sandbox.Config{})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(sb)
	defer srv.Close()
	tok, err := sandbox.Token([]byte(sandbox.DefaultSecret), sandbox.AllScopes, time.Now().Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	person := func(nom, prenom, sexe string, y, m, d int) schemas.Identity {
		return schemas.Identity{NomNaissance: nom, Prenoms: strings.Fields(prenom), Sexe: sexe, AnneeNaissance: y, MoisNaissance: m,
			JourNaissance: d, CodePaysNaissance: "99100", CodeCommuneNaissance: "08480"}
	}
	jobs := []struct {
		id   schemas.Identity
		rows []int64
	}{
		{person("LEFEBVRE", "ALEXIS GÉRÔME JEAN-PHILIPPE", "F", 1982, 12, 27), []int64{1, 7}},
		{person("BERNARD", "ELODIE", "F", 1990, 3, 0), []int64{2}},
		{person("INCONNU", "PERSONNE", "M", 1990, 1, 1), []int64{3}},
		{person("DESFOUIN", "René", "M", 2002, 12, 5), []int64{4}},
		{person("DELANOUE", "Jean-Marie", "M", 2002, 12, 5), []int64{5}},
		{person("SITUDI", "Clément", "M", 2002, 12, 5), []int64{6}},
	}
	fj := &fakeJobs{committed: map[int]int64{}}
	for i, j := range jobs {
		job := schemas.Job{Version: schemas.JobVersion, BatchID: "b1", Tenant: "demo", Campaign: "2026-09",
			Check: schemas.CheckQuotientFamilial, LookupID: fmt.Sprint("l", i), Recipient: "13002526500013", Identity: j.id}
		for _, n := range j.rows {
			job.Rows = append(job.Rows, schemas.RowRef{Number: n, Reference: fmt.Sprint("R", n)})
		}
		v, _ := json.Marshal(job)
		fj.msgs = append(fj.msgs, kafkago.Message{Topic: "jobs", Partition: 0, Offset: int64(i), Value: v})
	}
	fr := &fakeResults{}
	var logs bytes.Buffer
	pool := &Pool{AllowClearJobs: true, Jobs: fj, Results: fr, Client: &Client{BaseURL: srv.URL},
		Tokens: func(string) (string, error) { return tok, nil }, Log: zerolog.New(&logs).Level(zerolog.DebugLevel),
		Retry: RetryPolicy{MaxAttempts: 2, BaseDelay: time.Millisecond}, ProbeEvery: 10 * time.Millisecond}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- pool.Run(ctx) }()
	deadline := time.Now().Add(20 * time.Second)
	for {
		fj.mu.Lock()
		c := fj.committed[0]
		fj.mu.Unlock()
		if c == int64(len(jobs)-1) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("offsets not committed: %d", c)
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	byRow := map[int64]schemas.Result{}
	for _, r := range fr.results {
		byRow[r.RowNumber] = r
	}
	if len(byRow) != 7 || len(fr.results) != 7 {
		t.Fatalf("%d results for 7 rows", len(fr.results))
	}
	for _, tc := range []struct {
		row      int64
		status   schemas.Status
		code     string
		attempts int32
	}{
		{1, schemas.StatusOK, "", 1}, {7, schemas.StatusOK, "", 1}, {2, schemas.StatusOK, "", 1},
		{3, schemas.StatusNotFound, "37003", 1},
		{4, schemas.StatusProviderError, "00429", 2},
		{5, schemas.StatusProviderError, "37999", 2},
		{6, schemas.StatusProviderError, "37002", 2},
	} {
		r := byRow[tc.row]
		if r.Status != tc.status || r.ErrorCode != tc.code || r.Attempts != tc.attempts || r.Reference != fmt.Sprint("R", tc.row) {
			t.Errorf("row %d = %+v", tc.row, r)
		}
	}
	if v := byRow[1].QFValue; v == nil || *v != 2550 || !byRow[1].Primary || byRow[7].Primary {
		t.Errorf("LEFEBVRE rows: %+v / %+v", byRow[1], byRow[7])
	}
	if v := byRow[2].QFValue; v == nil || *v != 650 || *byRow[2].ChildrenCount != 1 {
		t.Errorf("BERNARD: %+v", byRow[2])
	}
	if pool.Calls() != 9 || sb.Calls() != 9 {
		t.Errorf("calls: pool %d sandbox %d, want 9", pool.Calls(), sb.Calls())
	}
	for _, leak := range []string{tok, "LEFEBVRE", "DESFOUIN", "nomNaissance", "1982"} {
		if strings.Contains(logs.String(), leak) {
			t.Errorf("logs contain %q", leak)
		}
	}
}

// TestPool_BanGuardStopsCalling: a silent API (connections dropped, as
// during an IP ban) stops the pool with ErrBanRisk instead of retrying and
// failing row after row; the rows not reached keep their jobs for next time.
func TestPool_BanGuardStopsCalling(t *testing.T) {
	sb, err := sandbox.New(sandbox.Config{Faults: sandbox.Faults{Rates: map[string]float64{sandbox.FaultReset: 1}}})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(sb)
	defer srv.Close()
	tok, _ := sandbox.Token([]byte(sandbox.DefaultSecret), sandbox.AllScopes, time.Now().Add(time.Hour))
	fj := &fakeJobs{committed: map[int]int64{}}
	for i := 0; i < 20; i++ {
		job := schemas.Job{Version: schemas.JobVersion, BatchID: "b1", Tenant: "demo", Check: schemas.CheckQuotientFamilial,
			LookupID: fmt.Sprint("l", i), Recipient: "13002526500013", Rows: []schemas.RowRef{{Number: int64(i + 1)}},
			Identity: schemas.Identity{NomNaissance: "X", Prenoms: []string{"Y"}, Sexe: "M", CodePaysNaissance: "99350"}}
		v, _ := json.Marshal(job)
		fj.msgs = append(fj.msgs, kafkago.Message{Topic: "jobs", Offset: int64(i), Value: v})
	}
	fr := &fakeResults{}
	pool := &Pool{AllowClearJobs: true, Jobs: fj, Results: fr, Client: &Client{BaseURL: srv.URL}, Tokens: func(string) (string, error) { return tok, nil },
		Log: zerolog.Nop(), Limit: 1000, MaxInFlight: 4, Retry: RetryPolicy{MaxAttempts: 3, BaseDelay: time.Millisecond},
		ProbeEvery: 10 * time.Millisecond}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err = pool.Run(ctx)
	if !errors.Is(err, ErrBanRisk) {
		t.Fatalf("Run = %v, want ErrBanRisk", err)
	}
	if len(fr.results) > 4 {
		t.Fatalf("%d rows failed before the guard tripped", len(fr.results))
	}
	// Without the guard, 20 jobs × 3 attempts = 60 calls; with it, the 10
	// silent calls that trip it plus what was in flight (4 at a time) around
	// the breaker's open/close cycles.
	if sb.Calls() >= 30 {
		t.Fatalf("%d calls after the API went silent", sb.Calls())
	}
}

func TestPool_AcquireSerialisesIdenticalLookups(t *testing.T) {
	p := &Pool{}
	ctx := context.Background()
	release, err := p.acquire(ctx, keyOfToken("tok"), "lookup-1")
	if err != nil {
		t.Fatal(err)
	}
	other, err := p.acquire(ctx, keyOfToken("tok2"), "lookup-1") // another token: independent
	if err != nil {
		t.Fatal(err)
	}
	other()
	got := make(chan struct{})
	go func() {
		r, _ := p.acquire(ctx, keyOfToken("tok"), "lookup-1")
		close(got)
		r()
	}()
	select {
	case <-got:
		t.Fatal("identical lookup ran while the first was in flight")
	case <-time.After(50 * time.Millisecond):
	}
	release()
	<-got
	cctx, cancel := context.WithCancel(ctx)
	r, _ := p.acquire(ctx, keyOfToken("tok"), "lookup-1")
	cancel()
	if _, err := p.acquire(cctx, keyOfToken("tok"), "lookup-1"); err == nil {
		t.Fatal("acquire ignored a cancelled context")
	}
	r()
}

func TestPool_Share(t *testing.T) {
	for _, tc := range []struct {
		share      float64
		limit, def int
		want       int
	}{
		{0, 0, 20, 20}, {1, 20, 20, 20}, {0.8, 20, 20, 16}, {0.8, 0, 1000, 800}, {0.01, 20, 20, 1},
	} {
		if got := (&Pool{Share: tc.share}).share(tc.limit, tc.def); got != tc.want {
			t.Errorf("share %v of %d: %d, want %d", tc.share, tc.limit, got, tc.want)
		}
	}
}

// jobsFor returns n job messages for distinct synthetic people of pop.
func jobsFor(t *testing.T, pop *sandbox.Population, n int) *fakeJobs {
	t.Helper()
	fj := &fakeJobs{committed: map[int]int64{}}
	for i := 0; i < n; i++ {
		per := pop.Person(i)
		id := per.Identity()
		job := schemas.Job{Version: schemas.JobVersion, BatchID: "b1", Tenant: "demo", Check: schemas.CheckQuotientFamilial,
			LookupID: fmt.Sprint("l", i), Recipient: "13002526500013", Rows: []schemas.RowRef{{Number: int64(i + 1)}}, Identity: id}
		v, _ := json.Marshal(job)
		fj.msgs = append(fj.msgs, kafkago.Message{Topic: "jobs", Offset: int64(i), Value: v})
	}
	return fj
}

func TestPool_OutageResumesWithoutFailingRows(t *testing.T) {
	pop := sandbox.NewPopulation(60, 2)
	sb, _ := sandbox.New(sandbox.Config{Population: pop, Limits: sandbox.Limits{PerSecond: 1000, IPPerMinute: 100000}})
	sb.SetOutage(QuotientFamilialPing, time.Now().Add(400*time.Millisecond))
	srv := httptest.NewServer(sb)
	defer srv.Close()
	tok, _ := sandbox.Token([]byte(sandbox.DefaultSecret), sandbox.AllScopes, time.Now().Add(time.Hour))
	fj, fr := jobsFor(t, pop, 60), &fakeResults{}
	pool := &Pool{AllowClearJobs: true, Jobs: fj, Results: fr, Client: &Client{BaseURL: srv.URL}, Tokens: func(string) (string, error) { return tok, nil },
		Log: zerolog.Nop(), Limit: 1000, IPLimit: -1, MaxInFlight: 8, ProbeEvery: 50 * time.Millisecond, BreakerThreshold: 3,
		// Short backoff: a threshold no higher than the attempts is what
		// keeps rows from failing, not timing.
		Retry: RetryPolicy{MaxAttempts: 3, BaseDelay: time.Millisecond}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- pool.Run(ctx) }()
	waitResults(t, fr, 60)
	cancel()
	<-done
	for _, r := range fr.results {
		if r.Status == schemas.StatusProviderError {
			t.Fatalf("row %d failed by the outage: %s %s", r.RowNumber, r.ErrorCode, r.ErrorMessage)
		}
	}
	// No retry storm: the failures before the breaker opened, plus the calls
	// already in flight, then one call per row.
	if extra := sb.Calls() - 60; extra > 5+8 {
		t.Fatalf("%d extra calls during a 400 ms outage", extra)
	}
}

// TestPool_OutageDoesNotStopOtherChecks: while CNAF is down, the QF jobs
// wait parked, giving their call slots to the other checks' jobs queued
// behind them, which all get answered; the QF rows resume afterwards.
func TestPool_OutageDoesNotStopOtherChecks(t *testing.T) {
	pop := sandbox.NewPopulation(40, 2)
	sb, _ := sandbox.New(sandbox.Config{Population: pop, Limits: sandbox.Limits{PerSecond: 1000, IPPerMinute: 100000}})
	sb.SetOutage(QuotientFamilialPing, time.Now().Add(time.Hour))
	srv := httptest.NewServer(sb)
	defer srv.Close()
	tok, _ := sandbox.Token([]byte(sandbox.DefaultSecret), sandbox.AllScopes, time.Now().Add(time.Hour))
	fj, fr := jobsFor(t, pop, 30), &fakeResults{}
	for i := 0; i < 10; i++ { // RSA jobs behind the QF ones
		job := schemas.Job{Version: schemas.JobVersion, BatchID: "b1", Tenant: "demo", Check: schemas.CheckRSA,
			LookupID: fmt.Sprint("rsa", i), Recipient: "13002526500013", Rows: []schemas.RowRef{{Number: int64(31 + i)}}, Identity: pop.Person(i).Identity()}
		v, _ := json.Marshal(job)
		fj.msgs = append(fj.msgs, kafkago.Message{Topic: "jobs", Offset: int64(30 + i), Value: v})
	}
	pool := &Pool{AllowClearJobs: true, Jobs: fj, Results: fr, Client: &Client{BaseURL: srv.URL}, Tokens: func(string) (string, error) { return tok, nil },
		Log: zerolog.Nop(), Limit: 1000, IPLimit: -1, MaxInFlight: 2, ProbeEvery: 20 * time.Millisecond, BreakerThreshold: 2,
		Retry: RetryPolicy{MaxAttempts: 3, BaseDelay: time.Millisecond}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- pool.Run(ctx) }()
	waitResults(t, fr, 10) // only RSA rows can be answered now
	fr.mu.Lock()
	for _, r := range fr.results {
		if r.Check != schemas.CheckRSA || r.Status == schemas.StatusProviderError {
			t.Errorf("during the outage: row %d %s %s", r.RowNumber, r.Check, r.Status)
		}
	}
	fr.mu.Unlock()
	sb.SetOutage(QuotientFamilialPing, time.Now()) // CNAF is back
	waitResults(t, fr, 40)
	cancel()
	<-done
	for _, r := range fr.results {
		if r.Status == schemas.StatusProviderError {
			t.Fatalf("row %d (%s) failed by the outage: %s", r.RowNumber, r.Check, r.ErrorCode)
		}
	}
}

// TestPool_LongWaitParks: a job told to wait long (the provider's own rate
// limit, XX008) waits parked; the job behind it, on the same partition,
// gets the only call slot and is answered meanwhile.
func TestPool_LongWaitParks(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("nomNaissance") == "LENT" {
			w.WriteHeader(http.StatusBadGateway)
			w.Write([]byte(`{"errors":[{"code":"37008","title":"Erreur auprès du fournisseur de données : trop de requêtes","meta":{"provider":"CNAV"}}]}`))
			return
		}
		w.Write([]byte(`{"data":{"quotient_familial":{"fournisseur":"CNAF","valeur":800,"annee":2026,"mois":9}}}`))
	}))
	defer srv.Close()
	fj, fr := &fakeJobs{committed: map[int]int64{}}, &fakeResults{}
	for i, name := range []string{"LENT", "RAPIDE"} {
		job := schemas.Job{Version: schemas.JobVersion, BatchID: "b1", Tenant: "demo", Check: schemas.CheckQuotientFamilial,
			LookupID: name, Recipient: "13002526500013", Rows: []schemas.RowRef{{Number: int64(i + 1)}},
			Identity: schemas.Identity{NomNaissance: name, Prenoms: []string{"A"}, Sexe: "F", CodePaysNaissance: "99350"}}
		v, _ := json.Marshal(job)
		fj.msgs = append(fj.msgs, kafkago.Message{Topic: "jobs", Offset: int64(i), Value: v})
	}
	pool := &Pool{AllowClearJobs: true, Jobs: fj, Results: fr, Client: &Client{BaseURL: srv.URL}, Tokens: func(string) (string, error) { return "t", nil },
		Log: zerolog.Nop(), Limit: 1000, IPLimit: -1, MaxInFlight: 1, Retry: RetryPolicy{ProviderThrottleDelay: time.Hour}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- pool.Run(ctx) }()
	waitResults(t, fr, 1)
	cancel()
	<-done
	if r := fr.results[0]; r.RowNumber != 2 || r.Status != schemas.StatusOK {
		t.Fatalf("answered %+v", r)
	}
	if off, ok := fj.committed[0]; ok {
		t.Fatalf("offset %d committed past the waiting job", off)
	}
}

func TestPool_SilentAPIStopsInsteadOfHanging(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL
	srv.Close() // nothing answers any more, pings included
	pop := sandbox.NewPopulation(30, 3)
	fj, fr := jobsFor(t, pop, 30), &fakeResults{}
	pool := &Pool{AllowClearJobs: true, Jobs: fj, Results: fr, Client: &Client{BaseURL: url}, Tokens: func(string) (string, error) { return "t", nil },
		Log: zerolog.Nop(), Limit: 1000, MaxInFlight: 4, ProbeEvery: 5 * time.Millisecond,
		Retry: RetryPolicy{MaxAttempts: 3, BaseDelay: time.Millisecond}}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := pool.Run(ctx); !errors.Is(err, ErrBanRisk) {
		t.Fatalf("Run = %v, want ErrBanRisk", err)
	}
}

func TestRoundRobin(t *testing.T) {
	r := newRoundRobin()
	for i, tenant := range []string{"big", "big", "big", "small", "big", "mid", "small"} {
		r.push(tenant, delivery{m: kafkago.Message{Key: []byte(tenant), Offset: int64(i)}})
	}
	var got []string
	for r.len() > 0 {
		got = append(got, string(r.pop().m.Key))
	}
	want := []string{"big", "small", "mid", "big", "small", "big", "big"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("order %v, want %v", got, want)
	}
}

// TestPool_FairBetweenTenants: a small town's jobs behind a big town's on
// one partition are served early, not after the whole big batch.
func TestPool_FairBetweenTenants(t *testing.T) {
	pop := sandbox.NewPopulation(55, 6)
	sb, _ := sandbox.New(sandbox.Config{Population: pop, Limits: sandbox.Limits{PerSecond: 100000, IPPerMinute: 1000000}})
	srv := httptest.NewServer(sb)
	defer srv.Close()
	tok, _ := sandbox.Token([]byte(sandbox.DefaultSecret), sandbox.AllScopes, time.Now().Add(time.Hour))
	fj := jobsFor(t, pop, 55)
	for i := range fj.msgs {
		tenant := "big"
		if i >= 50 {
			tenant = "small"
		}
		fj.msgs[i].Key = []byte(tenant)
	}
	fr := &fakeResults{}
	pool := &Pool{AllowClearJobs: true, Jobs: fj, Results: fr, Client: &Client{BaseURL: srv.URL}, Tokens: func(string) (string, error) { return tok, nil },
		Log: zerolog.Nop(), Limit: 100000, IPLimit: -1, MaxInFlight: 1, Lookahead: 64}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- pool.Run(ctx) }()
	waitResults(t, fr, 55)
	cancel()
	<-done
	lastSmall := 0
	for i, r := range fr.results {
		if r.RowNumber > 50 {
			lastSmall = i
		}
	}
	// Round-robin once the small jobs are fetched: they finish within the
	// first 15 results, not at positions 50-54.
	if lastSmall > 15 {
		t.Fatalf("the small town's last row came out at position %d of 55", lastSmall)
	}
	fj.mu.Lock()
	defer fj.mu.Unlock()
	if fj.committed[0] != 54 {
		t.Fatalf("committed offset %d, want 54 (in order, nothing skipped)", fj.committed[0])
	}
}

// waitResults waits until fr holds n results (20 s at most).
func waitResults(t *testing.T, fr *fakeResults, n int) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		fr.mu.Lock()
		got := len(fr.results)
		fr.mu.Unlock()
		if got == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d rows answered", got, n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// discardResults is a ResultWriter that keeps nothing.
type discardResults struct{}

func (discardResults) WriteMessages(context.Context, ...kafkago.Message) error { return nil }

// discardAudit is an AuditLog that keeps nothing.
type discardAudit struct{}

func (discardAudit) RecordCalls(context.Context, []schemas.CallRecord) error { return nil }

// steppingClock returns a clock that moves step forward at every reading,
// so that no budget ever makes a benchmark wait.
func steppingClock(step time.Duration) func() time.Time {
	var mu sync.Mutex
	t := time.Now()
	return func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		t = t.Add(step)
		return t
	}
}

// BenchmarkPool_ProcessQF measures the worker's whole per-job path for a
// QF job of two rows answered 200 (decode, token, in-flight mark, budgets,
// call, audit record, results), the API's answer coming from memory.
func BenchmarkPool_ProcessQF(b *testing.B) {
	tok := benchToken(b)
	p := &Pool{AllowClearJobs: true, Results: discardResults{}, Client: &Client{BaseURL: "http://api.test", HTTP: &http.Client{Transport: newQFAnswer(b)}},
		Tokens: func(string) (string, error) { return tok, nil }, Log: zerolog.Nop(), IPLimit: -1,
		Audit: discardAudit{}, AuditKey: []byte("0123456789abcdef0123456789abcdef"), Now: steppingClock(time.Second)}
	job := schemas.Job{Version: schemas.JobVersion, BatchID: "0f8e7d6c-5b4a-4938-8271-605f4e3d2c1b", Tenant: "sedan", Campaign: "2026-09",
		Check: schemas.CheckQuotientFamilial, LookupID: schemas.LookupID(schemas.CheckQuotientFamilial, schemas.Period{}, lefebvre),
		Recipient: "13002526500013", Identity: lefebvre, Rows: []schemas.RowRef{{Number: 12, Reference: "R12"}, {Number: 40, Reference: "R40"}}}
	v, err := json.Marshal(job)
	if err != nil {
		b.Fatal(err)
	}
	m := kafkago.Message{Topic: schemas.TopicJobs, Key: []byte(job.Tenant), Value: v}
	ctx := context.Background()
	log := zerolog.Nop()
	if err := p.process(ctx, ctx, log, m, &jobSlots{}); err != nil { // the token's budget is made
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if err := p.process(ctx, ctx, log, m, &jobSlots{}); err != nil {
			b.Fatal(err)
		}
	}
	if p.Calls() < 2 {
		b.Fatalf("%d calls", p.Calls())
	}
}

func TestKeyOfToken(t *testing.T) {
	for _, tok := range []string{"", "tok", strings.Repeat("x", 127), strings.Repeat("y", 128), strings.Repeat("z", 1500)} {
		if keyOfToken(tok) != sha256.Sum256([]byte(tok)) {
			t.Errorf("key of a %d-byte token is not its SHA-256", len(tok))
		}
	}
}

// TestJobLog_AsChildLogger: a job's entries are those a child logger with
// the job's fields would write, byte for byte.
func TestJobLog_AsChildLogger(t *testing.T) {
	job := schemas.Job{BatchID: "b1", Tenant: "sedan", Check: schemas.CheckQuotientFamilial}
	for _, level := range []zerolog.Level{zerolog.DebugLevel, zerolog.InfoLevel, zerolog.ErrorLevel} {
		var want, got bytes.Buffer
		child := zerolog.New(&want).Level(level).With().Str("component", "work").Logger().
			With().Str("batch_id", job.BatchID).Str("tenant", job.Tenant).Str("check", string(job.Check)).Logger()
		base := zerolog.New(&got).Level(level).With().Str("component", "work").Logger()
		jl := newJobLog(&base, &job)
		child.Debug().Int("http_status", 502).Msg("retrying")
		jl.Debug().Int("http_status", 502).Msg("retrying")
		child.Info().Str("until", "x").Msg("waiting")
		jl.Info().Str("until", "x").Msg("waiting")
		child.Error().Err(errors.New("boom")).Msg("no token for tenant")
		jl.Error().Err(errors.New("boom")).Msg("no token for tenant")
		if got.String() != want.String() {
			t.Errorf("level %s:\n%s\nwant\n%s", level, got.String(), want.String())
		}
	}
}

// recordingAudit keeps the records it is given, or fails with err.
type recordingAudit struct {
	mu    sync.Mutex
	calls []schemas.CallRecord
	err   error
}

func (a *recordingAudit) RecordCalls(_ context.Context, calls []schemas.CallRecord) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.err != nil {
		return a.err
	}
	a.calls = append(a.calls, calls...)
	return nil
}

// TestPool_AuditHashesEveryAttempt: every attempt's record carries the
// identity's keyed hash, the one schemas.IdentityHMAC gives.
func TestPool_AuditHashesEveryAttempt(t *testing.T) {
	qf := newQFAnswer(t)
	n := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if n++; n == 1 {
			w.WriteHeader(http.StatusBadGateway)
			w.Write([]byte(`{"errors":[{"code":"37999","title":"Erreur","meta":{"provider":"CNAF"}}]}`))
			return
		}
		qf.ServeHTTP(w, r)
	}))
	defer srv.Close()
	audit := &recordingAudit{}
	key := []byte("audit key")
	p := &Pool{AllowClearJobs: true, Results: discardResults{}, Client: &Client{BaseURL: srv.URL}, Tokens: func(string) (string, error) { return "tok", nil },
		Log: zerolog.Nop(), IPLimit: -1, Retry: RetryPolicy{MaxAttempts: 3, BaseDelay: time.Millisecond}, Audit: audit, AuditKey: key,
		Now: steppingClock(time.Second)}
	job := schemas.Job{Version: schemas.JobVersion, BatchID: "b1", Tenant: "sedan", Check: schemas.CheckQuotientFamilial, LookupID: "l1",
		Recipient: "13002526500013", Identity: lefebvre, Rows: []schemas.RowRef{{Number: 1}}}
	v, _ := json.Marshal(job)
	if err := p.process(context.Background(), context.Background(), zerolog.Nop(), kafkago.Message{Value: v}, &jobSlots{}); err != nil {
		t.Fatal(err)
	}
	want := schemas.IdentityHMAC(key, lefebvre)
	if len(audit.calls) != 2 || audit.calls[0].Attempt != 1 || audit.calls[1].Attempt != 2 || audit.calls[1].HTTPStatus != http.StatusOK {
		t.Fatalf("records %+v", audit.calls)
	}
	for _, c := range audit.calls {
		if c.IdentityHMAC != want {
			t.Errorf("attempt %d: hash %s, want %s", c.Attempt, c.IdentityHMAC, want)
		}
	}
}

// auditFirst is a ResultWriter that notes how many audit records existed
// when results were produced.
type auditFirst struct {
	audit   *recordingAudit
	written []int // audit records at each WriteMessages
}

func (w *auditFirst) WriteMessages(context.Context, ...kafkago.Message) error {
	w.audit.mu.Lock()
	defer w.audit.mu.Unlock()
	w.written = append(w.written, len(w.audit.calls))
	return nil
}

// TestPool_AuditsBeforeResults: a job's calls are in the audit trail
// before its results are produced (a complete batch is an audited one),
// and a job whose calls cannot be audited produces no results (it is
// redelivered).
func TestPool_AuditsBeforeResults(t *testing.T) {
	srv := httptest.NewServer(newQFAnswer(t))
	defer srv.Close()
	job := schemas.Job{Version: schemas.JobVersion, BatchID: "b1", Tenant: "sedan", Check: schemas.CheckQuotientFamilial, LookupID: "l1",
		Recipient: "13002526500013", Identity: lefebvre, Rows: []schemas.RowRef{{Number: 1}, {Number: 7}}}
	v, _ := json.Marshal(job)
	for _, tc := range []struct {
		name        string
		auditErr    error
		wantWritten []int
	}{
		{"audited", nil, []int{1}},
		{"audit fails", errors.New("ledger unreachable"), nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			audit := &recordingAudit{err: tc.auditErr}
			results := &auditFirst{audit: audit}
			p := &Pool{AllowClearJobs: true, Results: results, Client: &Client{BaseURL: srv.URL}, Tokens: func(string) (string, error) { return "tok", nil },
				Log: zerolog.Nop(), IPLimit: -1, Audit: audit, AuditKey: []byte("audit key"), Now: steppingClock(time.Second)}
			err := p.process(context.Background(), context.Background(), zerolog.Nop(), kafkago.Message{Value: v}, &jobSlots{})
			if !errors.Is(err, tc.auditErr) { // nil wants nil
				t.Fatalf("process: %v", err)
			}
			if !slices.Equal(results.written, tc.wantWritten) {
				t.Errorf("audit records when results were produced: %v, want %v", results.written, tc.wantWritten)
			}
		})
	}
}

func TestPool_KeyOf(t *testing.T) {
	p := &Pool{}
	for _, tc := range []struct{ tenant, token string }{
		{"sedan", "tok1"}, {"sedan", "tok1"}, {"charleville", "tok1"}, {"sedan", "tok2"}, {"sedan", "tok1"}, {"charleville", "tok3"},
	} {
		if got := p.keyOf(tc.tenant, tc.token); got != keyOfToken(tc.token) {
			t.Errorf("%s, %s: key of another token", tc.tenant, tc.token)
		}
	}
}

// BenchmarkAckTracker tracks a message from its fetch to its commit, as
// the pool does for every job: three partitions, commits every 100 jobs.
func BenchmarkAckTracker(b *testing.B) {
	a := newAckTracker()
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		m := kafkago.Message{Topic: "apbatch.jobs", Partition: i % 3, Offset: int64(i / 3)}
		if !a.fetched(m) {
			b.Fatalf("offset %d fetched twice", m.Offset)
		}
		a.done(m)
		if i%100 == 99 {
			a.committed(a.committable())
		}
	}
}

// barrierAudit holds every RecordCalls until n of them wait together, as a
// group commit gathering n jobs' records would.
type barrierAudit struct {
	mu      sync.Mutex
	waiting int
	n       int
	full    chan struct{}
}

func (a *barrierAudit) RecordCalls(ctx context.Context, _ []schemas.CallRecord) error {
	a.mu.Lock()
	if a.waiting++; a.waiting == a.n {
		close(a.full)
	}
	a.mu.Unlock()
	select {
	case <-a.full:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// TestPool_CallsGoOnWhileAuditsGather: jobs whose calls are over wait for
// the audit's commit without holding call slots, however many gather: with
// one call in flight, 64 jobs reach an audit that commits only once all 64
// wait. (Until stop 16 only 4 × MaxInFlight jobs could wait: the fifth
// kept its call slot and the pool stalled until the audit gave up.)
func TestPool_CallsGoOnWhileAuditsGather(t *testing.T) {
	const jobs = 64
	pop := sandbox.NewPopulation(jobs, 3)
	sb, _ := sandbox.New(sandbox.Config{Population: pop, Limits: sandbox.Limits{PerSecond: 1 << 20, IPPerMinute: 1 << 30}})
	srv := httptest.NewServer(sb)
	defer srv.Close()
	tok, _ := sandbox.Token([]byte(sandbox.DefaultSecret), sandbox.AllScopes, time.Now().Add(time.Hour))
	fj, fr := jobsFor(t, pop, jobs), &fakeResults{}
	pool := &Pool{AllowClearJobs: true, Jobs: fj, Results: fr, Client: &Client{BaseURL: srv.URL}, Tokens: func(string) (string, error) { return tok, nil },
		Log: zerolog.Nop(), Limit: MaxLimit, IPLimit: -1, MaxInFlight: 1,
		Audit: &barrierAudit{n: jobs, full: make(chan struct{})}, AuditKey: []byte("audit key")}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- pool.Run(ctx) }()
	waitResults(t, fr, jobs)
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

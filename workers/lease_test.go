package workers

import (
	"context"
	"errors"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/apbatch/apbatch/schemas"
	"github.com/apbatch/apbatch/workers/sandbox"
)

// memLeases is an in-memory TokenLeases with the ledger's rules.
type memLeases struct {
	mu     sync.Mutex
	leases map[string]memLease
}

type memLease struct {
	holder string
	until  time.Time
}

func (m *memLeases) LeaseToken(_ context.Context, key, holder string, now, until time.Time) (string, time.Time, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.leases == nil {
		m.leases = map[string]memLease{}
	}
	prev, found := m.leases[key]
	if found && prev.holder != holder && !prev.until.Before(now) {
		return prev.holder, prev.until, false, nil
	}
	m.leases[key] = memLease{holder: holder, until: until}
	return prev.holder, prev.until, true, nil
}

func (m *memLeases) ReleaseToken(_ context.Context, key, holder string, at time.Time) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if l, ok := m.leases[key]; ok && l.holder == holder && l.until.After(at) {
		l.until = at
		m.leases[key] = l
	}
	return nil
}

func TestPool_RenewLease(t *testing.T) {
	now := time.Date(2026, 9, 1, 20, 0, 0, 0, time.UTC)
	const token = "tok"
	tests := []struct {
		name      string
		prev      *memLease // the lease found, if any
		wantWait  time.Duration
		wantPause time.Time
	}{
		{name: "a token nobody used starts at once"},
		{name: "a lease that ended long ago: no pause", prev: &memLease{holder: "other", until: now.Add(-time.Minute)}},
		{name: "a lease that just ended: its holder's last second is left to it",
			prev: &memLease{holder: "other", until: now.Add(-300 * time.Millisecond)}, wantPause: now.Add(-300*time.Millisecond + time.Second + 10*time.Millisecond)},
		{name: "a lease still held elsewhere: wait for its end",
			prev: &memLease{holder: "other", until: now.Add(1500 * time.Millisecond)}, wantWait: 1500*time.Millisecond + leaseRetry},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			leases := &memLeases{}
			p := &Pool{Leases: leases, Now: func() time.Time { return now }, Log: zerolog.Nop()}
			ts := p.tokenState(TokenBudgetKey(token), "demo")
			if tt.prev != nil {
				leases.leases = map[string]memLease{ts.lease.key: *tt.prev}
			}
			wait, _, err := p.renewLease(context.Background(), ts)
			if err != nil {
				t.Fatal(err)
			}
			if wait != tt.wantWait {
				t.Fatalf("wait = %v, want %v", wait, tt.wantWait)
			}
			if got := ts.budget.PausedUntil(); !got.Equal(tt.wantPause) {
				t.Fatalf("paused until %v, want %v", got, tt.wantPause)
			}
			held := leases.leases[ts.lease.key]
			if tt.wantWait == 0 && (held.holder != p.holderID() || !held.until.Equal(now.Add(leaseTerm))) {
				t.Fatalf("lease after = %+v, want this pool's until %v", held, now.Add(leaseTerm))
			}
			if tt.wantWait > 0 {
				if held.holder == p.holderID() {
					t.Fatal("lease taken from its holder")
				}
				if _, ok := ts.budget.TryGrant(); ok {
					t.Fatal("a grant without the lease")
				}
			}
		})
	}
}

func TestBudget_Gate(t *testing.T) {
	now := time.Date(2026, 9, 1, 20, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	tests := []struct {
		name       string
		gate       time.Duration // from now
		pause      time.Duration // from now, 0: none
		wantOK     bool
		wantClosed bool
		wantWait   time.Duration
	}{
		{name: "within the lease", gate: time.Second, wantOK: true},
		{name: "lease ended", gate: 0, wantClosed: true},
		{name: "paused past the lease: told when to renew", gate: 2 * time.Second, pause: 5 * time.Second, wantClosed: true, wantWait: time.Second},
		{name: "paused past the lease, renewal due", gate: 500 * time.Millisecond, pause: 5 * time.Second, wantClosed: true},
		{name: "paused within the lease: waits", gate: 5 * time.Second, pause: time.Second, wantWait: time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := NewBudget(20, time.Second, clock)
			b.SetGate(now.Add(tt.gate), time.Second)
			if tt.pause > 0 {
				b.PauseUntil(now.Add(tt.pause))
			}
			wait, ok, stop := b.tryGrant(nil, time.Time{}, true)
			closed := errors.Is(stop, ErrGateClosed)
			if ok != tt.wantOK || closed != tt.wantClosed || wait != tt.wantWait {
				t.Fatalf("tryGrant = %v, %v, %v; want %v, %v, %v", wait, ok, closed, tt.wantWait, tt.wantOK, tt.wantClosed)
			}
		})
	}
	b := NewBudget(20, time.Second, clock)
	b.SetGate(now, time.Second)
	if err := b.Wait(context.Background()); !errors.Is(err, ErrGateClosed) {
		t.Fatalf("Wait past the gate = %v, want ErrGateClosed", err)
	}
}

// TestPool_LeasesTakeTurns: two pools whose jobs use one token (as when a
// rebalance leaves a tenant's jobs with two workers) never call with it in
// the same stretch: the second starts after the first's lease, and its
// first call comes at least a second after the first's last one.
func TestPool_LeasesTakeTurns(t *testing.T) {
	pop := sandbox.NewPopulation(40, 3)
	sb, _ := sandbox.New(sandbox.Config{Population: pop, Limits: sandbox.Limits{PerSecond: 1000, IPPerMinute: 100000}})
	srv := httptest.NewServer(sb)
	defer srv.Close()
	tok, _ := sandbox.Token([]byte(sandbox.DefaultSecret), sandbox.AllScopes, time.Now().Add(time.Hour))
	leases := &memLeases{}
	type span struct {
		mu          sync.Mutex
		first, last time.Time
		n           int
	}
	var spans [2]span
	var results [2]*fakeResults
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 2)
	for i := range 2 {
		all := jobsFor(t, pop, 40)
		fj := &fakeJobs{committed: map[int]int64{}, msgs: all.msgs[i*20 : (i+1)*20]}
		results[i] = &fakeResults{}
		sp := &spans[i]
		pool := &Pool{AllowClearJobs: true, Jobs: fj, Results: results[i], Client: &Client{BaseURL: srv.URL}, Tokens: func(string) (string, error) { return tok, nil },
			Log: zerolog.Nop(), Limit: 1000, IPLimit: -1, MaxInFlight: 4, Leases: leases,
			OnCall: func(_ schemas.Check, latency time.Duration, _ int) {
				sent := time.Now().Add(-latency)
				sp.mu.Lock()
				defer sp.mu.Unlock()
				if sp.n == 0 || sent.Before(sp.first) {
					sp.first = sent
				}
				if sent.After(sp.last) {
					sp.last = sent
				}
				sp.n++
			}}
		go func() { done <- pool.Run(ctx) }()
	}
	waitResults(t, results[0], 20)
	waitResults(t, results[1], 20)
	cancel()
	for range 2 {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	a, b := &spans[0], &spans[1]
	if b.first.Before(a.first) {
		a, b = b, a
	}
	if a.n != 20 || b.n != 20 {
		t.Fatalf("calls: %d and %d, want 20 each", a.n, b.n)
	}
	// The lease makes the gap at least 1.01 s between grants; sending
	// follows a grant within microseconds, hence the margin.
	if gap := b.first.Sub(a.last); gap < 900*time.Millisecond {
		t.Fatalf("second pool called %v after the first's last call; want a second at least", gap)
	}
}

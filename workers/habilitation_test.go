package workers

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	kafkago "github.com/segmentio/kafka-go"

	"github.com/apbatch/apbatch/pipeline/ledger"
	"github.com/apbatch/apbatch/schemas"
	"github.com/apbatch/apbatch/workers/sandbox"
)

// sharedLedgers opens the ledgers two worker processes can share: SQLite,
// and PostgreSQL when APBATCH_TEST_POSTGRES_URL names one.
func sharedLedgers(t *testing.T) map[string]*ledger.Store {
	t.Helper()
	out := map[string]*ledger.Store{}
	s, err := ledger.Open(context.Background(), "sqlite://"+filepath.Join(t.TempDir(), "ledger.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	out["sqlite"] = s
	if u := os.Getenv("APBATCH_TEST_POSTGRES_URL"); u != "" {
		p, err := ledger.Open(context.Background(), u)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { p.Close() })
		out["postgres"] = p
	} else {
		t.Log("APBATCH_TEST_POSTGRES_URL unset: PostgreSQL ledger not tested")
	}
	return out
}

// qfJobs returns n QF jobs of tenant, each of another person.
func qfJobs(t *testing.T, tenant string, n int) *fakeJobs {
	t.Helper()
	fj := &fakeJobs{committed: map[int]int64{}}
	for i := range n {
		job := schemas.Job{Version: schemas.JobVersion, BatchID: "b-" + tenant, Tenant: tenant, Campaign: "2026-09",
			Check: schemas.CheckQuotientFamilial, LookupID: fmt.Sprint(tenant, i), Recipient: "13002526500013",
			Identity: schemas.Identity{NomNaissance: "INCONNU", Prenoms: []string{"PERSONNE"}, Sexe: "M", AnneeNaissance: 1940 + i%60,
				MoisNaissance: 1 + i/60%12, JourNaissance: 1 + i/720%28, CodePaysNaissance: "99100", CodeCommuneNaissance: "08480"},
			Rows: []schemas.RowRef{{Number: int64(i + 1), Reference: fmt.Sprint("R", i)}}}
		v, err := json.Marshal(job)
		if err != nil {
			t.Fatal(err)
		}
		fj.msgs = append(fj.msgs, kafkago.Message{Topic: "jobs", Partition: 0, Offset: int64(i), Key: []byte(tenant), Value: v})
	}
	return fj
}

// TestPool_HabilitationSharedAcrossProcesses: two tokens of one
// habilitation, used by two pools (two worker processes) sharing a ledger,
// spend one budget: the sandbox, counting by habilitation, never answers
// 429, and no second holds more calls than the habilitation's per-minute
// limit allows it through the shared slots (600 a minute: 9 or 10 a second;
// each pool alone would make 10 a second, 20 together).
func TestPool_HabilitationSharedAcrossProcesses(t *testing.T) {
	const limit, habilitation = 600, "51234"
	for name, store := range sharedLedgers(t) {
		for _, leases := range []bool{false, true} {
			t.Run(name+"/leases="+strconv.FormatBool(leases), func(t *testing.T) {
				var mu sync.Mutex
				arrivals := map[int64]int{} // unix second → requests
				var keys = map[string]bool{}
				sb, err := sandbox.New(sandbox.Config{Limits: sandbox.Limits{PerSecond: 20, PerMinute: limit, IPPerMinute: 1 << 30},
					Log: zerolog.Nop(), OnRequest: func(sandbox.RequestInfo) {
						mu.Lock()
						arrivals[time.Now().Unix()]++
						mu.Unlock()
					}})
				if err != nil {
					t.Fatal(err)
				}
				srv := httptest.NewServer(sb)
				defer srv.Close()
				tokens := map[string]string{}
				for _, tenant := range []string{"lyon", "sedan"} {
					tok, err := sandbox.HabilitationToken([]byte(sandbox.DefaultSecret), sandbox.AllScopes, time.Now().Add(time.Hour), habilitation)
					if err != nil {
						t.Fatal(err)
					}
					tokens[tenant] = tok
				}
				scope := "habilitation:" + habilitation + "/" + t.Name() // a fresh habilitation per subtest
				var pools []*Pool
				for _, tenant := range []string{"lyon", "sedan"} {
					p := &Pool{AllowClearJobs: true, Jobs: qfJobs(t, tenant, 400), Results: &fakeResults{}, Client: &Client{BaseURL: srv.URL},
						Tokens:        func(tenant string) (string, error) { return tokens[tenant], nil },
						Habilitations: func(string) string { return "" }, // the tokens' claims name it
						KeyLimits:     KeyLimits{"habilitation": limit}, SharedKeys: scopedLeaser{store, scope},
						Log: zerolog.Nop(), IPLimit: -1, MaxInFlight: 8, Retry: RetryPolicy{MaxAttempts: 1}}
					if leases {
						p.Leases = scopedLeases{store, scope}
					}
					pools = append(pools, p)
				}
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				var wg sync.WaitGroup
				for _, p := range pools {
					wg.Go(func() {
						if err := p.Run(ctx); err != nil {
							t.Error(err)
						}
					})
				}
				wg.Wait()
				stats := sb.Stats()
				for _, c := range stats.Tokens {
					keys[c.Key] = true
					if c.TooMany > 0 {
						t.Errorf("%s: %d × 429 in %d requests", c.Key, c.TooMany, c.Requests)
					}
				}
				if len(keys) != 1 || !keys["habilitation:"+habilitation] {
					t.Fatalf("the sandbox counted %v, want the habilitation alone", keys)
				}
				calls := pools[0].Calls() + pools[1].Calls()
				if calls < 20 {
					t.Fatalf("%d calls in 5 s, want at least 20", calls)
				}
				if !leases && (pools[0].Calls() == 0 || pools[1].Calls() == 0) {
					t.Fatalf("calls %d and %d: both pools should call at once without leases", pools[0].Calls(), pools[1].Calls())
				}
				// A call leaves before its slot ends and reaches the sandbox
				// within a millisecond or so: one more is let through.
				for sec, n := range arrivals {
					if n > limit/60+1 {
						t.Errorf("%d requests in the second from %v, want at most %d", n, time.Unix(sec, 0), limit/60+1)
					}
				}
			})
		}
	}
}

// scopedLeaser gives the slots of a test their own scope in a shared ledger.
type scopedLeaser struct {
	s      *ledger.Store
	prefix string
}

func (l scopedLeaser) LeaseSlot(ctx context.Context, scope string, slot int64, want, limit int) (int, error) {
	return l.s.LeaseSlot(ctx, l.prefix+"|"+scope, slot, want, limit)
}

// scopedLeases gives the leases of a test their own keys in a shared ledger.
type scopedLeases struct {
	s      *ledger.Store
	prefix string
}

func (l scopedLeases) LeaseToken(ctx context.Context, key, holder string, now, until time.Time) (string, time.Time, bool, error) {
	return l.s.LeaseToken(ctx, l.prefix+"|"+key, holder, now, until)
}

func (l scopedLeases) ReleaseToken(ctx context.Context, key, holder string, at time.Time) error {
	return l.s.ReleaseToken(ctx, l.prefix+"|"+key, holder, at)
}

// TestPool_AdoptsLimitsFromEveryAnswer: the limit the API announces is
// adopted from the RateLimit-* headers of every answer, 502s included:
// while the provider is down, a per-minute limit announced, then lowered,
// reaches the token's budget through the 502s, and the calls made through
// the outage get no 429.
func TestPool_AdoptsLimitsFromEveryAnswer(t *testing.T) {
	sb, err := sandbox.New(sandbox.Config{Limits: sandbox.Limits{PerSecond: 20, PerMinute: 600, IPPerMinute: 1 << 30}, Log: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(sb)
	defer srv.Close()
	sb.SetOutage(QuotientFamilialPing, time.Now().Add(time.Hour))
	tok, err := sandbox.Token([]byte(sandbox.DefaultSecret), sandbox.AllScopes, time.Now().Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	statuses := map[int]int{}
	p := &Pool{AllowClearJobs: true, Jobs: qfJobs(t, "lyon", 400), Results: &fakeResults{}, Client: &Client{BaseURL: srv.URL},
		Tokens: func(string) (string, error) { return tok, nil }, Log: zerolog.Nop(), IPLimit: -1, MaxInFlight: 4,
		Retry: RetryPolicy{MaxAttempts: 1}, BreakerThreshold: 1 << 20,
		OnCall: func(_ schemas.Check, _ time.Duration, status int) { mu.Lock(); statuses[status]++; mu.Unlock() }}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	perMinute := func() int {
		p.mu.Lock()
		ts := p.tokens[TokenBudgetKey(tok)]
		p.mu.Unlock()
		if ts == nil {
			return 0
		}
		return ts.budget.Limits()[time.Minute]
	}
	waitFor := func(want int) {
		t.Helper()
		for perMinute() != want {
			if ctx.Err() != nil {
				t.Fatalf("per-minute limit %d, want %d from the 502s' headers", perMinute(), want)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	waitFor(600)
	sb.SetLimits(sandbox.Limits{PerSecond: 20, PerMinute: 90, IPPerMinute: 1 << 30})
	waitFor(90)
	sb.SetLimits(sandbox.Limits{PerSecond: 20, PerMinute: 120, IPPerMinute: 1 << 30})
	waitFor(120) // raised again, up to the first announced
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	delete(statuses, 0) // calls cut short by the stop
	if statuses[http.StatusBadGateway] == 0 || statuses[http.StatusTooManyRequests] != 0 || len(statuses) != 1 {
		t.Fatalf("answers by status %v, want 502s alone", statuses)
	}
}

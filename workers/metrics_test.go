package workers

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/apbatch/apbatch/schemas"
)

func TestMetrics_ObserveCall(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	qf, rsa := schemas.CheckQuotientFamilial, schemas.CheckRSA
	for _, c := range []struct {
		check  schemas.Check
		status int
		n      int
	}{
		{qf, http.StatusOK, 3},
		{qf, http.StatusTooManyRequests, 2},
		{qf, 0, 1},
		{rsa, http.StatusNotFound, 1},
	} {
		for i := 0; i < c.n; i++ {
			m.observeCall(c.check, "/route/"+string(c.check), c.status, 150*time.Millisecond)
		}
	}
	want := `# HELP apbatch_provider_429_total Provider calls answered 429 Too Many Requests, by check.
# TYPE apbatch_provider_429_total counter
apbatch_provider_429_total{check="quotient_familial"} 2
apbatch_provider_429_total{check="revenu_solidarite_active"} 0
# HELP apbatch_provider_calls_total Provider calls by check, route and HTTP status code (transport: no answer).
# TYPE apbatch_provider_calls_total counter
apbatch_provider_calls_total{check="quotient_familial",route="/route/quotient_familial",status="200"} 3
apbatch_provider_calls_total{check="quotient_familial",route="/route/quotient_familial",status="429"} 2
apbatch_provider_calls_total{check="quotient_familial",route="/route/quotient_familial",status="transport"} 1
apbatch_provider_calls_total{check="revenu_solidarite_active",route="/route/revenu_solidarite_active",status="404"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "apbatch_provider_calls_total", "apbatch_provider_429_total"); err != nil {
		t.Fatal(err)
	}
	if n := testutil.CollectAndCount(m.latency); n != 2 {
		t.Errorf("%d latency series, want one per check (2)", n)
	}

	// Past its first call, a label set costs no allocation.
	if a := testing.AllocsPerRun(100, func() { m.observeCall(qf, "/route/quotient_familial", http.StatusOK, time.Millisecond) }); a != 0 {
		t.Errorf("observeCall allocates %v times a call", a)
	}
	var none *Metrics
	none.observeCall(qf, "/x", http.StatusOK, time.Millisecond) // the nil Metrics records nothing
	none.watchBudget(budgetIP, "", NewBudget(1, time.Second, nil))
}

func TestMetrics_Budgets(t *testing.T) {
	clk := &fakeClock{t: time.Date(2026, 9, 1, 10, 0, 0, 0, time.UTC)}
	reg := prometheus.NewRegistry()
	m, err := NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	// Two pools of one process with a budget for the same tenant's token
	// are summed; the IP budget is per minute.
	a, b := NewBudget(20, time.Second, clk.now), NewBudget(20, time.Second, clk.now)
	ip := NewBudget(600, time.Minute, clk.now)
	m.watchBudget(budgetToken, "ville", a)
	m.watchBudget(budgetToken, "ville", b)
	m.watchBudget(budgetIP, "", ip)
	noJitter := func() time.Duration { return 0 }
	for i := 0; i < 10; i++ {
		grant(clk, a, noJitter)
		grant(clk, ip, noJitter)
	}
	want := `# HELP apbatch_budget_grants_total Calls the budgets granted; rate(apbatch_budget_grants_total[1m]) / apbatch_budget_limit_per_second is the utilisation.
# TYPE apbatch_budget_grants_total counter
apbatch_budget_grants_total{budget="token",tenant="ville"} 10
apbatch_budget_grants_total{budget="ip",tenant=""} 10
# HELP apbatch_budget_limit_per_second Current limit of the budgets, in calls per second (a per-minute limit divided by 60).
# TYPE apbatch_budget_limit_per_second gauge
apbatch_budget_limit_per_second{budget="token",tenant="ville"} 40
apbatch_budget_limit_per_second{budget="ip",tenant=""} 10
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "apbatch_budget_grants_total", "apbatch_budget_limit_per_second"); err != nil {
		t.Fatal(err)
	}
	if u := a.Usage(); u.Granted != 10 || u.Recent != 10 || u.Limit != 20 || u.Period != time.Second {
		t.Errorf("Usage() = %+v, want 10 granted, 10 in the last second, limit 20/s", u)
	}
	clk.t = clk.t.Add(2 * time.Second)
	if u := a.Usage(); u.Recent != 0 || u.Granted != 10 {
		t.Errorf("Usage() two seconds later = %+v, want 10 granted, none recent", u)
	}
}

// BenchmarkMetrics_ObserveCall measures what the pool adds to each call.
func BenchmarkMetrics_ObserveCall(b *testing.B) {
	m, err := NewMetrics(prometheus.NewRegistry())
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			m.observeCall(schemas.CheckQuotientFamilial, QuotientFamilialPath, http.StatusOK, 40*time.Millisecond)
		}
	})
}

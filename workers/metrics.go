package workers

import (
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/apbatch/apbatch/schemas"
)

// Metrics are the worker pools' Prometheus metrics:
//
//   - apbatch_provider_calls_total{check,route,status}: provider calls by
//     check, route (the API path, never its query) and HTTP status code
//     ("transport" when no answer came);
//   - apbatch_provider_429_total{check}: calls answered 429 Too Many Requests;
//   - apbatch_provider_call_duration_seconds{check}: call latency;
//   - apbatch_api_unknown_error_codes_total{check,http_status,code}: error
//     answers whose code the error catalogue (schemas/errors.yaml) does not
//     know, classified by their HTTP status alone: the catalogue's drift
//     from the API's (code is the API's five digits, or HTTP_<status> or
//     APB_BAD_RESPONSE for an answer without one);
//   - apbatch_budget_limit_per_second{budget,tenant}, apbatch_budget_grants_total
//     and apbatch_budget_utilisation: each budget's current limit, grants
//     and share of its last window used, read from the budgets when
//     scraped (budget is "token" or "habilitation", the kind of the budget
//     key, labelled with the tenant whose job first used the budget, or
//     "ip"; a habilitation's id is no label).
//
// Label values are bounded: checks, routes and status codes are finite
// sets, tenants are the platform's collectivités; no token or personal
// datum is ever a label. One Metrics serves every pool of a process (the
// budgets of pools sharing a label set are summed). The nil *Metrics records
// nothing. Safe for concurrent use.
type Metrics struct {
	calls   *prometheus.CounterVec
	tooMany *prometheus.CounterVec
	latency *prometheus.HistogramVec
	unknown *prometheus.CounterVec

	budgetLimit, budgetGrants, budgetUse *prometheus.Desc

	mu      sync.RWMutex
	series  map[callKey]callSeries // resolved children, one lookup a call
	budgets []budgetRef
}

type callKey struct {
	check  schemas.Check
	route  string
	status int
}

type callSeries struct {
	calls   prometheus.Counter
	tooMany prometheus.Counter // nil unless status is 429
	latency prometheus.Observer
}

type budgetRef struct {
	kind, tenant string
	b            *Budget
}

// Budget kinds, the budget label.
const (
	budgetToken = "token"
	budgetIP    = "ip"
)

// NewMetrics returns the metrics registered with reg (a per-process
// registry, never the global one).
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		calls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "apbatch_provider_calls_total",
			Help: "Provider calls by check, route and HTTP status code (transport: no answer).",
		}, []string{"check", "route", "status"}),
		tooMany: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "apbatch_provider_429_total",
			Help: "Provider calls answered 429 Too Many Requests, by check.",
		}, []string{"check"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "apbatch_provider_call_duration_seconds",
			Help:    "Provider call latency, from request to classified answer, by check.",
			Buckets: []float64{.01, .025, .05, .1, .2, .3, .5, .75, 1, 2, 5, 10, 30},
		}, []string{"check"}),
		unknown: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "apbatch_api_unknown_error_codes_total",
			Help: "Error answers whose code the error catalogue does not know (classified by HTTP status), by check, HTTP status and code.",
		}, []string{"check", "http_status", "code"}),
		budgetLimit: prometheus.NewDesc("apbatch_budget_limit_per_second",
			"Current limit of the budgets, in calls per second (a per-minute limit divided by 60).", []string{"budget", "tenant"}, nil),
		budgetGrants: prometheus.NewDesc("apbatch_budget_grants_total",
			"Calls the budgets granted; rate(apbatch_budget_grants_total[1m]) / apbatch_budget_limit_per_second is the utilisation.",
			[]string{"budget", "tenant"}, nil),
		budgetUse: prometheus.NewDesc("apbatch_budget_utilisation",
			"Grants in the budgets' last window over their limit (0 to 1).", []string{"budget", "tenant"}, nil),
		series: make(map[callKey]callSeries),
	}
	if err := reg.Register(m); err != nil {
		return nil, err
	}
	return m, nil
}

// Describe implements prometheus.Collector.
func (m *Metrics) Describe(ch chan<- *prometheus.Desc) {
	m.calls.Describe(ch)
	m.tooMany.Describe(ch)
	m.latency.Describe(ch)
	m.unknown.Describe(ch)
	ch <- m.budgetLimit
	ch <- m.budgetGrants
	ch <- m.budgetUse
}

// Collect implements prometheus.Collector.
func (m *Metrics) Collect(ch chan<- prometheus.Metric) {
	m.calls.Collect(ch)
	m.tooMany.Collect(ch)
	m.latency.Collect(ch)
	m.unknown.Collect(ch)
	m.mu.RLock()
	budgets := m.budgets
	m.mu.RUnlock()
	type sum struct {
		perSecond, recent, limit float64
		granted                  int64
	}
	type labels struct{ kind, tenant string }
	sums := make(map[labels]*sum)
	var order []labels
	for _, ref := range budgets {
		u := ref.b.Usage()
		k := labels{ref.kind, ref.tenant}
		s, ok := sums[k]
		if !ok {
			s = &sum{}
			sums[k] = s
			order = append(order, k)
		}
		s.perSecond += float64(u.Limit) / u.Period.Seconds()
		s.recent += float64(u.Recent)
		s.limit += float64(u.Limit)
		s.granted += u.Granted
	}
	for _, k := range order {
		s := sums[k]
		ch <- prometheus.MustNewConstMetric(m.budgetLimit, prometheus.GaugeValue, s.perSecond, k.kind, k.tenant)
		ch <- prometheus.MustNewConstMetric(m.budgetGrants, prometheus.CounterValue, float64(s.granted), k.kind, k.tenant)
		ch <- prometheus.MustNewConstMetric(m.budgetUse, prometheus.GaugeValue, min(s.recent/s.limit, 1), k.kind, k.tenant)
	}
}

// observeCall counts one provider call. Past the first call of its label
// set, it takes a read lock and a map lookup, and allocates nothing.
func (m *Metrics) observeCall(check schemas.Check, route string, status int, latency time.Duration) {
	if m == nil {
		return
	}
	k := callKey{check, route, status}
	m.mu.RLock()
	s, ok := m.series[k]
	m.mu.RUnlock()
	if !ok {
		s = m.resolve(k)
	}
	s.calls.Inc()
	if s.tooMany != nil {
		s.tooMany.Inc()
	}
	s.latency.Observe(latency.Seconds())
}

// observeUnknownCode counts an error answer the catalogue did not know.
// code is an Outcome's Code: five digits checked by errorCode, or one of
// apbatch's own codes, never text from the answer.
func (m *Metrics) observeUnknownCode(check schemas.Check, status int, code string) {
	if m == nil {
		return
	}
	m.unknown.WithLabelValues(string(check), strconv.Itoa(status), code).Inc()
}

// resolve returns the children of k, made once.
func (m *Metrics) resolve(k callKey) callSeries {
	status := "transport"
	if k.status != 0 {
		status = strconv.Itoa(k.status)
	}
	s := callSeries{
		calls:   m.calls.WithLabelValues(string(k.check), k.route, status),
		latency: m.latency.WithLabelValues(string(k.check)),
	}
	// The check's 429 counter shows from its first call, at 0.
	tooMany := m.tooMany.WithLabelValues(string(k.check))
	if k.status == http.StatusTooManyRequests {
		s.tooMany = tooMany
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.series[k] = s
	return s
}

// watchBudget adds b to the budgets read when scraped.
func (m *Metrics) watchBudget(kind, tenant string, b *Budget) {
	if m == nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	// Collect reads the slice it loaded without the lock: append to a copy.
	m.budgets = append(m.budgets[:len(m.budgets):len(m.budgets)], budgetRef{kind, tenant, b})
}

package sandbox

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestFaults_EachKind(t *testing.T) {
	for _, tc := range []struct {
		kind   string
		status int
		want   string
	}{
		{FaultProviderError, 502, `"code":"37000"`},
		{FaultProviderUnknown, 502, `"code":"37999"`},
		{FaultNetwork, 502, `"retry_in":10`},
		{FaultTimeout, 504, `"code":"37002"`},
		{FaultMaintenance, 503, `"code":"37020"`},
		{FaultGateway, 502, "<html>"},
	} {
		t.Run(tc.kind, func(t *testing.T) {
			s := newServer(t, Config{Faults: Faults{Rates: map[string]float64{tc.kind: 1}, ProviderTimeout: time.Millisecond}})
			rec := get(s, token(t, AllScopes, caseClock.Add(time.Hour)), qfPath, nominal)
			if rec.Code != tc.status || !strings.Contains(rec.Body.String(), tc.want) {
				t.Fatalf("%d %s", rec.Code, rec.Body)
			}
		})
	}
	t.Run(FaultReset, func(t *testing.T) {
		s := newServer(t, Config{Faults: Faults{Rates: map[string]float64{FaultReset: 1}}})
		srv := httptest.NewServer(s)
		defer srv.Close()
		req, _ := http.NewRequest(http.MethodGet, srv.URL+qfPath+"?"+nominal.Encode(), nil)
		req.Header.Set("Authorization", "Bearer "+token(t, AllScopes, caseClock.Add(time.Hour)))
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
			t.Fatalf("answered %d, want a dropped connection", resp.StatusCode)
		}
	})
}

func TestFaults_Validate(t *testing.T) {
	for _, f := range []Faults{
		{Rates: map[string]float64{"teapot": 0.1}},
		{Rates: map[string]float64{"502": 1.5}},
		{Rates: map[string]float64{"502": 0.6, "504": 0.6}},
		{LatencyP50: time.Second, LatencyP99: time.Millisecond},
	} {
		if f.Validate() == nil {
			t.Errorf("%+v accepted", f)
		}
	}
	if _, err := ParseFaults("502=0.01,504=0.005"); err != nil {
		t.Fatal(err)
	}
	if _, err := ParseFaults("502"); err == nil {
		t.Fatal("ParseFaults accepted a kind without rate")
	}
}

func TestFaults_LatencyDistribution(t *testing.T) {
	fs := newFaultSource(Faults{LatencyP50: 200 * time.Millisecond, LatencyP99: 2 * time.Second, Seed: 7})
	const n = 20000
	d := make([]time.Duration, n)
	for i := range d {
		d[i] = fs.latency()
	}
	sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
	p50, p99 := d[n/2], d[n*99/100]
	if p50 < 180*time.Millisecond || p50 > 220*time.Millisecond || p99 < 1700*time.Millisecond || p99 > 2300*time.Millisecond {
		t.Fatalf("p50 %v, p99 %v; want about 200ms and 2s", p50, p99)
	}
}

func TestServer_InFlightConflictAndCache(t *testing.T) {
	s := newServer(t, Config{Faults: Faults{LatencyP50: 200 * time.Millisecond}})
	tok := token(t, AllScopes, caseClock.Add(time.Hour))
	var wg sync.WaitGroup
	codes := make([]int, 2)
	for i := range codes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			codes[i] = get(s, tok, qfPath, nominal).Code
		}()
		time.Sleep(20 * time.Millisecond)
	}
	wg.Wait()
	if codes[0] != 200 || codes[1] != 409 {
		t.Fatalf("identical concurrent calls: %v, want 200 then 409", codes)
	}
	// The first answer is now cached for 24 h, whatever the token.
	other := token(t, AllScopes, caseClock.Add(time.Hour))
	rec := get(s, other, qfPath, nominal)
	if rec.Header().Get("X-Response-Cached") != "true" || rec.Header().Get("X-Cache-Expires-in") != "86400" {
		t.Fatalf("cached answer headers %v", rec.Header())
	}
	req := httptest.NewRequest(http.MethodGet, qfPath+"?"+nominal.Encode(), nil)
	req.Header.Set("Authorization", "Bearer "+other)
	req.Header.Set("Cache-Control", "no-cache")
	rec = httptest.NewRecorder()
	s.ServeHTTP(rec, req)
	if rec.Header().Get("X-Response-Cached") != "false" {
		t.Fatalf("no-cache bypass: %v", rec.Header())
	}
	// Routes outside DSS carry no cache headers.
	if rec := get(s, tok, ftPath, ftQuery); rec.Header().Get("X-Response-Cached") != "" {
		t.Fatalf("France Travail cache headers: %v", rec.Header())
	}
}

// TestFlightCache_DropsExpiredAnswers: the response cache does not keep
// answers past their expiry forever, and keeps the live ones.
func TestFlightCache_DropsExpiredAnswers(t *testing.T) {
	f := newFlightCache()
	start := caseClock
	q := func(i int) url.Values { return url.Values{"recipient": {"13002526500013"}, "i": {strconv.Itoa(i)}} }
	// Answers stored a second apart, each cached for one minute.
	for i := 0; i < 10*minSweep; i++ {
		now := start.Add(time.Duration(i) * time.Second)
		f.store(f.sum(qfPath, q(i)), now.Add(time.Minute), now)
	}
	end := start.Add(10 * minSweep * time.Second)
	if n := len(f.cache); n > 2*minSweep {
		t.Fatalf("%d answers cached, want at most %d", n, 2*minSweep)
	}
	for i := 10*minSweep - 50; i < 10*minSweep; i++ {
		if _, ok := f.cached(f.sum(qfPath, q(i)), end); !ok {
			t.Fatalf("answer %d, still live, was dropped", i)
		}
	}
	if _, ok := f.cached(f.sum(qfPath, q(0)), end); ok {
		t.Fatal("expired answer served from the cache")
	}
	// The same parameters are the same request whatever their order in the
	// URL; another route, value order or split is not.
	a, err := url.ParseQuery("a=1&a=2&b=3")
	if err != nil {
		t.Fatal(err)
	}
	same, _ := url.ParseQuery("b=3&a=1&a=2")
	if f.sum(qfPath, a) != f.sum(qfPath, same) {
		t.Fatal("the same parameters in another order are another request")
	}
	for _, other := range []string{"a=2&a=1&b=3", "a=1&a=2", "a=1&a=2&b=3&b=3", "a=12&b=3", "a=1&a=2&b=", "a=1&a=2&c=3", "ab=3&a=1&a=2"} {
		o, _ := url.ParseQuery(other)
		if f.sum(qfPath, a) == f.sum(qfPath, o) {
			t.Errorf("%s is the same request as %s", other, a.Encode())
		}
	}
	if f.sum(qfPath, a) == f.sum(ftPath, a) {
		t.Error("the same parameters on two routes are the same request")
	}
}

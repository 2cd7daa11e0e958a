package sandbox

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

var ftQuery = url.Values{"recipient": {"13002526500013"}, "identifiant": {"default"}}

const ftPath = "/v3/france_travail/statut/identifiant"

// clock is a settable clock for limit tests.
type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func statsOf(t *testing.T, s *Server) Stats {
	t.Helper()
	rec := get(s, "", "/_sandbox/stats", nil)
	var st Stats
	if err := json.Unmarshal(rec.Body.Bytes(), &st); err != nil {
		t.Fatalf("stats: %v %s", err, rec.Body)
	}
	return st
}

func TestLimits_PerMinuteHabilitation(t *testing.T) {
	clk := &clock{t: time.Date(2026, 9, 14, 22, 0, 10, 0, time.UTC)}
	s := newServer(t, Config{Limits: Limits{PerMinute: 3}, Now: clk.now})
	tok := token(t, AllScopes, clk.t.Add(time.Hour))
	for i := 1; i <= 3; i++ {
		rec := get(s, tok, ftPath, ftQuery)
		if rec.Code != 200 || rec.Header().Get("RateLimit-Limit") != "3" || rec.Header().Get("RateLimit-Remaining") != strconv.Itoa(3-i) {
			t.Fatalf("call %d: %d %v", i, rec.Code, rec.Header())
		}
		clk.t = clk.t.Add(2 * time.Second)
	}
	rec := get(s, tok, ftPath, ftQuery)
	reset := time.Date(2026, 9, 14, 22, 1, 0, 0, time.UTC).Unix()
	if rec.Code != 429 || rec.Header().Get("RateLimit-Reset") != strconv.FormatInt(reset, 10) || rec.Header().Get("Retry-After") != "44" {
		t.Fatalf("4th call in the minute: %d %v", rec.Code, rec.Header())
	}
}

// TestLimits_ByHabilitation: two tokens of one habilitation spend one
// limit (the API counts by authorization request); a token of another, or
// of none, has its own.
func TestLimits_ByHabilitation(t *testing.T) {
	clk := &clock{t: time.Date(2026, 9, 14, 22, 0, 10, 0, time.UTC)}
	s := newServer(t, Config{Limits: Limits{PerMinute: 3}, Now: clk.now})
	tok := func(habilitation string) string {
		t.Helper()
		v, err := HabilitationToken([]byte(DefaultSecret), AllScopes, clk.t.Add(time.Hour), habilitation)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	a, b, other, none := tok("51234"), tok("51234"), tok("60001"), tok("")
	for i, step := range []struct {
		tok       string
		code      int
		remaining string
	}{
		{a, 200, "2"}, {b, 200, "1"}, {a, 200, "0"}, {b, 429, "0"}, {other, 200, "2"}, {none, 200, "2"},
	} {
		rec := get(s, step.tok, ftPath, ftQuery)
		if rec.Code != step.code || rec.Header().Get("RateLimit-Remaining") != step.remaining {
			t.Fatalf("call %d: %d, remaining %s; want %d, %s", i+1, rec.Code, rec.Header().Get("RateLimit-Remaining"), step.code, step.remaining)
		}
		clk.t = clk.t.Add(time.Second)
	}
	keys := []string{}
	for _, c := range statsOf(t, s).Tokens {
		keys = append(keys, c.Key)
	}
	if len(keys) != 3 || !slices.Contains(keys, "habilitation:51234") || !slices.Contains(keys, "habilitation:60001") {
		t.Fatalf("counted under %v", keys)
	}
}

func TestLimits_SlidingWindow(t *testing.T) {
	clk := &clock{t: time.Date(2026, 9, 14, 22, 0, 0, 900e6, time.UTC)}
	for _, sliding := range []bool{false, true} {
		t.Run(strconv.FormatBool(sliding), func(t *testing.T) {
			s := newServer(t, Config{Limits: Limits{PerSecond: 2, Sliding: sliding}, Now: clk.now})
			tok := token(t, AllScopes, clk.t.Add(time.Hour))
			start := clk.t
			codes := []int{}
			// Two calls at .9 s, two at 1.1 s: a fixed window allows all
			// four, a sliding one refuses the last two.
			for _, at := range []time.Duration{0, 0, 200 * time.Millisecond, 200 * time.Millisecond} {
				clk.t = start.Add(at)
				codes = append(codes, get(s, tok, ftPath, ftQuery).Code)
			}
			want := []int{200, 200, 200, 200}
			if sliding {
				want = []int{200, 200, 429, 429}
			}
			if !reflect.DeepEqual(codes, want) {
				t.Fatalf("codes %v, want %v", codes, want)
			}
			// Either way, stats saw four requests in one sliding second.
			if st := statsOf(t, s); st.Tokens[0].MaxPerSec != 4 {
				t.Fatalf("max in any second = %d", st.Tokens[0].MaxPerSec)
			}
			clk.t = start
		})
	}
}

func TestLimits_PerIP(t *testing.T) {
	clk := &clock{t: time.Date(2026, 9, 14, 22, 0, 0, 0, time.UTC)}
	s := newServer(t, Config{Limits: Limits{IPPerMinute: 5}, Now: clk.now})
	for i := 0; i < 5; i++ {
		// Five tokens behind one IP, one call each.
		if rec := get(s, token(t, AllScopes, clk.t.Add(time.Hour)), ftPath, ftQuery); rec.Code != 200 {
			t.Fatalf("call %d: %d", i, rec.Code)
		}
		clk.t = clk.t.Add(time.Second)
	}
	if rec := get(s, token(t, AllScopes, clk.t.Add(time.Hour)), ftPath, ftQuery); rec.Code != 429 || rec.Header().Get("Retry-After") != "55" {
		t.Fatalf("6th call from the IP: %d %v", rec.Code, rec.Header())
	}
	st := statsOf(t, s)
	if len(st.IPs) != 1 || st.IPs[0].Requests != 6 || st.IPs[0].TooMany != 1 || len(st.Tokens) != 6 {
		t.Fatalf("stats %+v", st)
	}
}

func TestLimits_BanAfterIgnored429s(t *testing.T) {
	s, err := New(Config{Limits: Limits{PerSecond: 1, BanAfter: 3, BanFor: time.Hour}})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(s)
	defer srv.Close()
	defer s.Close()
	tok := token(t, AllScopes, time.Now().Add(time.Hour))
	client := &http.Client{Timeout: 300 * time.Millisecond}
	call := func() (int, error) {
		req, _ := http.NewRequest(http.MethodGet, srv.URL+ftPath+"?"+ftQuery.Encode(), nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := client.Do(req)
		if err != nil {
			return 0, err
		}
		resp.Body.Close()
		return resp.StatusCode, nil
	}
	// Align on the start of a second so that all calls share a window.
	time.Sleep(time.Until(time.Now().Truncate(time.Second).Add(time.Second)))
	var codes []int
	for i := 0; i < 4; i++ {
		code, err := call()
		if err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
		codes = append(codes, code)
	}
	// 1 allowed, then a 429, then 2 more calls while told to wait: the
	// third ignored wait bans the IP and the server goes silent.
	if codes[0] != 200 || codes[1] != 429 || codes[2] != 429 || codes[3] != 429 {
		t.Fatalf("codes before the ban %v", codes)
	}
	if _, err := call(); err == nil || !strings.Contains(err.Error(), "Timeout") {
		t.Fatalf("banned call answered: %v", err)
	}
	st := statsOf(t, s)
	if st.IPs[0].BannedTil == nil {
		t.Fatalf("stats do not show the ban: %+v", st.IPs[0])
	}
}

func TestLimits_ChangeWhileRunning(t *testing.T) {
	s := newServer(t, Config{})
	req := httptest.NewRequest(http.MethodPost, "/_sandbox/limits", strings.NewReader(`{"per_minute":250}`))
	rec := httptest.NewRecorder()
	s.ServeHTTP(rec, req)
	if rec.Code != 200 || !strings.Contains(rec.Body.String(), `"per_minute":250`) || !strings.Contains(rec.Body.String(), `"per_second":20`) {
		t.Fatalf("POST limits: %d %s", rec.Code, rec.Body)
	}
	tok := token(t, AllScopes, caseClock.Add(time.Hour))
	if rec := get(s, tok, ftPath, ftQuery); rec.Header().Get("RateLimit-Limit") != "250" {
		t.Fatalf("new limit not announced: %v", rec.Header())
	}
}

// TestCounter_MaxInAnySecond: the most arrivals seen within one second
// (the second ending at an arrival), however the arrivals come.
func TestCounter_MaxInAnySecond(t *testing.T) {
	ms := func(n int) time.Duration { return time.Duration(n) * time.Millisecond }
	for _, tc := range []struct {
		name string
		gaps []time.Duration // between arrivals
	}{
		{"one", nil},
		{"a second apart", []time.Duration{time.Second, time.Second, time.Second}},
		{"burst then quiet", []time.Duration{ms(1), ms(1), ms(1), 2 * time.Second, ms(500)}},
		{"just under a second", []time.Duration{ms(999), ms(1), ms(998)}},
		{"simultaneous", []time.Duration{0, 0, 0, time.Second, 0}},
		{"steady 10 per second", slices.Repeat([]time.Duration{ms(100)}, 50)},
		{"quiet then burst", append(slices.Repeat([]time.Duration{ms(300)}, 20), slices.Repeat([]time.Duration{ms(10)}, 30)...)},
		{"waves", slices.Repeat(append(slices.Repeat([]time.Duration{ms(2)}, 40), 3*time.Second), 5)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newCounter()
			arrivals := []time.Time{caseClock}
			for _, g := range tc.gaps {
				arrivals = append(arrivals, arrivals[len(arrivals)-1].Add(g))
			}
			want := 0
			for i, a := range arrivals {
				c.arrive(a)
				n := 0
				for _, b := range arrivals[:i+1] {
					if b.After(a.Add(-time.Second)) {
						n++
					}
				}
				want = max(want, n)
			}
			if c.maxPerSec != want {
				t.Fatalf("max in any second %d, want %d", c.maxPerSec, want)
			}
		})
	}
}

// TestServer_TokenCountsBetween: per token, the requests that arrived in
// [from, to), on a test clock and on the real one.
func TestServer_TokenCountsBetween(t *testing.T) {
	c := &clock{t: caseClock}
	s := newServer(t, Config{Limits: Limits{PerSecond: 1000, IPPerMinute: 100000}, Now: c.now})
	a, b := token(t, AllScopes, caseClock.Add(time.Hour)), token(t, AllScopes, caseClock.Add(time.Hour))
	at := func(d time.Duration) time.Time { return caseClock.Add(d) }
	for _, call := range []struct {
		at  time.Duration
		tok string
	}{{0, a}, {time.Second, a}, {time.Second, b}, {2 * time.Second, b}, {3 * time.Second, a}} {
		c.t = at(call.at)
		get(s, call.tok, ftPath, ftQuery)
	}
	keys := map[string]string{}
	for _, st := range s.Stats().Tokens {
		if st.First.Equal(caseClock) {
			keys["a"] = st.Key
		} else {
			keys["b"] = st.Key
		}
	}
	for _, tc := range []struct {
		from, to time.Duration
		a, b     int64
	}{
		{0, 4 * time.Second, 3, 2},
		{time.Second, 2 * time.Second, 1, 1},
		{time.Second + 1, 3 * time.Second, 0, 1},
		{-time.Hour, 0, 0, 0},
		{3 * time.Second, 3*time.Second + 1, 1, 0},
	} {
		got := s.TokenCountsBetween(at(tc.from), at(tc.to))
		if got[keys["a"]] != tc.a || got[keys["b"]] != tc.b {
			t.Errorf("[%v, %v): %v, want a %d b %d", tc.from, tc.to, got, tc.a, tc.b)
		}
	}

	live := newServer(t, Config{Limits: Limits{PerSecond: 1000, IPPerMinute: 100000}, Now: time.Now})
	tok := token(t, AllScopes, time.Now().Add(time.Hour))
	before := time.Now()
	for i := 0; i < 5; i++ {
		get(live, tok, ftPath, ftQuery)
	}
	after := time.Now()
	var n int64
	for _, v := range live.TokenCountsBetween(before, after.Add(time.Nanosecond)) {
		n += v
	}
	if n != 5 {
		t.Fatalf("%d requests counted on the real clock, want 5", n)
	}
}

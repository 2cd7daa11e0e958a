package workers

import (
	"context"
	"errors"
	"math/rand/v2"
	"net/http"
	"sort"
	"strconv"
	"sync"
	"testing"
	"time"
)

// fakeClock is a settable clock.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time { return c.t }

var t0 = time.Date(2026, 9, 14, 22, 0, 0, 0, time.UTC)

// maxInWindow returns the most grants that fall in any window [t, t+per).
func maxInWindow(grants []time.Time, per time.Duration) int {
	sort.Slice(grants, func(i, j int) bool { return grants[i].Before(grants[j]) })
	best, j := 0, 0
	for i := range grants {
		for grants[i].Sub(grants[j]) >= per {
			j++
		}
		best = max(best, i-j+1)
	}
	return best
}

// grant waits on the fake clock until b grants, adding jitter to every
// wake-up as real timers do, and returns the grant time.
func grant(clk *fakeClock, b *Budget, jitter func() time.Duration) time.Time {
	for {
		d, ok := b.TryGrant()
		if ok {
			return clk.t
		}
		clk.t = clk.t.Add(d + jitter())
	}
}

func TestBudget_NeverExceedsLimitInAnySlidingWindow(t *testing.T) {
	for _, limit := range []int{1, 5, 20} {
		t.Run(strconv.Itoa(limit), func(t *testing.T) {
			clk := &fakeClock{t: t0}
			b := NewBudget(limit, time.Second, clk.now)
			r := rand.New(rand.NewPCG(1, uint64(limit)))
			// Late wake-ups of up to 5 ms, as timers on a busy machine.
			jitter := func() time.Duration { return time.Duration(r.Float64() * float64(5*time.Millisecond)) }
			var grants []time.Time
			for i := 0; i < 5000; i++ {
				// Arrivals in bursts and gaps.
				clk.t = clk.t.Add(time.Duration(r.ExpFloat64() * float64(20*time.Millisecond)))
				grants = append(grants, grant(clk, b, jitter))
			}
			if got := maxInWindow(grants, time.Second); got > limit {
				t.Fatalf("%d grants in one sliding second, limit %d", got, limit)
			}
			// Even if every request reached the server up to 9 ms later or
			// earlier than another, no second would see more than the limit.
			if got := maxInWindow(grants, time.Second+9*time.Millisecond); got > limit {
				t.Fatalf("%d grants in 1.009 s, limit %d", got, limit)
			}
		})
	}
}

func TestBudget_PacesWithoutBursts(t *testing.T) {
	clk := &fakeClock{t: t0}
	b := NewBudget(20, time.Second, clk.now)
	var prev time.Time
	for i := 0; i < 100; i++ {
		g := grant(clk, b, func() time.Duration { return 0 })
		if i > 0 && g.Sub(prev) < 50*time.Millisecond {
			t.Fatalf("grants %d and %d only %v apart", i-1, i, g.Sub(prev))
		}
		prev = g
	}
	// 100 grants at 20/s with a 1 % guard: about 5 s, at least 98 % of the budget.
	if d := prev.Sub(t0); d > 5050*time.Millisecond || d < 4950*time.Millisecond {
		t.Fatalf("100th grant at +%v", d)
	}
}

func TestBudget_ReachesTheLimit(t *testing.T) {
	clk := &fakeClock{t: t0}
	b := NewBudget(20, time.Second, clk.now)
	r := rand.New(rand.NewPCG(3, 4))
	var last time.Time
	for i := 0; i < 2000; i++ {
		last = grant(clk, b, func() time.Duration { return time.Duration(r.Float64() * float64(2*time.Millisecond)) })
	}
	rate := 1999 / last.Sub(t0).Seconds()
	if rate < 0.98*20 || rate > 20 {
		t.Fatalf("saturated rate %.2f/s, want at least 98 %% of 20", rate)
	}
}

func TestBudget_Observe(t *testing.T) {
	hdr := func(kv ...string) http.Header {
		h := http.Header{}
		for i := 0; i < len(kv); i += 2 {
			h.Set(kv[i], kv[i+1])
		}
		return h
	}
	for _, tc := range []struct {
		name       string
		status     int
		h          http.Header
		wantLimit  int
		wantPaused time.Duration
	}{
		{"lower limit adopted", 200, hdr("RateLimit-Limit", "10", "RateLimit-Remaining", "9"), 10, 0},
		{"higher limit ignored", 200, hdr("RateLimit-Limit", "50", "RateLimit-Remaining", "40"), 20, 0},
		{"429 retry-after seconds", 429, hdr("Retry-After", "2"), 20, 2 * time.Second},
		{"429 reset unix time", 429, hdr("RateLimit-Reset", strconv.FormatInt(t0.Add(3*time.Second).Unix(), 10)), 20, 3 * time.Second},
		{"429 reset delta", 429, hdr("RateLimit-Reset", "4"), 20, 4 * time.Second},
		{"429 http date", 429, hdr("Retry-After", t0.Add(5*time.Second).Format(http.TimeFormat)), 20, 5 * time.Second},
		{"429 later of both", 429, hdr("Retry-After", "1", "RateLimit-Reset", "6"), 20, 6 * time.Second},
		{"429 without hint", 429, hdr(), 20, time.Second},
		{"remaining zero from another client pauses until reset", 200, hdr("RateLimit-Limit", "20", "RateLimit-Remaining", "0", "RateLimit-Reset", "1"), 20, time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clk := &fakeClock{t: t0}
			b := NewBudget(20, time.Second, clk.now)
			b.Observe(tc.status, tc.h, time.Time{})
			if b.Limit() != tc.wantLimit {
				t.Errorf("Limit = %d, want %d", b.Limit(), tc.wantLimit)
			}
			var paused time.Duration
			if p := b.PausedUntil(); !p.IsZero() {
				paused = p.Sub(t0)
			}
			if paused != tc.wantPaused {
				t.Errorf("paused %v, want %v", paused, tc.wantPaused)
			}
			if tc.wantPaused > 0 {
				if d, ok := b.TryGrant(); ok || d != tc.wantPaused {
					t.Errorf("TryGrant after pause = %v, %v; want %v", d, ok, tc.wantPaused)
				}
			}
		})
	}
}

func TestBudget_RemainingZeroFromOwnTraffic(t *testing.T) {
	clk := &fakeClock{t: t0}
	b := NewBudget(20, time.Second, clk.now)
	for i := 0; i < 20; i++ {
		grant(clk, b, func() time.Duration { return 0 })
	}
	// All 20 requests the server counts are ours: no pause.
	sent := clk.t
	clk.t = clk.t.Add(300 * time.Millisecond) // the answer comes later
	b.Observe(200, http.Header{"Ratelimit-Limit": {"20"}, "Ratelimit-Remaining": {"0"}, "Ratelimit-Reset": {"1"}}, sent)
	if !b.PausedUntil().IsZero() {
		t.Fatalf("paused on its own traffic until %v", b.PausedUntil())
	}
}

func BenchmarkBudget_TryGrant(b *testing.B) {
	clk := &fakeClock{t: t0}
	bu := NewBudget(20, time.Second, clk.now)
	for i := 0; i < b.N; i++ {
		clk.t = clk.t.Add(time.Millisecond)
		bu.TryGrant()
	}
}

func TestBudget_AdoptsAnnouncedPerMinuteLimit(t *testing.T) {
	clk := &fakeClock{t: t0.Add(10 * time.Second)}
	b := NewBudget(20, time.Second, clk.now)
	var grants []time.Time
	for i := 0; i < 40; i++ {
		grants = append(grants, grant(clk, b, func() time.Duration { return 0 }))
	}
	// The server now announces 250 per minute, its window ending at the
	// next minute.
	reset := clk.t.Truncate(time.Minute).Add(time.Minute)
	b.Observe(200, http.Header{"Ratelimit-Limit": {"250"}, "Ratelimit-Remaining": {"200"},
		"Ratelimit-Reset": {strconv.FormatInt(reset.Unix(), 10)}}, clk.t)
	if got := b.Limits(); got[time.Minute] != 250 || got[time.Second] != 20 {
		t.Fatalf("limits after the announcement: %v", got)
	}
	for i := 0; i < 1500; i++ {
		grants = append(grants, grant(clk, b, func() time.Duration { return time.Millisecond }))
	}
	if got := maxInWindow(grants, time.Minute); got > 250 {
		t.Fatalf("%d grants in one sliding minute after the change, limit 250", got)
	}
	if got := maxInWindow(grants, time.Second); got > 20 {
		t.Fatalf("%d grants in one sliding second", got)
	}
	// And it keeps using at least 95 % of the new budget.
	last := grants[len(grants)-1]
	first := grants[len(grants)-1000]
	if rate := 999 / last.Sub(first).Minutes(); rate < 0.95*250 {
		t.Fatalf("%.1f grants per minute, want at least 95 %% of 250", rate)
	}
	// A per-second announcement never raises the configured limit.
	b.Observe(200, http.Header{"Ratelimit-Limit": {"50"}, "Ratelimit-Remaining": {"40"}, "Ratelimit-Reset": {"1"}}, clk.t)
	if b.Limit() != 20 {
		t.Fatalf("per-second limit raised to %d", b.Limit())
	}
}

// TestHeaderNames_Canonical: the names read are net/http's spelling of the
// API's headers, so that no read canonicalises them.
func TestHeaderNames_Canonical(t *testing.T) {
	for api, name := range map[string]string{"RateLimit-Limit": headerRateLimitLimit, "RateLimit-Remaining": headerRateLimitRemaining,
		"RateLimit-Reset": headerRateLimitReset, "X-Request-ID": headerRequestID} {
		if c := http.CanonicalHeaderKey(api); c != name {
			t.Errorf("%s: reads %q, net/http keys it %q", api, name, c)
		}
	}
}

// TestBudget_Wait: waiters refused again and again (several share the
// budget) are all granted in the end, and a cancelled wait returns ctx's
// error.
func TestBudget_Wait(t *testing.T) {
	bu := NewBudget(200, time.Second, nil)
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range 3 {
				if err := bu.Wait(context.Background()); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	if u := bu.Usage(); u.Granted != 12 {
		t.Fatalf("%d grants, want 12", u.Granted)
	}
	bu.PauseUntil(time.Now().Add(time.Hour))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := bu.Wait(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Wait on a cancelled context = %v", err)
	}
}

// TestBudget_RingGrowsWithGrants: a window keeps its last 4 × limit grant
// times in a ring that grows with the grants, so that a limit far above
// what is reached costs no memory, and then wraps, oldest first.
func TestBudget_RingGrowsWithGrants(t *testing.T) {
	clk := &fakeClock{t: t0}
	huge := NewBudget(MaxLimit, time.Second, clk.now)
	for i := 0; i < 10; i++ {
		grant(clk, huge, func() time.Duration { return 0 })
	}
	if w := huge.windows[0]; len(w.ring) != 10 || w.count != 10 || cap(w.ring) > 64 {
		t.Fatalf("after 10 grants under a limit of %d: ring of %d (cap %d), count %d", MaxLimit, len(w.ring), cap(w.ring), w.count)
	}
	b := NewBudget(3, time.Second, clk.now)
	var grants []time.Time
	for i := 0; i < 30; i++ {
		grants = append(grants, grant(clk, b, func() time.Duration { return 0 }))
	}
	w := b.windows[0]
	if len(w.ring) != 12 || w.count != 12 {
		t.Fatalf("after 30 grants under a limit of 3: ring of %d, count %d; want 12, 12", len(w.ring), w.count)
	}
	for i, got := range ringTimes(b) {
		if want := grants[18+i]; !got.Equal(want) {
			t.Fatalf("ring[%d] = %v, want grant %d at %v", i, got, 18+i, want)
		}
	}
	if got := maxInWindow(grants, time.Second); got > 3 {
		t.Fatalf("%d grants in one sliding second, limit 3", got)
	}
}

// ringTimes returns the grant times a budget's configured window holds.
func ringTimes(b *Budget) []time.Time {
	w := b.windows[0]
	out := make([]time.Time, 0, w.count)
	for i := 0; i < w.count; i++ {
		out = append(out, w.ring[(w.head+i)%len(w.ring)])
	}
	return out
}

// TestBudget_GrantsWithAnother: a request that needs a token's budget and
// the IP's is granted by both at the same instant, or by neither: each
// budget's grant times are the requests' send times, whichever budget made
// them wait. A deadline refuses at once, and a readiness check takes
// nothing.
func TestBudget_GrantsWithAnother(t *testing.T) {
	clk := &fakeClock{t: t0}
	token := NewBudget(4, time.Second, clk.now)
	ip := NewBudget(3, time.Second, clk.now)
	ip.PauseUntil(t0.Add(300 * time.Millisecond))
	var sent []time.Time
	for len(sent) < 12 {
		d, ok, stop := token.tryGrant(ip, time.Time{}, true)
		if stop != nil {
			t.Fatal(stop)
		}
		if ok {
			sent = append(sent, clk.t)
			continue
		}
		clk.t = clk.t.Add(d)
	}
	if !sent[0].Equal(t0.Add(300 * time.Millisecond)) {
		t.Fatalf("first grant at %v, want at the end of the IP's pause", sent[0].Sub(t0))
	}
	for name, b := range map[string]*Budget{"token": token, "ip": ip} {
		got := ringTimes(b)
		if len(got) != len(sent) {
			t.Fatalf("%s budget counted %d grants, want %d", name, len(got), len(sent))
		}
		for i := range got {
			if !got[i].Equal(sent[i]) {
				t.Fatalf("%s budget's grant %d at %v, request sent at %v", name, i, got[i].Sub(t0), sent[i].Sub(t0))
			}
		}
	}
	if got := maxInWindow(sent, time.Second); got > 3 {
		t.Fatalf("%d requests in one sliding second, the IP allows 3", got)
	}

	// The IP's next grant is about 350 ms away: a deadline before it
	// refuses at once, and neither budget counts anything.
	before := token.Usage().Granted
	if _, ok, stop := token.tryGrant(ip, clk.t.Add(100*time.Millisecond), true); ok || !errors.Is(stop, ErrDeadline) {
		t.Fatalf("grant before a deadline too close = %v, %v; want ErrDeadline", ok, stop)
	}
	ctx := context.Background()
	if err := token.WaitWith(ctx, ip, clk.t.Add(100*time.Millisecond)); !errors.Is(err, ErrDeadline) {
		t.Fatalf("WaitWith before a deadline too close = %v; want ErrDeadline at once", err)
	}
	clk.t = clk.t.Add(time.Second)
	if err := token.WaitReady(ctx, ip); err != nil {
		t.Fatal(err)
	}
	if token.Usage().Granted != before || ip.Usage().Granted != before {
		t.Fatalf("a refused or readiness-only request was counted: token %d, ip %d grants, want %d", token.Usage().Granted, ip.Usage().Granted, before)
	}
	if err := token.WaitWith(ctx, ip, clk.t.Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	if token.Usage().Granted != before+1 || ip.Usage().Granted != before+1 {
		t.Fatal("a granted request was not counted by both budgets")
	}
}

// TestBudget_LimitFollowsEveryAnswer: each answer's RateLimit-Limit is
// adopted, lowered or raised again up to the configured ceiling; an answer
// to an older request than one already heard changes nothing.
func TestBudget_LimitFollowsEveryAnswer(t *testing.T) {
	clk := &fakeClock{t: t0}
	b := NewBudget(20, time.Second, clk.now)
	answer := func(limit string, sent time.Time) {
		b.Observe(200, http.Header{"Ratelimit-Limit": {limit}, "Ratelimit-Remaining": {"5"}, "Ratelimit-Reset": {"1"}}, sent)
	}
	for _, step := range []struct {
		limit string
		sent  time.Duration
		want  int
	}{
		{"10", 100 * time.Millisecond, 10},
		{"15", 200 * time.Millisecond, 15},
		{"50", 300 * time.Millisecond, 20}, // never past the ceiling
		{"12", 400 * time.Millisecond, 12},
		{"18", 350 * time.Millisecond, 12}, // older than the last heard
		{"garbage", 500 * time.Millisecond, 12},
	} {
		clk.t = t0.Add(time.Second)
		answer(step.limit, t0.Add(step.sent))
		if got := b.Limit(); got != step.want {
			t.Fatalf("after RateLimit-Limit %s: limit %d, want %d", step.limit, got, step.want)
		}
	}
}

// TestBudget_AddLimit: a configured per-minute window holds in any sliding
// minute; the API's headers lower it, never raise it.
func TestBudget_AddLimit(t *testing.T) {
	clk := &fakeClock{t: t0}
	b := NewBudget(20, time.Second, clk.now)
	b.AddLimit(250, time.Minute)
	var grants []time.Time
	for i := 0; i < 1000; i++ {
		grants = append(grants, grant(clk, b, func() time.Duration { return time.Millisecond }))
	}
	if got := maxInWindow(grants, time.Minute); got > 250 {
		t.Fatalf("%d grants in a sliding minute, limit 250", got)
	}
	if rate := 999 / grants[999].Sub(grants[0]).Minutes(); rate < 0.97*250 {
		t.Fatalf("%.1f grants a minute, want at least 97 %% of 250", rate)
	}
	reset := strconv.FormatInt(clk.t.Add(30*time.Second).Unix(), 10)
	b.Observe(200, http.Header{"Ratelimit-Limit": {"300"}, "Ratelimit-Remaining": {"299"}, "Ratelimit-Reset": {reset}}, clk.t)
	if got := b.Limits()[time.Minute]; got != 250 {
		t.Fatalf("announced 300: per-minute limit %d, want the configured 250", got)
	}
	b.Observe(200, http.Header{"Ratelimit-Limit": {"200"}, "Ratelimit-Remaining": {"199"}, "Ratelimit-Reset": {reset}}, clk.t)
	if got := b.Limits()[time.Minute]; got != 200 {
		t.Fatalf("announced 200: per-minute limit %d", got)
	}
	b.AddLimit(0, time.Minute) // nothing
	b.AddLimit(100, time.Minute)
	if got := b.Limits(); got[time.Minute] != 100 || got[time.Second] != 20 || len(got) != 2 {
		t.Fatalf("limits %v", got)
	}
}

// driftServer is a fixed-minute-window server (Rack::Attack's) whose count
// drifts from its clients': a request it answers 502 counts twice (a
// gateway in front repeated it), and another client spends some of the
// window too.
type driftServer struct {
	limit  int
	window int64
	count  int
}

func (s *driftServer) answer(at time.Time, bad bool) (int, http.Header) {
	if w := at.Unix() / 60; w != s.window {
		s.window, s.count = w, 0
	}
	s.count++
	status := 200
	switch {
	case s.count > s.limit:
		status = 429
	case bad:
		status = 502
		s.count++ // repeated on the way: counted twice
	}
	reset := (at.Unix()/60 + 1) * 60
	h := http.Header{"Ratelimit-Limit": {strconv.Itoa(s.limit)}, "Ratelimit-Remaining": {strconv.Itoa(max(s.limit-s.count, 0))},
		"Ratelimit-Reset": {strconv.FormatInt(reset, 10)}}
	if status == 429 {
		h.Set("Retry-After", strconv.FormatInt(reset-at.Unix(), 10))
	}
	return status, h
}

// TestBudget_RecalibratesOnEveryAnswer: with a count that drifts during
// runs of 502s (each counted twice by the server) and another client of the
// habilitation, a budget fed every answer's headers, 502s included, never
// gets a 429; fed the same answers without RateLimit-Remaining (its local
// count alone), it does.
func TestBudget_RecalibratesOnEveryAnswer(t *testing.T) {
	run := func(withRemaining bool) (tooMany, calls int) {
		clk := &fakeClock{t: t0.Add(7 * time.Second)}
		b := NewBudget(20, time.Second, clk.now)
		b.AddLimit(60, time.Minute)
		srv := &driftServer{limit: 60}
		type flight struct{ sent, back time.Time }
		var inFlight []flight
		end := clk.t.Add(20 * time.Minute)
		for clk.t.Before(end) {
			// Answers that are back, oldest first.
			for len(inFlight) > 0 && !inFlight[0].back.After(clk.t) {
				f := inFlight[0]
				inFlight = inFlight[1:]
				// 502 runs: a third of each minute, from its 20th second.
				bad := f.sent.Second() >= 20 && f.sent.Second() < 40
				status, h := srv.answer(f.sent, bad)
				if !withRemaining {
					h.Del("Ratelimit-Remaining")
				}
				b.Observe(status, h, f.sent)
				if status == 429 {
					tooMany++
				}
			}
			// Another client of the habilitation (another token, another
			// replica) spends 5 requests early in each minute.
			if s := clk.t.Sub(clk.t.Truncate(time.Minute)); s >= 5*time.Second && s < 5*time.Second+50*time.Millisecond {
				srv.answer(clk.t, false)
			}
			if _, ok := b.TryGrant(); ok {
				calls++
				inFlight = append(inFlight, flight{sent: clk.t, back: clk.t.Add(150 * time.Millisecond)})
			}
			clk.t = clk.t.Add(10 * time.Millisecond)
		}
		return tooMany, calls
	}
	tooMany, calls := run(true)
	if tooMany != 0 {
		t.Fatalf("%d × 429 in %d calls with every answer's count adopted", tooMany, calls)
	}
	// The server leaves about 35 a minute (60, less the other client's 5
	// and a 502's second count for the 20 or so calls of each run).
	if calls < 20*30 {
		t.Fatalf("%d calls in 20 minutes: recalibration starves the budget", calls)
	}
	if tooMany, calls := run(false); tooMany == 0 {
		t.Fatalf("no 429 in %d calls on the local count alone: the test shows nothing", calls)
	}
}

package workers

import (
	"math/rand/v2"
	"net/http"
	"sort"
	"strconv"
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

func TestBudget_NeverExceedsLimitInAnySlidingWindow(t *testing.T) {
	for _, limit := range []int{1, 5, 20} {
		t.Run(strconv.Itoa(limit), func(t *testing.T) {
			clk := &fakeClock{t: t0}
			b := NewBudget(limit, time.Second, clk.now)
			r := rand.New(rand.NewPCG(1, uint64(limit)))
			var grants []time.Time
			for i := 0; i < 10000; i++ {
				// Arrivals in bursts and gaps.
				clk.t = clk.t.Add(time.Duration(r.ExpFloat64() * float64(30*time.Millisecond)))
				grants = append(grants, clk.t.Add(b.Reserve()))
			}
			if got := maxInWindow(grants, time.Second); got > limit {
				t.Fatalf("%d grants in one sliding second, limit %d", got, limit)
			}
		})
	}
}

func TestBudget_ReachesTheLimit(t *testing.T) {
	clk := &fakeClock{t: t0}
	b := NewBudget(20, time.Second, clk.now)
	var last time.Time
	for i := 0; i < 200; i++ {
		last = t0.Add(b.Reserve())
	}
	// 200 requests at 20/s: the 200th goes out 9 s after the first.
	if got := last.Sub(t0); got != 9*time.Second {
		t.Fatalf("200th grant at +%v, want +9s", got)
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
		{"remaining zero pauses until reset", 200, hdr("RateLimit-Remaining", "0", "RateLimit-Reset", "1"), 20, time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clk := &fakeClock{t: t0}
			b := NewBudget(20, time.Second, clk.now)
			b.Observe(tc.status, tc.h)
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
				if d := b.Reserve(); d != tc.wantPaused {
					t.Errorf("Reserve after pause = %v, want %v", d, tc.wantPaused)
				}
			}
		})
	}
}

func BenchmarkBudget_Reserve(b *testing.B) {
	clk := &fakeClock{t: t0}
	bu := NewBudget(20, time.Second, clk.now)
	for i := 0; i < b.N; i++ {
		clk.t = clk.t.Add(time.Millisecond)
		bu.Reserve()
	}
}

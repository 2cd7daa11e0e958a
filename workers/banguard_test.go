package workers

import (
	"errors"
	"testing"
	"time"
)

func TestBanGuard(t *testing.T) {
	for _, tc := range []struct {
		name     string
		statuses []int
		step     time.Duration
		trips    bool
	}{
		{"some 429s are fine", repeat(429, 20), time.Second, false},
		{"too many 429s", repeat(429, 21), time.Second, true},
		{"429s spread over time", repeat(429, 40), 20 * time.Second, false},
		{"silence", repeat(0, 10), time.Second, true},
		{"silence broken by answers", append(append(repeat(0, 9), 200), repeat(0, 9)...), time.Second, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := &BanGuard{}
			now := t0
			var err error
			for _, st := range tc.statuses {
				err = g.Record(st, now)
				now = now.Add(tc.step)
			}
			if tripped := errors.Is(err, ErrBanRisk); tripped != tc.trips {
				t.Fatalf("tripped = %v (%v), want %v", tripped, err, tc.trips)
			}
			if tc.trips && g.Record(200, now) == nil {
				t.Fatal("a tripped guard reset itself")
			}
		})
	}
}

func repeat(status, n int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = status
	}
	return out
}

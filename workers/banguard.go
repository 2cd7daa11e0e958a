package workers

import (
	"errors"
	"fmt"
	"sync"
	"time"
)

// ErrBanRisk is returned (wrapped) by Pool.Run when the ban guard trips:
// the API answered 429 too often, or stopped answering at all, which is what
// an IP ban looks like (12 hours, every token behind the IP). The pool stops
// calling instead of retrying; unfinished jobs keep their offsets and are
// taken again on the next run.
var ErrBanRisk = errors.New("calls stopped to avoid an IP ban")

// BanGuard trips when, within Window, the API answered 429 more than Max429
// times, or MaxSilent calls in a row got no answer (timeouts, resets). The
// zero value uses the defaults. Safe for concurrent use.
type BanGuard struct {
	// Max429 is how many 429s within Window are tolerated. Default: 20.
	Max429 int
	// MaxSilent is how many calls in a row may go unanswered. Default: 10.
	MaxSilent int
	// Window is the period 429s are counted over. Default: 5 minutes.
	Window time.Duration

	mu      sync.Mutex
	recent  []time.Time // times of recent 429s
	silent  int
	tripped error
}

// Record notes the outcome of one call at now: status is the HTTP status,
// 0 when no answer came. It returns the guard's error once tripped.
func (g *BanGuard) Record(status int, now time.Time) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.tripped != nil {
		return g.tripped
	}
	max429, maxSilent, window := g.Max429, g.MaxSilent, g.Window
	if max429 <= 0 {
		max429 = 20
	}
	if maxSilent <= 0 {
		maxSilent = 10
	}
	if window <= 0 {
		window = 5 * time.Minute
	}
	switch status {
	case 0:
		g.silent++
		if g.silent >= maxSilent {
			g.tripped = fmt.Errorf("work: %d calls in a row got no answer from the API (an IP ban is silent): %w; "+
				"check the network and the API status page, wait, then run again", g.silent, ErrBanRisk)
		}
		return g.tripped
	case 429:
		g.recent = append(g.recent, now)
	}
	g.silent = 0
	cut := now.Add(-window)
	i := 0
	for i < len(g.recent) && g.recent[i].Before(cut) {
		i++
	}
	g.recent = g.recent[i:]
	if len(g.recent) > max429 {
		g.tripped = fmt.Errorf("work: %d answers 429 within %v (ignoring 429s gets the IP banned for 12 h): %w; "+
			"another client probably shares the token or the IP: lower --rate or --ip-limit, then run again", len(g.recent), window, ErrBanRisk)
	}
	return g.tripped
}

// Tripped returns the guard's error, or nil.
func (g *BanGuard) Tripped() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.tripped
}

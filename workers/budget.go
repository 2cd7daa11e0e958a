// Package workers calls API Particulier under budgets: a strict per-token
// rate limit fed by the API's RateLimit-* headers, a retry policy built from
// the operator's error catalogue, the client of each check, and the Pool that
// consumes job messages and produces results.
package workers

import (
	"context"
	"errors"
	"math"
	"net/http"
	"sort"
	"strconv"
	"sync"
	"time"
)

// Budget is a strict rate limiter: never more than Limit() grants in any
// window of length per, whatever the alignment of the server's own window
// (fixed or sliding), and no bursts. Two rules together:
//
//   - pacing: grants are spaced by per/limit on a fixed grid (no drift: a
//     late grant does not push the next ones back, but an idle budget does
//     not bank slots either);
//   - sliding window on actual grant times: a grant is refused until the
//     limit-th previous grant is at least per + guard old, guard being
//     per/100 and at least deliveryJitter. Timers fire late, and requests
//     reach the server after variable delays; checking actual times with a
//     margin keeps both from squeezing limit+1 requests into one window as
//     seen by the server.
//
// A request that must also fit another budget (the egress IP's) is granted
// by both at the same instant (WaitWith): each budget's grant times are
// then the request's send time, whichever made it wait.
//
// A pause (after a 429 or RateLimit-Remaining: 0) holds every grant until it
// ends. The zero value is not usable; build one with NewBudget. A Budget is
// safe for concurrent use. Time is injected so tests use a fake clock.
type Budget struct {
	mu      sync.Mutex
	now     func() time.Time
	windows []*window // [0] is the configured one; others are announced
	paused  time.Time
	granted int64 // grants since NewBudget
	// gate, once gated, is when grants stop: the end of the lease under
	// which this budget's token is used (SetGate).
	gate     time.Time
	gateLead time.Duration
	gated    bool
	// cal is what the newest answer said of the server's count, when it
	// counted more than this budget granted (Observe): at most cal.left
	// grants from cal.base on (counted by granted) until cal.reset.
	cal calibration
	// heard is when the newest observed answer's request was granted.
	heard time.Time
}

// calibration caps grants at what the server said remained.
type calibration struct {
	reset time.Time
	base  int64
	left  int
}

// ErrGateClosed is returned by Wait when the budget's gate (SetGate) is
// reached before a grant: whoever set it must extend it first.
var ErrGateClosed = errors.New("budget: the token's lease ends before the next grant")

// SetGate makes every grant happen before until (and none at all while it
// is in the past): the end of the lease under which the budget's token is
// used. When the next grant would come at or after until, Wait returns
// ErrGateClosed lead before until (at once if that is past), so that the
// lease can be extended while it still runs.
func (b *Budget) SetGate(until time.Time, lead time.Duration) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.gate, b.gateLead, b.gated = until, lead, true
}

// window is one limit over one period, with its pacing grid and the actual
// times of its recent grants.
type window struct {
	ceiling int // configured or first announced limit; never exceeded
	limit   int // current limit, lowered by RateLimit-Limit
	per     time.Duration
	ring    []time.Time // actual grant times, oldest at head; up to size long
	size    int         // 4 limits
	head    int
	count   int
	next    time.Time // next pacing slot
}

// MaxLimit is the largest limit a Budget accepts (it keeps up to 4 × limit grant
// times); larger limits are clamped.
const MaxLimit = 1_000_000

func newWindow(limit int, per time.Duration) *window {
	limit = min(limit, MaxLimit)
	// The ring holds more than one window of grants, so that an answer
	// arriving seconds later can still count the grants of its request's
	// window (Observe). It grows with the grants: a high limit never
	// reached costs no memory.
	return &window{ceiling: limit, limit: limit, per: per, size: 4 * limit}
}

// NewBudget returns a budget of limit requests per period per. limit <= 0
// means 20, per <= 0 means one second, now nil means time.Now.
func NewBudget(limit int, per time.Duration, now func() time.Time) *Budget {
	if limit <= 0 {
		limit = 20
	}
	if per <= 0 {
		per = time.Second
	}
	if now == nil {
		now = time.Now
	}
	return &Budget{now: now, windows: []*window{newWindow(limit, per)}}
}

// AddLimit adds a configured window of limit requests per period per (one
// minute, say, for a habilitation's 250 a minute), or lowers the limit of
// the window of that period if it has one. Like the first, its limit is a
// ceiling the API's headers can lower, never raise. limit <= 0 or per <= 0
// adds nothing.
func (b *Budget) AddLimit(limit int, per time.Duration) {
	if limit <= 0 || per <= 0 {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	limit = min(limit, MaxLimit)
	for _, w := range b.windows {
		if w.per == per {
			w.ceiling = min(w.ceiling, limit)
			w.limit = min(w.limit, limit)
			return
		}
	}
	b.windows = append(b.windows, b.newWindowFrom(limit, per, b.now()))
}

// Limit returns the current limit of the configured window.
func (b *Budget) Limit() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.windows[0].limit
}

// Limits returns the current limit of every window, by period.
func (b *Budget) Limits() map[time.Duration]int {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make(map[time.Duration]int, len(b.windows))
	for _, w := range b.windows {
		out[w.per] = w.limit
	}
	return out
}

// PauseUntil holds every grant until t (a later pause is kept).
func (b *Budget) PauseUntil(t time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if t.After(b.paused) {
		b.paused = t
	}
}

// PausedUntil returns the end of the current pause, or the zero time.
func (b *Budget) PausedUntil() time.Time {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.paused.After(b.now()) {
		return b.paused
	}
	return time.Time{}
}

// earliest returns when w allows the next grant.
func (w *window) earliest(now time.Time) time.Time {
	interval := w.per / time.Duration(w.limit)
	slot := w.next
	if slot.Before(now.Add(-interval)) {
		// Idle: start a new grid now rather than catch up on missed slots.
		slot = now
	}
	if w.count >= w.limit {
		oldest := w.ring[(w.head+w.count-w.limit)%len(w.ring)]
		if t := oldest.Add(w.per + max(w.per/100, deliveryJitter)); t.After(slot) {
			slot = t
		}
	}
	return slot
}

// deliveryJitter is how much later than its neighbours a request may reach
// the server, over the time from its grant: the sliding-window guard never
// goes below it. Measured on the sandbox with three benches sharing two
// cores: up to 13.3 ms (more under a memory limit, whose longer collections
// delay the bench's in-process sandbox); 15 ms keeps the per-second budget
// usable at 98.5 %.
const deliveryJitter = 15 * time.Millisecond

// TryGrant grants a request now and returns (0, true), or returns how long
// to wait before asking again and false.
func (b *Budget) TryGrant() (time.Duration, bool) {
	d, ok, _ := b.tryGrant(nil, time.Time{}, true)
	return d, ok
}

// ErrDeadline is returned by WaitWith when the grant would come at or after
// its deadline.
var ErrDeadline = errors.New("budget: no grant before the deadline")

// next returns when b allows the next grant (b.mu held).
func (b *Budget) next(now time.Time) time.Time {
	at := b.paused
	if c := b.cal; now.Before(c.reset) && b.granted-c.base >= int64(c.left) && c.reset.After(at) {
		// The server's count, as last heard, leaves nothing before its
		// reset.
		at = c.reset
	}
	for _, w := range b.windows {
		if slot := w.earliest(now); slot.After(at) {
			at = slot
		}
	}
	return at
}

// take records a grant at now, which next allowed (b.mu held).
func (b *Budget) take(now time.Time) {
	for _, w := range b.windows {
		// The pacing grid goes on from the slot, not from now: a late
		// grant does not push the next ones back.
		slot := w.earliest(now)
		w.push(now)
		w.next = slot.Add(w.per / time.Duration(w.limit))
	}
	b.granted++
}

// tryGrant grants a request now, by b and other (nil: none) together, or
// says how long to wait. With take false it only says whether both would
// grant. stop is ErrGateClosed when b's gate comes first (wait is then the
// time left before Wait must report it), or ErrDeadline when deadline
// (zero: none) does.
func (b *Budget) tryGrant(other *Budget, deadline time.Time, take bool) (wait time.Duration, ok bool, stop error) {
	// Always b, then other: other is the egress IP's budget, never a
	// token's, so two requests never lock the same pair in both orders.
	b.mu.Lock()
	defer b.mu.Unlock()
	if other != nil {
		other.mu.Lock()
		defer other.mu.Unlock()
	}
	now := b.now()
	at := b.next(now)
	if other != nil {
		if o := other.next(now); o.After(at) {
			at = o
		}
	}
	if at.Before(now) {
		at = now // when the next grant would be
	}
	if b.gated && !at.Before(b.gate) {
		return max(b.gate.Add(-b.gateLead).Sub(now), 0), false, ErrGateClosed
	}
	if !deadline.IsZero() && !at.Before(deadline) {
		return 0, false, ErrDeadline
	}
	if at.After(now) {
		return at.Sub(now), false, nil
	}
	if take {
		b.take(now)
		if other != nil {
			other.take(now)
		}
	}
	return 0, true, nil
}

// BudgetUsage is a snapshot of a Budget for metrics.
type BudgetUsage struct {
	// Granted is the grants since the budget was made.
	Granted int64
	// Recent is the grants in the last period of the configured window.
	Recent int
	// Limit is the configured window's current limit, per Period.
	Limit  int
	Period time.Duration
}

// Usage returns the budget's grants and limit. It costs one pass over the
// configured window's recent grant times.
func (b *Budget) Usage() BudgetUsage {
	b.mu.Lock()
	defer b.mu.Unlock()
	w := b.windows[0]
	now := b.now()
	return BudgetUsage{Granted: b.granted, Recent: w.grantedBetween(now.Add(-w.per), now), Limit: w.limit, Period: w.per}
}

// push records a grant at t, keeping the last size grants.
func (w *window) push(t time.Time) {
	if len(w.ring) < w.size {
		// Still growing: nothing was dropped yet, so head is 0 and every
		// slot is taken (count is len(ring)).
		w.ring = append(w.ring, t)
		w.count++
		return
	}
	// Full: the newest grant takes the oldest's slot.
	w.ring[w.head] = t
	w.head = (w.head + 1) % len(w.ring)
}

// Wait blocks until a request may be sent and returns nil, or returns
// ctx.Err() if ctx ends first, or ErrGateClosed when the gate comes first.
func (b *Budget) Wait(ctx context.Context) error {
	return b.wait(ctx, nil, time.Time{}, true)
}

// WaitWith is Wait for a request that other (nil: none) must grant too: b
// and other grant it at the same instant, or neither does. It returns
// ErrDeadline, at once, when the grant would come at or after deadline
// (zero: none). other must be the egress IP's budget, never a token's.
func (b *Budget) WaitWith(ctx context.Context, other *Budget, deadline time.Time) error {
	return b.wait(ctx, other, deadline, true)
}

// WaitReady blocks until b and other (nil: none) would grant a request,
// without granting it: to take a unit of another, slower budget only
// when this one is ready to spend it.
func (b *Budget) WaitReady(ctx context.Context, other *Budget) error {
	return b.wait(ctx, other, time.Time{}, false)
}

func (b *Budget) wait(ctx context.Context, other *Budget, deadline time.Time, take bool) error {
	var t *time.Timer // one per wait, however many times it is refused
	defer func() {
		if t != nil {
			t.Stop()
		}
	}()
	for {
		d, ok, stop := b.tryGrant(other, deadline, take)
		if ok {
			return ctx.Err()
		}
		if stop != nil && d <= 0 {
			return stop
		}
		if t == nil {
			t = time.NewTimer(d)
		} else {
			t.Reset(d) // fired and drained: reset as new
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

// Observe adopts what a response announces, on every response whatever
// its status (a 502 carries the API's count as a 200 does), as long as it
// answers a request sent no earlier than the newest already observed.
//
// RateLimit-Limit applies to the window its RateLimit-Reset implies: a
// reset more than 2 s away announces a per-minute limit (for instance the
// 250/min per habilitation the operator announced), which becomes a second
// window at once; the window's limit becomes the announced one, up to its
// ceiling (the configured limit, or the first announced): a limit the API
// lowers is adopted at once, and it is raised again, never past the
// ceiling, when the API raises it.
//
// RateLimit-Remaining recalibrates the budget from the server's count, so
// that a local count that drifted (requests the server counted and this
// budget did not: another client of the token or habilitation, another
// replica, requests repeated on the way) is corrected by every answer.
// When the server counts more requests than this budget granted in the
// last period up to the request, at most Remaining more are granted after
// the request until RateLimit-Reset (none: a pause until then); when it
// counts no more, the budget's own count holds the limit and any earlier
// recalibration is dropped (pausing on every "0" a saturated
// sliding-window server announces would waste the budget).
//
// A 429 pauses every grant until RateLimit-Reset (a unix time, or seconds
// when below 10^9) or Retry-After (seconds or an HTTP date), whichever is
// later. sent is when the request was granted (the zero time: now).
func (b *Budget) Observe(status int, h http.Header, sent time.Time) {
	if h == nil {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	now := b.now()
	if sent.IsZero() {
		sent = now
	}
	newest := !sent.Before(b.heard)
	if newest {
		b.heard = sent
	}
	w := b.windows[0]
	reset := ResetTime(h, now)
	serverLimit, limErr := strconv.Atoi(h.Get(headerRateLimitLimit))
	if limErr == nil && serverLimit > 0 && newest {
		w = b.adopt(serverLimit, reset, now)
	}
	remaining, remErr := strconv.Atoi(h.Get(headerRateLimitRemaining))
	if newest && limErr == nil && remErr == nil && remaining >= 0 && !reset.IsZero() {
		b.calibrate(w, serverLimit-remaining, remaining, reset, sent)
	}
	if status != http.StatusTooManyRequests {
		return
	}
	until := reset
	if ra := RetryAfter(h, now); !ra.IsZero() && ra.After(until) {
		until = ra
	}
	if until.IsZero() {
		// A 429 with no hint: wait one full window.
		until = now.Add(w.per)
	}
	if until.After(b.paused) {
		b.paused = until
	}
}

// calibrate applies an answer's count to the budget: the server had counted
// used requests of w's period up to the one sent at sent, and had remaining
// left until reset (b.mu held).
func (b *Budget) calibrate(w *window, used, remaining int, reset, sent time.Time) {
	if used <= w.grantedBetween(sent.Add(-w.per), sent) {
		b.cal = calibration{} // the local count is right
		return
	}
	// Grants after the request were not in the server's count yet.
	after := 0
	longest := b.windows[0]
	for _, o := range b.windows {
		if len(o.ring) > len(longest.ring) {
			longest = o
		}
	}
	for i := longest.count - 1; i >= 0; i-- {
		if !longest.ring[(longest.head+i)%len(longest.ring)].After(sent) {
			break
		}
		after++
	}
	if remaining-after <= 0 {
		b.cal = calibration{}
		if reset.After(b.paused) {
			b.paused = reset
		}
		return
	}
	b.cal = calibration{reset: reset, base: b.granted - int64(after), left: remaining}
}

// adopt applies an announced limit to the window its reset implies and
// returns that window (b.mu held).
func (b *Budget) adopt(limit int, reset, now time.Time) *window {
	per := time.Second
	if !reset.IsZero() && reset.Sub(now) > 2*time.Second {
		per = time.Minute
	}
	for _, w := range b.windows {
		if w.per == per {
			w.limit = min(limit, w.ceiling)
			return w
		}
	}
	w := b.newWindowFrom(limit, per, now)
	b.windows = append(b.windows, w)
	return w
}

// newWindowFrom returns a window of limit per per that starts with the
// grants already made in its period (b.mu held).
func (b *Budget) newWindowFrom(limit int, per time.Duration, now time.Time) *window {
	w := newWindow(limit, per)
	base := b.windows[0]
	for i := 0; i < base.count; i++ {
		if g := base.ring[(base.head+i)%len(base.ring)]; g.After(now.Add(-per)) {
			w.push(g)
		}
	}
	return w
}

// grantedBetween counts the grants in (from, to] (b.mu held). The ring
// holds them in the order they were granted, so two binary searches find
// the bounds (a window at a high limit holds thousands of grants, and every
// answer counts them).
func (w *window) grantedBetween(from, to time.Time) int {
	at := func(i int) time.Time { return w.ring[(w.head+i)%len(w.ring)] }
	first := sort.Search(w.count, func(i int) bool { return at(i).After(from) })
	last := sort.Search(w.count, func(i int) bool { return at(i).After(to) })
	return max(last-first, 0)
}

// The RateLimit-* header names as net/http keys them (canonical), so that
// reading them does not canonicalise them again (two allocations a read).
const (
	headerRateLimitLimit     = "Ratelimit-Limit"
	headerRateLimitRemaining = "Ratelimit-Remaining"
	headerRateLimitReset     = "Ratelimit-Reset"
)

// ResetTime parses RateLimit-Reset: a unix timestamp, or a number of seconds
// from now when the value is below 10^9. It returns the zero time when absent.
func ResetTime(h http.Header, now time.Time) time.Time {
	v, err := strconv.ParseInt(h.Get(headerRateLimitReset), 10, 64)
	if err != nil || v < 0 {
		return time.Time{}
	}
	if v < 1e9 {
		return now.Add(time.Duration(v) * time.Second)
	}
	return time.Unix(v, 0)
}

// maxWaitSeconds is the longest wait a time.Duration holds, in seconds.
const maxWaitSeconds = math.MaxInt64 / 1_000_000_000

// RetryAfter parses Retry-After, in seconds or as an HTTP date. It returns
// the zero time when absent or unparsable (a number of seconds no
// time.Duration holds included).
func RetryAfter(h http.Header, now time.Time) time.Time {
	v := h.Get("Retry-After")
	if v == "" {
		return time.Time{}
	}
	if s, err := strconv.ParseInt(v, 10, 64); err == nil {
		if s > maxWaitSeconds {
			return time.Time{}
		}
		return now.Add(time.Duration(max(s, 0)) * time.Second)
	}
	if t, err := http.ParseTime(v); err == nil {
		return t
	}
	return time.Time{}
}

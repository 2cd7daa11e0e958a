// Package workers calls API Particulier under budgets: a strict per-token
// rate limit fed by the API's RateLimit-* headers, a retry policy built from
// the operator's error catalogue, the client of each check, and the Pool that
// consumes job messages and produces results.
package workers

import (
	"context"
	"net/http"
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
//     per/100. Timers fire late by a variable amount; checking actual times
//     with a margin keeps jitter from squeezing limit+1 requests into one
//     window as seen by the server.
//
// A pause (after a 429 or RateLimit-Remaining: 0) holds every grant until it
// ends. The zero value is not usable; build one with NewBudget. A Budget is
// safe for concurrent use. Time is injected so tests use a fake clock.
type Budget struct {
	mu      sync.Mutex
	ceiling int // configured limit; never exceeded
	limit   int // current limit, lowered by RateLimit-Limit
	per     time.Duration
	now     func() time.Time
	ring    []time.Time // actual grant times, oldest at head; 4 windows long
	head    int
	count   int
	next    time.Time // next pacing slot
	paused  time.Time
}

// MaxLimit is the largest limit a Budget accepts (it keeps 4 × limit grant
// times); larger limits are clamped.
const MaxLimit = 1_000_000

// NewBudget returns a budget of limit requests per period per. limit <= 0
// means 20, per <= 0 means one second, now nil means time.Now.
func NewBudget(limit int, per time.Duration, now func() time.Time) *Budget {
	if limit <= 0 {
		limit = 20
	}
	limit = min(limit, MaxLimit)
	if per <= 0 {
		per = time.Second
	}
	if now == nil {
		now = time.Now
	}
	// The ring holds more than one window of grants, so that an answer
	// arriving seconds later can still count the grants of its request's
	// window (Observe).
	return &Budget{ceiling: limit, limit: limit, per: per, now: now, ring: make([]time.Time, 4*limit)}
}

// Limit returns the current limit.
func (b *Budget) Limit() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.limit
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

// TryGrant grants a request now and returns (0, true), or returns how long
// to wait before asking again and false.
func (b *Budget) TryGrant() (time.Duration, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	now := b.now()
	interval := b.per / time.Duration(b.limit)
	slot := b.next
	if slot.Before(now.Add(-interval)) {
		// Idle: start a new grid now rather than catch up on missed slots.
		slot = now
	}
	earliest := slot
	if b.paused.After(earliest) {
		earliest = b.paused
	}
	if b.count >= b.limit {
		oldest := b.ring[(b.head+b.count-b.limit)%len(b.ring)]
		if t := oldest.Add(b.per + b.per/100); t.After(earliest) {
			earliest = t
		}
	}
	if now.Before(earliest) {
		return earliest.Sub(now), false
	}
	b.push(now)
	b.next = earliest.Add(interval)
	return 0, true
}

// push records a grant at t, keeping the last len(ring) grants.
func (b *Budget) push(t time.Time) {
	if b.count < len(b.ring) {
		b.ring[(b.head+b.count)%len(b.ring)] = t
		b.count++
		return
	}
	b.ring[b.head] = t
	b.head = (b.head + 1) % len(b.ring)
}

// Wait blocks until a request may be sent and returns nil, or returns
// ctx.Err() if ctx ends first.
func (b *Budget) Wait(ctx context.Context) error {
	for {
		d, ok := b.TryGrant()
		if ok {
			return ctx.Err()
		}
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
}

// Observe adopts what a response announces. A RateLimit-Limit below the
// current limit is applied at once (the configured ceiling is never raised).
// A 429 pauses every grant until RateLimit-Reset (a unix time, or seconds
// when below 10^9) or Retry-After (seconds or an HTTP date), whichever is
// later. RateLimit-Remaining: 0 pauses until the reset too, but only when the
// server counts more requests than this budget granted in the last period:
// then another client shares the token. When this budget is the only client,
// its own pacing already holds the limit, and pausing on every "0" a
// saturated sliding-window server announces would waste the budget. sent is
// when the request was granted (the zero time: now).
func (b *Budget) Observe(status int, h http.Header, sent time.Time) {
	if h == nil {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	now := b.now()
	if v, err := strconv.Atoi(h.Get("RateLimit-Limit")); err == nil && v > 0 && v < b.limit {
		b.limit = v
	}
	remaining, remErr := strconv.Atoi(h.Get("RateLimit-Remaining"))
	if status != http.StatusTooManyRequests {
		if remErr != nil || remaining > 0 {
			return
		}
		if sent.IsZero() {
			sent = now
		}
		serverLimit, err := strconv.Atoi(h.Get("RateLimit-Limit"))
		if err == nil && serverLimit <= b.grantedBetween(sent.Add(-b.per), sent) {
			return
		}
	}
	until := ResetTime(h, now)
	if status == http.StatusTooManyRequests {
		if ra := RetryAfter(h, now); !ra.IsZero() && ra.After(until) {
			until = ra
		}
		if until.IsZero() {
			// A 429 with no hint: wait one full window.
			until = now.Add(b.per)
		}
	}
	if until.After(b.paused) {
		b.paused = until
	}
}

// grantedBetween counts the grants in (from, to] (b.mu held).
func (b *Budget) grantedBetween(from, to time.Time) int {
	n := 0
	for i := 0; i < b.count; i++ {
		if g := b.ring[(b.head+i)%len(b.ring)]; g.After(from) && !g.After(to) {
			n++
		}
	}
	return n
}

// ResetTime parses RateLimit-Reset: a unix timestamp, or a number of seconds
// from now when the value is below 10^9. It returns the zero time when absent.
func ResetTime(h http.Header, now time.Time) time.Time {
	v, err := strconv.ParseInt(h.Get("RateLimit-Reset"), 10, 64)
	if err != nil || v < 0 {
		return time.Time{}
	}
	if v < 1e9 {
		return now.Add(time.Duration(v) * time.Second)
	}
	return time.Unix(v, 0)
}

// RetryAfter parses Retry-After, in seconds or as an HTTP date. It returns
// the zero time when absent or unparsable.
func RetryAfter(h http.Header, now time.Time) time.Time {
	v := h.Get("Retry-After")
	if v == "" {
		return time.Time{}
	}
	if s, err := strconv.Atoi(v); err == nil {
		if s < 0 {
			s = 0
		}
		return now.Add(time.Duration(s) * time.Second)
	}
	if t, err := http.ParseTime(v); err == nil {
		return t
	}
	return time.Time{}
}

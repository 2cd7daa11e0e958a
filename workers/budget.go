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

// Budget is a strict sliding-window rate limiter: it never grants more than
// Limit() requests in any window of length per, whatever the alignment of the
// server's own window (fixed or sliding). It keeps the times of the last
// Limit() grants in a ring; the next grant is allowed at the later of now and
// oldest+per. A pause (after a 429 or RateLimit-Remaining: 0) holds every
// grant until it ends.
//
// The zero value is not usable; build one with NewBudget. A Budget is safe
// for concurrent use. Time is injected so tests use a fake clock.
type Budget struct {
	mu      sync.Mutex
	ceiling int // configured limit; never exceeded
	limit   int // current limit, lowered by RateLimit-Limit
	per     time.Duration
	now     func() time.Time
	ring    []time.Time // grant times, oldest at head
	head    int
	count   int
	paused  time.Time
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
	return &Budget{ceiling: limit, limit: limit, per: per, now: now, ring: make([]time.Time, limit)}
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

// Reserve books the next slot and returns how long to wait before using it.
func (b *Budget) Reserve() time.Duration {
	b.mu.Lock()
	defer b.mu.Unlock()
	now := b.now()
	at := now
	if b.paused.After(at) {
		at = b.paused
	}
	if b.count >= b.limit {
		// The grant limit-back must be at least per before this one.
		oldest := b.ring[(b.head+b.count-b.limit)%len(b.ring)]
		if t := oldest.Add(b.per); t.After(at) {
			at = t
		}
	}
	b.push(at)
	return at.Sub(now)
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
// ctx.Err() if ctx ends first. A slot given up this way stays counted, which
// only makes the budget stricter.
func (b *Budget) Wait(ctx context.Context) error {
	d := b.Reserve()
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// Observe adopts what a response announces. A RateLimit-Limit below the
// current limit is applied at once (the configured ceiling is never raised).
// A 429, or RateLimit-Remaining: 0, pauses every grant until RateLimit-Reset
// (a unix time, or seconds when below 10^9) or Retry-After (seconds or an
// HTTP date), whichever is later.
func (b *Budget) Observe(status int, h http.Header) {
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
	if status != http.StatusTooManyRequests && (remErr != nil || remaining > 0) {
		return
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

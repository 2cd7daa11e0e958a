package workers

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"time"
)

// Breaker is a circuit breaker for one provider: after Threshold provider
// failures in a row (502, 503, 504 or no answer), it opens and every call
// waits; the first waiter probes the provider's ping route (free and not
// rate-limited) every ProbeEvery until it answers ok, then the breaker
// closes. An outage of one provider thus neither burns the others' budget
// nor turns rows into errors, and recovery is probed, not hammered.
// Safe for concurrent use.
type Breaker struct {
	// Ping reports whether the provider is up. An error wrapping
	// ErrBanRisk ends the waits with that error.
	Ping func(ctx context.Context) (bool, error)
	// Threshold is the failures in a row that open the breaker. Default: 5.
	Threshold int
	// ProbeEvery is the pause between two probes. Default: 5s.
	ProbeEvery time.Duration

	mu       sync.Mutex
	failures int
	open     bool
	probing  bool
	changed  chan struct{} // closed when the breaker closes
}

// providerFailure reports whether status says the provider side failed.
func providerFailure(status int) bool {
	return status == 0 || status == http.StatusBadGateway || status == http.StatusServiceUnavailable ||
		status == http.StatusGatewayTimeout
}

// Record notes a call's HTTP status (0: no answer) and reports whether the
// breaker is open after it.
func (b *Breaker) Record(status int) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !providerFailure(status) {
		b.failures = 0
		return b.open
	}
	b.failures++
	threshold := b.Threshold
	if threshold <= 0 {
		threshold = 5
	}
	if b.failures >= threshold && !b.open {
		b.open = true
		b.changed = make(chan struct{})
	}
	return b.open
}

// Open reports whether calls are held.
func (b *Breaker) Open() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.open
}

// Wait returns at once when the breaker is closed; otherwise it blocks until
// a probe finds the provider up, or ctx ends (then it returns ctx.Err()).
func (b *Breaker) Wait(ctx context.Context) error {
	for {
		b.mu.Lock()
		if !b.open {
			b.mu.Unlock()
			return nil
		}
		if b.probing {
			ch := b.changed
			b.mu.Unlock()
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-ch:
			}
			continue
		}
		b.probing = true
		b.mu.Unlock()
		err := b.probe(ctx)
		b.mu.Lock()
		b.probing = false
		if err == nil {
			b.open, b.failures = false, 0
			close(b.changed)
		}
		b.mu.Unlock()
		if err != nil {
			return err
		}
	}
}

// probe pings until the provider is up or ctx ends.
func (b *Breaker) probe(ctx context.Context) error {
	every := b.ProbeEvery
	if every <= 0 {
		every = 5 * time.Second
	}
	for {
		t := time.NewTimer(every)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
		up, err := b.Ping(ctx)
		if errors.Is(err, ErrBanRisk) {
			return err
		}
		if up {
			return nil
		}
	}
}

package workers

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"sync"
	"time"
)

// TokenLeases is where worker pools take turns with a token, so that one
// pool at a time calls with it whatever the partitions' owners
// (*ledger.Store). key is the budget key (BudgetKey.String): a token's
// hash, never the token, or a habilitation's id, whose tokens take turns.
type TokenLeases interface {
	// LeaseToken gives holder the lease until until unless another
	// holder's runs at now, and returns the lease as it was before.
	LeaseToken(ctx context.Context, key, holder string, now, until time.Time) (prevHolder string, prevUntil time.Time, ok bool, err error)
	// ReleaseToken ends holder's lease at at, its last call.
	ReleaseToken(ctx context.Context, key, holder string, at time.Time) error
}

const (
	// leaseTerm is how long a lease is taken or renewed for: what a pool
	// that stops without releasing it (killed) makes the next one wait.
	leaseTerm = 2 * time.Second
	// leaseRenewal is how much of its lease a pool keeps ahead: it renews
	// when less is left.
	leaseRenewal = time.Second
	// leaseRetry is added to another holder's end before trying again.
	leaseRetry = 50 * time.Millisecond
)

// tokenLease is a pool's view of one token's lease.
type tokenLease struct {
	mu  sync.Mutex
	key string // hex of the token key
	// until is the end of the lease this pool holds (zero: none yet).
	until time.Time
	// otherUntil is the end of another holder's lease, when one was found.
	otherUntil time.Time
	// takenOver is when calls could start after the pool last took the
	// lease from another holder (zero: never).
	takenOver time.Time
}

// lastTakeover returns when calls could start after the pool last took the
// lease from another holder, or the zero time.
func (l *tokenLease) lastTakeover() time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.takenOver
}

// holds reports whether the pool's lease runs at now.
func (l *tokenLease) holds(now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return now.Before(l.until)
}

// holderID returns this pool's lease holder name, random per pool.
func (p *Pool) holderID() string {
	p.holderOnce.Do(func() {
		var b [8]byte
		if _, err := rand.Read(b[:]); err != nil {
			panic(err) // crypto/rand never fails on supported systems
		}
		p.holder = "pool-" + hex.EncodeToString(b[:])
	})
	return p.holder
}

// holdLease returns once the pool holds ts's lease with at least
// leaseRenewal left, taking or renewing it. While another pool holds it,
// the job waits parked (its call slot goes to other tenants' jobs).
func (p *Pool) holdLease(ctx context.Context, log jobLog, ts *tokenState, js *jobSlots) error {
	for {
		wait, took, err := p.renewLease(ctx, ts)
		if took.from != "" {
			// Rare (a rebalance, a replica stopped): worth a line, to
			// follow a token's calls from one worker to another.
			log.Info().Str("holder", p.holderID()).Str("previous_holder", took.from).
				Str("previous_until", took.until.Format(time.RFC3339Nano)).Str("calls_from", took.pause.Format(time.RFC3339Nano)).
				Msg("took the token's lease from another worker")
		}
		if err != nil || wait == 0 {
			return err
		}
		log.Debug().Dur("wait", wait).Msg("another worker calls with this token: waiting for its lease to end")
		if err := js.park(ctx, func() error { return sleepUntil(ctx, p.now(), p.now().Add(wait)) }); err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
	}
}

// takeover is a lease taken from another holder: its name, the end of its
// lease, and when this pool's calls may start.
type takeover struct {
	from         string
	until, pause time.Time
}

// renewLease takes or renews ts's lease when less than leaseRenewal is
// left. It returns 0 when the pool holds it, else how long to wait before
// trying again, and the takeover when it took the lease from another pool.
func (p *Pool) renewLease(ctx context.Context, ts *tokenState) (time.Duration, takeover, error) {
	l := &ts.lease
	l.mu.Lock()
	defer l.mu.Unlock()
	now := p.now()
	if l.until.Sub(now) > leaseRenewal {
		return 0, takeover{}, nil
	}
	if now.Before(l.otherUntil) {
		return l.otherUntil.Sub(now) + leaseRetry, takeover{}, nil
	}
	until := now.Add(leaseTerm)
	prevHolder, prevUntil, ok, err := p.Leases.LeaseToken(ctx, l.key, p.holderID(), now, until)
	if err != nil {
		return 0, takeover{}, fmt.Errorf("work: token lease: %w", err)
	}
	if !ok {
		l.otherUntil = prevUntil
		return max(prevUntil.Sub(now), 0) + leaseRetry, takeover{}, nil
	}
	var took takeover
	if prevHolder != "" && prevHolder != p.holderID() {
		// The last holder may have called until its lease ended: the
		// token's next second is left to those calls.
		took = takeover{from: prevHolder, until: prevUntil, pause: prevUntil.Add(time.Second + time.Second/100)}
		ts.budget.PauseUntil(took.pause)
		l.takenOver = took.pause
	}
	l.until = until
	ts.budget.SetGate(until, leaseRenewal)
	return 0, took, nil
}

// releaseLeases ends the leases the pool holds, at now: every call it made
// was sent before.
func (p *Pool) releaseLeases(ctx context.Context) error {
	if p.Leases == nil {
		return nil
	}
	p.mu.Lock()
	states := make([]*tokenState, 0, len(p.tokens))
	for _, ts := range p.tokens {
		states = append(states, ts)
	}
	p.mu.Unlock()
	now := p.now()
	for _, ts := range states {
		ts.lease.mu.Lock()
		held := ts.lease.until.After(now)
		if held {
			ts.budget.SetGate(now, 0)
			ts.lease.until = now
		}
		ts.lease.mu.Unlock()
		if !held {
			continue
		}
		if err := p.Leases.ReleaseToken(ctx, ts.lease.key, p.holderID(), now); err != nil {
			return err
		}
	}
	return nil
}

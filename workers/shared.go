package workers

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// SlotLeaser hands out units of the time slots of a budget shared by
// several processes; ledger.Store implements it on SQLite and PostgreSQL.
type SlotLeaser interface {
	LeaseSlot(ctx context.Context, scope string, slot int64, want, limit int) (int, error)
}

// SharedLimit caps the calls of every process sharing a SlotLeaser and a
// Scope (an egress IP, say) at Limit per Per in any sliding window, so that
// worker replicas behind one IP never exceed its budget together. Time is
// cut into slots of Slot; slot i may hold floor((i+1)L/(n+1)) -
// floor(iL/(n+1)) calls, n being the slots in Per: any n+1 consecutive
// slots, which cover every window of length Per, hold exactly Limit (60/61
// of the budget usable, 98.4 % for a minute in one-second slots). Each
// call takes its unit from the leaser, one at a time, so that none is
// wasted. Safe for concurrent use.
type SharedLimit struct {
	Leaser SlotLeaser
	// Scope names the shared budget, e.g. "ip:default".
	Scope string
	// Limit is the calls allowed per Per, all processes together.
	Limit int
	// Per is the window. Default: one minute.
	Per time.Duration
	// Slot is the slot length. Default: one second.
	Slot time.Duration
	// Now is the clock. Default: time.Now.
	Now func() time.Time

	mu    sync.Mutex
	spent int64 // the last slot found full
}

func (s *SharedLimit) durations() (per, slot time.Duration) {
	per, slot = s.Per, s.Slot
	if per <= 0 {
		per = time.Minute
	}
	if slot <= 0 {
		slot = time.Second
	}
	return per, slot
}

// capacity is how many calls slot i may hold.
func (s *SharedLimit) capacity(i int64) int {
	per, slot := s.durations()
	n := int64(per/slot) + 1
	l := int64(s.Limit)
	return int((i+1)*l/n - i*l/n)
}

// Wait blocks until a unit of the current slot is leased, waiting for the
// next slot while the current one is full, and returns the slot's end: the
// call must leave before it, or the slots' sums no longer hold (a unit not
// used by then is lost, which is safe). It returns ctx's error when ctx
// ends, or the leaser's.
func (s *SharedLimit) Wait(ctx context.Context) (until time.Time, err error) {
	_, slotLen := s.durations()
	for {
		now := time.Now()
		if s.Now != nil {
			now = s.Now()
		}
		slot := now.UnixNano() / int64(slotLen)
		s.mu.Lock()
		full := s.spent == slot
		s.mu.Unlock()
		if !full {
			got, err := s.Leaser.LeaseSlot(ctx, s.Scope, slot, 1, s.capacity(slot))
			if err != nil {
				return time.Time{}, fmt.Errorf("work: shared budget %s: %w", s.Scope, err)
			}
			if got > 0 {
				return time.Unix(0, (slot+1)*int64(slotLen)), nil
			}
			s.mu.Lock()
			s.spent = slot
			s.mu.Unlock()
		}
		next := time.Unix(0, (slot+1)*int64(slotLen))
		t := time.NewTimer(next.Sub(now))
		select {
		case <-ctx.Done():
			t.Stop()
			return time.Time{}, ctx.Err()
		case <-t.C:
		}
	}
}

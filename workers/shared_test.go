package workers

import (
	"context"
	"sync"
	"testing"
	"time"
)

// memLeaser is an in-memory SlotLeaser.
type memLeaser struct {
	mu   sync.Mutex
	used map[int64]int
}

func (m *memLeaser) LeaseSlot(_ context.Context, _ string, slot int64, want, limit int) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.used == nil {
		m.used = map[int64]int{}
	}
	got := min(want, limit-m.used[slot])
	if got <= 0 {
		return 0, nil
	}
	m.used[slot] += got
	return got, nil
}

func TestSharedLimit_CapacityHoldsInAnyWindow(t *testing.T) {
	for _, limit := range []int{1000, 250, 60, 7} {
		s := &SharedLimit{Limit: limit}
		// Any 61 consecutive one-second slots hold exactly the limit; 60
		// (a minute) hold at least 98 % of it when the limit allows.
		for start := int64(1_790_000_000); start < 1_790_000_000+200; start++ {
			sum61, sum60 := 0, 0
			for i := start; i < start+61; i++ {
				sum61 += s.capacity(i)
				if i < start+60 {
					sum60 += s.capacity(i)
				}
			}
			if sum61 != limit {
				t.Fatalf("limit %d: slots %d..+61 hold %d", limit, start, sum61)
			}
			if limit >= 100 && float64(sum60) < 0.98*float64(limit) {
				t.Fatalf("limit %d: a minute holds %d", limit, sum60)
			}
		}
	}
}

// TestSharedLimit_TwoProcesses: two limits sharing one leaser (two worker
// replicas behind one IP) never give out more than the limit in any
// sliding minute, with a fake clock advancing 10 ms per call.
func TestSharedLimit_TwoProcesses(t *testing.T) {
	var mu sync.Mutex
	now := time.Date(2026, 9, 14, 8, 0, 0, 0, time.UTC)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	leaser := &memLeaser{}
	a := &SharedLimit{Leaser: leaser, Scope: "ip:x", Limit: 100, Now: clock}
	b := &SharedLimit{Leaser: leaser, Scope: "ip:x", Limit: 100, Now: clock}
	var grants []time.Time
	ctx := context.Background()
	for len(grants) < 400 {
		for _, s := range []*SharedLimit{a, b} {
			// Try without blocking: a full slot is skipped by moving the
			// fake clock, as the real Wait would sleep.
			slot := clock().UnixNano() / int64(time.Second)
			got, _ := leaser.LeaseSlot(ctx, s.Scope, slot, 1, s.capacity(slot))
			if got > 0 {
				grants = append(grants, clock())
			}
		}
		mu.Lock()
		now = now.Add(10 * time.Millisecond)
		mu.Unlock()
	}
	for i := range grants {
		n := 0
		for j := i; j < len(grants) && grants[j].Sub(grants[i]) < time.Minute; j++ {
			n++
		}
		if n > 100 {
			t.Fatalf("%d grants in the minute from %v", n, grants[i])
		}
	}
}

func TestSharedLimit_WaitsForTheNextSlot(t *testing.T) {
	leaser := &memLeaser{}
	s := &SharedLimit{Leaser: leaser, Scope: "ip:x", Limit: 61, Per: time.Minute, Slot: 20 * time.Millisecond}
	// 61 per minute in 20 ms slots: slot capacities are mostly 0, so Wait
	// must move on to later slots rather than fail.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for i := 0; i < 3; i++ {
		before := time.Now()
		until, err := s.Wait(ctx)
		if err != nil {
			t.Fatal(err)
		}
		// The unit is its slot's: usable until the slot ends, which had
		// started when Wait returned.
		if until.UnixNano()%int64(s.Slot) != 0 || !until.After(before) || until.Add(-s.Slot).After(time.Now()) {
			t.Fatalf("unit usable until %v (asked at %v), want the end of the current 20 ms slot", until, before)
		}
	}
}

// stampLeaser is a memLeaser that notes when it gives each unit.
type stampLeaser struct {
	memLeaser
	mu     sync.Mutex
	leased []time.Time
}

func (s *stampLeaser) LeaseSlot(ctx context.Context, scope string, slot int64, want, limit int) (int, error) {
	got, err := s.memLeaser.LeaseSlot(ctx, scope, slot, want, limit)
	if got > 0 {
		s.mu.Lock()
		s.leased = append(s.leased, time.Now())
		s.mu.Unlock()
	}
	return got, err
}

// TestPool_GrantTakesTheTokenLast: with a shared IP budget, the token's
// budget grants each request after its shared unit is leased, so that
// waiting for a unit never sends a request later than the token's budget
// counted it. (Granted first, one token's requests piled up behind a full
// slot and left together when the next began: 33 in one second.)
func TestPool_GrantTakesTheTokenLast(t *testing.T) {
	leaser := &stampLeaser{}
	// 610 a minute in 100 ms slots: one unit a slot, at the slot's start.
	p := &Pool{SharedIP: &SharedLimit{Leaser: leaser, Scope: "ip:x", Limit: 610, Slot: 100 * time.Millisecond}}
	ts := &tokenState{budget: NewBudget(20, time.Second, nil), turn: make(chan struct{}, 1)}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range 2 {
				if err := p.grant(ctx, ts, nil); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	grants := ringTimes(ts.budget)
	if len(grants) != 8 || len(leaser.leased) != 8 {
		t.Fatalf("%d grants for %d units, want 8 and 8", len(grants), len(leaser.leased))
	}
	for i := range grants {
		if grants[i].Before(leaser.leased[i]) {
			t.Fatalf("request %d granted by the token's budget %v before its shared unit", i, leaser.leased[i].Sub(grants[i]))
		}
	}
}

// pausingLeaser pauses a budget when it gives its first unit, as a 429
// answered to another call would between the unit and the grant.
type pausingLeaser struct {
	stampLeaser
	budget *Budget
	pause  time.Duration
	once   sync.Once
}

func (p *pausingLeaser) LeaseSlot(ctx context.Context, scope string, slot int64, want, limit int) (int, error) {
	got, err := p.stampLeaser.LeaseSlot(ctx, scope, slot, want, limit)
	if got > 0 {
		p.once.Do(func() { p.budget.PauseUntil(time.Now().Add(p.pause)) })
	}
	return got, err
}

// TestPool_GrantLosesAUnitItCannotSpend: a shared unit is spent before its
// slot ends or not at all. When the token is paused past the slot's end
// after the unit was taken, the unit is left and the call takes one of a
// slot after the pause.
func TestPool_GrantLosesAUnitItCannotSpend(t *testing.T) {
	budget := NewBudget(20, time.Second, nil)
	leaser := &pausingLeaser{budget: budget, pause: 300 * time.Millisecond}
	p := &Pool{SharedIP: &SharedLimit{Leaser: leaser, Scope: "ip:x", Limit: 6100, Slot: 100 * time.Millisecond}}
	ts := &tokenState{budget: budget, turn: make(chan struct{}, 1)}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := p.grant(ctx, ts, nil); err != nil {
		t.Fatal(err)
	}
	grants := ringTimes(budget)
	if len(leaser.leased) != 2 || len(grants) != 1 {
		t.Fatalf("%d units taken, %d grants; want 2 units (the first lost) and 1 grant", len(leaser.leased), len(grants))
	}
	if lost, used := leaser.leased[0], leaser.leased[1]; used.Sub(lost) < 300*time.Millisecond || grants[0].Before(used) {
		t.Fatalf("second unit %v after the first, granted %v after it; want after the 300 ms pause, then granted", used.Sub(lost), grants[0].Sub(used))
	}
}

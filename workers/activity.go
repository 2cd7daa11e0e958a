package workers

import (
	"context"
	"slices"
	"sync"
	"time"

	"github.com/rs/zerolog"
)

// ActivityLog records that batches are being worked on; *ledger.Store
// implements it. The watchdog reports a batch no worker held for a while.
type ActivityLog interface {
	Active(ctx context.Context, batchIDs []string) error
}

// heldBatches counts, per batch, the jobs the pool is processing: calling,
// or waiting for a budget, a breaker or a run window.
type heldBatches struct {
	mu sync.Mutex
	n  map[string]int
}

func (h *heldBatches) add(id string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.n == nil {
		h.n = map[string]int{}
	}
	h.n[id]++
}

func (h *heldBatches) done(id string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.n[id]--; h.n[id] <= 0 {
		delete(h.n, id)
	}
}

func (h *heldBatches) ids() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	ids := make([]string, 0, len(h.n))
	for id := range h.n {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

// heartbeat tells the activity log, every interval until ctx ends, which
// batches the pool holds jobs of.
func (p *Pool) heartbeat(ctx context.Context, log zerolog.Logger) {
	if p.Activity == nil {
		return
	}
	every := p.ActivityEvery
	if every <= 0 {
		every = 30 * time.Second
	}
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		if ids := p.held.ids(); len(ids) > 0 {
			if err := p.Activity.Active(ctx, ids); err != nil && ctx.Err() == nil {
				log.Warn().Err(err).Msg("batch activity not recorded")
			}
		}
	}
}

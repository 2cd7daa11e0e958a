package pipeline

import (
	"context"
	"fmt"
	"time"

	"github.com/rs/zerolog"

	"github.com/apbatch/apbatch/pipeline/ledger"
)

// DefaultStallAfter is how long a batch may go without progress before the
// watchdog reports it stalled.
const DefaultStallAfter = 15 * time.Minute

// Stalled returns the unfinished batches without progress for stallAfter
// (DefaultStallAfter when 0), by id, each with the reason, in French. A
// batch progresses when it is split, when a part of its results is
// written, and while a worker holds one of its jobs, calling or waiting
// for a budget, a breaker or a run window.
func Stalled(ctx context.Context, store *ledger.Store, now time.Time, stallAfter time.Duration) (map[string]string, error) {
	if stallAfter <= 0 {
		stallAfter = DefaultStallAfter
	}
	bs, err := store.Stalled(ctx, now.Add(-stallAfter))
	if err != nil {
		return nil, err
	}
	out := make(map[string]string, len(bs))
	for _, b := range bs {
		out[b.ID] = StallReason(b, stallAfter)
	}
	return out, nil
}

// StallReason says why b has not progressed for idle and what to do.
func StallReason(b ledger.Batch, idle time.Duration) string {
	since := idle.Round(time.Minute).String()
	if b.State == ledger.StateCreated {
		return fmt.Sprintf("aucun progrès depuis plus de %s : le fichier n'est pas découpé ; vérifiez que le rôle ingest tourne (apbatch serve), "+
			"ou abandonnez le lot avec apbatch cancel %s", since, b.ID)
	}
	return fmt.Sprintf("aucun appel ni résultat depuis plus de %s : aucun worker ne traite ce lot ; vérifiez que les rôles work et write tournent (apbatch serve), "+
		"ou abandonnez le lot avec apbatch cancel %s", since, b.ID)
}

// watchdog logs, once per batch and process, the batches Stalled finds.
type watchdog struct {
	after  time.Duration
	every  time.Duration
	last   time.Time
	logged map[string]bool
}

func (d *watchdog) check(ctx context.Context, store *ledger.Store, log zerolog.Logger, now time.Time) error {
	if d.after < 0 || now.Sub(d.last) < d.every {
		return nil
	}
	d.last = now
	stalled, err := Stalled(ctx, store, now, d.after)
	if err != nil {
		return err
	}
	if d.logged == nil {
		d.logged = map[string]bool{}
	}
	for id, reason := range stalled {
		if !d.logged[id] {
			d.logged[id] = true
			log.Error().Str("component", "watchdog").Str("batch_id", id).Str("reason", reason).Msg("batch stalled")
		}
	}
	return nil
}

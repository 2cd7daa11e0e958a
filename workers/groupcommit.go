package workers

import (
	"context"
	"sync"
	"time"

	"github.com/apbatch/apbatch/schemas"
)

// GroupCommit batches the audit records of concurrent jobs into few writes:
// a caller's RecordCalls returns once a write holding its records is done
// (so durability is unchanged), and the caller that finds no write in
// progress does the writing for everyone waiting. It starts no goroutine.
type GroupCommit struct {
	// Log is where batches are written.
	Log AuditLog
	// MaxBatch bounds one write. Default: 1000 records.
	MaxBatch int
	// Linger is how long the writer waits for more records before a
	// write, so that concurrent jobs share it: fewer, larger transactions
	// (each costs the database a commit). Default: 0 (write at once).
	Linger time.Duration

	mu       sync.Mutex
	pending  []schemas.CallRecord
	waiters  []chan error
	flushing bool
}

// RecordCalls queues calls and waits for the write that holds them.
func (g *GroupCommit) RecordCalls(ctx context.Context, calls []schemas.CallRecord) error {
	done := make(chan error, 1)
	g.mu.Lock()
	g.pending = append(g.pending, calls...)
	g.waiters = append(g.waiters, done)
	if g.flushing {
		g.mu.Unlock()
		select {
		case err := <-done:
			return err
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	g.flushing = true
	if g.Linger > 0 {
		g.mu.Unlock()
		t := time.NewTimer(g.Linger)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
		}
		g.mu.Lock()
	}
	for len(g.pending) > 0 {
		n := g.MaxBatch
		if n <= 0 {
			n = 1000
		}
		batch, waiters := g.pending, g.waiters
		if len(batch) > n {
			// Waiters are released only with the last part; any earlier
			// error is kept for them.
			batch = batch[:n]
			waiters = nil
			g.pending = g.pending[n:]
		} else {
			g.pending, g.waiters = nil, nil
		}
		g.mu.Unlock()
		err := g.Log.RecordCalls(ctx, batch)
		g.mu.Lock()
		if err != nil && waiters == nil {
			// Fail everyone still waiting: their batch may be incomplete.
			waiters, g.pending, g.waiters = g.waiters, nil, nil
		}
		for _, w := range waiters {
			w <- err
		}
	}
	g.flushing = false
	g.mu.Unlock()
	return <-done
}

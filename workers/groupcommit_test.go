package workers

import (
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/apbatch/apbatch/schemas"
)

// fakeAudit is a hand-written AuditLog counting writes.
type fakeAudit struct {
	mu     sync.Mutex
	writes int
	calls  []schemas.CallRecord
	fail   error
}

func (f *fakeAudit) RecordCalls(_ context.Context, calls []schemas.CallRecord) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.writes++
	if f.fail != nil {
		return f.fail
	}
	f.calls = append(f.calls, calls...)
	return nil
}

func TestGroupCommit(t *testing.T) {
	fa := &fakeAudit{}
	g := &GroupCommit{Log: fa, MaxBatch: 7}
	var wg sync.WaitGroup
	for i := 0; i < 200; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := g.RecordCalls(context.Background(), []schemas.CallRecord{{BatchID: "b", RowNumber: int64(i)}}); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if len(fa.calls) != 200 {
		t.Fatalf("%d records written, want 200", len(fa.calls))
	}
	if fa.writes >= 200 {
		t.Logf("no batching happened (%d writes); possible on an idle machine", fa.writes)
	}
	fa.fail = errors.New("disk full")
	if err := g.RecordCalls(context.Background(), []schemas.CallRecord{{}}); err == nil {
		t.Fatal("a failed write was acknowledged")
	}
}

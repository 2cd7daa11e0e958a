package workers

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestBreaker(t *testing.T) {
	var up atomic.Bool
	var pings atomic.Int32
	b := &Breaker{Threshold: 3, ProbeEvery: time.Millisecond, Ping: func(context.Context) (bool, error) {
		pings.Add(1)
		return up.Load(), nil
	}}
	for _, st := range []int{502, 504} {
		if b.Record(st) {
			t.Fatal("opened before the threshold")
		}
	}
	if b.Record(200) || b.Record(503) || b.Record(0) {
		t.Fatal("a success did not reset the count")
	}
	if !b.Record(502) {
		t.Fatal("not open after 3 failures in a row")
	}
	if b.Record(404) != true {
		t.Fatal("a final answer closed the breaker without a probe")
	}
	// Many waiters, one prober; all released when the ping says ok.
	var wg sync.WaitGroup
	released := make(chan struct{}, 10)
	for i := 0; i < 10; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := b.Wait(context.Background()); err == nil {
				released <- struct{}{}
			}
		}()
	}
	for pings.Load() < 3 {
		time.Sleep(time.Millisecond)
	}
	if len(released) != 0 {
		t.Fatal("waiters released while the provider is down")
	}
	up.Store(true)
	wg.Wait()
	if len(released) != 10 || b.Open() {
		t.Fatalf("%d released, open %v", len(released), b.Open())
	}
	// A cancelled wait returns the context's error.
	b.Record(0)
	b.Record(0)
	b.Record(0)
	up.Store(false)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := b.Wait(ctx); err == nil {
		t.Fatal("Wait ignored a cancelled context")
	}
}

package workers

import (
	"testing"
	"time"
)

func TestProgress_RateAndETA(t *testing.T) {
	start := time.Date(2026, 9, 14, 8, 0, 0, 0, time.UTC)
	now := start
	p := &Pool{Now: func() time.Time { return now }}
	// Town A answered 10 lookups a second for 40 s, town B 2 a second.
	for s := 0; s < 40; s++ {
		for i := 0; i < 10; i++ {
			p.progress.done("a", "batch-a", now)
		}
		for i := 0; i < 2; i++ {
			p.progress.done("b", "batch-b", now)
		}
		now = now.Add(time.Second)
	}
	now = now.Add(-time.Second) // at the last answers
	if p.Answered("batch-a") != 400 || p.Answered("batch-b") != 80 || p.Rate() != 12 {
		t.Fatalf("answered %d, %d, rate %v", p.Answered("batch-a"), p.Answered("batch-b"), p.Rate())
	}
	// Round-robin: B (12 left) is done once A has had 12 more too; A
	// (600 left) once B's 12 and its own 600 are answered, at 12/s.
	etas := p.ETAs(map[string]int64{"a": 600, "b": 12, "done": 0})
	if etas["b"] != 2*time.Second || etas["a"] != 51*time.Second || etas["done"] != 0 {
		t.Errorf("ETAs %v", etas)
	}
	// A town that stopped answering a minute ago has no rate any more.
	now = now.Add(time.Minute)
	if r := p.Rate(); r != 0 || len(p.ETAs(map[string]int64{"a": 1})) != 0 {
		t.Errorf("stale rate %v", r)
	}
}

package pipeline

import (
	"context"
	"testing"

	kafkago "github.com/segmentio/kafka-go"
)

type countingWriter struct{ msgs []kafkago.Message }

func (c *countingWriter) WriteMessages(_ context.Context, msgs ...kafkago.Message) error {
	c.msgs = append(c.msgs, msgs...)
	return nil
}

// TestBatcher_ResumesAfterProduced: a split resumed after a crash skips the
// jobs it had produced and records its progress after every write.
func TestBatcher_ResumesAfterProduced(t *testing.T) {
	w := &countingWriter{}
	b := newBatcher(w, 4)
	b.skip = 6
	var progress []int
	b.onFlush = func(_ context.Context, n int) error { progress = append(progress, n); return nil }
	ctx := context.Background()
	for i := 0; i < 15; i++ {
		if err := b.add(ctx, kafkago.Message{Offset: int64(i)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.flush(ctx); err != nil {
		t.Fatal(err)
	}
	if len(w.msgs) != 9 || w.msgs[0].Offset != 6 || b.sent != 15 {
		t.Fatalf("%d sent from %d, counted %d", len(w.msgs), w.msgs[0].Offset, b.sent)
	}
	if len(progress) != 3 || progress[0] != 10 || progress[2] != 15 {
		t.Fatalf("progress %v", progress)
	}
}

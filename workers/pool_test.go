package workers

import (
	"testing"

	kafkago "github.com/segmentio/kafka-go"
)

func TestAckTracker_CommitsOnlyContiguous(t *testing.T) {
	a := newAckTracker()
	msg := func(p int, off int64) kafkago.Message {
		return kafkago.Message{Topic: "jobs", Partition: p, Offset: off}
	}
	for off := int64(10); off < 15; off++ {
		a.fetched(msg(0, off))
	}
	a.fetched(msg(1, 3))
	if got := a.committable(); len(got) != 0 {
		t.Fatalf("nothing done yet, committable = %v", got)
	}
	a.done(msg(0, 11))
	a.done(msg(0, 12))
	if got := a.committable(); len(got) != 0 {
		t.Fatalf("offset 10 not done, committable = %v", got)
	}
	a.done(msg(0, 10))
	a.done(msg(1, 3))
	got := a.committable()
	want := map[int]int64{0: 12, 1: 3}
	if len(got) != 2 {
		t.Fatalf("committable = %v", got)
	}
	for _, m := range got {
		if want[m.Partition] != m.Offset {
			t.Fatalf("partition %d: commit %d, want %d", m.Partition, m.Offset, want[m.Partition])
		}
	}
	a.committed(got)
	a.done(msg(0, 14))
	if got := a.committable(); len(got) != 0 {
		t.Fatalf("13 not done, committable = %v", got)
	}
	a.done(msg(0, 13))
	if got := a.committable(); len(got) != 1 || got[0].Offset != 14 {
		t.Fatalf("committable = %v", got)
	}
}

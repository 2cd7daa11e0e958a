package workers

import (
	"context"
	"testing"
	"time"

	"github.com/apbatch/apbatch/schemas"
	"github.com/rs/zerolog"
	kafkago "github.com/segmentio/kafka-go"
)

func TestOffsetsEncoding(t *testing.T) {
	for _, tc := range []struct {
		offs []int64
		want string
	}{
		{nil, ""},
		{[]int64{7}, "7"},
		{[]int64{3, 4, 5, 6, 7, 9}, "3-7,9"},
		{[]int64{0, 2, 4, 5}, "0,2,4-5"},
	} {
		got := encodeOffsets(tc.offs)
		if got != tc.want {
			t.Errorf("encode %v = %q, want %q", tc.offs, got, tc.want)
		}
		ranges, err := decodeOffsets(got)
		if err != nil {
			t.Fatalf("decode %q: %v", got, err)
		}
		var back []int64
		for _, r := range ranges {
			for o := r.from; o <= r.to; o++ {
				back = append(back, o)
			}
		}
		if len(back) != len(tc.offs) {
			t.Errorf("round trip of %v gave %v", tc.offs, back)
		}
	}
	for _, bad := range []string{"x", "5-3", "-1", "1,,2", "3-"} {
		if _, err := decodeOffsets(bad); err == nil {
			t.Errorf("decode %q: no error", bad)
		}
	}
}

// answeredMem is an AnsweredLog in memory.
type answeredMem struct {
	base    map[int]int64
	offsets map[int]string
}

func (a *answeredMem) SaveAnswered(_ context.Context, _, _ string, p int, base int64, offsets string) error {
	a.base[p], a.offsets[p] = base, offsets
	return nil
}

func (a *answeredMem) Answered(_ context.Context, _, _ string, p int) (int64, string, error) {
	return a.base[p], a.offsets[p], nil
}

// A worker's jobs done beyond its committed offset are saved; its
// successor skips exactly those, and ignores the record when the offsets
// were reset below it.
func TestAnswered_SuccessorSkipsWhatWasAnswered(t *testing.T) {
	ctx := context.Background()
	log := zerolog.Nop()
	mem := &answeredMem{base: map[int]int64{}, offsets: map[int]string{}}
	msg := func(p int, off int64) kafkago.Message {
		return kafkago.Message{Topic: "jobs", Partition: p, Offset: off}
	}

	acks := newAckTracker()
	for off := int64(10); off < 20; off++ {
		if !acks.fetched(msg(0, off)) {
			t.Fatalf("offset %d seen as fetched twice", off)
		}
	}
	if acks.fetched(msg(0, 12)) {
		t.Fatal("a message fetched again while pending must not be processed twice")
	}
	for _, off := range []int64{10, 11, 13, 14, 17} { // 12 is slow: 13, 14, 17 wait for it
		acks.done(msg(0, off))
	}
	p := &Pool{AnsweredLog: mem, Group: "g"}
	if got := acks.committable(); len(got) != 1 || got[0].Offset != 11 {
		t.Fatalf("committable %v, want offset 11", got)
	}
	acks.committed(acks.committable())
	if err := p.saveAnswered(ctx, acks); err != nil {
		t.Fatal(err)
	}
	if mem.base[0] != 12 || mem.offsets[0] != "13-14,17" {
		t.Fatalf("saved base %d offsets %q, want 12 and 13-14,17", mem.base[0], mem.offsets[0])
	}
	if len(acks.answered()) != 0 {
		t.Error("nothing changed since the save, yet something to save")
	}

	// The successor fetches from the committed offset, 12.
	next := &answeredSets{log: mem, group: "g"}
	for off := int64(12); off < 20; off++ {
		want := off == 13 || off == 14 || off == 17
		if got := next.skip(ctx, log, msg(0, off)); got != want {
			t.Errorf("offset %d skipped: %v, want %v", off, got, want)
		}
	}
	// Offsets reset below the record's base: it is about other messages.
	reset := &answeredSets{log: mem, group: "g"}
	if reset.skip(ctx, log, msg(0, 0)) || reset.skip(ctx, log, msg(0, 13)) {
		t.Error("a record from before an offset reset skipped a job")
	}
	// Another partition has no record.
	if next.skip(ctx, log, msg(1, 13)) {
		t.Error("skipped a job of a partition with no record")
	}
}

// TestAnswered_ElsewhereAfterTakeover: after a rebalance, the worker that
// lost a partition answers the jobs it had fetched from it while the new
// owner waits for the token's lease. The new owner, once it takes the
// lease, reads the record again and skips what was answered: offsets below
// the saved base (committed) and the saved offsets. A record about other
// messages (offsets reset) counts only once saved again.
func TestAnswered_ElsewhereAfterTakeover(t *testing.T) {
	ctx := context.Background()
	log := newJobLog(&zerolog.Logger{}, &schemas.Job{})
	mem := &answeredMem{base: map[int]int64{0: 12, 1: 100}, offsets: map[int]string{0: "13-14,17", 1: "101"}}
	msg := func(p int, off int64) *kafkago.Message {
		return &kafkago.Message{Topic: "jobs", Partition: p, Offset: off}
	}
	a := &answeredSets{log: mem, group: "g"}
	for off := int64(12); off < 40; off++ {
		a.skip(ctx, zerolog.Nop(), *msg(0, off))
	}
	a.skip(ctx, zerolog.Nop(), *msg(1, 0)) // reset below the record: stale

	// The previous holder goes on, commits up to 25 and answers 27 and 29.
	mem.base[0], mem.offsets[0] = 25, "27,29"
	takeover := t0
	for _, tt := range []struct {
		off  int64
		want bool
	}{{12, true}, {20, true}, {24, true}, {25, false}, {26, false}, {27, true}, {29, true}, {30, false}} {
		if got := a.answeredElsewhere(ctx, log, msg(0, tt.off), takeover, takeover); got != tt.want {
			t.Errorf("offset %d answered elsewhere: %v, want %v", tt.off, got, tt.want)
		}
	}
	// Read once per takeover: a later save is seen at the next one.
	mem.base[0], mem.offsets[0] = 31, ""
	if a.answeredElsewhere(ctx, log, msg(0, 30), takeover, takeover.Add(time.Second)) {
		t.Error("the record was read again within one takeover")
	}
	if !a.answeredElsewhere(ctx, log, msg(0, 30), takeover.Add(time.Minute), takeover.Add(time.Minute)) {
		t.Error("a later takeover did not read the record again")
	}

	// The stale record of partition 1 skips nothing until saved again.
	if a.answeredElsewhere(ctx, log, msg(1, 1), takeover, takeover) || a.answeredElsewhere(ctx, log, msg(1, 101), takeover, takeover) {
		t.Error("a record from before an offset reset skipped a job")
	}
	mem.base[1], mem.offsets[1] = 4, "6"
	later := takeover.Add(time.Hour)
	for off, want := range map[int64]bool{3: true, 4: false, 5: false, 6: true, 101: false} {
		if got := a.answeredElsewhere(ctx, log, msg(1, off), later, later); got != want {
			t.Errorf("partition 1 offset %d answered elsewhere: %v, want %v", off, got, want)
		}
	}
	// A partition never fetched, and no log: nothing is skipped.
	if a.answeredElsewhere(ctx, log, msg(2, 1), later, later) || (*answeredSets)(nil).answeredElsewhere(ctx, log, msg(0, 20), later, later) {
		t.Error("skipped a job with no record")
	}
}

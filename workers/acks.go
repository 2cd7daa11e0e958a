package workers

import (
	"sync"

	kafkago "github.com/segmentio/kafka-go"
)

// ackTracker remembers, per partition, which fetched offsets are done, so
// that only the highest offset below which everything is done is committed.
type ackTracker struct {
	mu    sync.Mutex
	parts map[topicPartition]*partAcks
	ready chan struct{} // signalled when a job is done
}

type partAcks struct {
	topic     string
	partition int
	pending   []int64        // fetched offsets in order, not yet committed
	done      map[int64]bool // pending offsets: true once done
	next      int64          // the offset after the last committed
	dirty     bool           // done changed since the answered jobs were saved
}

func newAckTracker() *ackTracker {
	return &ackTracker{parts: make(map[topicPartition]*partAcks), ready: make(chan struct{}, 1)}
}

// signal wakes the commit loop without blocking.
func (a *ackTracker) signal() {
	select {
	case a.ready <- struct{}{}:
	default:
	}
}

// topicPartition is a partition's key in the maps that track one.
type topicPartition struct {
	topic     string
	partition int
}

func partKey(topic string, partition int) topicPartition {
	return topicPartition{topic: topic, partition: partition}
}

// fetched tracks a fetched message; it returns false when its offset is
// already pending (fetched again after a rebalance while being processed
// or done here), then it must not be processed twice.
func (a *ackTracker) fetched(m kafkago.Message) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	k := partKey(m.Topic, m.Partition)
	pa, ok := a.parts[k]
	if !ok {
		pa = &partAcks{topic: m.Topic, partition: m.Partition, done: make(map[int64]bool)}
		a.parts[k] = pa
	}
	if _, seen := pa.done[m.Offset]; seen {
		return false
	}
	pa.done[m.Offset] = false
	pa.pending = append(pa.pending, m.Offset)
	return true
}

func (a *ackTracker) done(m kafkago.Message) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if pa, ok := a.parts[partKey(m.Topic, m.Partition)]; ok {
		pa.done[m.Offset] = true
		pa.dirty = true
	}
	a.signal()
}

// answeredPart is one partition's jobs done beyond its first uncommitted
// offset, base.
type answeredPart struct {
	topic     string
	partition int
	base      int64
	offsets   []int64
}

// answered returns the partitions whose done jobs changed since the last
// call, with those jobs.
func (a *ackTracker) answered() []answeredPart {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []answeredPart
	for _, pa := range a.parts {
		if !pa.dirty {
			continue
		}
		pa.dirty = false
		ap := answeredPart{topic: pa.topic, partition: pa.partition, base: pa.next}
		if len(pa.pending) > 0 {
			ap.base = pa.pending[0]
		}
		for _, off := range pa.pending {
			if pa.done[off] {
				ap.offsets = append(ap.offsets, off)
			}
		}
		out = append(out, ap)
	}
	return out
}

// markDirty has a partition's done jobs saved again.
func (a *ackTracker) markDirty(topic string, partition int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if pa, ok := a.parts[partKey(topic, partition)]; ok {
		pa.dirty = true
	}
}

// dirty tells whether some partition has done jobs not yet saved.
func (a *ackTracker) dirty() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, pa := range a.parts {
		if pa.dirty {
			return true
		}
	}
	return false
}

// committable returns, per partition, the message to commit: the last of the
// leading run of done offsets.
func (a *ackTracker) committable() []kafkago.Message {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []kafkago.Message
	for _, pa := range a.parts {
		last := int64(-1)
		for _, off := range pa.pending {
			if !pa.done[off] {
				break
			}
			last = off
		}
		if last >= 0 {
			out = append(out, kafkago.Message{Topic: pa.topic, Partition: pa.partition, Offset: last})
		}
	}
	return out
}

// committed forgets offsets up to those just committed.
func (a *ackTracker) committed(msgs []kafkago.Message) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, m := range msgs {
		pa, ok := a.parts[partKey(m.Topic, m.Partition)]
		if !ok {
			continue // forgotten since (its partition was revoked)
		}
		i := 0
		for i < len(pa.pending) && pa.pending[i] <= m.Offset {
			delete(pa.done, pa.pending[i])
			i++
		}
		pa.pending = pa.pending[i:]
		pa.next = m.Offset + 1
	}
}

// forget drops what is tracked of a partition this pool no longer holds: a
// later generation that assigns it again starts from its committed offset.
func (a *ackTracker) forget(topic string, partition int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	delete(a.parts, partKey(topic, partition))
}

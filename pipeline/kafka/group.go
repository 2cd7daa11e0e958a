package kafka

import (
	"context"
	"fmt"
	"sync"
	"time"

	kafkago "github.com/segmentio/kafka-go"

	"github.com/apbatch/apbatch/workers"
)

// RebalanceTimeout is how long the group's coordinator waits for members
// to rejoin during a rebalance; a member's partition loops drain within
// workers.DefaultDrainTimeout, under it.
const RebalanceTimeout = 5 * time.Second

// Group is a kafka-go ConsumerGroup on one topic, with readers of the
// partitions each generation assigns: the workers' pool consumes it
// generation by generation (workers.Generations). It is a StatsReader, its
// lag the sum of its open partition readers'.
type Group struct {
	cfg   Config
	id    string
	topic string
	cg    *kafkago.ConsumerGroup

	mu      sync.Mutex
	readers map[*kafkago.Reader]struct{}
}

var _ workers.Generations = (*Group)(nil)

// NewGroup joins consumer group id on topic, with the timings of
// NewReader's groups; the first generation is read with Next.
func NewGroup(cfg Config, id, topic string) (*Group, error) {
	logger, errLogger := loggers(cfg, id)
	cg, err := kafkago.NewConsumerGroup(kafkago.ConsumerGroupConfig{
		ID:                id,
		Brokers:           cfg.Brokers,
		Dialer:            cfg.Dialer(),
		Topics:            []string{topic},
		HeartbeatInterval: 500 * time.Millisecond,
		SessionTimeout:    MinSessionTimeout,
		RebalanceTimeout:  RebalanceTimeout,
		JoinGroupBackoff:  200 * time.Millisecond,
		StartOffset:       kafkago.FirstOffset,
		Logger:            logger,
		ErrorLogger:       errLogger,
	})
	if err != nil {
		return nil, fmt.Errorf("kafka: consumer group %s: %w", id, err)
	}
	return &Group{cfg: cfg, id: id, topic: topic, cg: cg, readers: make(map[*kafkago.Reader]struct{})}, nil
}

// Next waits for the group's next generation.
func (g *Group) Next(ctx context.Context) (*kafkago.Generation, error) { return g.cg.Next(ctx) }

// Close leaves the group; it waits for the loops of the current
// generation to return.
func (g *Group) Close() error { return g.cg.Close() }

// Partition returns a reader of one partition from offset, fetching as
// NewReader's readers do; closing it removes it from the group's stats.
func (g *Group) Partition(topic string, partition int, offset int64) workers.PartitionReader {
	rc := fetchConfig(g.cfg, g.id, topic)
	rc.Partition = partition
	r := kafkago.NewReader(rc)
	// SetOffset refuses only a closed reader or a group's: not this one.
	_ = r.SetOffset(offset)
	g.mu.Lock()
	g.readers[r] = struct{}{}
	g.mu.Unlock()
	return &groupReader{Reader: r, g: g}
}

// groupReader is a partition reader that leaves the group's stats when
// closed.
type groupReader struct {
	*kafkago.Reader
	g *Group
}

func (r *groupReader) Close() error {
	r.g.mu.Lock()
	delete(r.g.readers, r.Reader)
	r.g.mu.Unlock()
	return r.Reader.Close()
}

// Stats sums the lag of the partitions read now.
func (g *Group) Stats() kafkago.ReaderStats {
	g.mu.Lock()
	defer g.mu.Unlock()
	st := kafkago.ReaderStats{Topic: g.topic}
	for r := range g.readers {
		st.Lag += max(r.Stats().Lag, 0)
	}
	return st
}

// Config names the group and its topic, for the lag's labels.
func (g *Group) Config() kafkago.ReaderConfig {
	return kafkago.ReaderConfig{GroupID: g.id, Topic: g.topic}
}

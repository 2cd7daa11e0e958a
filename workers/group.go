package workers

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/rs/zerolog"
	kafkago "github.com/segmentio/kafka-go"
)

// Generations is a consumer group as the pool consumes it: kafka-go's
// ConsumerGroup, whose generations each assign partitions to this member,
// and a reader of one partition from an offset. pipeline/kafka's Group
// implements it.
type Generations interface {
	// Next waits for the group's next generation (kafka-go's
	// ConsumerGroup.Next).
	Next(ctx context.Context) (*kafkago.Generation, error)
	// Partition returns a reader of one partition starting at offset (an
	// offset of the assignment: committed, or kafka-go's FirstOffset).
	Partition(topic string, partition int, offset int64) PartitionReader
	// Close leaves the group.
	Close() error
}

// PartitionReader reads one partition; *kafka-go.Reader without a GroupID
// implements it.
type PartitionReader interface {
	FetchMessage(ctx context.Context) (kafkago.Message, error)
	Close() error
}

// DefaultDrainTimeout is how long a revoked partition waits for its jobs
// in flight: less than the group's rebalance timeout (5 s in
// pipeline/kafka), so that its loop returns in time.
const DefaultDrainTimeout = 4 * time.Second

// claim is the pool's hold on one partition during one generation. Its
// context ends when the generation does: its jobs stop waiting for a
// budget, a breaker or a run window and make no new call, while a call
// already sent is answered and its results produced.
type claim struct {
	topic     string
	partition int
	gen       *kafkago.Generation
	ctx       context.Context
	revoke    context.CancelFunc

	mu      sync.Mutex
	running int           // jobs of the claim handed to a goroutine
	revoked bool          // set once: no job of the claim starts after
	drained chan struct{} // closed when revoked with no job running
}

func newClaim(ctx context.Context, gen *kafkago.Generation, topic string, partition int) *claim {
	cctx, cancel := context.WithCancel(ctx)
	return &claim{topic: topic, partition: partition, gen: gen, ctx: cctx, revoke: cancel, drained: make(chan struct{})}
}

// start records a job of c about to run; false when c is revoked (the job
// is then dropped without a call).
func (c *claim) start() bool {
	if c == nil {
		return true
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.revoked {
		return false
	}
	c.running++
	return true
}

// finish records the end of a job started with start.
func (c *claim) finish() {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.running--
	if c.revoked && c.running == 0 {
		close(c.drained)
	}
}

// stop revokes c: no job of it starts, those waiting stop.
func (c *claim) stop() {
	c.mu.Lock()
	if !c.revoked {
		c.revoked = true
		if c.running == 0 {
			close(c.drained)
		}
	}
	c.mu.Unlock()
	c.revoke()
}

// wait waits, at most d, for the running jobs of c, stopped.
func (c *claim) wait(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-c.drained:
		return true
	case <-t.C:
		return false
	}
}

// isRevoked tells whether c's generation has ended.
func (c *claim) isRevoked() bool {
	return c != nil && c.ctx.Err() != nil
}

// delivery is a fetched job message and the claim it was fetched under
// (nil with Jobs).
type delivery struct {
	m     kafkago.Message
	claim *claim
}

// claims holds the pool's current claim of each partition.
type claims struct {
	mu sync.Mutex
	m  map[topicPartition]*claim
}

func (cs *claims) set(c *claim) {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if cs.m == nil {
		cs.m = make(map[topicPartition]*claim)
	}
	cs.m[partKey(c.topic, c.partition)] = c
}

func (cs *claims) get(topic string, partition int) *claim {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	return cs.m[partKey(topic, partition)]
}

func (cs *claims) remove(c *claim) {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if cs.m[partKey(c.topic, c.partition)] == c {
		delete(cs.m, partKey(c.topic, c.partition))
	}
}

// consumeGroup runs the group's generations until ctx ends: for each, one
// loop per assigned partition, started by the generation so that the group
// waits for it before it joins the next one.
func (p *Pool) consumeGroup(ctx context.Context, log zerolog.Logger, acks *ackTracker, out chan<- delivery) error {
	var loops sync.WaitGroup
	defer loops.Wait()
	for {
		gen, err := p.ConsumerGroup.Next(ctx)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, kafkago.ErrGroupClosed) {
				return nil
			}
			// The group retries by itself (a rebalance in progress, a
			// coordinator moving); it reports each failure here.
			log.Warn().Err(err).Msg("joining the workers' consumer group failed; retrying")
			continue
		}
		log.Debug().Int32("generation", gen.ID).Msg("consumer group generation started")
		for topic, parts := range gen.Assignments {
			for _, pa := range parts {
				loops.Add(1)
				gen.Start(func(gctx context.Context) {
					defer loops.Done()
					p.consumePartition(ctx, gctx, log, acks, gen, topic, pa, out)
				})
			}
		}
	}
}

// consumePartition reads one assigned partition until its generation (gctx)
// or the pool (ctx) ends, then stops fetching, drops the jobs fetched ahead
// (no call), lets the jobs running finish (a call sent is answered and its
// results produced), commits the partition's done offsets through the
// generation and returns, within DrainTimeout.
func (p *Pool) consumePartition(ctx, gctx context.Context, log zerolog.Logger, acks *ackTracker, gen *kafkago.Generation,
	topic string, pa kafkago.PartitionAssignment, out chan<- delivery) {
	c := newClaim(ctx, gen, topic, pa.ID)
	p.claims.set(c)
	fctx, stop := context.WithCancel(c.ctx)
	defer stop()
	unwatch := context.AfterFunc(gctx, stop)
	defer unwatch()
	r := p.ConsumerGroup.Partition(topic, pa.ID, pa.Offset)
	for fctx.Err() == nil {
		m, err := r.FetchMessage(fctx)
		if err != nil {
			if fctx.Err() == nil {
				log.Warn().Err(err).Int("partition", pa.ID).Msg("fetching jobs failed; retrying")
				select {
				case <-fctx.Done():
				case <-time.After(500 * time.Millisecond):
				}
			}
			continue
		}
		select {
		case out <- delivery{m: m, claim: c}:
		case <-fctx.Done():
		}
	}
	c.stop()
	if err := r.Close(); err != nil {
		log.Debug().Err(err).Int("partition", pa.ID).Msg("closing a partition reader")
	}
	drain := p.DrainTimeout
	if drain <= 0 {
		drain = DefaultDrainTimeout
	}
	if !c.wait(drain) {
		log.Warn().Int("partition", pa.ID).Dur("after", drain).Msg("jobs still running when the partition was revoked: they are redelivered")
	}
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
	defer cancel()
	if err := p.commit(cctx, acks); err != nil {
		log.Warn().Err(err).Int("partition", pa.ID).Msg("committing a revoked partition failed: its done jobs are redelivered")
	}
	if err := p.saveAnswered(cctx, acks); err != nil {
		log.Warn().Err(err).Msg("saving answered jobs failed")
	}
	p.claims.remove(c)
	acks.forget(topic, pa.ID)
	log.Debug().Int("partition", pa.ID).Int32("generation", gen.ID).Msg("partition released")
}

// commitOffsets commits msgs (the last done message of each partition)
// through the generation that holds each partition; a partition no claim
// holds is skipped (its offsets went with its generation).
func (p *Pool) commitOffsets(msgs []kafkago.Message) ([]kafkago.Message, error) {
	var (
		done []kafkago.Message
		errs []error
	)
	for _, m := range msgs {
		c := p.claims.get(m.Topic, m.Partition)
		if c == nil {
			continue
		}
		if err := c.gen.CommitOffsets(map[string]map[int]int64{m.Topic: {m.Partition: m.Offset + 1}}); err != nil {
			errs = append(errs, fmt.Errorf("partition %d: %w", m.Partition, err))
			continue
		}
		done = append(done, m)
	}
	return done, errors.Join(errs...)
}

package workers

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"
	kafkago "github.com/segmentio/kafka-go"
)

// AnsweredLog keeps, per partition of a consumer group, the jobs a worker
// has answered (audit written, results produced) beyond its committed
// offset. Offsets are committed in order, so a job that waits (a slow call,
// a provider outage) holds back the commit of every job done after it; a
// killed worker's successor would call them all again. It reads this record
// instead and skips them. *ledger.Store implements it.
type AnsweredLog interface {
	SaveAnswered(ctx context.Context, group, topic string, partition int, base int64, offsets string) error
	Answered(ctx context.Context, group, topic string, partition int) (base int64, offsets string, err error)
}

// answeredEvery is the least time between two saves of a partition's
// answered jobs: the jobs answered since the last save are the ones a kill
// makes the successor repeat.
const answeredEvery = 20 * time.Millisecond

// encodeOffsets writes sorted offsets as comma-separated ranges ("3-7,9").
func encodeOffsets(offs []int64) string {
	var b strings.Builder
	for i := 0; i < len(offs); {
		j := i
		for j+1 < len(offs) && offs[j+1] == offs[j]+1 {
			j++
		}
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.FormatInt(offs[i], 10))
		if j > i {
			b.WriteByte('-')
			b.WriteString(strconv.FormatInt(offs[j], 10))
		}
		i = j + 1
	}
	return b.String()
}

// offsetRange is an inclusive range of offsets.
type offsetRange struct{ from, to int64 }

// decodeOffsets reads encodeOffsets' output.
func decodeOffsets(s string) ([]offsetRange, error) {
	if s == "" {
		return nil, nil
	}
	var out []offsetRange
	for _, part := range strings.Split(s, ",") {
		a, b, isRange := strings.Cut(part, "-")
		from, err := strconv.ParseInt(a, 10, 64)
		if err != nil || from < 0 {
			return nil, fmt.Errorf("answered offsets: bad offset %q", a)
		}
		to := from
		if isRange {
			if to, err = strconv.ParseInt(b, 10, 64); err != nil || to < from {
				return nil, fmt.Errorf("answered offsets: bad range %q", part)
			}
		}
		out = append(out, offsetRange{from, to})
	}
	return out, nil
}

// answeredSets holds, per partition, the jobs the partition's previous
// owner answered, read from the log at the partition's first fetch, and
// read again after a token's lease is taken from another worker
// (answeredElsewhere).
type answeredSets struct {
	log   AnsweredLog
	group string

	mu    sync.Mutex
	parts map[topicPartition]*answeredRecord
}

// answeredRecord is what this pool knows of a partition's record.
type answeredRecord struct {
	ranges []offsetRange // answered offsets
	// base is the record's base at its first reading; stale tells that
	// this reading was about other messages (offsets reset below it).
	base  int64
	stale bool
	// committed is the base of a later reading: every offset below it is
	// answered (0: none).
	committed int64
	// readAt is when answeredElsewhere last read the record (zero: only
	// the first fetch did).
	readAt time.Time
}

// contains tells whether off is in r's answered offsets.
func (r *answeredRecord) contains(off int64) bool {
	if off < r.committed {
		return true
	}
	_, found := slices.BinarySearchFunc(r.ranges, off, func(r offsetRange, off int64) int {
		switch {
		case r.to < off:
			return -1
		case r.from > off:
			return 1
		}
		return 0
	})
	return found
}

// skip tells whether m was answered by the partition's previous owner. On a
// read error the job is not skipped (it is called again: never lost).
func (a *answeredSets) skip(ctx context.Context, log zerolog.Logger, m kafkago.Message) bool {
	if a == nil || a.log == nil {
		return false
	}
	k := partKey(m.Topic, m.Partition)
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.parts == nil {
		a.parts = make(map[topicPartition]*answeredRecord)
	}
	rec, loaded := a.parts[k]
	if !loaded {
		rec = &answeredRecord{}
		base, enc, err := a.log.Answered(ctx, a.group, m.Topic, m.Partition)
		if err != nil {
			log.Warn().Err(err).Msg("answered jobs unreadable: they will be called again")
		} else if rec.ranges, err = decodeOffsets(enc); err != nil {
			log.Warn().Err(err).Msg("answered jobs unreadable: they will be called again")
		}
		rec.base = base
		// Fetching from before the recorded base means the offsets were
		// reset (a topic recreated, a group rewound): the record is about
		// other messages.
		if m.Offset < base {
			rec.ranges, rec.stale = nil, true
		}
		if len(rec.ranges) > 0 {
			log.Info().Str("topic", m.Topic).Int("partition", m.Partition).Int64("from", rec.ranges[0].from).
				Int64("to", rec.ranges[len(rec.ranges)-1].to).Msg("skipping the jobs a previous worker answered")
		}
		a.parts[k] = rec
	}
	return rec.contains(m.Offset)
}

// answeredElsewhere tells whether another worker answered m, from m's
// partition's record as read at since or later (read again when the last
// reading is older). After a rebalance, the worker that lost a partition
// still runs the jobs it had fetched from it, while the partition's new
// owner fetches them again: under the token's lease, one runs its copies
// and the other waits. The one that takes the lease next asks this before
// calling. On a read error the job is not skipped. It returns false for a
// partition not fetched (skip) first.
func (a *answeredSets) answeredElsewhere(ctx context.Context, log jobLog, m *kafkago.Message, since, now time.Time) bool {
	if a == nil || a.log == nil {
		return false
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	rec := a.parts[partKey(m.Topic, m.Partition)]
	if rec == nil {
		return false
	}
	if rec.readAt.Before(since) {
		base, enc, err := a.log.Answered(ctx, a.group, m.Topic, m.Partition)
		ranges, derr := decodeOffsets(enc)
		if err != nil || derr != nil {
			log.Warn().Err(errors.Join(err, derr)).Msg("answered jobs unreadable: this job is called again")
			return false
		}
		rec.readAt = now
		// Whoever saved the record had committed every offset below its
		// base. A record that was about other messages at the first
		// reading counts once saved again (its base moved).
		if !rec.stale || base != rec.base {
			rec.ranges = ranges
			rec.committed = max(rec.committed, base)
		}
		log.Info().Int("partition", m.Partition).Int64("committed", rec.committed).Int("ranges", len(rec.ranges)).
			Msg("the token's lease was taken from another worker: read again the jobs it answered")
	}
	return rec.contains(m.Offset)
}

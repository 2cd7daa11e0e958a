package workers

import (
	"context"
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
// owner answered, read from the log at the partition's first fetch.
type answeredSets struct {
	log   AnsweredLog
	group string

	mu    sync.Mutex
	parts map[topicPartition][]offsetRange // nil slice once loaded and empty
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
		a.parts = make(map[topicPartition][]offsetRange)
	}
	ranges, loaded := a.parts[k]
	if !loaded {
		base, enc, err := a.log.Answered(ctx, a.group, m.Topic, m.Partition)
		if err != nil {
			log.Warn().Err(err).Msg("answered jobs unreadable: they will be called again")
		} else if ranges, err = decodeOffsets(enc); err != nil {
			log.Warn().Err(err).Msg("answered jobs unreadable: they will be called again")
		}
		// Fetching from before the recorded base means the offsets were
		// reset (a topic recreated, a group rewound): the record is about
		// other messages.
		if m.Offset < base {
			ranges = nil
		}
		if len(ranges) > 0 {
			log.Info().Str("topic", m.Topic).Int("partition", m.Partition).Int64("from", ranges[0].from).
				Int64("to", ranges[len(ranges)-1].to).Msg("skipping the jobs a previous worker answered")
		}
		a.parts[k] = ranges
	}
	_, found := slices.BinarySearchFunc(ranges, m.Offset, func(r offsetRange, off int64) int {
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

package kafka

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
	kafkago "github.com/segmentio/kafka-go"
)

// fakeReader is a StatsReader with a fixed topic, group and lag.
type fakeReader struct {
	topic, group string
	lag          int64
	stats        int // calls of Stats
}

func (f *fakeReader) Stats() kafkago.ReaderStats {
	f.stats++
	return kafkago.ReaderStats{Topic: f.topic, Lag: f.lag}
}

func (f *fakeReader) Config() kafkago.ReaderConfig {
	return kafkago.ReaderConfig{Topic: f.topic, GroupID: f.group}
}

func TestLagCollector_Collect(t *testing.T) {
	const head = `# HELP apbatch_consumer_lag Messages behind the partitions' high watermark at the consumers' last fetch, by topic and consumer group.
# TYPE apbatch_consumer_lag gauge
`
	for _, tc := range []struct {
		name    string
		readers []*fakeReader
		want    string
	}{
		{"one reader per group", []*fakeReader{{topic: "jobs", group: "workers", lag: 12}, {topic: "results", group: "writers", lag: 3}},
			`apbatch_consumer_lag{group="workers",topic="jobs"} 12
apbatch_consumer_lag{group="writers",topic="results"} 3
`},
		{"readers of one group are summed", []*fakeReader{{topic: "jobs", group: "workers", lag: 12}, {topic: "jobs", group: "workers", lag: 30}},
			`apbatch_consumer_lag{group="workers",topic="jobs"} 42
`},
		{"no fetch yet counts as no lag", []*fakeReader{{topic: "uploads", group: "ingest", lag: -1}},
			`apbatch_consumer_lag{group="ingest",topic="uploads"} 0
`},
		{"no reader, no series", nil, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var readers []StatsReader
			for _, r := range tc.readers {
				readers = append(readers, r)
			}
			c := NewLagCollector(append(readers, nil)...)
			want := ""
			if tc.want != "" {
				want = head + tc.want
			}
			if err := testutil.CollectAndCompare(c, strings.NewReader(want)); err != nil {
				t.Fatal(err)
			}
			// Read when scraped, not before.
			for _, r := range tc.readers {
				if r.stats != 1 {
					t.Errorf("reader of %s read %d times in one scrape, want 1", r.topic, r.stats)
				}
			}
		})
	}
}

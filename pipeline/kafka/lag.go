package kafka

import (
	"github.com/prometheus/client_golang/prometheus"
	kafkago "github.com/segmentio/kafka-go"
)

// StatsReader is what LagCollector reads; *kafka-go.Reader implements it.
type StatsReader interface {
	Stats() kafkago.ReaderStats
	Config() kafkago.ReaderConfig
}

// LagCollector is a prometheus.Collector of the gauge
// apbatch_consumer_lag{topic,group}: how many messages the readers are
// behind the high watermark of the partitions they read, as of their last
// fetch (kafka-go's ReaderStats.Lag), summed over the readers of one topic
// and group. The readers' stats are read when scraped, with no goroutine
// of its own. Reader.Stats resets the reader's counters, so the collector
// must be their only caller. Safe for concurrent use.
type LagCollector struct {
	readers []StatsReader
	desc    *prometheus.Desc
}

// Compile-time check that LagCollector is a prometheus.Collector.
var _ prometheus.Collector = (*LagCollector)(nil)

// NewLagCollector returns the collector of readers' lag; nil readers are
// skipped.
func NewLagCollector(readers ...StatsReader) *LagCollector {
	c := &LagCollector{desc: prometheus.NewDesc("apbatch_consumer_lag",
		"Messages behind the partitions' high watermark at the consumers' last fetch, by topic and consumer group.",
		[]string{"topic", "group"}, nil)}
	for _, r := range readers {
		if r != nil {
			c.readers = append(c.readers, r)
		}
	}
	return c
}

// Describe implements prometheus.Collector.
func (c *LagCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

// Collect implements prometheus.Collector.
func (c *LagCollector) Collect(ch chan<- prometheus.Metric) {
	type key struct{ topic, group string }
	lag := make(map[key]int64, len(c.readers))
	var order []key
	for _, r := range c.readers {
		cfg := r.Config()
		k := key{cfg.Topic, cfg.GroupID}
		if _, ok := lag[k]; !ok {
			order = append(order, k)
		}
		// A reader that has not fetched yet reports -1 or 0: no lag known.
		lag[k] += max(r.Stats().Lag, 0)
	}
	for _, k := range order {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(lag[k]), k.topic, k.group)
	}
}

package kafka

import (
	"bytes"
	"context"
	"fmt"
	"runtime/metrics"
	"sync"
	"testing"
	"time"

	kafkago "github.com/segmentio/kafka-go"
)

// benchFlow measures one embedded-mode flow of 100,000 messages of size
// bytes through a topic with apbatch's writer and reader configurations:
// produce writes them while a group reader fetches every message and
// commits in order, as the workers and the result writer do; with backlog,
// every message is produced before the reader starts (the splitter runs
// ahead of the workers). One op is the whole flow, broker start and group
// join excluded. It also reports the peak of the heap during the flow.
func benchFlow(b *testing.B, produce func(ctx context.Context, w *kafkago.Writer, msgs []kafkago.Message) error, size int, backlog bool) {
	const total = 100_000
	msgs := make([]kafkago.Message, total)
	value := bytes.Repeat([]byte{'x'}, size)
	for i := range msgs {
		msgs[i] = kafkago.Message{Key: []byte("demo"), Value: value}
	}
	b.ReportAllocs()
	var peak uint64
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		br := &Broker{DataDir: b.TempDir()}
		if err := br.Open(ctx); err != nil {
			b.Fatal(err)
		}
		cfg := Config{Brokers: br.Addrs()}
		if err := EnsureTopics(ctx, cfg, "t"); err != nil {
			b.Fatal(err)
		}
		w := NewWriter(cfg, "t")
		r := NewReader(cfg, "g", "t")
		// Join the group before timing: one message produced and read.
		if err := w.WriteMessages(ctx, kafkago.Message{Key: []byte("demo"), Value: []byte("warm-up")}); err != nil {
			b.Fatal(err)
		}
		m, err := r.FetchMessage(ctx)
		if err != nil {
			b.Fatal(err)
		}
		if err := r.CommitMessages(ctx, m); err != nil {
			b.Fatal(err)
		}
		stopPeak := samplePeakHeap(&peak)
		b.StartTimer()

		errc := make(chan error, 1)
		go func() { errc <- produce(ctx, w, msgs) }()
		if backlog {
			if err := <-errc; err != nil {
				b.Fatal(err)
			}
			errc <- nil
		}
		var last kafkago.Message
		for n := 0; n < total; n++ {
			if last, err = r.FetchMessage(ctx); err != nil {
				b.Fatal(err)
			}
			if n%256 == 255 {
				if err := r.CommitMessages(ctx, last); err != nil {
					b.Fatal(err)
				}
			}
		}
		if err := r.CommitMessages(ctx, last); err != nil {
			b.Fatal(err)
		}
		if err := <-errc; err != nil {
			b.Fatal(err)
		}

		b.StopTimer()
		stopPeak()
		r.Close()
		w.Close()
		br.Close()
		cancel()
		b.StartTimer()
	}
	b.ReportMetric(float64(peak)/(1<<20), "peak-heap-MiB")
}

// samplePeakHeap raises *peak to the bytes of heap objects, sampled every
// millisecond until the returned function is called.
func samplePeakHeap(peak *uint64) (stop func()) {
	done, stopped := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(stopped)
		sample := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
		t := time.NewTicker(time.Millisecond)
		defer t.Stop()
		for {
			metrics.Read(sample)
			*peak = max(*peak, sample[0].Value.Uint64())
			select {
			case <-done:
				return
			case <-t.C:
			}
		}
	}()
	return func() { close(done); <-stopped }
}

// produceJobs writes msgs 100 at a time, as the splitter does.
func produceJobs(ctx context.Context, w *kafkago.Writer, msgs []kafkago.Message) error {
	for i := 0; i < len(msgs); i += 100 {
		if err := w.WriteMessages(ctx, msgs[i:min(i+100, len(msgs))]...); err != nil {
			return fmt.Errorf("produce: %w", err)
		}
	}
	return nil
}

// BenchmarkJobsFlow produces 100,000 job-sized messages (400 bytes) as the
// splitter does while a reader consumes them.
func BenchmarkJobsFlow(b *testing.B) { benchFlow(b, produceJobs, 400, false) }

// BenchmarkJobsBacklog produces the 100,000 jobs before a reader consumes
// them.
func BenchmarkJobsBacklog(b *testing.B) { benchFlow(b, produceJobs, 400, true) }

// BenchmarkResultsFlow produces 100,000 result-sized messages (300 bytes)
// one per write from 256 goroutines, as the workers' jobs in flight do.
func BenchmarkResultsFlow(b *testing.B) {
	benchFlow(b, func(ctx context.Context, w *kafkago.Writer, msgs []kafkago.Message) error {
		const writers = 256
		var wg sync.WaitGroup
		errs := make(chan error, writers)
		for g := 0; g < writers; g++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := g; i < len(msgs); i += writers {
					if err := w.WriteMessages(ctx, msgs[i]); err != nil {
						errs <- fmt.Errorf("produce: %w", err)
						return
					}
				}
			}()
		}
		wg.Wait()
		close(errs)
		return <-errs
	}, 300, false)
}

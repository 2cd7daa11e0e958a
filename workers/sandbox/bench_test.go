package sandbox_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/apbatch/apbatch/schemas"
	"github.com/apbatch/apbatch/workers"
	"github.com/apbatch/apbatch/workers/sandbox"
)

// discardWriter is a reusable http.ResponseWriter that keeps nothing, so
// that a benchmark measures the handler, not a recorder.
type discardWriter struct {
	h      http.Header
	status int
	n      int
}

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) WriteHeader(status int)      { w.status = status }
func (w *discardWriter) Write(b []byte) (int, error) { w.n += len(b); return len(b), nil }

// BenchmarkServer_QF is one QF call of the raw bench, in process: a
// population person's lookup, with the client's query and headers, no
// rate limit, never cached (the clock moves one minute per call, and a
// person comes back after more than the cache's 24 hours).
func BenchmarkServer_QF(b *testing.B) {
	const people = 2000
	pop := sandbox.NewPopulation(people, 1)
	now := time.Date(2025, 3, 10, 9, 0, 0, 0, time.UTC)
	sb, err := sandbox.New(sandbox.Config{Population: pop, Limits: sandbox.Limits{PerSecond: 1 << 30, IPPerMinute: 1 << 30},
		Now: func() time.Time { return now }})
	if err != nil {
		b.Fatal(err)
	}
	tok, err := sandbox.Token([]byte(sandbox.DefaultSecret), sandbox.AllScopes, now.AddDate(20, 0, 0))
	if err != nil {
		b.Fatal(err)
	}
	reqs := make([]*http.Request, people)
	for i := range reqs {
		q := workers.QueryQuotientFamilial("13002526500013", schemas.Period{}, pop.Person(i).Identity())
		r := httptest.NewRequest(http.MethodGet, workers.QuotientFamilialPath+"?"+q.Encode(), nil)
		r.Header.Set("Authorization", "Bearer "+tok)
		r.Header.Set("Accept", "application/json")
		r.Header.Set("User-Agent", "apbatch-bench")
		reqs[i] = r
	}
	w := &discardWriter{h: http.Header{}}
	codes := map[int]int{}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		clear(w.h)
		now = now.Add(time.Minute)
		sb.ServeHTTP(w, reqs[i%people])
		codes[w.status]++
	}
	b.StopTimer()
	if codes[http.StatusOK] == 0 || len(codes) > 3 {
		b.Fatalf("answers by status: %v", codes)
	}
}

// BenchmarkNewPopulation is the set-up of a bench's sandbox, per person.
func BenchmarkNewPopulation(b *testing.B) {
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		sandbox.NewPopulation(1000, uint64(i))
	}
}

// BenchmarkWriteCSV writes the roster of a bench, per 1000 people.
func BenchmarkWriteCSV(b *testing.B) {
	pop := sandbox.NewPopulation(1000, 1)
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if err := pop.WriteCSV(io.Discard); err != nil {
			b.Fatal(err)
		}
	}
}

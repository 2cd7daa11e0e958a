package ledger

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/apbatch/apbatch/schemas"
)

// benchCalls returns n audit records shaped like the raw bench's: one
// tenant and batch, increasing rows and times, distinct identity hashes.
func benchCalls(n int) []schemas.CallRecord {
	start := time.Date(2026, 9, 1, 8, 0, 0, 0, time.UTC)
	calls := make([]schemas.CallRecord, n)
	for i := range calls {
		h := sha256.Sum256([]byte(fmt.Sprint("identity ", i)))
		calls[i] = schemas.CallRecord{
			At: start.Add(time.Duration(i) * time.Millisecond), Tenant: "demo", BatchID: "b0123456789abcdef012",
			RowNumber: int64(i + 1), Rows: 1, Check: "quotient_familial", Route: "/v3/dss/quotient_familial/identite",
			HTTPStatus: 200, RequestID: fmt.Sprintf("%08x-0000-4000-8000-%012x", i, i), LatencyMS: 12, Attempt: 1,
			IdentityHMAC: hex.EncodeToString(h[:]),
		}
	}
	return calls
}

// BenchmarkRecordCalls writes 100,000 audit records in batches of 250 (what
// the workers' group commit hands the ledger) into a fresh SQLite ledger:
// one op is the whole run.
func BenchmarkRecordCalls(b *testing.B) {
	const rows, batch = 100_000, 250
	ctx := context.Background()
	calls := benchCalls(rows)
	b.ReportAllocs()
	b.ResetTimer()
	var cpu time.Duration
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		s, err := Open(ctx, "sqlite://"+filepath.Join(b.TempDir(), "ledger.db"))
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		before := processCPU()
		for j := 0; j < rows; j += batch {
			if err := s.RecordCalls(ctx, calls[j:min(j+batch, rows)]); err != nil {
				b.Fatal(err)
			}
		}
		cpu += processCPU() - before
		b.StopTimer()
		s.Close()
		b.StartTimer()
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*rows), "ns/row")
	b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N*rows), "cpu-ns/row")
}

// BenchmarkRecordPart records 100,000 result rows of one batch in parts of
// 25,000 (the result writer's default part size) into a fresh SQLite
// ledger: one op is the whole batch.
func BenchmarkRecordPart(b *testing.B) {
	const rows, part = 100_000, 25_000
	ctx := context.Background()
	statuses := make([]RowStatus, rows)
	for i := range statuses {
		statuses[i] = RowStatus{RowNumber: int64(i + 1), Check: schemas.CheckQuotientFamilial, Status: schemas.StatusOK, Calls: 1}
	}
	b.ReportAllocs()
	b.ResetTimer()
	var cpu time.Duration
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		s, err := Open(ctx, "sqlite://"+filepath.Join(b.TempDir(), "ledger.db"))
		if err != nil {
			b.Fatal(err)
		}
		batch, _, err := s.CreateBatch(ctx, Batch{Tenant: "demo", Campaign: "2026-09", Checks: "quotient_familial",
			Bucket: "apbatch", ObjectKey: "incoming/demo/2026-09/a.csv", ObjectVersion: "v1"})
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		before := processCPU()
		for j := 0; j < rows; j += part {
			p := Part{BatchID: batch.ID, PartNo: j/part + 1, ObjectKey: fmt.Sprint("part-", j), Rows: part}
			if err := s.RecordPart(ctx, p, statuses[j:min(j+part, rows)]); err != nil {
				b.Fatal(err)
			}
		}
		cpu += processCPU() - before
		b.StopTimer()
		s.Close()
		b.StartTimer()
	}
	b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N*rows), "cpu-ns/row")
}

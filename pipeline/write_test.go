package pipeline

import (
	"context"
	"encoding/json"
	"maps"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/apbatch/apbatch/pipeline/ledger"
	"github.com/apbatch/apbatch/schemas"
)

// TestResultWriter_ManifestCounts: the manifest's counts are the ledger's,
// whether the writer that finishes the batch recorded every part (it counts
// as it goes) or another writer recorded some first (they are read back).
func TestResultWriter_ManifestCounts(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	client, store := bucketAndLedger(t)
	const n = 1000
	for _, tc := range []struct {
		name   string
		before int // results another writer records first
	}{{"one writer", 0}, {"after another writer", 300}} {
		t.Run(tc.name, func(t *testing.T) {
			batch, _, err := store.CreateBatch(ctx, ledger.Batch{Tenant: "ville-a", Campaign: "2026-09", Checks: "quotient_familial",
				Bucket: "apbatch", ObjectKey: "incoming/ville-a/2026-09/liste.csv", ObjectVersion: tc.name})
			if err != nil {
				t.Fatal(err)
			}
			if err := store.SetSplit(ctx, batch.ID, n, n, 0); err != nil {
				t.Fatal(err)
			}
			msgs := benchResults(t, batch.ID, n)
			for _, part := range [][]int{{0, tc.before}, {tc.before, n}} {
				if part[0] == part[1] {
					continue
				}
				r := &benchReader{msgs: msgs[part[0]:part[1]], done: make(chan struct{})}
				w := &ResultWriter{Results: r, S3: client, Ledger: store, Log: zerolog.Nop(), FlushInterval: 20 * time.Millisecond, PartRows: 400}
				runWriter(t, ctx, w, r)
			}
			got, err := store.Batch(ctx, batch.ID)
			if err != nil || got.State != ledger.StateComplete {
				t.Fatalf("batch: %+v %v", got, err)
			}
			want, err := store.Counts(ctx, batch.ID)
			if err != nil {
				t.Fatal(err)
			}
			body, _, err := client.Open(ctx, got.ManifestKey)
			if err != nil {
				t.Fatal(err)
			}
			var m schemas.Manifest
			err = json.NewDecoder(body).Decode(&m)
			body.Close()
			if err != nil {
				t.Fatal(err)
			}
			if m.ResultsTotal != n || want.Rows != n || m.ProviderCalls != want.ProviderCalls || !maps.Equal(m.RowsByStatus, want.ByStatus) ||
				!maps.Equal(m.ResultsByCheck[schemas.CheckQuotientFamilial], want.ByCheck[schemas.CheckQuotientFamilial]) {
				t.Fatalf("manifest: %d results, %d calls, by status %v, by check %v; ledger: %d, %d, %v, %v",
					m.ResultsTotal, m.ProviderCalls, m.RowsByStatus, m.ResultsByCheck, want.Rows, want.ProviderCalls, want.ByStatus, want.ByCheck)
			}
		})
	}
}

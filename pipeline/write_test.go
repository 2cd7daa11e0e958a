package pipeline

import (
	"context"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	kafkago "github.com/segmentio/kafka-go"

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
			m, err := ReadManifest(ctx, client, got.ManifestKey)
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

// TestResultWriter_StagesUntilPublished: the parts of a batch still
// missing results are under staging/ only, so that results/ holds no row of
// it; once every row has its result they move to results/, the manifest
// lists them there, and nothing is left under staging/ (a copy a crash left
// behind included).
func TestResultWriter_StagesUntilPublished(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	client, store := bucketAndLedger(t)
	const n = 900
	batch, _, err := store.CreateBatch(ctx, ledger.Batch{Tenant: "ville-a", Campaign: "2026-09", Checks: "quotient_familial",
		Bucket: "apbatch", ObjectKey: "incoming/ville-a/2026-09/liste.csv", ObjectVersion: "v1"})
	if err != nil {
		t.Fatal(err)
	}
	if err := store.SetSplit(ctx, batch.ID, n, n, 0); err != nil {
		t.Fatal(err)
	}
	keys := func(prefix string) []string {
		t.Helper()
		objs, err := client.List(ctx, prefix)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, o := range objs {
			out = append(out, o.Key)
		}
		return out
	}
	staging := StagingFolder(batch.Tenant, batch.Campaign, batch.ID)
	msgs := benchResults(t, batch.ID, n)
	write := func(msgs []kafkago.Message) {
		t.Helper()
		r := &benchReader{msgs: msgs, done: make(chan struct{})}
		w := &ResultWriter{Results: r, S3: client, Ledger: store, Log: zerolog.Nop(), FlushInterval: 20 * time.Millisecond, PartRows: 200}
		runWriter(t, ctx, w, r)
	}

	write(msgs[:500])
	if got := keys(ResultsPrefix); len(got) != 0 {
		t.Fatalf("unfinished batch has objects under results/: %v", got)
	}
	if got := keys(staging); len(got) != 3 {
		t.Fatalf("staged parts %v, want 3", got)
	}
	// A crash between a part's move and the deletion of its staged copy
	// leaves that copy behind.
	if _, err := client.Put(ctx, staging+"part-99999.parquet", strings.NewReader("left"), 4, "application/octet-stream"); err != nil {
		t.Fatal(err)
	}

	write(msgs[500:])
	got, err := store.Batch(ctx, batch.ID)
	if err != nil || got.State != ledger.StateComplete {
		t.Fatalf("batch: %+v %v", got, err)
	}
	if left := keys(StagingPrefix); len(left) != 0 {
		t.Errorf("left under staging/: %v", left)
	}
	parts, err := store.Parts(ctx, batch.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(PublishedParts(parts)) != len(parts) || len(parts) != 5 {
		t.Fatalf("parts %+v", parts)
	}
	m, err := ReadManifest(ctx, client, got.ManifestKey)
	if err != nil {
		t.Fatal(err)
	}
	published := keys(ResultFolder(batch.Tenant, batch.Campaign, batch.ID))
	if len(m.Files) != 5 || len(published) != 6 || m.SchemaVersion != schemas.ResultSchemaVersion {
		t.Fatalf("manifest files %+v, schema %d; under results/: %v", m.Files, m.SchemaVersion, published)
	}
	for _, f := range m.Files {
		if !slices.Contains(published, f.Key) || !strings.HasPrefix(f.Key, ResultsPrefix) {
			t.Errorf("manifest lists %s, not published", f.Key)
		}
	}
	if _, err := time.Parse(schemas.ManifestTimeFormat, m.CompletedAt); err != nil || !strings.HasSuffix(m.CompletedAt, "Z") {
		t.Errorf("completed_at %q: %v", m.CompletedAt, err)
	}
	rows, err := BatchResults(ctx, client, store, batch.ID)
	if err != nil || len(rows) != n {
		t.Fatalf("%d results read back: %v", len(rows), err)
	}
}

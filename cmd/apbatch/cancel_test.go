package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/apbatch/apbatch/pipeline/ledger"
	"github.com/apbatch/apbatch/schemas"
	"github.com/apbatch/apbatch/workers/sandbox"
)

// TestCancel_StopsCalls cancels a batch while `apbatch run` verifies it:
// run ends, no call is made for the batch afterwards, its manifest says
// cancelled and holds the rows answered before, the export marks the
// others, and run without a file does not resume it.
func TestCancel_StopsCalls(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	dir := t.TempDir()
	dataDir, outDir := filepath.Join(dir, "data"), filepath.Join(dir, "out")
	roster := filepath.Join(dir, "cantine.csv")
	f, err := os.Create(roster)
	if err != nil {
		t.Fatal(err)
	}
	const rows = 200
	if err := sandbox.NewPopulation(rows, 1).WriteCSV(f); err != nil {
		t.Fatal(err)
	}
	f.Close()

	type outcome struct {
		code           int
		stdout, stderr string
	}
	done := make(chan outcome, 1)
	go func() {
		code, stdout, stderr := runApbatch(t, ctx, "run", "--data-dir", dataDir, "--out", outDir, "--rate", "5",
			"--sandbox-population", "200", "--flush-interval", "300ms", roster)
		done <- outcome{code, stdout, stderr}
	}()

	// Once some results are published, cancel.
	var store *ledger.Store
	var b ledger.Batch
	for {
		if store == nil {
			if _, err := os.Stat(filepath.Join(dataDir, "ledger.db")); err == nil {
				if store, err = ledger.Open(ctx, "sqlite://"+filepath.Join(dataDir, "ledger.db")); err != nil {
					t.Fatal(err)
				}
				defer store.Close()
			}
		}
		if store != nil {
			if bs, err := store.Batches(ctx); err == nil && len(bs) == 1 {
				b = bs[0]
				if c, err := store.Counts(ctx, b.ID); err == nil && c.Rows >= 10 {
					break
				}
			}
		}
		select {
		case o := <-done:
			t.Fatalf("run ended before the cancel: exit %d\n%s", o.code, o.stderr)
		case <-ctx.Done():
			t.Fatal("no result published")
		case <-time.After(100 * time.Millisecond):
		}
	}
	code, stdout, stderr := runApbatch(t, ctx, "cancel", "--data-dir", dataDir, b.ID)
	if code != 0 || !strings.Contains(stdout, "annulé") {
		t.Fatalf("cancel: exit %d\n%s\n%s", code, stdout, stderr)
	}
	cancelledAt := time.Now()
	var o outcome
	select {
	case o = <-done:
	case <-ctx.Done():
		t.Fatal("run did not end after the cancel")
	}
	if o.code != 0 {
		t.Fatalf("run: exit %d\n%s\n%s", o.code, o.stdout, o.stderr)
	}

	// No call started after the workers saw it (a second at most, and a
	// call then in flight).
	calls, err := store.BatchCalls(ctx, b.ID)
	if err != nil {
		t.Fatal(err)
	}
	late := 0
	for _, c := range calls {
		if c.At.After(cancelledAt.Add(1500 * time.Millisecond)) {
			late++
		}
	}
	if late > 0 || len(calls) >= rows {
		t.Errorf("%d calls in all, %d of them after the cancel", len(calls), late)
	}
	b, err = store.Batch(ctx, b.ID)
	if err != nil || b.State != ledger.StateCancelled || b.ManifestKey == "" {
		t.Fatalf("batch after cancel: %+v %v", b, err)
	}
	var m schemas.Manifest
	raw, err := os.ReadFile(filepath.Join(outDir, b.ID, "_manifest.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	if m.State != schemas.ManifestCancelled || m.ResultsTotal < 10 || m.ResultsTotal >= rows {
		t.Errorf("manifest: state %q, %d results", m.State, m.ResultsTotal)
	}
	results := readBatchResults(t, outDir, b.ID)
	if int64(len(results)) != m.ResultsTotal {
		t.Errorf("%d results in the parts, manifest says %d", len(results), m.ResultsTotal)
	}

	// The export marks the rows left unchecked.
	csvPath := filepath.Join(dir, "r.csv")
	if code, _, stderr := runApbatch(t, ctx, "results", "--data-dir", dataDir, "-o", csvPath, b.ID); code != 0 {
		t.Fatalf("results: exit %d\n%s", code, stderr)
	}
	text, _ := os.ReadFile(csvPath)
	if n := strings.Count(string(text), "non vérifiée (lot annulé)"); n != rows-len(results) {
		t.Errorf("export: %d rows marked unchecked, want %d", n, rows-len(results))
	}

	// Cancelling again says it has ended; run without a file does not
	// resume it.
	if code, _, stderr := runApbatch(t, ctx, "cancel", "--data-dir", dataDir, b.ID); code == 0 || !strings.Contains(stderr, "il n'y a rien à annuler") {
		t.Errorf("second cancel: exit %d, %s", code, stderr)
	}
	before := len(calls)
	code, _, stderr = runApbatch(t, ctx, "run", "--data-dir", dataDir)
	if code == 0 || !strings.Contains(stderr, "aucun lot inachevé") {
		t.Errorf("run without a file: exit %d\n%s", code, stderr)
	}
	if calls, _ := store.BatchCalls(ctx, b.ID); len(calls) != before {
		t.Errorf("run without a file made %d calls", len(calls)-before)
	}
}

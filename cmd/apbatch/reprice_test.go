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
)

// TestRun_NewGridReprices runs a roster, then runs it again with a new
// price grid: no API call, the new prices in a new published version of
// the results, the earlier one still readable with its own prices.
func TestRun_NewGridReprices(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	dir := t.TempDir()
	dataDir, outDir := filepath.Join(dir, "data"), filepath.Join(dir, "out")
	old, err := os.ReadFile("../../deploy/samples/tarifs-cantine.yaml")
	if err != nil {
		t.Fatal(err)
	}
	newGrid := strings.NewReplacer(`"cantine-2026-09"`, `"cantine-2027-01"`, `price: "0.80"`, `price: "0.50"`, `price: "4.10"`, `price: "4.50"`).Replace(string(old))
	gridPath := filepath.Join(dir, "tarifs-2027.yaml")
	if err := os.WriteFile(gridPath, []byte(newGrid), 0o600); err != nil {
		t.Fatal(err)
	}
	run := func(grid string) summary {
		t.Helper()
		sumPath := filepath.Join(dir, "summary.json")
		code, stdout, stderr := runApbatch(t, ctx, "run", "--data-dir", dataDir, "--out", outDir, "--summary-json", sumPath,
			"--flush-interval", "300ms", "--tariff", grid, samplePath)
		if code != 0 {
			t.Fatalf("run --tariff %s: exit %d\n%s\n%s", grid, code, stdout, stderr)
		}
		var sum summary
		body, _ := os.ReadFile(sumPath)
		if err := json.Unmarshal(body, &sum); err != nil {
			t.Fatal(err)
		}
		if grid == gridPath && !strings.Contains(stderr, "sans nouvel appel") {
			t.Errorf("the re-pricing is not said:\n%s", stderr)
		}
		return sum
	}
	first := run("../../deploy/samples/tarifs-cantine.yaml")
	store, err := ledger.Open(ctx, "sqlite://"+filepath.Join(dataDir, "ledger.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	callsBefore, err := store.BatchCalls(ctx, first.BatchID)
	if err != nil || len(callsBefore) == 0 {
		t.Fatalf("%d calls for the first run, %v", len(callsBefore), err)
	}

	second := run(gridPath)
	if second.BatchID == first.BatchID || second.ProviderCalls != 0 {
		t.Fatalf("second run: batch %s (first %s), %d calls", second.BatchID, first.BatchID, second.ProviderCalls)
	}
	if calls, _ := store.BatchCalls(ctx, first.BatchID); len(calls) != len(callsBefore) {
		t.Errorf("the first batch has %d calls now, %d before", len(calls), len(callsBefore))
	}
	if calls, _ := store.BatchCalls(ctx, second.BatchID); len(calls) != 0 {
		t.Errorf("the re-priced batch made %d calls", len(calls))
	}
	b, err := store.Batch(ctx, second.BatchID)
	if err != nil || b.PricedFrom != first.BatchID || b.State != ledger.StateComplete {
		t.Fatalf("re-priced batch %+v, %v", b, err)
	}
	var m schemas.Manifest
	raw, err := os.ReadFile(filepath.Join(outDir, second.BatchID, "_manifest.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(raw, &m); err != nil || m.Tariff != "cantine-2027-01" || m.PricedFrom != first.BatchID || m.ProviderCalls != 0 {
		t.Fatalf("manifest %+v, %v", m, err)
	}
	priced := func(id string) map[int64]int64 {
		out := map[int64]int64{}
		for _, r := range readBatchResults(t, outDir, id) {
			if r.Tarif != nil {
				out[r.RowNumber] = *r.Tarif
			}
		}
		return out
	}
	before, after := priced(first.BatchID), priced(second.BatchID)
	if len(before) == 0 || len(after) != len(before) {
		t.Fatalf("%d priced rows before, %d after", len(before), len(after))
	}
	changed := 0
	for n, p := range before {
		want := map[int64]int64{80: 50, 410: 450}[p]
		if want == 0 {
			want = p
		}
		if after[n] != want {
			t.Errorf("row %d: %d cents before, %d after, want %d", n, p, after[n], want)
		}
		if after[n] != p {
			changed++
		}
	}
	if changed == 0 {
		t.Error("no price changed")
	}

	// The agents' export is the new version's.
	csvPath := filepath.Join(dir, "r.csv")
	if code, _, stderr := runApbatch(t, ctx, "results", "--data-dir", dataDir, "-o", csvPath); code != 0 {
		t.Fatalf("results: %d %s", code, stderr)
	}
	if text, _ := os.ReadFile(csvPath); !strings.Contains(string(text), ";0,50;") || strings.Contains(string(text), ";0,80;") {
		t.Errorf("export holds the old prices:\n%s", text)
	}
}

// TestRun_NewMappingRefusesReuse: a roster verified before, run with
// another column mapping, is not reused silently: the mapping can change
// the identities read.
func TestRun_NewMappingRefusesReuse(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	dir := t.TempDir()
	dataDir := filepath.Join(dir, "data")
	mapping := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	a, b := mapping("a.yaml", "nom_usage: nom_usage\n"), mapping("b.yaml", "reference: reference\n")
	for i, tc := range []struct {
		mapping string
		ok      bool
	}{{a, true}, {b, false}, {b, true}} {
		code, _, stderr := runApbatch(t, ctx, "run", "--data-dir", dataDir, "--flush-interval", "300ms", "--columns", tc.mapping, samplePath)
		if (code == 0) != tc.ok || !tc.ok && !strings.Contains(stderr, "autre correspondance de colonnes") {
			t.Fatalf("run %d (--columns %s): exit %d\n%s", i+1, filepath.Base(tc.mapping), code, stderr)
		}
	}
}

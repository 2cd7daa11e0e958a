package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestResults_ReplacedRosterRefused: a roster is verified as x.csv, then
// another roster is uploaded under the same name and verified too. The
// export of the first batch refuses (non-zero exit, a French message that
// says what to do) rather than join its results to the second roster's
// rows; the second batch still exports, with its own families only; the
// Parquet export of the first, which reads no input, still works.
func TestResults_ReplacedRosterRefused(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	sample, err := os.ReadFile(samplePath)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.SplitAfter(strings.TrimRight(string(sample), "\n")+"\n", "\n")
	header, rows := lines[0], lines[1:len(lines)-1]
	rosterA, rosterB := header+strings.Join(rows[:5], ""), header+strings.Join(rows[5:10], "")
	familyOf := func(row string) string { return strings.SplitN(row, ";", 2)[0] }

	x := filepath.Join(dir, "x.csv")
	run := func(roster string) string {
		t.Helper()
		if err := os.WriteFile(x, []byte(roster), 0o600); err != nil {
			t.Fatal(err)
		}
		sum := filepath.Join(dir, "summary.json")
		code, stdout, stderr := runApbatch(t, ctx, "run", "--data-dir", data, "--flush-interval", "200ms", "--summary-json", sum, x)
		if code != 0 {
			t.Fatalf("run: exit %d\n%s\n%s", code, stdout, stderr)
		}
		var s summary
		body, _ := os.ReadFile(sum)
		if err := json.Unmarshal(body, &s); err != nil || s.BatchID == "" || s.RowsTotal != 5 {
			t.Fatalf("summary %s: %v", body, err)
		}
		return s.BatchID
	}
	first := run(rosterA)
	second := run(rosterB)
	if first == second {
		t.Fatalf("one batch %s for two rosters", first)
	}

	for _, out := range []string{"premier.csv", "premier.xlsx"} {
		path := filepath.Join(dir, out)
		code, stdout, stderr := runApbatch(t, ctx, "results", "--data-dir", data, "-o", path, first)
		if code == 0 {
			body, _ := os.ReadFile(path)
			t.Fatalf("results of the replaced roster's batch: exit 0\n%s\n%s", stdout, body)
		}
		if !strings.Contains(stderr, "remplacé ou supprimé") || !strings.Contains(stderr, ".parquet") {
			t.Errorf("%s: message does not say what happened and what to do:\n%s", out, stderr)
		}
		for _, r := range rows[5:10] {
			if strings.Contains(stdout+stderr, familyOf(r)) {
				t.Errorf("%s: output names a family of the second roster (%s)", out, familyOf(r))
			}
		}
		if _, err := os.Stat(path); !os.IsNotExist(err) {
			t.Errorf("%s left behind: %v", out, err)
		}
	}

	path := filepath.Join(dir, "second.csv")
	if code, stdout, stderr := runApbatch(t, ctx, "results", "--data-dir", data, "-o", path, second); code != 0 {
		t.Fatalf("results of the second batch: exit %d\n%s\n%s", code, stdout, stderr)
	}
	body, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range rows[:10] {
		if has := strings.Contains(string(body), familyOf(r)+";"); has != (i >= 5) {
			t.Errorf("second batch's export: family %s present %v", familyOf(r), has)
		}
	}
	if code, stdout, stderr := runApbatch(t, ctx, "results", "--data-dir", data, "-o", filepath.Join(dir, "premier.parquet"), first); code != 0 {
		t.Fatalf("Parquet results of the first batch: exit %d\n%s\n%s", code, stdout, stderr)
	}
}

// TestResults_UnknownFormatRefused: an export to an extension apbatch does
// not write (.ods) is refused in French, with the formats it writes,
// rather than written as CSV; run refuses such an --out rather than make a
// folder of that name.
func TestResults_UnknownFormatRefused(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	for _, args := range [][]string{
		{"results", "--data-dir", dir, "-o", filepath.Join(dir, "x.ods")},
		{"results", "--data-dir", dir, "--format", "ods", "-o", filepath.Join(dir, "x.ods")},
		{"run", "--data-dir", filepath.Join(dir, "data"), "--out", filepath.Join(dir, "x.ods"), samplePath},
	} {
		code, stdout, stderr := runApbatch(t, ctx, args...)
		want := "--out " // run: give a folder or a workbook
		if args[0] == "results" {
			want = "ods » inconnu : les résultats s'écrivent en .xlsx (Excel), .csv ou .parquet"
		}
		if code != 1 || !strings.Contains(stderr, want) || !strings.Contains(stderr, ".xlsx") {
			t.Errorf("%v: exit %d, want 1 and %q\n%s%s", args, code, want, stdout, stderr)
		}
		if _, err := os.Stat(filepath.Join(dir, "x.ods")); !os.IsNotExist(err) {
			t.Errorf("%v: x.ods made: %v", args, err)
		}
	}
}

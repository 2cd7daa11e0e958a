package main

import (
	"context"
	"encoding/json"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/parquet-go/parquet-go"
	"github.com/xuri/excelize/v2"
)

// TestFlag_Errors: a refused command line is one French line naming the
// closest flag or command, and exits 2, without the usage.
func TestFlag_Errors(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"typo after the file", []string{"run", "familles.csv", "--tarif", "t.yaml"},
			"option inconnue --tarif : vouliez-vous dire --tariff ? apbatch run --help pour la liste"},
		{"swapped letters", []string{"run", "--chekcs", "qf", "familles.csv"}, "vouliez-vous dire --checks ?"},
		{"single dash, other case", []string{"status", "-Watch"}, "option inconnue --Watch : vouliez-vous dire --watch ? apbatch status --help"},
		{"prefix of one flag", []string{"results", "--form", "csv"}, "vouliez-vous dire --format ?"},
		{"nothing near", []string{"cancel", "--zzzzzz", "b1"}, "option inconnue --zzzzzz ; apbatch cancel --help pour la liste"},
		{"value missing", []string{"run", "familles.csv", "--tariff"}, "l'option --tariff attend une valeur"},
		{"value refused", []string{"run", "--header-row", "trois", "familles.csv"}, "valeur « trois » refusée pour --header-row"},
		{"subcommand's flag set", []string{"token", "check", "--tokn-file", "x"}, "vouliez-vous dire --token-file ? apbatch token check --help"},
		{"command typo", []string{"rnu", "familles.csv"}, "commande inconnue « rnu » : vouliez-vous dire « apbatch run » ?"},
		{"version takes no argument", []string{"version", "x"}, "argument inattendu « x »"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, stdout, stderr := runApbatch(t, context.Background(), tc.args...)
			if code != 2 || stdout != "" || strings.Count(stderr, "\n") != 1 || !strings.Contains(stderr, tc.want) {
				t.Fatalf("exit %d, stdout %q, stderr %q; want 2 and one line with %q", code, stdout, stderr, tc.want)
			}
		})
	}
}

// TestFlag_Help: --help and -h print each command's help on stdout and exit 0.
func TestFlag_Help(t *testing.T) {
	var lines [][]string
	for name := range commands(env{}) {
		lines = append(lines, []string{name, "--help"}, []string{name, "-h"})
	}
	lines = append(lines, []string{"sandbox", "gen", "--help"}, []string{"audit", "lookup", "-h"}, []string{"token", "check", "--help"},
		[]string{"run", "familles.csv", "--help"}, []string{"help", "run"}, []string{"--help"})
	for _, args := range lines {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			code, stdout, stderr := runApbatch(t, context.Background(), args...)
			if code != 0 || !strings.Contains(stdout, "Usage") || stderr != "" {
				t.Fatalf("exit %d, stderr %q, stdout:\n%s", code, stderr, stdout)
			}
		})
	}
}

func TestVersion(t *testing.T) {
	for _, args := range [][]string{{"version"}, {"--version"}} {
		code, stdout, stderr := runApbatch(t, context.Background(), args...)
		if code != 0 || !strings.HasPrefix(stdout, "apbatch ") || !strings.Contains(stdout, runtime.Version()) || stderr != "" {
			t.Fatalf("%v: exit %d, %q %q", args, code, stdout, stderr)
		}
	}
	platform := runtime.GOOS + "/" + runtime.GOARCH
	for _, tc := range []struct {
		name string
		info *debug.BuildInfo
		want string
	}{
		{"no build information", nil, "apbatch (devel) (" + runtime.Version() + " " + platform + ")"},
		{"module version", &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "v1.4.0"}}, "apbatch v1.4.0 (go1.26.8 " + platform + ")"},
		{"checkout with changes", &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "(devel)"}, Settings: []debug.BuildSetting{
			{Key: "vcs.revision", Value: "0123456789abcdef0123"}, {Key: "vcs.modified", Value: "true"}}},
			"apbatch (devel) (commit 0123456789ab+modified, go1.26.8 " + platform + ")"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := versionLine(tc.info); got != tc.want {
				t.Fatalf("got %q, want %q", got, tc.want)
			}
		})
	}
}

// batchRows reads the result rows of each batch of a run's summary, by
// source file name.
func batchRows(t *testing.T, out, sumPath string) map[string][]resultRow {
	t.Helper()
	var sum summary
	body, _ := os.ReadFile(sumPath)
	if err := json.Unmarshal(body, &sum); err != nil {
		t.Fatalf("summary %s: %v", body, err)
	}
	rows := map[string][]resultRow{}
	for _, b := range sum.Batches {
		err := filepath.WalkDir(filepath.Join(out, b.BatchID), func(p string, d fs.DirEntry, err error) error {
			if err != nil || !strings.HasSuffix(p, ".parquet") {
				return err
			}
			got, err := parquet.ReadFile[resultRow](p)
			rows[filepath.Base(b.Source)] = append(rows[filepath.Base(b.Source)], got...)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return rows
}

// TestRun_HeaderRow: the town's roster under a title (CSV, and a
// workbook with a merged title cell) is read from its header, flags
// given after the files; rows keep their line in the file. Under a small
// table that looks like a header, it is refused, then read with
// --header-row, as a new batch although the content is the same.
func TestRun_HeaderRow(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	dir := t.TempDir()
	roster, err := os.ReadFile("../../deploy/samples/cantine-mairie.csv")
	if err != nil {
		t.Fatal(err)
	}
	titled := filepath.Join(dir, "titre.csv")
	decoy := filepath.Join(dir, "tableau.csv")
	sheet := filepath.Join(dir, "titre.xlsx")
	write := func(path, content string) {
		t.Helper()
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(titled, "Mairie - inscrits cantine 2026-2027\n"+string(roster))
	write(decoy, "Nom;Prenom\nRESPONSABLE;Cantine\n"+string(roster)) // ASCII: the roster is Windows-1252
	xf, err := excelize.OpenFile("../../deploy/samples/cantine-mairie.xlsx")
	if err != nil {
		t.Fatal(err)
	}
	name := xf.GetSheetList()[0]
	if err := xf.InsertRows(name, 1, 1); err != nil {
		t.Fatal(err)
	}
	if err := xf.SetCellValue(name, "A1", "Inscrits cantine 2026-2027"); err != nil {
		t.Fatal(err)
	}
	if err := xf.MergeCell(name, "A1", "I1"); err != nil {
		t.Fatal(err)
	}
	if err := xf.SaveAs(sheet); err != nil {
		t.Fatal(err)
	}
	xf.Close()

	data := filepath.Join(dir, "data")
	// lineOf checks that every row is its line in the file, the header
	// being on line header, and that row messages name that line.
	lineOf := func(file string, rows []resultRow, header int64) {
		t.Helper()
		if len(rows) != 18 {
			t.Fatalf("%s: %d rows, want 18", file, len(rows))
		}
		seen := map[int64]bool{}
		invalid := 0
		for _, r := range rows {
			seen[r.RowNumber] = true
			if r.Status == "invalid_input" {
				invalid++
				if r.ErrorMessage == nil || !strings.Contains(*r.ErrorMessage, "ligne "+strconv.FormatInt(r.RowNumber, 10)+",") {
					t.Errorf("%s row %d: message %v", file, r.RowNumber, r.ErrorMessage)
				}
			}
		}
		for n := header + 1; n <= header+18; n++ {
			if !seen[n] {
				t.Errorf("%s: no row %d (rows %v)", file, n, seen)
			}
		}
		if invalid != 2 {
			t.Errorf("%s: %d invalid rows, want 2", file, invalid)
		}
	}

	out, sumPath := filepath.Join(dir, "out"), filepath.Join(dir, "summary.json")
	code, stdout, stderr := runApbatch(t, ctx, "run", titled, sheet, "--data-dir", data, "--flush-interval", "1s",
		"--out", out, "--summary-json", sumPath, "--tariff", "../../deploy/samples/tarifs-cantine.yaml")
	if code != 0 {
		t.Fatalf("exit %d\n%s\n%s", code, stdout, stderr)
	}
	rows := batchRows(t, out, sumPath)
	lineOf("titre.csv", rows["titre.csv"], 2)
	lineOf("titre.xlsx", rows["titre.xlsx"], 2)

	code, stdout, stderr = runApbatch(t, ctx, "run", decoy, "--data-dir", data, "--flush-interval", "1s")
	if code != 1 || !strings.Contains(stdout+stderr, "colonnes manquantes") || !strings.Contains(stdout+stderr, "colonnes trouvées : Nom, Prenom") {
		t.Fatalf("decoy header: exit %d\n%s\n%s", code, stdout, stderr)
	}
	code, stdout, stderr = runApbatch(t, ctx, "run", decoy, "--header-row", "3", "--data-dir", data, "--flush-interval", "1s",
		"--out", out, "--summary-json", sumPath)
	if code != 0 {
		t.Fatalf("--header-row 3: exit %d\n%s\n%s", code, stdout, stderr)
	}
	lineOf("tableau.csv", batchRows(t, out, sumPath)["tableau.csv"], 3)

	// The export reads the roster from the same header row.
	var sum summary
	body, _ := os.ReadFile(sumPath)
	if err := json.Unmarshal(body, &sum); err != nil || len(sum.Batches) != 1 {
		t.Fatalf("summary %s: %v", body, err)
	}
	export := filepath.Join(dir, "resultats.csv")
	if code, stdout, stderr := runApbatch(t, ctx, "results", sum.Batches[0].BatchID, "-o", export, "--data-dir", data); code != 0 {
		t.Fatalf("results: exit %d\n%s\n%s", code, stdout, stderr)
	}
	raw, err := os.ReadFile(export)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(string(raw), "\r\n"), "\r\n")
	if !strings.HasPrefix(lines[0], "\ufeffN° famille;Enfant;") || len(lines) != 19 {
		t.Fatalf("export:\n%s", raw)
	}
}

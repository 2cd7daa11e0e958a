package main

import (
	"archive/zip"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/xuri/excelize/v2"
)

// sampleColumns are the sample's columns a workbook roster carries.
var sampleColumns = []string{"reference", "nom_naissance", "prenoms", "sexe", "date_naissance", "code_insee_pays_naissance", "code_insee_commune_naissance"}

// writeWorkbook writes rows rows of the sample (cycling) to path with a
// stream writer, then lets extra write more rows below them (at row
// numbers past rows+1).
func writeWorkbook(t *testing.T, path string, rows int, extra func(sw *excelize.StreamWriter)) {
	t.Helper()
	sample := readSample(t)
	f := excelize.NewFile()
	defer f.Close()
	sw, err := f.NewStreamWriter("Sheet1")
	if err != nil {
		t.Fatal(err)
	}
	header := make([]any, len(sampleColumns))
	for i, c := range sampleColumns {
		header[i] = c
	}
	sw.SetRow("A1", header)
	for n := 0; n < rows; n++ {
		s := sample[n%len(sample)]
		vals := make([]any, len(sampleColumns))
		for i, c := range sampleColumns {
			vals[i] = s[c]
		}
		cell, _ := excelize.CoordinatesToCellName(1, n+2)
		if err := sw.SetRow(cell, vals); err != nil {
			t.Fatal(err)
		}
	}
	if extra != nil {
		extra(sw)
	}
	if err := sw.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := f.SaveAs(path); err != nil {
		t.Fatal(err)
	}
}

// setDimension rewrites the sheet of the workbook at path to declare ref
// as its range, as a hostile or broken tool would.
func setDimension(t *testing.T, path, ref string) {
	t.Helper()
	zr, err := zip.OpenReader(path)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	found := false
	for _, f := range zr.File {
		rc, err := f.Open()
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			t.Fatal(err)
		}
		if f.Name == "xl/worksheets/sheet1.xml" {
			re := regexp.MustCompile(`<dimension ref="[^"]*"/>`)
			if !re.Match(body) {
				body = bytes.Replace(body, []byte("<sheetData"), []byte(`<dimension ref="A1"/><sheetData`), 1)
			}
			body = re.ReplaceAll(body, []byte(`<dimension ref="`+ref+`"/>`))
			found = bytes.Contains(body, []byte(`<dimension ref="`+ref+`"/>`))
		}
		w, err := zw.Create(f.Name)
		if err != nil {
			t.Fatal(err)
		}
		w.Write(body)
	}
	zr.Close()
	if err := zw.Close(); err != nil || !found {
		t.Fatalf("dimension not set: %v", err)
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestRun_HostileWorkbook: a workbook declaring the largest range Excel
// has ends quickly: its real rows are processed, or, when a cell at
// XFD1048576 holds a value, it is refused in French with what to do.
func TestRun_HostileWorkbook(t *testing.T) {
	tests := []struct {
		name      string
		dimension string
		extra     func(sw *excelize.StreamWriter)
		refusal   []string // nil: the rows are processed
	}{
		{"declared range A1:XFD1048576", "A1:XFD1048576", nil, nil},
		{"a value at XFD1048576", "", func(sw *excelize.StreamWriter) {
			if err := sw.SetRow("XFD1048576", []any{"x"}); err != nil {
				t.Fatal(err)
			}
		}, []string{"liste.xlsx", "la ligne 1048576 a des cellules remplies jusqu'à la colonne XFD", "200 colonnes au plus", "supprimez les colonnes après vos données"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			dir := t.TempDir()
			path := filepath.Join(dir, "liste.xlsx")
			writeWorkbook(t, path, 3, tt.extra)
			if tt.dimension != "" {
				setDimension(t, path, tt.dimension)
			}
			sumPath := filepath.Join(dir, "summary.json")
			code, stdout, stderr := runApbatch(t, ctx, "run", "--data-dir", filepath.Join(dir, "data"), "--flush-interval", "1s",
				"--summary-json", sumPath, "--out", filepath.Join(dir, "out"), path)
			if ctx.Err() != nil {
				t.Fatalf("run outlasted its minute\n%s\n%s", stdout, stderr)
			}
			if tt.refusal == nil {
				var sum summary
				body, _ := os.ReadFile(sumPath)
				if code != 0 || json.Unmarshal(body, &sum) != nil || sum.RowsTotal != 3 {
					t.Fatalf("exit %d, summary %s\n%s\n%s", code, body, stdout, stderr)
				}
				return
			}
			if code != 1 {
				t.Fatalf("exit %d, want 1\n%s\n%s", code, stdout, stderr)
			}
			for _, want := range tt.refusal {
				if !strings.Contains(stdout+stderr, want) {
					t.Errorf("output lacks %q:\n%s\n%s", want, stdout, stderr)
				}
			}
		})
	}
}

// TestRun_WorkbookTmpFiles: a large workbook is unpacked under
// --data-dir/tmp, never in the system's temporary folder; a run cancelled
// while it reads one stops promptly; what a stopped run leaves there is
// removed by the next start, and by purge once an hour old.
func TestRun_WorkbookTmpFiles(t *testing.T) {
	sysTmp := t.TempDir()
	t.Setenv("TMPDIR", sysTmp)
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	tmp := filepath.Join(data, "tmp")
	big := filepath.Join(dir, "grande-liste.xlsx")
	writeWorkbook(t, big, 120_000, nil) // a sheet of more than 16 MB unpacked

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan int, 1)
	go func() {
		code, _, _ := runApbatch(t, runCtx, "run", "--data-dir", data, "--flush-interval", "1s", "--out", filepath.Join(dir, "out"), big)
		done <- code
	}()
	// Wait for the read to unpack the sheet, then stop the run (SIGTERM
	// cancels this context).
	for {
		if entries, _ := os.ReadDir(tmp); len(entries) > 0 {
			break
		}
		select {
		case code := <-done:
			t.Fatalf("run ended (exit %d) before unpacking the workbook in %s", code, tmp)
		case <-ctx.Done():
			t.Fatal("the workbook never reached --data-dir/tmp")
		case <-time.After(10 * time.Millisecond):
		}
	}
	stop()
	stopped := time.Now()
	select {
	case <-done:
		t.Logf("run returned %v after its context ended during a read", time.Since(stopped).Round(time.Millisecond))
	case <-time.After(30 * time.Second):
		t.Fatal("run still going 30 s after its context ended during a read")
	}
	if entries, _ := os.ReadDir(sysTmp); len(entries) > 0 {
		t.Errorf("%d files in the system's temporary folder: %s", len(entries), entries[0].Name())
	}

	// A leftover, as a kill leaves it: removed by the next start.
	leftover := filepath.Join(tmp, "excelize-leftover")
	if err := os.WriteFile(leftover, []byte("DUPONT;JEAN"), 0o600); err != nil {
		t.Fatal(err)
	}
	if code, out, errs := runApbatch(t, ctx, "run", "--data-dir", data, "--flush-interval", "1s", "--out", filepath.Join(dir, "out"), samplePath); code != 0 {
		t.Fatalf("second run: exit %d\n%s\n%s", code, out, errs)
	}
	if _, err := os.Stat(leftover); !os.IsNotExist(err) {
		t.Fatalf("the leftover survived a start: %v", err)
	}

	// purge removes the leftovers an hour old, not a read in progress.
	old, fresh := filepath.Join(tmp, "excelize-old"), filepath.Join(tmp, "excelize-fresh")
	for _, p := range []string{old, fresh} {
		if err := os.WriteFile(p, []byte("DUPONT;JEAN"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	hourAgo := time.Now().Add(-2 * time.Hour)
	if err := os.Chtimes(old, hourAgo, hourAgo); err != nil {
		t.Fatal(err)
	}
	code, out, errs := runApbatch(t, ctx, "purge", "--data-dir", data)
	if code != 0 || !strings.Contains(out, "temporary workbook files") {
		t.Fatalf("purge: exit %d\n%s\n%s", code, out, errs)
	}
	if _, err := os.Stat(old); !os.IsNotExist(err) {
		t.Errorf("purge left an old temporary file: %v", err)
	}
	if _, err := os.Stat(fresh); err != nil {
		t.Errorf("purge removed a temporary file in use: %v", err)
	}
}

// TestRun_ResultsWorkbook runs the town's roster, as a CSV and as the same
// sheet in a workbook (dates as dates), and opens each resultats.xlsx the
// run wrote: QF and prices are numbers (prices in euros), birth dates are
// dates whichever the roster, the header is frozen and filtered, the rows
// to review and those not found are highlighted, and a "Synthèse" sheet
// counts rows by status and families by bracket with the revenue per meal.
func TestRun_ResultsWorkbook(t *testing.T) {
	for _, roster := range []string{"cantine-mairie.csv", "cantine-mairie.xlsx"} {
		t.Run(roster, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			dir := t.TempDir()
			out := filepath.Join(dir, "out")
			code, stdout, stderr := runApbatch(t, ctx, "run", "--data-dir", filepath.Join(dir, "data"), "--flush-interval", "500ms",
				"--out", out, "--tariff", "../../deploy/samples/tarifs-cantine.yaml", "../../deploy/samples/"+roster)
			if code != 0 {
				t.Fatalf("exit %d\n%s\n%s", code, stdout, stderr)
			}
			path := filepath.Join(out, "resultats.xlsx")
			f, err := excelize.OpenFile(path)
			if err != nil {
				t.Fatalf("%v\n%s", err, stdout)
			}
			defer f.Close()
			if got := f.GetSheetList(); len(got) != 2 || got[0] != "Résultats" || got[1] != "Synthèse" {
				t.Fatalf("sheets %v", got)
			}
			const sheet = "Résultats"
			rows, err := f.GetRows(sheet)
			if err != nil || len(rows) != 19 {
				t.Fatalf("%d rows: %v", len(rows), err)
			}
			col := map[string]int{}
			for i, h := range rows[0] {
				col[h] = i + 1
			}
			for _, h := range []string{"Date de naissance", "Statut", "Quotient familial", "Tranche", "Tarif", "À vérifier", "Message"} {
				if col[h] == 0 {
					t.Fatalf("no column %q in %v", h, rows[0])
				}
			}
			at := func(column string, row int) string {
				name, _ := excelize.CoordinatesToCellName(col[column], row)
				return name
			}
			numFmt := func(cell string) string {
				t.Helper()
				id, err := f.GetCellStyle(sheet, cell)
				if err != nil {
					t.Fatal(err)
				}
				st, err := f.GetStyle(id)
				if err != nil {
					t.Fatal(err)
				}
				if st.CustomNumFmt != nil {
					return *st.CustomNumFmt
				}
				return strconv.Itoa(st.NumFmt)
			}
			raw := func(cell string) string {
				v, _ := f.GetCellValue(sheet, cell, excelize.Options{RawCellValue: true})
				return v
			}
			isNumber := func(cell string) bool {
				typ, _ := f.GetCellType(sheet, cell)
				_, err := strconv.ParseFloat(raw(cell), 64)
				return err == nil && (typ == excelize.CellTypeUnset || typ == excelize.CellTypeNumber)
			}
			// Line 2: F001, DA SILVA, born 16/02/1995, QF 798, C, 2,40 €.
			if c := at("Quotient familial", 2); !isNumber(c) || raw(c) != "798" {
				t.Errorf("QF %s: %q, not the number 798", c, raw(c))
			}
			if c := at("Tarif", 2); !isNumber(c) || raw(c) != "2.4" || !strings.Contains(numFmt(c), "€") {
				t.Errorf("price %s: %q in format %q, want 2.4 in euros", c, raw(c), numFmt(c))
			}
			c := at("Date de naissance", 2)
			if shown, _ := f.GetCellValue(sheet, c); !isNumber(c) || raw(c) != "34746" || shown != "16/02/1995" || numFmt(c) != "dd/mm/yyyy" {
				t.Errorf("birth date %s: raw %q shown %q format %q, want the date 16/02/1995", c, raw(c), shown, numFmt(c))
			}
			if rows[1][col["Statut"]-1] != "vérifié" || rows[1][col["Tranche"]-1] != "C" {
				t.Errorf("line 2: %v", rows[1])
			}
			// The QF of 0 (F011) is to review, with its reason.
			fills := map[string]int{}
			for n, r := range rows[1:] {
				id, _ := f.GetCellStyle(sheet, at("Statut", n+2))
				st, _ := f.GetStyle(id)
				fill := ""
				if len(st.Fill.Color) > 0 {
					fill = st.Fill.Color[0]
				}
				status := r[col["Statut"]-1]
				review := col["À vérifier"]-1 < len(r) && r[col["À vérifier"]-1] == "oui"
				switch {
				case review:
					if col["Message"]-1 >= len(r) || !strings.Contains(r[col["Message"]-1], "quotient familial égal à 0") {
						t.Errorf("line %d to review without its reason: %v", n+2, r)
					}
					fills["review"]++
				case status == "non trouvé":
					fills["not found"]++
				}
				if (review || status == "ligne à corriger" || status == "identité à préciser" || status == "non trouvé") == (fill == "") {
					t.Errorf("line %d (%s, review %v): fill %q", n+2, status, review, fill)
				}
			}
			if fills["review"] != 1 || fills["not found"] != 1 {
				t.Errorf("rows to review and not found: %v", fills)
			}
			// Frozen header, autofilter over the whole table.
			panes, err := f.GetPanes(sheet)
			if err != nil || !panes.Freeze || panes.YSplit != 1 {
				t.Errorf("panes %+v %v", panes, err)
			}
			last, _ := excelize.CoordinatesToCellName(len(rows[0]), 19)
			xml := sheetXML(t, path, "xl/worksheets/sheet1.xml")
			filter := regexp.MustCompile(`<autoFilter ref="([^"]+)"`).FindStringSubmatch(xml)
			if len(filter) < 2 || strings.ReplaceAll(filter[1], "$", "") != "A1:"+last || !strings.Contains(xml, `<col min="1" max="1" width=`) {
				t.Errorf("autofilter %v, want A1:%s; column widths set: %v", filter, last, strings.Contains(xml, "<col "))
			}
			// The summary sheet.
			sum, err := f.GetRows("Synthèse")
			if err != nil {
				t.Fatal(err)
			}
			text := ""
			for _, r := range sum {
				text += strings.Join(r, "|") + "\n"
			}
			for _, want := range []string{"Lignes par statut", "Quotient familial (CAF/MSA)|vérifié|14", "|ligne à corriger|2",
				"Familles par tranche", "C|2|3|2.40 €|7.20 €", "Total|12|16||53.80 €", "Recette attendue par repas", "Changements depuis la dernière campagne"} {
				if !strings.Contains(text, want) {
					t.Errorf("Synthèse lacks %q:\n%s", want, text)
				}
			}
		})
	}
}

// sheetXML returns a part of the workbook at path.
func sheetXML(t *testing.T, path, part string) string {
	t.Helper()
	zr, err := zip.OpenReader(path)
	if err != nil {
		t.Fatal(err)
	}
	defer zr.Close()
	for _, f := range zr.File {
		if f.Name == part {
			rc, err := f.Open()
			if err != nil {
				t.Fatal(err)
			}
			defer rc.Close()
			b, err := io.ReadAll(rc)
			if err != nil {
				t.Fatal(err)
			}
			return string(b)
		}
	}
	t.Fatalf("%s has no %s", path, part)
	return ""
}

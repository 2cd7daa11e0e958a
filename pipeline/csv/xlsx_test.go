package csv

import (
	"archive/zip"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/xuri/excelize/v2"
)

// rosterHeader is a header row the quotient familial accepts, as inline
// strings.
const rosterHeader = `<row r="1">` +
	`<c r="A1" t="inlineStr"><is><t>nom_naissance</t></is></c><c r="B1" t="inlineStr"><is><t>prenoms</t></is></c>` +
	`<c r="C1" t="inlineStr"><is><t>sexe</t></is></c><c r="D1" t="inlineStr"><is><t>date_naissance</t></is></c>` +
	`<c r="E1" t="inlineStr"><is><t>code_insee_pays_naissance</t></is></c><c r="F1" t="inlineStr"><is><t>code_insee_commune_naissance</t></is></c></row>`

// rosterRow is data row n (its Excel row number).
func rosterRow(n int) string {
	cell := func(col, v string) string {
		return fmt.Sprintf(`<c r="%s%d" t="inlineStr"><is><t>%s</t></is></c>`, col, n, v)
	}
	return fmt.Sprintf(`<row r="%d">`, n) + cell("A", "DUPONT") + cell("B", "JEAN") + cell("C", "M") +
		cell("D", "1982-12-27") + cell("E", "99100") + cell("F", "08480") + `</row>`
}

// workbook writes an .xlsx by hand around one sheet's XML: dimension is
// the declared range ("" for none), rows the <sheetData> content.
func workbook(t testing.TB, dimension, rows string) []byte {
	t.Helper()
	var buf bytes.Buffer
	z := zip.NewWriter(&buf)
	dim := ""
	if dimension != "" {
		dim = `<dimension ref="` + dimension + `"/>`
	}
	for _, part := range []struct{ name, body string }{
		{"[Content_Types].xml", `<?xml version="1.0" encoding="UTF-8"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">` +
			`<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/><Default Extension="xml" ContentType="application/xml"/>` +
			`<Override PartName="/xl/workbook.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/>` +
			`<Override PartName="/xl/worksheets/sheet1.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/></Types>`},
		{"_rels/.rels", `<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">` +
			`<Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument" Target="xl/workbook.xml"/></Relationships>`},
		{"xl/workbook.xml", `<?xml version="1.0" encoding="UTF-8"?><workbook xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" ` +
			`xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships"><sheets><sheet name="Liste" sheetId="1" r:id="rId1"/></sheets></workbook>`},
		{"xl/_rels/workbook.xml.rels", `<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">` +
			`<Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/worksheet" Target="worksheets/sheet1.xml"/></Relationships>`},
		{"xl/worksheets/sheet1.xml", `<?xml version="1.0" encoding="UTF-8"?><worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main">` +
			dim + `<sheetData>` + rows + `</sheetData></worksheet>`},
	} {
		w, err := z.Create(part.name)
		if err != nil {
			t.Fatal(err)
		}
		io.WriteString(w, part.body)
	}
	if err := z.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// readRows reads every row of a workbook.
func readRows(ctx context.Context, raw []byte, opts Options) ([]Row, error) {
	r, err := OpenXLSX(ctx, bytes.NewReader(raw), "liste.xlsx", opts)
	if err != nil {
		return nil, err
	}
	var rows []Row
	for {
		row, err := r.Next()
		if errors.Is(err, io.EOF) {
			return rows, nil
		}
		if err != nil {
			return rows, err
		}
		rows = append(rows, row)
	}
}

// TestOpenXLSX_DeclaredRange: a sheet is read by its content, whatever
// range it declares; content beyond the limits refuses the workbook in
// French, quickly.
func TestOpenXLSX_DeclaredRange(t *testing.T) {
	data := rosterRow(2) + rosterRow(3)
	var wide strings.Builder
	for n := 2; n < 2000; n++ {
		fmt.Fprintf(&wide, `<row r="%d"><c r="XFD%d"><v>1</v></c></row>`, n, n)
	}
	var header201 strings.Builder
	header201.WriteString(`<row r="1">`)
	for c := 1; c <= 201; c++ {
		fmt.Fprintf(&header201, `<c t="inlineStr"><is><t>col%d</t></is></c>`, c)
	}
	header201.WriteString(`</row>`)
	tests := []struct {
		name, dimension, rows string
		rowsWant              int
		refusal               string // "" when the rows are read
	}{
		{"maximum dimension", "A1:XFD1048576", rosterHeader + data, 2, ""},
		{"empty styled cell at XFD1048576", "A1:XFD1048576", rosterHeader + data + `<row r="1048576"><c r="XFD1048576" s="0"/></row>`, 2, ""},
		{"value at XFD1048576", "A1:XFD1048576", rosterHeader + data + `<row r="1048576"><c r="XFD1048576"><v>1</v></c></row>`, 0,
			"la ligne 1048576 a des cellules remplies jusqu'à la colonne XFD"},
		{"every row out to XFD", "", rosterHeader + wide.String(), 0, "jusqu'à la colonne XFD ; un classeur est lu sur 200 colonnes au plus"},
		{"header of 201 columns", "", header201.String(), 0, "la ligne 1 a des cellules remplies jusqu'à la colonne GS"},
		{"row past the maximum", "", rosterHeader + `<row r="1048577"><c r="A1048577"><v>1</v></c></row>`, 0, "plus de 1048576 lignes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			rows, err := readRows(ctx, workbook(t, tt.dimension, tt.rows), Options{Now: today, TmpDir: t.TempDir()})
			if ctx.Err() != nil {
				t.Fatal("the read outlasted its deadline")
			}
			if tt.refusal == "" {
				if err != nil || len(rows) != tt.rowsWant {
					t.Fatalf("%d rows, %v; want %d", len(rows), err, tt.rowsWant)
				}
				for _, r := range rows {
					if len(r.Errors) > 0 || len(r.Record) != 6 {
						t.Errorf("row %d: %v %q", r.Line, r.Errors, r.Record)
					}
				}
				return
			}
			var fe *FileError
			if !errors.As(err, &fe) || !strings.Contains(fe.Message, tt.refusal) {
				t.Fatalf("err = %v, want a FileError with %q", err, tt.refusal)
			}
		})
	}
}

// blockingReader never delivers a byte until closed.
type blockingReader struct{ done chan struct{} }

func (b blockingReader) Read([]byte) (int, error) {
	<-b.done
	return 0, io.ErrUnexpectedEOF
}

// TestOpenXLSX_ContextEndsRead: the context ends a read, whether the
// workbook is still arriving or its rows are being read.
func TestOpenXLSX_ContextEndsRead(t *testing.T) {
	t.Run("while opening", func(t *testing.T) {
		stuck := blockingReader{make(chan struct{})}
		defer close(stuck.done)
		ctx, cancel := context.WithCancel(context.Background())
		errc := make(chan error, 1)
		go func() {
			_, err := OpenXLSX(ctx, stuck, "liste.xlsx", Options{Now: today, TmpDir: t.TempDir()})
			errc <- err
		}()
		cancel()
		select {
		case err := <-errc:
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("err = %v, want context.Canceled", err)
			}
		case <-time.After(2 * time.Second):
			t.Fatal("OpenXLSX still runs 2 s after its context ended")
		}
	})
	t.Run("while reading rows", func(t *testing.T) {
		var rows strings.Builder
		rows.WriteString(rosterHeader)
		for n := 2; n < 1000; n++ {
			rows.WriteString(rosterRow(n))
		}
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		r, err := OpenXLSX(ctx, bytes.NewReader(workbook(t, "", rows.String())), "liste.xlsx", Options{Now: today, TmpDir: t.TempDir()})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := r.Next(); err != nil {
			t.Fatal(err)
		}
		cancel()
		if _, err := r.Next(); !errors.Is(err, context.Canceled) {
			t.Fatalf("Next after cancel = %v, want context.Canceled", err)
		}
	})
}

// TestOpenXLSX_TmpDir: a sheet too large for memory is unpacked into
// TmpDir only, and removed once read.
func TestOpenXLSX_TmpDir(t *testing.T) {
	var rows strings.Builder
	rows.WriteString(rosterHeader)
	for n := 2; rows.Len() < maxInMemoryPart+1<<20; n++ {
		rows.WriteString(rosterRow(n))
	}
	tmp := t.TempDir()
	r, err := OpenXLSX(context.Background(), bytes.NewReader(workbook(t, "", rows.String())), "liste.xlsx", Options{Now: today, TmpDir: tmp})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Next(); err != nil {
		t.Fatal(err)
	}
	if entries, _ := os.ReadDir(tmp); len(entries) == 0 {
		t.Fatal("no temporary file in TmpDir while a large sheet is read")
	}
	for {
		if _, err := r.Next(); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatal(err)
		}
	}
	if entries, _ := os.ReadDir(tmp); len(entries) != 0 {
		t.Fatalf("%d temporary files left after the last row", len(entries))
	}
}

// TestOpenXLSX_BirthDates: a birth date stored as a date cell (a serial
// number) comes back as JJ/MM/AAAA, as the agent sees it, in the row's
// identity and in its Record for exports; a year alone, or a date typed as
// text, comes back as written.
func TestOpenXLSX_BirthDates(t *testing.T) {
	f := excelize.NewFile()
	defer f.Close()
	dateStyle, err := f.NewStyle(&excelize.Style{NumFmt: 14})
	if err != nil {
		t.Fatal(err)
	}
	f.SetSheetRow("Sheet1", "A1", &[]any{"nom_naissance", "prenoms", "sexe", "date_naissance", "code_insee_commune_naissance"})
	f.SetSheetRow("Sheet1", "A2", &[]any{"DUPONT", "Jean", "M", time.Date(1995, 2, 16, 0, 0, 0, 0, time.UTC), "75056"})
	f.SetCellStyle("Sheet1", "D2", "D2", dateStyle)
	f.SetSheetRow("Sheet1", "A3", &[]any{"DUPONT", "Paul", "M", 1995, "75056"})
	f.SetSheetRow("Sheet1", "A4", &[]any{"DUPONT", "Marc", "M", "03/04/2001", "75056"})
	var buf bytes.Buffer
	if _, err := f.WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	r, err := OpenXLSX(context.Background(), &buf, "liste.xlsx", Options{Now: time.Date(2026, 9, 1, 0, 0, 0, 0, time.UTC)})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []struct {
		shown     string
		year, day int
	}{{"16/02/1995", 1995, 16}, {"1995", 1995, 0}, {"03/04/2001", 2001, 3}} {
		row, err := r.Next()
		if err != nil {
			t.Fatal(err)
		}
		id := row.Checks[0].Identity
		if row.Record[3] != want.shown || len(row.Checks[0].Errors) > 0 || id.AnneeNaissance != want.year || id.JourNaissance != want.day {
			t.Errorf("line %d: date %q (%v), identity %d-%d-%d, want %q", row.Line, row.Record[3], row.Checks[0].Errors,
				id.AnneeNaissance, id.MoisNaissance, id.JourNaissance, want.shown)
		}
	}
}

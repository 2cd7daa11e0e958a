package csv

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/xuri/excelize/v2"
)

// Limits that keep a workbook from exhausting memory: the file itself, and
// what its compressed parts may inflate to.
const (
	MaxXLSXSize     = 50 << 20
	maxUnzipped     = 400 << 20
	maxUnzippedPart = 200 << 20
)

// IsXLSX reports whether a file is an Excel workbook, by its name or its
// first bytes (a ZIP archive).
func IsXLSX(name string, head []byte) bool {
	return strings.HasSuffix(strings.ToLower(name), ".xlsx") || strings.HasPrefix(string(head), "PK\x03\x04")
}

// OpenFile reads a roster whatever its kind: a workbook (OpenXLSX) when
// its name or first bytes say so, a CSV (Open) otherwise.
func OpenFile(r io.Reader, name string, opts Options) (*Reader, error) {
	br := bufio.NewReader(r)
	head, _ := br.Peek(4)
	if IsXLSX(name, head) {
		return OpenXLSX(br, name, opts)
	}
	return Open(br, name, opts)
}

// OpenXLSX reads the first sheet of an Excel workbook (or opts.Sheet) as a
// roster: the first row is the header, as in a CSV. Cells are read as
// Excel shows them; dates formatted as numbers arrive as serials, which
// the date parser reads. The workbook is read whole (a ZIP needs it), up
// to MaxXLSXSize.
func OpenXLSX(r io.Reader, name string, opts Options) (*Reader, error) {
	lr := &io.LimitedReader{R: r, N: MaxXLSXSize + 1}
	f, err := excelize.OpenReader(lr, excelize.Options{UnzipSizeLimit: maxUnzipped, UnzipXMLSizeLimit: maxUnzippedPart})
	if lr.N <= 0 {
		return nil, &FileError{File: name, Message: fmt.Sprintf("classeur trop volumineux (plus de %d Mo) ; enregistrez-le en CSV", MaxXLSXSize>>20)}
	}
	if err != nil {
		return nil, &FileError{File: name, Message: "classeur Excel illisible (" + xlsxProblem(err) + ") ; ouvrez-le dans Excel et enregistrez-le à nouveau, ou en CSV"}
	}
	sheets := f.GetSheetList()
	sheet := opts.Sheet
	switch {
	case len(sheets) == 0:
		f.Close()
		return nil, &FileError{File: name, Message: "le classeur n'a aucune feuille"}
	case sheet == "":
		sheet = sheets[0]
	default:
		found := false
		for _, s := range sheets {
			found = found || s == sheet
		}
		if !found {
			f.Close()
			return nil, &FileError{File: name, Message: fmt.Sprintf("feuille « %s » introuvable (feuilles : %s)", sheet, strings.Join(sheets, ", "))}
		}
	}
	rows, err := f.Rows(sheet)
	if err != nil {
		f.Close()
		return nil, &FileError{File: name, Message: "feuille « " + sheet + " » illisible (" + xlsxProblem(err) + ")"}
	}
	return fromSource(&xlsxSource{f: f, rows: rows, name: name}, name, opts)
}

// xlsxSource reads a sheet's rows; a row's line is its Excel row number.
type xlsxSource struct {
	f     *excelize.File
	rows  *excelize.Rows
	name  string
	line  int
	width int // the header's, to pad rows whose last cells are empty
	done  bool
}

func (x *xlsxSource) Read() ([]string, int, error) {
	if x.done {
		return nil, 0, io.EOF
	}
	for x.rows.Next() {
		x.line++
		// Raw values: a date is its serial number, not a rendering whose
		// day and month order depends on the cell's format.
		rec, err := x.rows.Columns(excelize.Options{RawCellValue: true})
		if err != nil {
			return nil, x.line, &FileError{File: x.name, Message: fmt.Sprintf("ligne %d illisible (%s)", x.line, xlsxProblem(err))}
		}
		if x.width == 0 {
			if len(rec) == 0 {
				continue // blank rows above the header
			}
			x.width = len(rec)
		}
		for len(rec) < x.width {
			rec = append(rec, "")
		}
		// Cells past the header that are empty are formatting, not data.
		for len(rec) > x.width && strings.TrimSpace(rec[len(rec)-1]) == "" {
			rec = rec[:len(rec)-1]
		}
		return rec, x.line, nil
	}
	x.done = true
	err := x.rows.Error()
	x.rows.Close()
	x.f.Close()
	if err != nil {
		return nil, x.line, &FileError{File: x.name, Message: "classeur Excel illisible (" + xlsxProblem(err) + ")"}
	}
	return nil, x.line, io.EOF
}

// xlsxProblem describes an excelize error without file paths.
func xlsxProblem(err error) string {
	switch {
	case errors.Is(err, excelize.ErrWorkbookFileFormat):
		return "ce n'est pas un classeur .xlsx"
	case errors.Is(err, excelize.ErrOptionsUnzipSizeLimit):
		return "contenu décompressé trop volumineux"
	}
	msg := err.Error()
	if len(msg) > 120 {
		msg = msg[:120]
	}
	return msg
}

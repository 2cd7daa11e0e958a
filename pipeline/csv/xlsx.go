package csv

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/xuri/excelize/v2"
)

// Limits that keep a workbook within bounded time and memory: the file
// itself, what its compressed parts may inflate to (parts larger than
// maxInMemoryPart are unpacked to Options.TmpDir rather than kept in
// memory), and the sheet's real content. A sheet is read by its cells, not
// by the range it declares (<dimension>, or a lone cell at XFD1048576):
// empty rows cost nothing, but a row with content past MaxXLSXColumns, or
// more than MaxXLSXRows rows with content, refuse the workbook.
const (
	MaxXLSXSize     = 50 << 20
	MaxXLSXColumns  = 200
	MaxXLSXRows     = 1_000_000
	maxUnzipped     = 400 << 20
	maxInMemoryPart = 16 << 20
)

// IsXLSX reports whether a file is an Excel workbook, by its name or its
// first bytes (a ZIP archive).
func IsXLSX(name string, head []byte) bool {
	return strings.HasSuffix(strings.ToLower(name), ".xlsx") || strings.HasPrefix(string(head), "PK\x03\x04")
}

// OpenFile reads a roster whatever its kind: a workbook (OpenXLSX) when
// its name or first bytes say so, a CSV (Open) otherwise. ctx bounds the
// reading of a workbook (see OpenXLSX).
func OpenFile(ctx context.Context, r io.Reader, name string, opts Options) (*Reader, error) {
	br := bufio.NewReader(r)
	head, _ := br.Peek(4)
	if IsXLSX(name, head) {
		return OpenXLSX(ctx, br, name, opts)
	}
	return Open(br, name, opts)
}

// OpenXLSX reads the first sheet of an Excel workbook (or opts.Sheet) as a
// roster: the header row is found or given as in a CSV (see
// Options.HeaderRow), a row's line is its row number in the sheet. Cells are read as
// Excel stores them; a date of birth stored as a date (a serial number)
// comes back as JJ/MM/AAAA in Row.Record, as the agent sees it. The workbook is read whole (a ZIP needs it), up
// to MaxXLSXSize; its large parts are unpacked into opts.TmpDir (the
// system's temporary folder when empty), removed once the last row is
// read, or by whoever owns that folder after a crash.
//
// ctx bounds the whole read: OpenXLSX returns ctx.Err() soon after ctx
// ends, even while the workbook is still being unpacked (the unpacking
// then ends in the background and removes its files), and so does every
// Next of the Reader.
func OpenXLSX(ctx context.Context, r io.Reader, name string, opts Options) (*Reader, error) {
	done := make(chan *xlsxSource, 1)
	go func() { done <- openXLSX(ctx, r, name, opts) }()
	select {
	case x := <-done:
		if x.err != nil {
			return nil, x.err
		}
		return fromSource(x, name, opts)
	case <-ctx.Done():
		// Unpacking is not interruptible: let it end, then release it.
		go func() { (<-done).close() }()
		return nil, fmt.Errorf("csv: read %s: %w", name, ctx.Err())
	}
}

// openXLSX opens the workbook and reads its sheet's first row (which
// loads the shared strings), the parts of a read that ctx cannot stop.
// The returned source's err is set when it failed.
func openXLSX(ctx context.Context, r io.Reader, name string, opts Options) *xlsxSource {
	x := &xlsxSource{ctx: ctx, name: name}
	fail := func(msg string) *xlsxSource {
		x.close()
		x.err = &FileError{File: name, Message: msg}
		return x
	}
	lr := &io.LimitedReader{R: ctxReader{ctx, r}, N: MaxXLSXSize + 1}
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(lr); err != nil {
		x.err = fmt.Errorf("csv: read %s: %w", name, err)
		return x
	}
	if lr.N <= 0 {
		return fail(fmt.Sprintf("classeur trop volumineux (plus de %d Mo) ; enregistrez-le en CSV", MaxXLSXSize>>20))
	}
	f, err := excelize.OpenReader(&buf, excelize.Options{UnzipSizeLimit: maxUnzipped, UnzipXMLSizeLimit: maxInMemoryPart, TmpDir: opts.TmpDir})
	x.f = f
	if err != nil {
		return fail("classeur Excel illisible (" + xlsxProblem(err) + ") ; ouvrez-le dans Excel et enregistrez-le à nouveau, ou en CSV")
	}
	sheets := f.GetSheetList()
	sheet := opts.Sheet
	switch {
	case len(sheets) == 0:
		return fail("le classeur n'a aucune feuille")
	case sheet == "":
		sheet = sheets[0]
	default:
		found := false
		for _, s := range sheets {
			found = found || s == sheet
		}
		if !found {
			return fail(fmt.Sprintf("feuille « %s » introuvable (feuilles : %s)", sheet, strings.Join(sheets, ", ")))
		}
	}
	if x.rows, err = f.Rows(sheet); err != nil {
		return fail("feuille « " + sheet + " » illisible (" + xlsxProblem(err) + ")")
	}
	rec, line, err := x.Read()
	if err != nil && !errors.Is(err, io.EOF) {
		x.close()
		x.err = err
		return x
	}
	x.first, x.firstLine, x.firstErr = rec, line, err
	x.pending = true
	return x
}

// xlsxSource reads a sheet's rows; a row's line is its Excel row number.
type xlsxSource struct {
	// ctx is the read's: a source lives for one read, as its Reader.
	ctx   context.Context
	f     *excelize.File
	rows  *excelize.Rows
	name  string
	line  int
	width int // the header's, to pad rows whose last cells are empty (see setWidth)
	n     int // rows with content read
	done  bool
	err   error // openXLSX's failure

	// The first row, read by openXLSX.
	pending   bool
	first     []string
	firstLine int
	firstErr  error
}

func (x *xlsxSource) Read() ([]string, int, error) {
	if x.pending {
		x.pending = false
		return x.first, x.firstLine, x.firstErr
	}
	if x.done {
		return nil, x.line, io.EOF
	}
	for x.rows.Next() {
		x.line++
		if err := x.ctx.Err(); err != nil {
			x.close()
			return nil, x.line, fmt.Errorf("csv: read %s: %w", x.name, err)
		}
		// Raw values: a date is its serial number, not a rendering whose
		// day and month order depends on the cell's format.
		rec, err := x.rows.Columns(excelize.Options{RawCellValue: true})
		if err != nil {
			x.close()
			return nil, x.line, &FileError{File: x.name, Message: fmt.Sprintf("ligne %d illisible (%s)", x.line, xlsxProblem(err))}
		}
		used := len(rec) // up to the last cell with content
		for used > 0 && strings.TrimSpace(rec[used-1]) == "" {
			used--
		}
		if used == 0 {
			continue // an empty row, however far the sheet's range goes
		}
		if used > MaxXLSXColumns {
			x.close()
			col, _ := excelize.ColumnNumberToName(used)
			return nil, x.line, &FileError{File: x.name, Message: fmt.Sprintf("la ligne %d a des cellules remplies jusqu'à la colonne %s ; "+
				"un classeur est lu sur %d colonnes au plus : supprimez les colonnes après vos données (ou enregistrez la feuille en CSV)",
				x.line, col, MaxXLSXColumns)}
		}
		if x.n++; x.n > MaxXLSXRows {
			x.close()
			return nil, x.line, &FileError{File: x.name, Message: fmt.Sprintf("plus de %d lignes remplies ; découpez le classeur en plusieurs fichiers", MaxXLSXRows)}
		}
		// Cells past the header that are empty are formatting, not data.
		return x.widen(rec[:used]), x.line, nil
	}
	err := x.rows.Error()
	x.close()
	if err != nil {
		return nil, x.line, &FileError{File: x.name, Message: "classeur Excel illisible (" + xlsxProblem(err) + ")"}
	}
	return nil, x.line, io.EOF
}

// setWidth sets the header's width, once it is found: the rows read
// from then on are padded to it.
func (x *xlsxSource) setWidth(n int) { x.width = n }

// widen pads rec, a row without its last empty cells, to the header's
// width (a no-op until it is known).
func (x *xlsxSource) widen(rec []string) []string {
	for len(rec) < x.width {
		rec = append(rec, "")
	}
	return rec
}

// close releases the workbook and its unpacked files. Idempotent.
func (x *xlsxSource) close() {
	if x == nil || x.done {
		return
	}
	x.done = true
	if x.rows != nil {
		x.rows.Close()
	}
	if x.f != nil {
		x.f.Close()
	}
}

// ctxReader is r that fails once ctx ends.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// xlsxProblem describes an excelize error without file paths.
func xlsxProblem(err error) string {
	switch {
	case errors.Is(err, excelize.ErrWorkbookFileFormat):
		return "ce n'est pas un classeur .xlsx"
	case errors.Is(err, excelize.ErrOptionsUnzipSizeLimit):
		return fmt.Sprintf("contenu décompressé trop volumineux, plus de %d Mo", maxUnzipped>>20)
	case errors.Is(err, excelize.ErrMaxRows):
		return fmt.Sprintf("plus de %d lignes", excelize.TotalRows)
	}
	msg := err.Error()
	if len(msg) > 120 {
		msg = msg[:120]
	}
	return msg
}

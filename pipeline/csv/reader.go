// Package csv reads a collectivité's roster, a CSV file with one person per
// row, as a stream of validated rows. It never holds the whole file: rows are
// read one at a time from the underlying reader.
package csv

import (
	"bufio"
	"bytes"
	stdcsv "encoding/csv"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/apbatch/apbatch/schemas"
)

// FileError is a problem with the whole file (missing columns, no header,
// unreadable encoding). Its message, in French, names the file and says what
// to do; it never holds personal data.
type FileError struct {
	File    string
	Message string
}

func (e *FileError) Error() string { return "fichier « " + e.File + " » : " + e.Message }

// Row is one data row.
type Row struct {
	// Number is the row's identity in results (row_number): the line of
	// the file where the row starts, the file's first line being 1
	// whatever stands above the header (a sheet's row number in a
	// workbook). Blank lines have no row, so numbers may skip; every
	// message about the row names the same line.
	Number int64
	// Line is Number as an int, for messages.
	Line      int
	Reference string
	// Errors holds the problems that spoil the row for every check (a
	// broken line, bad encoding), one French message each, naming the line
	// and, where there is one, the column as the file's header names it.
	Errors []string
	// Checks holds what each of the reader's checks sends for this row,
	// in the reader's order.
	Checks []CheckInput
	// Record is the row's values as the file holds them, for exports.
	Record []string
}

// CheckInput is one row as one check reads it.
type CheckInput struct {
	Check    schemas.Check
	Identity schemas.Identity
	// Errors are the problems of the row for this check only, in French.
	Errors []string
}

// Invalid returns every problem of the row for check i: the row's own and
// the check's.
func (r Row) Invalid(i int) []string {
	var own []string
	if i < len(r.Checks) {
		own = r.Checks[i].Errors
	}
	if len(r.Errors) == 0 {
		return own
	}
	return append(append([]string(nil), r.Errors...), own...)
}

// Reader streams the rows of one file. It is not safe for concurrent use.
type Reader struct {
	name   string
	now    time.Time
	src    source
	header []string
	// headerLine is the line header was read on.
	headerLine int
	cols       map[string]int // canonical column → index
	// colList is cols as a slice, with each column's place in fields.
	colList []column
	headers map[string]string
	checks  []schemas.Check
	// serialDates is set for a workbook, whose date cells are serials.
	serialDates bool
	// fields is the current row by canonical column, reused row after row:
	// the parsers read it, none keeps it.
	fields schemas.Fields
}

// column is one canonical column: its index in a record and in Fields.
type column struct {
	index, field int
}

// maxReference bounds the reference column copied to results.
const maxReference = 200

// Options configure a Reader.
type Options struct {
	// Now is the day the batch runs (birth dates must be before it).
	Now time.Time
	// Checks are the batch's checks; nil means the quotient familial.
	Checks []schemas.Check
	// Encoding is one of Encodings, or "" to detect it (CSV only).
	Encoding string
	// Sheet is the sheet of a workbook to read; "" is the first one.
	Sheet string
	// TmpDir receives the parts of a workbook too large to keep in
	// memory. Default: "" (the system's temporary folder).
	TmpDir string
	// Columns maps canonical columns to the headers a tenant's files use
	// for them, beyond the aliases; it wins over them.
	Columns map[string]string
	// HeaderRow is the line of the file (the row of a sheet, as the
	// spreadsheet numbers it) holding the header; the lines above it are
	// skipped. Default: 0, the first of the first MaxHeaderSearch rows
	// with content that names two known columns (titles, dates or merged
	// cells often stand above the header), else the one naming most.
	HeaderRow int
}

// NewReader reads and checks the header of the CSV in r for checks (none:
// the quotient familial), detecting its encoding. name is the file name
// used in messages; now is the day the batch runs.
func NewReader(r io.Reader, name string, now time.Time, checks ...schemas.Check) (*Reader, error) {
	return Open(r, name, Options{Now: now, Checks: checks})
}

// Open reads and checks the header of the CSV in r. The encoding is
// detected (a BOM, else UTF-8 when valid, else Windows-1252) unless given;
// the header line is opts.HeaderRow or found (see Options.HeaderRow), and
// the delimiter (';', ',', tab or '|') is the one under which it names
// most known columns, else the one it uses most. Headers are matched
// whatever their case, accents, spaces and punctuation, through Aliases. A file with a header and no row is not an
// error here: the first Next returns io.EOF and the caller decides.
func Open(r io.Reader, name string, opts Options) (*Reader, error) {
	raw := bufio.NewReaderSize(r, sniffSize)
	head, _ := raw.Peek(sniffSize)
	if len(bytes.TrimSpace(head)) == 0 {
		return nil, &FileError{File: name, Message: "le fichier est vide ; il doit commencer par une ligne d'en-tête (" + strings.Join(requiredHint, ", ") + ")"}
	}
	utf16 := bytes.HasPrefix(head, []byte("\xff\xfe")) || bytes.HasPrefix(head, []byte("\xfe\xff"))
	if kind := binary(head); kind != "" && !utf16 {
		return nil, &FileError{File: name, Message: "ce fichier est " + kind + ", pas un CSV ; enregistrez la feuille au format « CSV (séparateur : point-virgule) »"}
	}
	text, _, err := decode(raw, name, opts.Encoding)
	if err != nil {
		return nil, err
	}
	br := bufio.NewReaderSize(text, sniffSize)
	first, _ := br.Peek(sniffSize)
	cr := stdcsv.NewReader(br)
	explicit, err := explicitColumns(name, opts.Columns)
	if err != nil {
		return nil, err
	}
	cr.Comma = chooseDelimiter(first, opts.HeaderRow, explicit)
	cr.FieldsPerRecord = -1
	cr.ReuseRecord = false
	cr.LazyQuotes = false
	return fromSource(csvSource{cr}, name, opts)
}

// source yields the records of a file: a CSV or a spreadsheet's sheet.
type source interface {
	// Read returns the next record and the line it starts on; a
	// *stdcsv.ParseError is a broken record, io.EOF the end.
	Read() (rec []string, line int, err error)
}

// csvSource reads records with encoding/csv.
type csvSource struct{ r *stdcsv.Reader }

func (c csvSource) Read() ([]string, int, error) {
	rec, err := c.r.Read()
	if err == nil {
		line, _ := c.r.FieldPos(0)
		return rec, line, nil
	}
	if pe := parseError(err); pe != nil {
		return rec, pe.StartLine, err
	}
	return rec, 0, err
}

// parseError returns err's *stdcsv.ParseError, or nil. A helper, so that
// the variable errors.As needs (which escapes) is only made for an error,
// not for every row.
func parseError(err error) *stdcsv.ParseError {
	var pe *stdcsv.ParseError
	if errors.As(err, &pe) {
		return pe
	}
	return nil
}

// fromSource reads and maps the header of src, then checks that the
// batch's checks find the columns they need.
func fromSource(src source, name string, opts Options) (*Reader, error) {
	checks := opts.Checks
	if len(checks) == 0 {
		checks = []schemas.Check{schemas.CheckQuotientFamilial}
	}
	if opts.HeaderRow < 0 {
		return nil, &FileError{File: name, Message: fmt.Sprintf("numéro de ligne d'en-tête %d invalide ; donnez un numéro à partir de 1", opts.HeaderRow)}
	}
	explicit, err := explicitColumns(name, opts.Columns)
	if err != nil {
		return nil, err
	}
	h, pending, err := findHeader(src, name, opts.HeaderRow, explicit)
	if err != nil {
		return nil, err
	}
	if errors.Is(h.err, io.EOF) {
		return nil, &FileError{File: name, Message: "le fichier est vide ; il doit commencer par une ligne d'en-tête (" + strings.Join(requiredHint, ", ") + ")"}
	}
	if h.err != nil {
		return nil, &FileError{File: name, Message: fmt.Sprintf("en-tête illisible, ligne %d (%s)", h.line, describeParseError(h.err))}
	}
	header, headerLine := h.rec, h.line
	var comma rune // the CSV's delimiter; none in a sheet
	if c, ok := src.(csvSource); ok {
		comma = c.r.Comma
	}
	if w, ok := src.(widener); ok {
		w.setWidth(len(header))
		for i := range pending {
			pending[i].rec = w.widen(pending[i].rec)
		}
	}
	_, serialDates := src.(*xlsxSource)
	if len(pending) > 0 {
		src = &replay{pending: pending, src: src}
	}
	rd := &Reader{name: name, now: opts.Now, src: src, header: header, headerLine: headerLine, cols: map[string]int{}, headers: map[string]string{}, checks: checks, serialDates: serialDates}
	rank := map[string]int{} // how specific the header that named a column is
	retired := false
	for i, h := range header {
		h = strings.TrimSpace(strings.TrimPrefix(h, "\ufeff"))
		key := NormalizeHeader(h)
		retired = retired || retiredKeys[key]
		c, r := aliasIndex[key], 0
		if e, ok := explicit[key]; ok {
			c, r = e, -1 // the tenant's own mapping wins
		} else if c != "" {
			r = aliasRank(c, key)
		}
		if c == "" {
			continue
		}
		if prev, dup := rd.cols[c]; dup {
			switch {
			case rank[c] < r:
				continue // a more specific header already names it
			case rank[c] == r: // the same header twice
				return nil, &FileError{File: name, Message: fmt.Sprintf("la colonne « %s » apparaît deux fois dans l'en-tête (colonnes %d et %d) ; gardez-en une", h, prev+1, i+1)}
			}
		}
		rd.cols[c], rd.headers[c], rank[c] = i, h, r
	}
	var missing []string
	for _, c := range checks {
		for _, m := range missingFor(c, func(col string) bool { _, ok := rd.cols[col]; return ok }) {
			if !slices.Contains(missing, m) {
				missing = append(missing, m)
			}
		}
	}
	if retired && len(missing) > 0 {
		return nil, &FileError{File: name, Message: "ce fichier identifie les familles par leur numéro allocataire CAF : " +
			"API Particulier a retiré cet appel le 31/10/2025 (il répond désormais 410). Le quotient familial se demande " +
			"maintenant avec l'identité de l'allocataire ; ajoutez ces colonnes : nom de naissance, prénoms, sexe, date de naissance, " +
			"code INSEE de la commune de naissance (ou commune et département de naissance), et le code pays pour une personne née hors de France"}
	}
	if len(rd.cols) == 0 {
		// Perhaps no header line: then the line is data, and is not
		// echoed (see noColumnMessage).
		return nil, &FileError{File: name, Message: noColumnMessage(header, headerLine, comma)}
	}
	for c, i := range rd.cols {
		if f := schemas.FieldIndex(c); f >= 0 {
			rd.colList = append(rd.colList, column{index: i, field: f})
		}
	}
	if len(missing) > 0 {
		found := make([]string, 0, len(header))
		for _, h := range header {
			found = append(found, strings.TrimSpace(h))
		}
		where := ""
		if headerLine > 1 {
			where = fmt.Sprintf(", en-tête lu ligne %d", headerLine)
		}
		return nil, &FileError{File: name, Message: "colonnes manquantes : " + strings.Join(missing, ", ") +
			" (colonnes trouvées : " + strings.Join(found, ", ") + where + ") ; renommez les colonnes de l'en-tête avec ces noms (la liste des noms reconnus est dans le README)"}
	}
	return rd, nil
}

// explicitColumns checks a tenant's mapping and returns it by normalised
// header.
func explicitColumns(name string, columns map[string]string) (map[string]string, error) {
	if err := CheckColumns(columns); err != nil {
		return nil, &FileError{File: name, Message: err.Error()}
	}
	explicit := make(map[string]string, len(columns)) // normalised header → canonical column
	for c, h := range columns {
		explicit[NormalizeHeader(h)] = c
	}
	return explicit, nil
}

// widener is a source whose rows leave out their last empty cells (a
// sheet): once the header is known, rows are padded to its width.
type widener interface {
	setWidth(n int)
	widen(rec []string) []string
}

// replay yields the records findHeader read past the header, then src's.
type replay struct {
	pending []record
	src     source
}

func (r *replay) Read() ([]string, int, error) {
	if len(r.pending) > 0 {
		p := r.pending[0]
		r.pending = r.pending[1:]
		return p.rec, p.line, p.err
	}
	return r.src.Read()
}

// aliasRank is how specific key is for column c: 0 for its canonical
// name, then the order of Aliases (the generic ones, like "nom", last).
func aliasRank(c, key string) int {
	if key == c {
		return 0
	}
	for i, a := range Aliases[c] {
		if a == key {
			return i + 1
		}
	}
	return len(Aliases[c]) + 1
}

var requiredHint = []string{schemas.ColNomNaissance, schemas.ColPrenoms, schemas.ColSexe, schemas.ColDateNaissance, schemas.ColCommuneNaissance}

// missingFor lists the columns check needs that the header lacks.
func missingFor(check schemas.Check, has func(string) bool) []string {
	var missing []string
	need := func(cols ...string) {
		for _, c := range cols {
			if !has(c) {
				missing = append(missing, c)
			}
		}
	}
	switch check {
	case schemas.CheckEtudiantBoursier, schemas.CheckStatutEtudiant:
		if has(schemas.ColINE) {
			return nil
		}
		cols := []string{schemas.ColNomNaissance, schemas.ColPrenoms, schemas.ColDateNaissance}
		if check == schemas.CheckStatutEtudiant {
			cols = append(cols, schemas.ColSexe)
		}
		for _, c := range cols {
			if !has(c) {
				return []string{schemas.ColINE + " (ou " + strings.Join(cols, ", ") + ")"}
			}
		}
	case schemas.CheckFranceTravail:
		need(schemas.ColIdentifiantFT)
	case schemas.CheckScolarite:
		need(schemas.ColNomNaissance, schemas.ColPrenoms, schemas.ColSexe, schemas.ColDateNaissance, schemas.ColCodeEtablissement)
	default:
		// The CNAV routes take no sex since 2026-05-28: a roster without
		// the column is read, its rows sent without one.
		need(schemas.ColNomNaissance, schemas.ColPrenoms)
		if !has(schemas.ColCommuneNaissance) && !(has(schemas.ColNomCommuneNaissance) && has(schemas.ColDepartementNaissance)) {
			missing = append(missing, schemas.ColCommuneNaissance+" (ou "+schemas.ColNomCommuneNaissance+" et "+schemas.ColDepartementNaissance+")")
		}
	}
	return missing
}

// Header returns the file's header as written.
func (r *Reader) Header() []string { return r.header }

// HeaderLine returns the line of the file (the row of a sheet) the header
// was read on.
func (r *Reader) HeaderLine() int { return r.headerLine }

// MaxRowBytes bounds a data row: a longer one is a broken line (a
// missing quote or line break that merged lines), refused for itself, so
// that no row can make a message too large for the API or Kafka.
const MaxRowBytes = 16 << 10

// Next returns the next data row, or io.EOF after the last one. Row problems
// are reported in Row.Errors; the error is for I/O failures only. Every row
// has one CheckInput per check of the reader, whatever its problems.
func (r *Reader) Next() (Row, error) {
	for {
		rec, line, err := r.src.Read()
		if errors.Is(err, io.EOF) {
			return Row{}, io.EOF
		}
		var pe *stdcsv.ParseError
		if err != nil {
			pe = parseError(err)
		}
		if err != nil && pe == nil {
			var fe *FileError
			if errors.As(err, &fe) {
				return Row{}, err
			}
			return Row{}, fmt.Errorf("csv: read %s: %w", r.name, err)
		}
		if err == nil && blank(rec) {
			continue
		}
		if pe != nil {
			line = pe.StartLine
		}
		if d, ok := r.cols[schemas.ColDateNaissance]; ok && r.serialDates && d < len(rec) {
			// A workbook's date cell is a serial number: the agent wrote,
			// and reads in exports, a date.
			if t, ok := schemas.ExcelSerialDate(strings.TrimSpace(rec[d])); ok {
				rec[d] = t.Format("02/01/2006")
			}
		}
		row := Row{Number: int64(line), Line: line, Record: rec}
		if problem := r.broken(rec, err); problem != "" {
			row.Errors = []string{"ligne " + strconv.Itoa(line) + " : " + problem}
			row.Checks = make([]CheckInput, len(r.checks))
			for i, c := range r.checks {
				row.Checks[i].Check = c
			}
			return row, nil
		}
		r.parse(&row)
		return row, nil
	}
}

// broken says why a record cannot be read as a row at all ("" when it
// can): a CSV syntax error, a count of fields other than the header's, a
// size beyond MaxRowBytes, a NUL byte, the header again.
func (r *Reader) broken(rec []string, err error) string {
	if err != nil {
		return describeParseError(err)
	}
	size := 0
	for _, v := range rec {
		size += len(v)
	}
	switch {
	case size > MaxRowBytes:
		return fmt.Sprintf("ligne trop longue (%d Kio, %d Kio au plus) ; un guillemet ou un retour à la ligne manque sans doute", size>>10, MaxRowBytes>>10)
	case len(rec) != len(r.header):
		return fmt.Sprintf("%d champs au lieu de %d — le séparateur ou les guillemets sont à vérifier", len(rec), len(r.header))
	case slices.ContainsFunc(rec, func(v string) bool { return strings.IndexByte(v, 0) >= 0 }):
		return "caractère nul dans la ligne (fichier abîmé ?) ; enregistrez le fichier à nouveau depuis le tableur"
	case slices.EqualFunc(rec, r.header, func(a, b string) bool {
		return strings.TrimSpace(a) == strings.TrimSpace(strings.TrimPrefix(b, "\ufeff"))
	}):
		return "la ligne d'en-tête est répétée ; supprimez cette ligne"
	}
	return ""
}

// parse reads a well-formed row's values for each check.
func (r *Reader) parse(row *Row) {
	line, rec := row.Line, row.Record
	fields := &r.fields
	for _, c := range r.colList {
		fields[c.field] = rec[c.index]
	}
	row.Reference = strings.TrimSpace(fields[schemas.FieldIndex(schemas.ColReference)])
	if utf8.RuneCountInString(row.Reference) > maxReference || !utf8.ValidString(row.Reference) {
		row.Errors = append(row.Errors, schemas.FieldError{Column: schemas.ColReference,
			Problem: "référence trop longue ou mal encodée (" + strconv.Itoa(maxReference) + " caractères UTF-8 au plus)"}.Message(line, r.headers[schemas.ColReference]))
		row.Reference = ""
	}
	for _, v := range rec {
		if !utf8.ValidString(v) {
			row.Errors = append(row.Errors, "ligne "+strconv.Itoa(line)+" : texte mal encodé ; enregistrez le fichier en « CSV UTF-8 »")
			break
		}
	}
	row.Checks = make([]CheckInput, len(r.checks))
	var dss *CheckInput // the DSS checks share their rules: parsed once
	for i, c := range r.checks {
		if c.IsDSS() && dss != nil {
			row.Checks[i] = CheckInput{Check: c, Identity: dss.Identity, Errors: dss.Errors}
			continue
		}
		id, errs := schemas.ParseFields(c, fields, r.now)
		ci := CheckInput{Check: c, Identity: id}
		for _, fe := range errs {
			ci.Errors = append(ci.Errors, fe.Message(line, r.headers[fe.Column]))
		}
		row.Checks[i] = ci
		if c.IsDSS() {
			dss = &row.Checks[i]
		}
	}
}

// blank reports whether every field is empty (rows Excel leaves as ";;;").
func blank(rec []string) bool {
	for _, f := range rec {
		if strings.TrimSpace(f) != "" {
			return false
		}
	}
	return true
}

// detectDelimiter returns the candidate used most outside quotes in the
// header line; ';' wins ties (French exports).
func detectDelimiter(line []byte) rune {
	counts := map[rune]int{}
	inQuote := false
	for _, c := range string(line) {
		if c == '"' {
			inQuote = !inQuote
			continue
		}
		if !inQuote {
			counts[c]++
		}
	}
	best := ';'
	for _, c := range []rune{',', '\t', '|'} {
		if counts[c] > counts[best] {
			best = c
		}
	}
	return best
}

func describeParseError(err error) string {
	var pe *stdcsv.ParseError
	if errors.As(err, &pe) {
		switch {
		case errors.Is(pe.Err, stdcsv.ErrQuote), errors.Is(pe.Err, stdcsv.ErrBareQuote):
			return "guillemet mal placé ; entourez de guillemets les valeurs qui contiennent le séparateur"
		}
		return "ligne mal formée"
	}
	return "lecture impossible"
}

// Column returns the index in Header and Row.Record of a canonical column
// (schemas.ColDateNaissance…), and whether the file has it.
func (r *Reader) Column(name string) (int, bool) {
	i, ok := r.cols[name]
	return i, ok
}

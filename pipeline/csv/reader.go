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
	// Number is the 1-based data row number: the header and blank lines are
	// not counted. It is the row's identity in results.
	Number int64
	// Line is the 1-based line of the file where the row starts.
	Line      int
	Reference string
	Identity  schemas.Identity
	// Errors holds one French message per problem, naming the line and the
	// column as the file's header names it; empty when the row is valid.
	Errors []string
}

// Reader streams the rows of one file. It is not safe for concurrent use.
type Reader struct {
	name    string
	now     time.Time
	r       *stdcsv.Reader
	header  []string
	cols    map[string]int // canonical column → index
	headers map[string]string
	n       int64
}

// maxReference bounds the reference column copied to results.
const maxReference = 200

// NewReader reads and checks the header of the CSV in r. name is the file
// name used in messages; now is the day the batch runs. The delimiter (';',
// ',', tab or '|') is the one the header line uses most; a UTF-8 BOM is
// skipped. A file with a header and no row is not an error here: the first
// Next returns io.EOF and the caller decides.
func NewReader(r io.Reader, name string, now time.Time) (*Reader, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	if bom, _ := br.Peek(3); bytes.Equal(bom, []byte("\xef\xbb\xbf")) {
		br.Discard(3)
	}
	first, _ := br.Peek(64 << 10)
	if len(bytes.TrimSpace(first)) == 0 {
		return nil, &FileError{File: name, Message: "le fichier est vide ; il doit commencer par une ligne d'en-tête (" + strings.Join(requiredHint, ", ") + ")"}
	}
	if !utf8.Valid(firstLine(first)) {
		return nil, &FileError{File: name, Message: "l'en-tête n'est pas en UTF-8 ; enregistrez le fichier en « CSV UTF-8 »"}
	}
	cr := stdcsv.NewReader(br)
	cr.Comma = detectDelimiter(firstLine(first))
	cr.FieldsPerRecord = -1
	cr.ReuseRecord = false
	header, err := cr.Read()
	if err != nil {
		return nil, &FileError{File: name, Message: "en-tête illisible (" + describeParseError(err) + ")"}
	}
	rd := &Reader{name: name, now: now, r: cr, header: header, cols: map[string]int{}, headers: map[string]string{}}
	for i, h := range header {
		key := strings.ToLower(strings.TrimSpace(h))
		for _, c := range schemas.Columns {
			if key == c {
				if _, dup := rd.cols[c]; dup {
					return nil, &FileError{File: name, Message: "la colonne « " + c + " » apparaît deux fois dans l'en-tête"}
				}
				rd.cols[c] = i
				rd.headers[c] = strings.TrimSpace(h)
			}
		}
	}
	var missing []string
	for _, c := range []string{schemas.ColNomNaissance, schemas.ColPrenoms, schemas.ColSexe} {
		if _, ok := rd.cols[c]; !ok {
			missing = append(missing, c)
		}
	}
	_, hasCode := rd.cols[schemas.ColCommuneNaissance]
	_, hasNom := rd.cols[schemas.ColNomCommuneNaissance]
	_, hasDept := rd.cols[schemas.ColDepartementNaissance]
	if !hasCode && !(hasNom && hasDept) {
		missing = append(missing, schemas.ColCommuneNaissance+" (ou "+schemas.ColNomCommuneNaissance+" et "+schemas.ColDepartementNaissance+")")
	}
	if len(rd.cols) == 0 {
		// Likely no header line: the first line is data, and must not be
		// echoed (it holds names and birth dates).
		return nil, &FileError{File: name, Message: fmt.Sprintf("aucune des %d colonnes de la première ligne n'est reconnue ; "+
			"le fichier doit commencer par une ligne d'en-tête nommant les colonnes (%s)", len(header), strings.Join(requiredHint, ", "))}
	}
	if len(missing) > 0 {
		found := make([]string, 0, len(header))
		for _, h := range header {
			found = append(found, strings.TrimSpace(h))
		}
		return nil, &FileError{File: name, Message: "colonnes manquantes : " + strings.Join(missing, ", ") +
			" (colonnes trouvées : " + strings.Join(found, ", ") + ") ; renommez les colonnes de l'en-tête avec ces noms"}
	}
	return rd, nil
}

var requiredHint = []string{schemas.ColNomNaissance, schemas.ColPrenoms, schemas.ColSexe, schemas.ColDateNaissance, schemas.ColCommuneNaissance}

// Header returns the file's header as written.
func (r *Reader) Header() []string { return r.header }

// Next returns the next data row, or io.EOF after the last one. Row problems
// are reported in Row.Errors; the error is for I/O failures only.
func (r *Reader) Next() (Row, error) {
	for {
		rec, err := r.r.Read()
		if errors.Is(err, io.EOF) {
			return Row{}, io.EOF
		}
		var pe *stdcsv.ParseError
		if err != nil && !errors.As(err, &pe) {
			return Row{}, fmt.Errorf("csv: read %s: %w", r.name, err)
		}
		line := 0
		if err == nil {
			line, _ = r.r.FieldPos(0)
		}
		if err == nil && blank(rec) {
			continue
		}
		r.n++
		row := Row{Number: r.n, Line: line}
		if pe != nil {
			row.Line = pe.StartLine
			row.Errors = []string{"ligne " + strconv.Itoa(pe.StartLine) + " : " + describeParseError(err)}
			return row, nil
		}
		if len(rec) != len(r.header) {
			row.Errors = []string{fmt.Sprintf("ligne %d : %d champs au lieu de %d (vérifiez le séparateur et les guillemets)", line, len(rec), len(r.header))}
			return row, nil
		}
		fields := make(map[string]string, len(r.cols))
		for c, i := range r.cols {
			fields[c] = rec[i]
		}
		row.Reference = strings.TrimSpace(fields[schemas.ColReference])
		if utf8.RuneCountInString(row.Reference) > maxReference || !utf8.ValidString(row.Reference) {
			row.Errors = append(row.Errors, schemas.FieldError{Column: schemas.ColReference,
				Problem: "référence trop longue ou mal encodée (" + strconv.Itoa(maxReference) + " caractères UTF-8 au plus)"}.Message(line, r.headers[schemas.ColReference]))
			row.Reference = ""
		}
		id, errs := schemas.ParseIdentity(fields, r.now)
		for _, fe := range errs {
			row.Errors = append(row.Errors, fe.Message(line, r.headers[fe.Column]))
		}
		for _, v := range rec {
			if !utf8.ValidString(v) {
				row.Errors = append(row.Errors, "ligne "+strconv.Itoa(line)+" : texte mal encodé ; enregistrez le fichier en « CSV UTF-8 »")
				break
			}
		}
		row.Identity = id
		return row, nil
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

// firstLine returns b up to its first line break outside quotes.
func firstLine(b []byte) []byte {
	inQuote := false
	for i, c := range b {
		switch {
		case c == '"':
			inQuote = !inQuote
		case (c == '\n' || c == '\r') && !inQuote:
			return b[:i]
		}
	}
	return b
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

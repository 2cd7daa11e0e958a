package csv

import (
	"bytes"
	stdcsv "encoding/csv"
	"errors"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"
	"unicode"

	"golang.org/x/text/runes"
	"golang.org/x/text/transform"
	"golang.org/x/text/unicode/norm"

	"github.com/apbatch/apbatch/schemas"
)

// Aliases lists, for every canonical column, the headers it is recognised
// by, as NormalizeHeader writes them: what town halls' software and Excel
// sheets call their columns. The canonical name is always recognised; when
// two headers name one column, the more specific wins (the canonical name,
// then this order: generic words like "nom" come last).
var Aliases = map[string][]string{
	schemas.ColReference:            {"ref", "reference_famille", "reference_dossier", "numero_dossier", "n_dossier", "no_dossier", "code_famille", "id_famille", "identifiant_famille", "n_famille", "numero_famille", "no_famille", "num_famille", "n_foyer", "numero_foyer"},
	schemas.ColNomNaissance:         {"nom_de_naissance", "nom_de_famille", "nom_famille", "nom_patronymique", "nomnaissance", "nom"},
	schemas.ColNomUsage:             {"nom_d_usage", "nom_marital", "nom_d_epouse", "nom_epouse", "nomusage"},
	schemas.ColPrenoms:              {"prenom_s", "prenoms_s", "liste_des_prenoms", "prenom", "premier_prenom"},
	schemas.ColSexe:                 {"sexe_etat_civil", "genre", "civilite"},
	schemas.ColDateNaissance:        {"date_de_naissance", "ne_le", "nee_le", "ne_e_le", "ddn", "datenaissance", "date_naiss", "naissance"},
	schemas.ColPaysNaissance:        {"code_pays_naissance", "pays_naissance", "pays_de_naissance", "code_pays_de_naissance", "code_cog_pays_naissance"},
	schemas.ColCommuneNaissance:     {"code_insee_naissance", "code_commune_naissance", "code_commune_de_naissance", "code_insee_commune_de_naissance", "code_cog_commune_naissance", "insee_naissance", "code_insee_lieu_naissance"},
	schemas.ColNomCommuneNaissance:  {"commune_de_naissance", "lieu_naissance", "lieu_de_naissance", "ville_naissance", "ville_de_naissance", "nom_commune_naissance"},
	schemas.ColDepartementNaissance: {"departement_de_naissance", "dept_naissance", "dep_naissance", "code_departement_naissance"},
	schemas.ColINE:                  {"numero_ine", "n_ine", "no_ine", "code_ine"},
	schemas.ColIdentifiantFT:        {"identifiant_ft", "id_france_travail", "identifiant_pole_emploi", "identifiant_pe"},
	schemas.ColCodeEtablissement:    {"uai", "code_uai", "rne", "code_rne", "uai_etablissement", "code_ecole"},
	schemas.ColAnneeScolaire:        {"annee_scolaire_demandee"},
}

// retiredKeys are the headers of the CAF numéro allocataire and postcode,
// the key of the call the API retired on 31/10/2025.
var retiredKeys = map[string]bool{"numero_allocataire": true, "n_allocataire": true, "no_allocataire": true,
	"num_allocataire": true, "numero_caf": true, "n_caf": true, "matricule_caf": true, "allocataire": true, "numero_d_allocataire": true}

// aliasIndex maps a normalised header to its canonical column.
var aliasIndex = func() map[string]string {
	idx := make(map[string]string)
	for col, as := range Aliases {
		idx[col] = col
		for _, a := range as {
			idx[a] = col
		}
	}
	return idx
}()

// stripMarks removes accents once letters are decomposed.
var stripMarks = runes.Remove(runes.In(unicode.Mn))

// NormalizeHeader folds a header for matching: lower case, no accents, runs
// of anything but letters and digits as one "_", none at the ends
// ("Prénom(s)" → "prenom_s", "NOM DE NAISSANCE" → "nom_de_naissance").
func NormalizeHeader(h string) string {
	s, _, err := transform.String(transform.Chain(norm.NFD, stripMarks, norm.NFC), h)
	if err != nil {
		s = h
	}
	var b strings.Builder
	sep := false
	for _, r := range strings.ToLower(s) {
		if unicode.IsLetter(r) || unicode.IsDigit(r) {
			if sep && b.Len() > 0 {
				b.WriteByte('_')
			}
			sep = false
			b.WriteRune(r)
			continue
		}
		sep = true
	}
	return b.String()
}

// CheckColumns checks a tenant's column mapping (canonical column → the
// header its files use): only apbatch's columns, each to a header with a
// letter or digit, and no two on one header (which would name a column at
// random). Messages are in French, for the agents who write mappings.
func CheckColumns(m map[string]string) error {
	cols := make([]string, 0, len(m))
	for c := range m {
		cols = append(cols, c)
	}
	sort.Strings(cols)
	named := map[string]string{} // normalised header → column
	for _, c := range cols {
		if !slices.Contains(schemas.Columns, c) {
			return fmt.Errorf("correspondance de colonnes : « %s » n'est pas une colonne d'apbatch (colonnes : %s)", c, strings.Join(schemas.Columns, ", "))
		}
		key := NormalizeHeader(m[c])
		if key == "" {
			return fmt.Errorf("correspondance de colonnes : « %s » : en-tête « %s » vide", c, m[c])
		}
		if prev, dup := named[key]; dup {
			return fmt.Errorf("correspondance de colonnes : « %s » et « %s » ont le même en-tête « %s » ; gardez-en un", prev, c, m[c])
		}
		named[key] = c
	}
	return nil
}

// MaxHeaderSearch is how many rows with content, from the top of a file,
// are searched for the header: exports often put a title, a date or
// merged cells above it.
const MaxHeaderSearch = 10

// minHeaderColumns is how many known columns make a row the header.
const minHeaderColumns = 2

// knownColumns counts the columns of rec that a header names: through
// Aliases, the tenant's mapping (explicit, normalised header → column) or
// as a retired key (which still deserves its own message).
func knownColumns(rec []string, explicit map[string]string) int {
	seen := map[string]bool{}
	for _, h := range rec {
		key := NormalizeHeader(strings.TrimPrefix(h, "\ufeff"))
		c := explicit[key]
		if c == "" {
			c = aliasIndex[key]
		}
		if c == "" && retiredKeys[key] {
			c = key
		}
		if c != "" {
			seen[c] = true
		}
	}
	return len(seen)
}

// record is one record of a source, as its Read returned it.
type record struct {
	rec  []string
	line int
	err  error
}

// findHeader reads src up to its header: the record starting on line
// headerRow when given (from 1), else the first of the first
// MaxHeaderSearch records with content that names minHeaderColumns known
// columns, else the one naming most (the first record when none names
// any). It returns the header and the records read after it, which the
// Reader yields before reading src again. A record that is not the header
// may be broken (a title with a stray quote): only the header must parse.
func findHeader(src source, name string, headerRow int, explicit map[string]string) (record, []record, error) {
	var buf []record
	for rows := 0; ; {
		rec, line, err := src.Read()
		if err != nil && !errors.Is(err, io.EOF) && parseError(err) == nil {
			return record{}, nil, err // I/O, or a sheet the reader refuses
		}
		r := record{rec, line, err}
		if headerRow > 0 {
			switch {
			case errors.Is(err, io.EOF) || line > headerRow:
				return record{}, nil, &FileError{File: name, Message: fmt.Sprintf("la ligne d'en-tête demandée (ligne %d) est vide ou absente du fichier ; "+
					"donnez le numéro de la ligne qui nomme les colonnes, tel que le tableur l'affiche", headerRow)}
			case line == headerRow:
				return r, nil, nil // broken or not: its message says
			}
			continue
		}
		if errors.Is(err, io.EOF) {
			break
		}
		buf = append(buf, r)
		if err == nil && blank(rec) {
			continue
		}
		if err == nil && knownColumns(rec, explicit) >= minHeaderColumns {
			return r, nil, nil
		}
		if rows++; rows == MaxHeaderSearch {
			break
		}
	}
	// No row names enough columns: the one naming most, else the first
	// with content, broken or not (its message says what is wrong).
	best, most := -1, 0
	for i, r := range buf {
		if r.err != nil || blank(r.rec) {
			continue
		}
		if k := knownColumns(r.rec, explicit); k > most {
			best, most = i, k
		}
	}
	if best < 0 {
		best = slices.IndexFunc(buf, func(r record) bool { return r.err != nil || !blank(r.rec) })
	}
	if best < 0 {
		return record{err: io.EOF}, nil, nil
	}
	return buf[best], buf[best+1:], nil
}

// Delimiters are the separators a CSV may use, ';' first (French exports).
var delimiters = []rune{';', ',', '\t', '|'}

// headLine is one line of a file's start and its number, from 1.
type headLine struct {
	n    int
	text []byte
}

// headLines returns the first n lines with content of b (the start of a
// file), split at line breaks outside quotes, with their line numbers as
// encoding/csv counts them (a quoted line break starts a line).
func headLines(b []byte, n int) []headLine {
	var out []headLine
	line, start, inQuote := 1, 0, false
	for i := 0; i <= len(b) && len(out) < n; i++ {
		if i < len(b) && b[i] == '"' {
			inQuote = !inQuote
		}
		if i < len(b) && (b[i] != '\n' || inQuote) {
			continue
		}
		text := bytes.TrimSuffix(b[start:i], []byte("\r"))
		if len(bytes.TrimSpace(text)) > 0 {
			out = append(out, headLine{line, text})
		}
		line += 1 + bytes.Count(b[start:i], []byte("\n"))
		start = i + 1
	}
	return out
}

// splitLine splits one line at comma, quotes allowed anywhere.
func splitLine(line []byte, comma rune) []string {
	r := stdcsv.NewReader(bytes.NewReader(line))
	r.Comma, r.LazyQuotes, r.FieldsPerRecord = comma, true, -1
	rec, err := r.Read()
	if err != nil {
		return strings.Split(string(line), string(comma))
	}
	return rec
}

// bestDelimiter returns the delimiter under which line names most known
// columns, and how many; the one used most wins when none names more.
func bestDelimiter(line []byte, explicit map[string]string) (rune, int) {
	best := detectDelimiter(line)
	most := knownColumns(splitLine(line, best), explicit)
	for _, d := range delimiters {
		if k := knownColumns(splitLine(line, d), explicit); k > most {
			best, most = d, k
		}
	}
	return best, most
}

// chooseDelimiter returns the delimiter of the header line in head (the
// start of the file): the line headerRow when given, else the line found
// as findHeader finds it. Without any known column, the delimiter used
// most on the first line that has one (a title may have none).
func chooseDelimiter(head []byte, headerRow int, explicit map[string]string) rune {
	lines := headLines(head, MaxHeaderSearch)
	if headerRow > 0 {
		lines = headLines(head, headerRow)
		for _, l := range lines {
			if l.n == headerRow {
				d, _ := bestDelimiter(l.text, explicit)
				return d
			}
		}
		return fallbackDelimiter(lines)
	}
	best, most := fallbackDelimiter(lines), 0
	for _, l := range lines {
		d, k := bestDelimiter(l.text, explicit)
		if k >= minHeaderColumns {
			return d
		}
		if k > most {
			best, most = d, k
		}
	}
	return best
}

// delimiterNames name the delimiters in messages.
var delimiterNames = map[rune]string{';': "des points-virgules (;)", ',': "des virgules (,)", '\t': "des tabulations", '|': "des barres verticales (|)"}

// noColumnMessage says that no column of header (read on line, with
// comma as the delimiter; 0 for a sheet) is known. It lists the headers
// as read unless they look like data (a file without a header: its first
// row holds a person), and says when another delimiter splits them into
// columns, as when a whole line sits in one cell or one quoted field.
func noColumnMessage(header []string, line int, comma rune) string {
	where := "la première ligne"
	if line > 1 {
		where = fmt.Sprintf("la ligne %d", line)
	}
	msg := fmt.Sprintf("aucune des %d colonnes de %s n'est reconnue", len(header), where)
	if len(header) == 1 {
		msg = "l'unique colonne de " + where + " n'est pas reconnue"
	}
	if !looksLikeData(header) {
		msg += " (en-têtes lus : " + quoteHeaders(header) + ")"
	}
	if d, ok := betterDelimiter(header, comma); ok {
		if comma == 0 {
			return msg + " ; chaque ligne semble tenir dans une seule cellule, ses valeurs séparées par " + delimiterNames[d] +
				" : dans le tableur, sélectionnez la colonne A, puis Données > Convertir (délimité, séparateur « " + delimiterLabel(d) + " »), et déposez le classeur à nouveau"
		}
		if d == comma {
			return msg + " ; le fichier semble séparé par " + delimiterNames[d] + ", mais chaque ligne est entre guillemets et se lit comme une seule valeur : " +
				"ouvrez-le dans le tableur et enregistrez-le à nouveau au format « CSV (séparateur : point-virgule) »"
		}
		return msg + " ; le fichier semble séparé par " + delimiterNames[d] + " et non par " + delimiterNames[comma] +
			" : enregistrez-le à nouveau depuis le tableur au format « CSV (séparateur : point-virgule) »"
	}
	return msg + fmt.Sprintf(" ; le fichier doit avoir, dans ses %d premières lignes, une ligne d'en-tête nommant les colonnes (%s)", MaxHeaderSearch, strings.Join(requiredHint, ", "))
}

// delimiterLabel is d as a spreadsheet's import dialog names it.
func delimiterLabel(d rune) string {
	switch d {
	case ';':
		return "point-virgule"
	case ',':
		return "virgule"
	case '\t':
		return "tabulation"
	}
	return string(d)
}

// betterDelimiter returns a delimiter that splits the fields of header
// into known columns, or, when none is known, splits a header read as a
// single field into four or more: another than comma, or comma itself
// when the whole line was read as one quoted field.
func betterDelimiter(header []string, comma rune) (rune, bool) {
	filled := 0
	for _, h := range header {
		if strings.TrimSpace(h) != "" {
			filled++
		}
	}
	var best rune
	most, pieces := 0, 0
	for _, d := range delimiters {
		if d == comma && filled > 1 {
			continue // a field holding comma is a quoted one: fine
		}
		var split []string
		for _, h := range header {
			split = append(split, strings.Split(h, string(d))...)
		}
		if k := knownColumns(split, nil); k > most {
			best, most = d, k
		}
		if filled == 1 && most == 0 && len(split)-len(header) > pieces {
			best, pieces = d, len(split)-len(header)
		}
	}
	return best, most > 0 || pieces >= 3
}

// looksLikeData reports whether a header line is rather a person's row:
// a field with four digits or more (a date, a code, a phone number).
func looksLikeData(rec []string) bool {
	for _, v := range rec {
		n := 0
		for _, r := range v {
			if unicode.IsDigit(r) {
				n++
			}
		}
		if n >= 4 {
			return true
		}
	}
	return false
}

// quoteHeaders lists headers for a message, each cut at 40 characters,
// 12 at most.
func quoteHeaders(header []string) string {
	const most, width = 12, 40
	var parts []string
	for i, h := range header {
		if i == most {
			parts = append(parts, fmt.Sprintf("et %d autres", len(header)-most))
			break
		}
		h = strings.TrimSpace(strings.TrimPrefix(h, "\ufeff"))
		if r := []rune(h); len(r) > width {
			h = string(r[:width]) + "…"
		}
		parts = append(parts, "« "+h+" »")
	}
	return strings.Join(parts, ", ")
}

// fallbackDelimiter is the delimiter used most on the first of lines that
// has one outside quotes; ';' when none has.
func fallbackDelimiter(lines []headLine) rune {
	for _, l := range lines {
		if d := detectDelimiter(l.text); bytes.ContainsRune(unquoted(l.text), d) {
			return d
		}
	}
	return ';'
}

// unquoted returns line without its quoted parts.
func unquoted(line []byte) []byte {
	out := make([]byte, 0, len(line))
	inQuote := false
	for _, c := range line {
		if c == '"' {
			inQuote = !inQuote
			continue
		}
		if !inQuote {
			out = append(out, c)
		}
	}
	return out
}

package schemas

import (
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// FieldError is one problem with one input column. Problem is in French, for
// the collectivité's agents, and never repeats the value (names and birth
// dates are personal data).
type FieldError struct {
	// Column is the canonical column name.
	Column  string
	Problem string
}

// Message places the problem at a line and under the column name the file
// used, e.g. `ligne 9, colonne « Date » : date impossible (…)`.
func (e FieldError) Message(line int, header string) string {
	if header == "" {
		header = e.Column
	}
	return "ligne " + strconv.Itoa(line) + ", colonne « " + header + " » : " + e.Problem
}

var apostrophes = strings.NewReplacer("’", "'", "‘", "'", "ʼ", "'", "\u00a0", " ")

// apostropheChars are the characters apostrophes replaces.
const apostropheChars = "’‘ʼ\u00a0"

// The code checks below are written out, without a regexp (a row runs
// several of them); validate_test.go fuzzes each against its expression.

// isDigits reports whether s is only ASCII digits (true when empty).
func isDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// validPaysCode reports whether s matches ^(99[0-9]{3}|92352)$: a COG code
// of a country.
func validPaysCode(s string) bool {
	return len(s) == 5 && (s == "92352" || s[0] == '9' && s[1] == '9' && isDigits(s[2:]))
}

// validCommuneCode reports whether s matches
// ^([013-9][0-9]|2[AB1-9])[0-9]{3}$: a COG code of a commune.
func validCommuneCode(s string) bool {
	if len(s) != 5 || !isDigits(s[2:]) {
		return false
	}
	switch c0, c1 := s[0], s[1]; {
	case c0 == '2':
		return c1 == 'A' || c1 == 'B' || '1' <= c1 && c1 <= '9'
	default:
		return isDigits(s[:2])
	}
}

// validDepartement reports whether s matches
// ^(0[1-9]|[1-8][0-9]|9[0-5]|2A|2B|97[1-4]|976)$.
func validDepartement(s string) bool {
	switch {
	case s == "2A" || s == "2B":
		return true
	case len(s) == 2 && isDigits(s):
		return s != "00" && s <= "95"
	case len(s) == 3 && s[0] == '9' && s[1] == '7':
		return '1' <= s[2] && s[2] <= '4' || s[2] == '6'
	}
	return false
}

// validUAI reports whether s matches ^[0-9]{7}[A-Z]$: a school's code.
func validUAI(s string) bool {
	return len(s) == 8 && isDigits(s[:7]) && 'A' <= s[7] && s[7] <= 'Z'
}

// isExcelSerial reports whether s matches ^[0-9]{5}(\.[0-9]+)?$: a date as
// a spreadsheet stores it, days since 1899-12-30 (1927 onwards has 5
// digits), a time of day as a fraction.
func isExcelSerial(s string) bool {
	if len(s) < 5 || !isDigits(s[:5]) {
		return false
	}
	frac := s[5:]
	return frac == "" || len(frac) >= 2 && frac[0] == '.' && isDigits(frac[1:])
}

// ExcelSerialDate reads s as an Excel serial date (5 digits, days since
// 1899-12-30, an optional time of day as a fraction, dropped): what a
// workbook stores for a date cell. ok is false for anything else.
func ExcelSerialDate(s string) (t time.Time, ok bool) {
	if !isExcelSerial(s) {
		return time.Time{}, false
	}
	s, _, _ = strings.Cut(s, ".")
	n, _ := strconv.Atoi(s)
	return time.Date(1899, 12, 30, 0, 0, 0, 0, time.UTC).AddDate(0, 0, n), true
}

// MaxPrenomsQF is how many first names the QF route accepts.
const MaxPrenomsQF = 3

// cleanName trims, folds runs of spaces and replaces typographic apostrophes.
func cleanName(s string) string {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			// They are all beyond ASCII; Replace copies s even when it
			// has none (accented names mostly).
			if strings.ContainsAny(s[i:], apostropheChars) {
				s = apostrophes.Replace(s)
			}
			break
		}
	}
	return strings.TrimSpace(foldSpaces(s))
}

// foldSpaces replaces each run of what the regular expression \s matches
// (tab, line feed, form feed, carriage return, space) with one space,
// without a regexp's cost.
func foldSpaces(s string) string {
	isSpace := func(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\f' || c == '\r' }
	clean := true
	for i := 0; i < len(s); i++ {
		if isSpace(s[i]) && (s[i] != ' ' || (i+1 < len(s) && isSpace(s[i+1]))) {
			clean = false
			break
		}
	}
	if clean {
		return s
	}
	b := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		if !isSpace(s[i]) {
			b = append(b, s[i])
			continue
		}
		b = append(b, ' ')
		for i+1 < len(s) && isSpace(s[i+1]) {
			i++
		}
	}
	return string(b)
}

// Bounds of the names a row may send: no civil-status name comes near
// them, and a longer value is a broken line (a missing quote or separator
// that merged several cells), not a name to send to the API.
const (
	MaxNameLength    = 100 // a name: nom de naissance, nom d'usage, commune
	MaxPrenomsLength = 200 // the prénoms cell, every first name
)

// tooLong reports whether s has more than n characters.
func tooLong(s string, n int) bool {
	return len(s) > n && utf8.RuneCountInString(s) > n
}

// longProblem says that a value is too long, without echoing it.
func longProblem(s string, n int) string {
	return "valeur trop longue (" + strconv.Itoa(utf8.RuneCountInString(s)) + " caractères, " + strconv.Itoa(n) +
		" au plus) ; un guillemet ou un séparateur manquant a peut-être fusionné plusieurs cellules"
}

// validName reports whether s matches ^[a-zA-ZÀ-ÖØ-öø-ÿ' -]+$ (written out,
// without a regexp): letters of Latin-1 (not × nor ÷), apostrophe, space and
// hyphen, at least one.
func validName(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		switch {
		case 'a' <= r && r <= 'z', 'A' <= r && r <= 'Z', r == '\'', r == ' ', r == '-':
		case 'À' <= r && r <= 'Ö', 'Ø' <= r && r <= 'ö', 'ø' <= r && r <= 'ÿ':
		default:
			return false
		}
	}
	return true
}

// civilityRules are what one route demands of the civil identity.
type civilityRules struct {
	// keepFirst > 0 sends only that many first names, the first ones (the
	// DSS, CNOUS and MEN routes take 3, MESRI 1).
	keepFirst       int
	sexRequired     bool
	communeRequired bool // born in France: commune code, or name and département
	fullDate        bool
}

var (
	// Beyond the first names a route accepts, the first ones are sent.
	// The CNAV routes take no sex since 2026-05-28 (datagouv/apistration
	// pull request #154): a row without one is sent without it.
	dssRules       = civilityRules{keepFirst: MaxPrenomsQF, communeRequired: true}
	cnousRules     = civilityRules{keepFirst: 3, fullDate: true}
	mesriRules     = civilityRules{keepFirst: 1, sexRequired: true, fullDate: true}
	scolariteRules = civilityRules{keepFirst: 3, sexRequired: true, fullDate: true}
)

// ParseIdentity builds the identity of one row from its raw fields, keyed by
// canonical column, and validates it with the QF route's own rules. now is
// the day the batch runs (a full birth date must be before it). Every problem
// is reported, not only the first.
func ParseIdentity(fields map[string]string, now time.Time) (Identity, []FieldError) {
	return parseCivility(fieldsOf(fields), now, dssRules)
}

// ParseFor builds what check sends for one row, and validates it with the
// rules of the check's route: the DSS routes take the civil identity; the
// student checks an INE or the identity with a full birth date; France
// Travail its username; scolarite the identity, the school (UAI) and the
// school year (default: the one of now).
func ParseFor(check Check, fields map[string]string, now time.Time) (Identity, []FieldError) {
	return ParseFields(check, fieldsOf(fields), now)
}

// ParseFields is ParseFor on a row held in Fields.
func ParseFields(check Check, f *Fields, now time.Time) (Identity, []FieldError) {
	switch check {
	case CheckEtudiantBoursier, CheckStatutEtudiant:
		if ine := strings.ToUpper(strings.TrimSpace(f[iINE])); ine != "" {
			if !ValidINE(ine) {
				return Identity{}, []FieldError{{Column: ColINE, Problem: "INE invalide : 11 caractères, par exemple 1234567890A (ou laissez vide pour chercher par l'identité)"}}
			}
			return Identity{INE: ine}, nil
		}
		if check == CheckEtudiantBoursier {
			return parseCivility(f, now, cnousRules)
		}
		return parseCivility(f, now, mesriRules)
	case CheckFranceTravail:
		v := strings.TrimSpace(f[iIdentifiantFT])
		switch {
		case v == "":
			return Identity{}, []FieldError{{Column: ColIdentifiantFT, Problem: "valeur manquante (identifiant du compte France Travail de la personne)"}}
		case len(v) > 100 || strings.ContainsFunc(v, func(r rune) bool { return r < ' ' || r == 0x7f }):
			return Identity{}, []FieldError{{Column: ColIdentifiantFT, Problem: "identifiant France Travail invalide (100 caractères au plus, sans caractère de contrôle)"}}
		}
		return Identity{IdentifiantFT: v}, nil
	case CheckScolarite:
		id, errs := parseCivility(f, now, scolariteRules)
		uai := strings.ToUpper(strings.TrimSpace(f[iCodeEtablissement]))
		switch {
		case uai == "":
			errs = append(errs, FieldError{Column: ColCodeEtablissement, Problem: "valeur manquante (code UAI de l'école ou de l'établissement, par exemple 0751234A)"})
		case !validUAI(uai):
			errs = append(errs, FieldError{Column: ColCodeEtablissement, Problem: "code UAI invalide : 7 chiffres et une lettre, par exemple 0751234A"})
		}
		id.CodeEtablissement = uai
		year := strings.TrimSpace(f[iAnneeScolaire])
		switch {
		case year == "":
			year = SchoolYear(now)
		case !validSchoolYear(year):
			errs = append(errs, FieldError{Column: ColAnneeScolaire, Problem: "année scolaire invalide (attendu AAAA-AAAA, par exemple 2026-2027, ou AAAA)"})
		}
		id.AnneeScolaire = year
		return id, errs
	default:
		return parseCivility(f, now, dssRules)
	}
}

var (
	inePatterns = []*regexp.Regexp{
		regexp.MustCompile(`^[0-9]{9}[A-HJK]{2}$`),            // RNIE
		regexp.MustCompile(`^[0-9]{10}[A-HJ-NPR-Z]$`),         // BEA
		regexp.MustCompile(`^[0-9A-Z]{10}[0-9]$`),             // base 36
		regexp.MustCompile(`^[0-9]{4}A[0-9]{5}[A-HJ-NPR-Z]$`), // SIFA
	}
	schoolYearPattern = regexp.MustCompile(`^([0-9]{4})(-([0-9]{4}))?$`)
)

// ValidINE reports whether ine (upper case) has one of the four formats
// the API accepts.
func ValidINE(ine string) bool {
	for _, p := range inePatterns {
		if p.MatchString(ine) {
			return true
		}
	}
	return false
}

// validSchoolYear accepts AAAA or AAAA-AAAA with consecutive years.
func validSchoolYear(s string) bool {
	m := schoolYearPattern.FindStringSubmatch(s)
	if m == nil {
		return false
	}
	if m[3] == "" {
		return true
	}
	a, _ := strconv.Atoi(m[1])
	b, _ := strconv.Atoi(m[3])
	return b == a+1
}

// SchoolYear is the school year t falls in, "2026-2027" from August 2026
// to July 2027.
func SchoolYear(t time.Time) string {
	y := t.Year()
	if t.Month() < time.August {
		y--
	}
	return strconv.Itoa(y) + "-" + strconv.Itoa(y+1)
}

// splitPrenoms splits first names on commas (or semicolons) when the value
// holds one, so that a first name with a space survives ("Marie Davida,
// Jeanne"; a lone one: "Marie Davida,"); on spaces otherwise.
func splitPrenoms(s string) []string {
	if !strings.ContainsAny(s, ",;") {
		return strings.Fields(s)
	}
	var out []string
	for _, p := range strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ';' }) {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// parseCivility builds and validates the civil identity under rules.
func parseCivility(f *Fields, now time.Time, rules civilityRules) (Identity, []FieldError) {
	var id Identity
	var errs []FieldError
	bad := func(col, problem string) { errs = append(errs, FieldError{Column: col, Problem: problem}) }

	id.NomNaissance = cleanName(f[iNomNaissance])
	switch {
	case id.NomNaissance == "":
		bad(ColNomNaissance, "valeur manquante (le nom de naissance est obligatoire)")
	case tooLong(id.NomNaissance, MaxNameLength):
		bad(ColNomNaissance, longProblem(id.NomNaissance, MaxNameLength))
	case !validName(id.NomNaissance):
		bad(ColNomNaissance, "caractères non acceptés par l'API (lettres, accents, espace, tiret et apostrophe seulement ; pas de chiffre)")
	}
	id.NomUsage = cleanName(f[iNomUsage])
	switch {
	case tooLong(id.NomUsage, MaxNameLength):
		bad(ColNomUsage, longProblem(id.NomUsage, MaxNameLength))
	case id.NomUsage != "" && !validName(id.NomUsage):
		bad(ColNomUsage, "caractères non acceptés par l'API (lettres, accents, espace, tiret et apostrophe seulement)")
	}

	cleaned := cleanName(f[iPrenoms])
	prenoms := splitPrenoms(cleaned)
	if rules.keepFirst > 0 && len(prenoms) > rules.keepFirst {
		prenoms = prenoms[:rules.keepFirst]
	}
	switch {
	case len(prenoms) == 0:
		bad(ColPrenoms, "valeur manquante (au moins un prénom est obligatoire)")
	case tooLong(cleaned, MaxPrenomsLength):
		bad(ColPrenoms, longProblem(cleaned, MaxPrenomsLength))
	default:
		for _, p := range prenoms {
			if !validName(p) {
				bad(ColPrenoms, "caractères non acceptés par l'API dans un prénom (lettres, accents, tiret et apostrophe seulement)")
				break
			}
		}
	}
	id.Prenoms = prenoms

	raw := strings.TrimSpace(f[iSexe])
	switch sexe := ParseSexe(raw); {
	case sexe != "":
		id.Sexe = sexe
	case raw == "":
		if rules.sexRequired {
			bad(ColSexe, "valeur manquante (attendu M ou F)")
		}
	default:
		bad(ColSexe, "valeur non reconnue (attendu M ou F, Masculin ou Féminin, H ou F, 1 ou 2)")
	}

	y, m, d, problem := ParseBirthDate(f[iDateNaissance], now)
	switch {
	case problem != "":
		bad(ColDateNaissance, problem)
	case rules.fullDate && d == 0:
		bad(ColDateNaissance, "date de naissance complète obligatoire pour cette vérification (JJ/MM/AAAA)")
	}
	id.AnneeNaissance, id.MoisNaissance, id.JourNaissance = y, m, d

	id.CodePaysNaissance = strings.TrimSpace(f[iPaysNaissance])
	switch fold(id.CodePaysNaissance) {
	case "", "FR", "FRA":
		id.CodePaysNaissance = CodePaysFrance
	}
	if !validPaysCode(id.CodePaysNaissance) {
		if code := CountryCode(id.CodePaysNaissance); code != "" {
			id.CodePaysNaissance = code
		} else {
			bad(ColPaysNaissance, "pays non reconnu : donnez son nom (par exemple Maroc) ou son code COG (5 chiffres commençant par 99, par exemple 99350)")
		}
	}

	commune := strings.ToUpper(strings.TrimSpace(f[iCommuneNaissance]))
	if len(commune) == 4 && strings.Trim(commune, "0123456789") == "" {
		// A spreadsheet cell typed as a number loses the leading zero of
		// départements 01 to 09 (08480 → 8480); no COG code has 4 digits.
		commune = "0" + commune
	}
	nomCommune := cleanName(f[iNomCommuneNaissance])
	if tooLong(nomCommune, MaxNameLength) {
		bad(ColNomCommuneNaissance, longProblem(nomCommune, MaxNameLength))
		nomCommune = ""
	}
	dept := strings.ToUpper(strings.TrimSpace(f[iDepartementNaissance]))
	if len(dept) == 1 && dept[0] >= '1' && dept[0] <= '9' {
		dept = "0" + dept
	}
	if id.CodePaysNaissance == CodePaysFrance {
		switch {
		case commune != "":
			if validCommuneCode(commune) {
				id.CodeCommuneNaissance = commune
			} else {
				bad(ColCommuneNaissance, "code commune INSEE (COG) invalide : 5 caractères, par exemple 08480 ou 2A004 ; un code postal n'est pas un code INSEE")
			}
		case nomCommune != "" || dept != "":
			if nomCommune == "" {
				bad(ColNomCommuneNaissance, "valeur manquante : avec le département, le nom de la commune de naissance est obligatoire")
			}
			if !validDepartement(dept) {
				bad(ColDepartementNaissance, "département invalide (01 à 95, 2A, 2B, 971 à 974 ou 976)")
			}
			if id.AnneeNaissance == 0 {
				bad(ColDateNaissance, "l'année de naissance est obligatoire quand la commune est donnée par son nom")
			}
			id.NomCommuneNaissance, id.CodeDepartementNaissance = nomCommune, dept
		case rules.communeRequired:
			bad(ColCommuneNaissance, "valeur manquante : pour une personne née en France, donnez le code INSEE de la commune de naissance, ou son nom et son département")
		}
	}
	return id, errs
}

// ParseSexe reads the ways rosters write the sex: M/F, H/F, 1/2 (the
// INSEE number's first digit), Masculin/Féminin, Homme/Femme, and
// civilities (M., Mme, Monsieur, Madame, Mlle). "" when not recognised.
func ParseSexe(s string) string {
	switch fold(s) {
	case "M", "H", "1", "MASCULIN", "HOMME", "MONSIEUR", "MR", "GARCON":
		return "M"
	case "F", "2", "FEMININ", "FEMME", "MADAME", "MME", "MLLE", "MADEMOISELLE", "FILLE":
		return "F"
	}
	return ""
}

// fold upper-cases s and drops accents, spaces and dots ("Féminin" →
// "FEMININ", "M." → "M").
func fold(s string) string {
	s = strings.TrimSpace(s)
	if isFolded(s) {
		return s // most values: upper-case ASCII codes, "M", "99100"
	}
	var b strings.Builder
	for _, r := range strings.ToUpper(strings.TrimSpace(s)) {
		switch r {
		case ' ', '.', '\u00a0':
			continue
		case 'É', 'È', 'Ê', 'Ë':
			r = 'E'
		case 'Ç':
			r = 'C'
		case 'À', 'Â':
			r = 'A'
		case 'Î', 'Ï':
			r = 'I'
		case 'Ô':
			r = 'O'
		case 'Ù', 'Û', 'Ü':
			r = 'U'
		}
		b.WriteRune(r)
	}
	return b.String()
}

// isFolded reports whether fold leaves s (trimmed) as it is: ASCII with
// no lower-case letter, space or dot.
func isFolded(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c >= utf8.RuneSelf || 'a' <= c && c <= 'z' || c == ' ' || c == '.' {
			return false
		}
	}
	return true
}

// ParseBirthDate parses YYYY-MM-DD, DD/MM/YYYY, MM/YYYY or YYYY. An empty
// value is allowed (the QF route does not need a birth date). problem is ""
// when the value is usable.
func ParseBirthDate(raw string, now time.Time) (year, month, day int, problem string) {
	const expected = " (attendu JJ/MM/AAAA, AAAA-MM-JJ, MM/AAAA ou AAAA)"
	s := strings.TrimSpace(raw)
	// Spreadsheets export date-times: the time of day is dropped.
	if i := strings.IndexAny(s, " T"); i > 0 && strings.Count(s[i:], ":") >= 1 {
		s = strings.TrimSpace(s[:i])
	}
	if s == "" {
		return 0, 0, 0, ""
	}
	atoi := func(p string, n int) (int, bool) {
		if len(p) != n && !(n == 2 && len(p) == 1) {
			return 0, false
		}
		v, err := strconv.Atoi(p)
		return v, err == nil && v >= 0
	}
	// year4 reads a 4-digit year, or a 2-digit one with a pivot: the
	// century that puts it in the past.
	year4 := func(p string) (int, bool) {
		if len(p) == 2 {
			v, err := strconv.Atoi(p)
			if err != nil || v < 0 {
				return 0, false
			}
			if 2000+v > now.Year() {
				return 1900 + v, true
			}
			return 2000 + v, true
		}
		return atoi(p, 4)
	}
	var ok1, ok2, ok3 bool
	switch {
	case isExcelSerial(s):
		// An Excel serial date (days since 1899-12-30): what a
		// spreadsheet cell formatted as a number shows.
		t, _ := ExcelSerialDate(s)
		year, month, day, ok1, ok2, ok3 = t.Year(), int(t.Month()), t.Day(), true, true, true
	case strings.Count(s, "-") == 2 && strings.IndexByte(s, '-') == 4:
		y, md, _ := strings.Cut(s, "-")
		m, d, _ := strings.Cut(md, "-")
		year, ok1 = atoi(y, 4)
		month, ok2 = atoi(m, 2)
		day, ok3 = atoi(d, 2)
	case strings.Count(s, "/") == 2, strings.Count(s, "-") == 2, strings.Count(s, ".") == 2:
		p, ok := dateFields(s)
		if !ok {
			break
		}
		day, ok1 = atoi(p[0], 2)
		month, ok2 = atoi(p[1], 2)
		year, ok3 = year4(p[2])
	case strings.Count(s, "/") == 1:
		m, y, _ := strings.Cut(s, "/")
		month, ok1 = atoi(m, 2)
		year, ok2 = atoi(y, 4)
		ok3 = true
	default:
		year, ok1 = atoi(s, 4)
		ok2, ok3 = true, true
	}
	if !ok1 || !ok2 || !ok3 {
		return 0, 0, 0, "format de date non reconnu" + expected
	}
	if month != 0 && (month < 1 || month > 12) {
		return 0, 0, 0, "mois impossible" + expected
	}
	if year < 1900 || year > now.Year() {
		return 0, 0, 0, "année hors limites (de 1900 à l'année en cours)"
	}
	if day != 0 {
		t := time.Date(year, time.Month(month), day, 0, 0, 0, 0, time.UTC)
		if t.Day() != day || day < 1 {
			return 0, 0, 0, "date impossible" + expected
		}
		today := time.Date(now.Year(), now.Month(), now.Day(), 0, 0, 0, 0, time.UTC)
		if !t.Before(today) {
			return 0, 0, 0, "date de naissance dans le futur ou aujourd'hui"
		}
	} else if month != 0 && (year == now.Year() && month > int(now.Month())) {
		return 0, 0, 0, "date de naissance dans le futur"
	}
	return year, month, day, ""
}

// dateFields splits s on '/', '-' and '.', dropping empty fields, as
// strings.FieldsFunc does, without its slice; false unless there are
// exactly three fields.
func dateFields(s string) (p [3]string, ok bool) {
	n, start := 0, -1
	for i := 0; i <= len(s); i++ {
		if i < len(s) && s[i] != '/' && s[i] != '-' && s[i] != '.' {
			if start < 0 {
				start = i
			}
			continue
		}
		if start < 0 {
			continue
		}
		if n == len(p) {
			return p, false
		}
		p[n], n, start = s[start:i], n+1, -1
	}
	return p, n == len(p)
}

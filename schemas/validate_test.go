package schemas

import (
	"regexp"
	"strings"
	"testing"
	"time"
)

func TestParseSexe(t *testing.T) {
	for in, want := range map[string]string{"M": "M", "f": "F", "H": "M", "1": "M", "2": "F", "Masculin": "M", "Féminin": "F",
		"FEMININ": "F", "Homme": "M", "femme": "F", "M.": "M", "Mme": "F", "Madame": "F", "Monsieur": "M", "Mlle": "F", " F ": "F",
		"X": "", "": "", "3": "", "Mixte": ""} {
		if got := ParseSexe(in); got != want {
			t.Errorf("ParseSexe(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestParseBirthDate(t *testing.T) {
	now := time.Date(2026, 9, 14, 10, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		in      string
		y, m, d int
		bad     bool
	}{
		{"05/09/2014", 2014, 9, 5, false},
		{"5/9/2014", 2014, 9, 5, false},
		{"5/9/14", 2014, 9, 5, false}, // pivot: 2014, in the past
		{"5/9/82", 1982, 9, 5, false}, // pivot: 2082 would be future
		{"05-09-2014", 2014, 9, 5, false},
		{"05.09.2014", 2014, 9, 5, false},
		{"2014-09-05", 2014, 9, 5, false},
		{"05/09/2014 00:00:00", 2014, 9, 5, false},
		{"2014-09-05T00:00:00", 2014, 9, 5, false},
		{"41887", 2014, 9, 5, false}, // Excel serial
		{"09/2014", 2014, 9, 0, false},
		{"2014", 2014, 0, 0, false},
		{"", 0, 0, 0, false},
		{"31/02/2015", 0, 0, 0, true},
		{"14/13/2015", 0, 0, 0, true},
		{"2027", 0, 0, 0, true},
		{"15/09/2026", 0, 0, 0, true}, // tomorrow
		{"hier", 0, 0, 0, true},
	} {
		y, m, d, problem := ParseBirthDate(tc.in, now)
		if (problem != "") != tc.bad || y != tc.y || m != tc.m || d != tc.d {
			t.Errorf("ParseBirthDate(%q) = %d-%d-%d %q", tc.in, y, m, d, problem)
		}
	}
}

func TestCountryCode(t *testing.T) {
	for in, want := range map[string]string{"France": "99100", "FRANCE": "99100", "Maroc": "99350", "algerie": "99352",
		"Côte d'Ivoire": "99326", "COTE D IVOIRE": "99326", "Côte d’Ivoire": "99326", "USA": "99404", "États-Unis": "99404",
		"Royaume-Uni": "99132", "Viêt Nam": "99243", "RDC": "99312", "Congo": "99324", "Turquie": "99208", "Portugal": "99139",
		"Atlantide": "", "": ""} {
		if got := CountryCode(in); got != want {
			t.Errorf("CountryCode(%q) = %q, want %q", in, got, want)
		}
	}
}

// The regular expressions validName and foldSpaces replaced.
var (
	namePattern = regexp.MustCompile(`^[a-zA-ZÀ-ÖØ-öø-ÿ' -]+$`)
	spaces      = regexp.MustCompile(`\s+`)
)

func TestNameRules_SameAsRegexps(t *testing.T) {
	for _, s := range []string{"", " ", "LEFEBVRE", "Jean-Pierre", "d'Artagnan", "LÉA", "Ø", "×", "÷", "ÿ", "Ā", "a1", "a\tb",
		"  a  \t\n b \r\f ", "\v", "a\u00a0b", "\xff", "caf\xc3", "’", "x  ", " x"} {
		if got, want := validName(s), namePattern.MatchString(s); got != want {
			t.Errorf("validName(%q) = %v, want %v", s, got, want)
		}
		if got, want := foldSpaces(s), spaces.ReplaceAllString(s, " "); got != want {
			t.Errorf("foldSpaces(%q) = %q, want %q", s, got, want)
		}
	}
}

func FuzzNameRules(f *testing.F) {
	f.Add("Jean  Pierre\t’x")
	f.Fuzz(func(t *testing.T, s string) {
		if got, want := validName(s), namePattern.MatchString(s); got != want {
			t.Fatalf("validName(%q) = %v, want %v", s, got, want)
		}
		if got, want := foldSpaces(s), spaces.ReplaceAllString(s, " "); got != want {
			t.Fatalf("foldSpaces(%q) = %q, want %q", s, got, want)
		}
	})
}

// The regular expressions the code checks replaced, and the fold and the
// date splitting they replaced.
var (
	paysPattern    = regexp.MustCompile(`^(99[0-9]{3}|92352)$`)
	communePattern = regexp.MustCompile(`^([013-9][0-9]|2[AB1-9])[0-9]{3}$`)
	deptPattern    = regexp.MustCompile(`^(0[1-9]|[1-8][0-9]|9[0-5]|2A|2B|97[1-4]|976)$`)
	uaiPattern     = regexp.MustCompile(`^[0-9]{7}[A-Z]$`)
	excelSerial    = regexp.MustCompile(`^[0-9]{5}(\.[0-9]+)?$`)
)

func foldRef(s string) string {
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

func dateFieldsRef(s string) ([3]string, bool) {
	var p [3]string
	f := strings.FieldsFunc(s, func(r rune) bool { return r == '/' || r == '-' || r == '.' })
	if len(f) != 3 {
		return p, false
	}
	copy(p[:], f)
	return p, true
}

// sameAsReference fails t when a hand-written check differs from what it
// replaced on s.
func sameAsReference(t *testing.T, s string) {
	t.Helper()
	for _, c := range []struct {
		name string
		got  func(string) bool
		re   *regexp.Regexp
	}{
		{"validPaysCode", validPaysCode, paysPattern}, {"validCommuneCode", validCommuneCode, communePattern},
		{"validDepartement", validDepartement, deptPattern}, {"validUAI", validUAI, uaiPattern},
		{"isExcelSerial", isExcelSerial, excelSerial},
	} {
		if got, want := c.got(s), c.re.MatchString(s); got != want {
			t.Errorf("%s(%q) = %v, want %v", c.name, s, got, want)
		}
	}
	if got, want := fold(s), foldRef(s); got != want {
		t.Errorf("fold(%q) = %q, want %q", s, got, want)
	}
	if got, want := cleanName(s), strings.TrimSpace(foldSpaces(apostrophes.Replace(s))); got != want {
		t.Errorf("cleanName(%q) = %q, want %q", s, got, want)
	}
	if got, want := countryKey(s), countryPunct.Replace(foldRef(s)); got != want {
		t.Errorf("countryKey(%q) = %q, want %q", s, got, want)
	}
	gotP, gotOK := dateFields(s)
	if wantP, wantOK := dateFieldsRef(s); gotOK != wantOK || gotOK && gotP != wantP {
		t.Errorf("dateFields(%q) = %q %v, want %q %v", s, gotP, gotOK, wantP, wantOK)
	}
}

var codeSamples = []string{"", "99100", "99350", "92352", "92353", "9910", "991000", "98100", "08480", "2A004", "2B123", "20123",
	"21000", "2C004", "75056", "A5056", "0", "00", "01", "09", "10", "89", "90", "95", "96", "2A", "2B", "2C", "971", "974", "975",
	"976", "977", "97", "0751234A", "0751234a", "075123AA", "07512345", "41887", "41887.5", "41887.", "41887.25x", "4188",
	"418870", " M ", "m.", "Féminin", "Mme", "F\u00a0", "ß", "\xff", "a\tb", "05/09/2014", "5//9/14", "/05-09.2014/", "1-2-3-4",
	"2014-09-05", "--", "a/b", "é/è/ê", "d’Artagnan", "Côte d'Ivoire", "A\u00a0B", "LÉA ‘X", "Guinée-Bissau"}

func TestCodeChecks_SameAsReference(t *testing.T) {
	for _, s := range codeSamples {
		sameAsReference(t, s)
	}
}

func FuzzCodeChecks(f *testing.F) {
	for _, s := range codeSamples {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) { sameAsReference(t, s) })
}

// benchRows are rows as rosters hold them: most born in France with a
// commune code, some abroad by country name, some with a partial date.
var benchRows = []map[string]string{
	{ColNomNaissance: "MARTIN", ColPrenoms: "JEAN PIERRE", ColSexe: "M", ColDateNaissance: "1984-05-17", ColPaysNaissance: "99100", ColCommuneNaissance: "08480"},
	{ColNomNaissance: "Lefèvre", ColPrenoms: "Léa, Marie", ColSexe: "F", ColDateNaissance: "17/05/1984", ColPaysNaissance: "", ColCommuneNaissance: "2A004"},
	{ColNomNaissance: "DUBOIS", ColPrenoms: "HUGO", ColSexe: "M", ColDateNaissance: "05/1990", ColPaysNaissance: "99350"},
	{ColNomNaissance: "BENALI", ColPrenoms: "YASMINE", ColSexe: "Féminin", ColDateNaissance: "1990", ColPaysNaissance: "Maroc"},
}

// BenchmarkParseFor parses and validates rows for the quotient familial.
func BenchmarkParseFor(b *testing.B) {
	now := time.Date(2026, 9, 14, 10, 0, 0, 0, time.UTC)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		if _, errs := ParseFor(CheckQuotientFamilial, benchRows[i%len(benchRows)], now); len(errs) > 0 && i < len(benchRows) {
			b.Fatalf("row %d: %v", i, errs)
		}
	}
}

// BenchmarkParseFields is BenchmarkParseFor on rows already in Fields, as
// the file reader holds them.
func BenchmarkParseFields(b *testing.B) {
	now := time.Date(2026, 9, 14, 10, 0, 0, 0, time.UTC)
	rows := make([]*Fields, len(benchRows))
	for i, r := range benchRows {
		rows[i] = fieldsOf(r)
	}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		if _, errs := ParseFields(CheckQuotientFamilial, rows[i%len(rows)], now); len(errs) > 0 && i < len(rows) {
			b.Fatalf("row %d: %v", i, errs)
		}
	}
}

func TestFieldIndex(t *testing.T) {
	for col, want := range map[string]int{ColReference: iReference, ColNomNaissance: iNomNaissance, ColNomUsage: iNomUsage,
		ColPrenoms: iPrenoms, ColSexe: iSexe, ColDateNaissance: iDateNaissance, ColPaysNaissance: iPaysNaissance,
		ColCommuneNaissance: iCommuneNaissance, ColNomCommuneNaissance: iNomCommuneNaissance,
		ColDepartementNaissance: iDepartementNaissance, ColINE: iINE, ColIdentifiantFT: iIdentifiantFT,
		ColCodeEtablissement: iCodeEtablissement, ColAnneeScolaire: iAnneeScolaire, "nom": -1} {
		if got := FieldIndex(col); got != want {
			t.Errorf("FieldIndex(%q) = %d, want %d", col, got, want)
		}
	}
	if len(Columns) != numColumns {
		t.Errorf("%d columns, Fields holds %d", len(Columns), numColumns)
	}
}

// TestParseFor_SexOptionalOnCNAV: the CNAV routes (QF, the DSS benefits,
// ARS) take a row without a sex and send none; the routes that still
// require one (MESRI, MEN) reject it; a sex that is not one stays an error.
func TestParseFor_SexOptionalOnCNAV(t *testing.T) {
	now := time.Date(2026, 9, 15, 0, 0, 0, 0, time.UTC)
	row := map[string]string{ColNomNaissance: "DUPONT", ColPrenoms: "PIERRE", ColDateNaissance: "12/03/1985",
		ColCommuneNaissance: "75112", ColCodeEtablissement: "0751234A"}
	for _, c := range Checks {
		if c == CheckFranceTravail {
			continue // no civility
		}
		t.Run(string(c), func(t *testing.T) {
			id, errs := ParseFor(c, row, now)
			sexErr := false
			for _, e := range errs {
				sexErr = sexErr || e.Column == ColSexe
			}
			wantErr := c == CheckStatutEtudiant || c == CheckScolarite
			if sexErr != wantErr || id.Sexe != "" {
				t.Errorf("sex error %v (want %v), sex %q: %v", sexErr, wantErr, id.Sexe, errs)
			}
			if c.IsDSS() && len(errs) != 0 {
				t.Errorf("CNAV route rejects the row: %v", errs)
			}
		})
	}
	bad := map[string]string{ColNomNaissance: "DUPONT", ColPrenoms: "PIERRE", ColSexe: "X", ColCommuneNaissance: "75112"}
	if _, errs := ParseFor(CheckARS, bad, now); len(errs) != 1 || errs[0].Column != ColSexe {
		t.Errorf("sex X: %v", errs)
	}
}

func TestCheckARS(t *testing.T) {
	cs, err := ParseChecks("ars,qf")
	if err != nil || len(cs) != 2 || cs[0] != CheckQuotientFamilial || cs[1] != CheckARS {
		t.Fatalf("ParseChecks: %v %v", cs, err)
	}
	if CheckARS.Label() != "Allocation de rentrée scolaire" || !CheckARS.IsDSS() || !CheckARS.Valid() {
		t.Errorf("label %q, DSS %v", CheckARS.Label(), CheckARS.IsDSS())
	}
	if s := CheckARS.Scopes(); len(s.Route) != 1 || s.Route[0] != "cnav_allocation_rentree_scolaire" {
		t.Errorf("scopes %v", s)
	}
	if !strings.Contains(CheckNames(), "allocation_rentree_scolaire (ars)") {
		t.Errorf("CheckNames: %s", CheckNames())
	}
}

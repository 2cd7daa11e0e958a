package csv

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/apbatch/apbatch/schemas"
)

var today = time.Date(2026, 9, 14, 0, 0, 0, 0, time.UTC)

func readAll(t *testing.T, in string) ([]Row, error) {
	t.Helper()
	r, err := NewReader(strings.NewReader(in), "liste.csv", today)
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

const hdr = "reference;nom_naissance;prenoms;sexe;date_naissance;code_insee_commune_naissance\n"

func TestReader_Formats(t *testing.T) {
	for _, tc := range []struct {
		name  string
		in    string
		rows  int
		lines []int
	}{
		{"semicolon", hdr + "A;LEFEBVRE;ALEXIS;F;1982-12-27;08480\n", 1, []int{2}},
		{"BOM and CRLF", "\ufeff" + strings.ReplaceAll(hdr+"A;LEFEBVRE;ALEXIS;F;1982-12-27;08480\nB;BERNARD;ELODIE;F;03/1990;08480\n", "\n", "\r\n"), 2, []int{2, 3}},
		{"comma", strings.ReplaceAll(hdr, ";", ",") + "A,LEFEBVRE,\"ALEXIS, GÉRÔME\",F,1982-12-27,08480\n", 1, []int{2}},
		{"tab", strings.ReplaceAll(hdr, ";", "\t") + "A\tLEFEBVRE\tALEXIS\tF\t1982\t08480\n", 1, []int{2}},
		{"quoted newline keeps start line", hdr + "\"A\nB\";LEFEBVRE;ALEXIS;F;;08480\nC;BERNARD;ELODIE;F;;08480\n", 2, []int{2, 4}},
		{"blank lines not counted", hdr + "\n;;;;;\nA;LEFEBVRE;ALEXIS;F;;08480\n\n", 1, []int{4}},
		{"header only", hdr, 0, nil},
		{"no final newline", hdr + "A;LEFEBVRE;ALEXIS;F;;08480", 1, []int{2}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rows, err := readAll(t, tc.in)
			if err != nil {
				t.Fatal(err)
			}
			if len(rows) != tc.rows {
				t.Fatalf("%d rows, want %d: %+v", len(rows), tc.rows, rows)
			}
			for i, r := range rows {
				if r.Number != int64(tc.lines[i]) || r.Line != tc.lines[i] || len(r.Invalid(0)) != 0 {
					t.Errorf("row %d = %+v, want line %d and no error", i, r, tc.lines[i])
				}
			}
		})
	}
}

func TestReader_FileErrors(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		want     []string
	}{
		{"empty", "", []string{"liste.csv", "vide"}},
		{"blank", "\n\n", []string{"vide"}},
		{"missing columns", "nom_naissance;prenom\nA;B\n", []string{"colonnes manquantes : code_insee_commune_naissance", "colonnes trouvées : nom_naissance, prenom"}},
		{"no header line", "DUPONT;JEAN;M;2014-05-10;08480\n", []string{"aucune des 5 colonnes", "ligne d'en-tête"}},
		{"duplicate column", "nom_naissance;nom_naissance;prenoms;sexe;code_insee_commune_naissance\n", []string{"deux fois"}},
		{"one header twice in other words", "Nom de naissance;NOM DE NAISSANCE;prenoms;sexe;code_insee_commune_naissance\n", []string{"« NOM DE NAISSANCE » apparaît deux fois", "colonnes 1 et 2"}},
		{"numéro allocataire", "N° allocataire;Code postal;Nom\n123456;08000;DUPONT\n", []string{"numéro allocataire", "31/10/2025", "410", "date de naissance"}},
		{"xlsx uploaded as csv", "PK\x03\x04\x14\x00rest", []string{"classeur Excel", "CSV"}},
		{"pdf", "%PDF-1.4\n", []string{"un PDF"}},
		{"binary", "nom\x00\x01\x02", []string{"binaire"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := readAll(t, tc.in)
			var fe *FileError
			if !errors.As(err, &fe) {
				t.Fatalf("err = %v, want a FileError", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("%q does not say %q", err, w)
				}
			}
		})
	}
}

func TestReader_RowErrors(t *testing.T) {
	rows, err := readAll(t, hdr+
		"A;LEFEBVRE;ALEXIS;F;31/02/2015;08480\n"+
		"B;LEFEBVRE;ALEXIS;;1982;08480\n"+
		"C;LEFEBVRE;ALEXIS;F;1982;\n"+
		"D;LEFEBVRE;ALEXIS;F\n"+
		"E;LEFEB3VRE;A B C D;X;2030-01-01;75\n")
	if err != nil {
		t.Fatal(err)
	}
	want := [][]string{
		{"ligne 2, colonne « date_naissance » : date impossible"},
		nil, // no sex: the CNAV routes take none
		{"ligne 4, colonne « code_insee_commune_naissance » : valeur manquante"},
		{"ligne 5 : 4 champs au lieu de 6"},
		{"colonne « nom_naissance »", "colonne « sexe » : valeur non reconnue", "colonne « date_naissance »", "un code postal n'est pas un code INSEE"},
	}
	if len(rows) != len(want) {
		t.Fatalf("%d rows", len(rows))
	}
	for i, r := range rows {
		joined := strings.Join(r.Invalid(0), " | ")
		if want[i] == nil && joined != "" {
			t.Errorf("row %d rejected: %q", i+1, joined)
		}
		for _, w := range want[i] {
			if !strings.Contains(joined, w) {
				t.Errorf("row %d errors %q lack %q", i+1, joined, w)
			}
		}
		if strings.Contains(joined, "LEFEB") || strings.Contains(joined, "2015") {
			t.Errorf("row %d error echoes a personal value: %q", i+1, joined)
		}
	}
}

// TestOpen_EncodingsDelimitersAndHeaders: what town halls export is read
// as UTF-8 text whatever its encoding, delimiter and header wording.
func TestOpen_EncodingsDelimitersAndHeaders(t *testing.T) {
	utf16 := func(s string) string {
		b := []byte{0xff, 0xfe}
		for _, r := range s {
			b = append(b, byte(r), byte(r>>8))
		}
		return string(b)
	}
	french := "NOM DE NAISSANCE;Prénom(s);Sexe;Date de naissance;Code INSEE commune de naissance\r\nLEFÈVRE;Zoé;F;05/09/2014;08480\r\n"
	for _, tc := range []struct {
		name, in, enc string
	}{
		{"utf-8", french, ""},
		{"utf-8 with BOM", "\ufeff" + french, ""},
		{"windows-1252", "NOM DE NAISSANCE;Pr\xe9nom(s);Sexe;Date de naissance;Code INSEE commune de naissance\r\nLEF\xc8VRE;Zo\xe9;F;05/09/2014;08480\r\n", ""},
		{"iso-8859-15 when told", "NOM DE NAISSANCE;Pr\xe9nom(s);Sexe;Date de naissance;Code INSEE commune de naissance\nLEF\xc8VRE;Zo\xe9;F;05/09/2014;08480\n", EncodingISO885915},
		{"utf-16 with BOM", utf16(french), ""},
		{"tab", strings.ReplaceAll(french, ";", "\t"), ""},
		{"pipe", strings.ReplaceAll(french, ";", "|"), ""},
		{"comma, quoted", "\"Nom de naissance\",\"Prénoms\",Sexe,\"Né(e) le\",Code commune naissance\n\"LEFÈVRE\",\"Zoé\",F,05/09/2014,08480\n", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := Open(strings.NewReader(tc.in), "roster.csv", Options{Now: today, Encoding: tc.enc})
			if err != nil {
				t.Fatal(err)
			}
			row, err := r.Next()
			if err != nil {
				t.Fatal(err)
			}
			id := row.Checks[0].Identity
			if bad := row.Invalid(0); len(bad) > 0 || id.NomNaissance != "LEFÈVRE" || id.Prenoms[0] != "Zoé" || id.JourNaissance != 5 || id.CodeCommuneNaissance != "08480" {
				t.Fatalf("%+v %v", id, bad)
			}
		})
	}
	// The most specific header wins: the child's "Nom" column is not the
	// birth name when "Nom de naissance" is there.
	r, err := Open(strings.NewReader("Nom;Nom de naissance;Prénom;Sexe;Commune de naissance;Département de naissance;Né le\nX;LEFÈVRE;Zoé;F;Sedan;08;2014\n"), "r.csv", Options{Now: today})
	if err != nil {
		t.Fatal(err)
	}
	if row, _ := r.Next(); row.Checks[0].Identity.NomNaissance != "LEFÈVRE" || row.Checks[0].Identity.CodeDepartementNaissance != "08" {
		t.Fatalf("%+v", row.Checks[0])
	}
	if _, err := Open(strings.NewReader(french), "roster.csv", Options{Now: today, Encoding: "ebcdic"}); err == nil || !strings.Contains(err.Error(), "windows-1252") {
		t.Fatalf("unknown encoding: %v", err)
	}
}

// TestOpen_TenantColumns: a tenant's mapping names headers no alias knows,
// and wins over the aliases.
func TestOpen_TenantColumns(t *testing.T) {
	in := "NOM JF;Nom;Prénom;Genre;Date;INSEE naiss.\nLEFÈVRE;MARTIN;Zoé;F;05/09/2014;08480\n"
	if _, err := Open(strings.NewReader(in), "r.csv", Options{Now: today}); err == nil {
		t.Fatal("headers unknown to the aliases were accepted")
	}
	cols := map[string]string{"nom_naissance": "Nom JF", "date_naissance": "Date", "code_insee_commune_naissance": "INSEE naiss."}
	r, err := Open(strings.NewReader(in), "r.csv", Options{Now: today, Columns: cols})
	if err != nil {
		t.Fatal(err)
	}
	row, _ := r.Next()
	if id := row.Checks[0].Identity; id.NomNaissance != "LEFÈVRE" || id.JourNaissance != 5 || id.CodeCommuneNaissance != "08480" || len(row.Invalid(0)) > 0 {
		t.Fatalf("%+v %v", id, row.Invalid(0))
	}
	if _, err := Open(strings.NewReader(in), "r.csv", Options{Now: today, Columns: map[string]string{"nom_jeune_fille": "NOM JF"}}); err == nil ||
		!strings.Contains(err.Error(), "n'est pas une colonne d'apbatch") {
		t.Fatalf("unknown column in mapping: %v", err)
	}
}

func TestNormalizeHeader(t *testing.T) {
	for in, want := range map[string]string{"Prénom(s)": "prenom_s", " NOM DE NAISSANCE ": "nom_de_naissance", "Né(e) le": "ne_e_le",
		"N° allocataire": "n_allocataire", "code_insee_commune_naissance": "code_insee_commune_naissance", "Date_de__naissance": "date_de_naissance"} {
		if got := NormalizeHeader(in); got != want {
			t.Errorf("NormalizeHeader(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestParseIdentity(t *testing.T) {
	for _, tc := range []struct {
		name   string
		fields map[string]string
		want   schemas.Identity
		errCol []string
	}{
		{"nominal", map[string]string{"nom_naissance": " LEFEBVRE ", "prenoms": "ALEXIS  GÉRÔME JEAN-PHILIPPE", "sexe": "f", "date_naissance": "27/12/1982", "code_insee_commune_naissance": "08480"},
			schemas.Identity{NomNaissance: "LEFEBVRE", Prenoms: []string{"ALEXIS", "GÉRÔME", "JEAN-PHILIPPE"}, Sexe: "F", AnneeNaissance: 1982, MoisNaissance: 12, JourNaissance: 27, CodePaysNaissance: "99100", CodeCommuneNaissance: "08480"}, nil},
		{"commas keep a first name with a space", map[string]string{"nom_naissance": "RONALDO", "prenoms": "Marie Davida, Jeanne", "sexe": "F", "code_insee_commune_naissance": "75111"},
			schemas.Identity{NomNaissance: "RONALDO", Prenoms: []string{"Marie Davida", "Jeanne"}, Sexe: "F", CodePaysNaissance: "99100", CodeCommuneNaissance: "75111"}, nil},
		{"a lone first name with a space", map[string]string{"nom_naissance": "RONALDO", "prenoms": "Marie Davida,", "sexe": "F", "code_insee_commune_naissance": "75111"},
			schemas.Identity{NomNaissance: "RONALDO", Prenoms: []string{"Marie Davida"}, Sexe: "F", CodePaysNaissance: "99100", CodeCommuneNaissance: "75111"}, nil},
		{"apostrophe and partial date", map[string]string{"nom_naissance": "D’ARTAGNAN", "prenoms": "Charles", "sexe": "M", "date_naissance": "1611", "code_insee_commune_naissance": "2a004"},
			schemas.Identity{NomNaissance: "D'ARTAGNAN", Prenoms: []string{"Charles"}, Sexe: "M", AnneeNaissance: 1611, CodePaysNaissance: "99100", CodeCommuneNaissance: "2A004"}, []string{"date_naissance"}},
		{"abroad ignores commune", map[string]string{"nom_naissance": "FAKIR", "prenoms": "EYMEN", "sexe": "M", "code_insee_pays_naissance": "99350", "code_insee_commune_naissance": "08480"},
			schemas.Identity{NomNaissance: "FAKIR", Prenoms: []string{"EYMEN"}, Sexe: "M", CodePaysNaissance: "99350"}, nil},
		{"triplet", map[string]string{"nom_naissance": "BERNARD", "prenoms": "ELODIE", "sexe": "F", "date_naissance": "1990", "commune_naissance": "Sedan", "departement_naissance": "8"},
			schemas.Identity{NomNaissance: "BERNARD", Prenoms: []string{"ELODIE"}, Sexe: "F", AnneeNaissance: 1990, CodePaysNaissance: "99100", NomCommuneNaissance: "Sedan", CodeDepartementNaissance: "08"}, nil},
		{"triplet without year", map[string]string{"nom_naissance": "BERNARD", "prenoms": "ELODIE", "sexe": "F", "commune_naissance": "Sedan", "departement_naissance": "99"},
			schemas.Identity{NomNaissance: "BERNARD", Prenoms: []string{"ELODIE"}, Sexe: "F", CodePaysNaissance: "99100", NomCommuneNaissance: "Sedan", CodeDepartementNaissance: "99"}, []string{"departement_naissance", "date_naissance"}},
		{"unknown country", map[string]string{"nom_naissance": "X", "prenoms": "Y", "sexe": "M", "code_insee_pays_naissance": "Atlantide"},
			schemas.Identity{NomNaissance: "X", Prenoms: []string{"Y"}, Sexe: "M", CodePaysNaissance: "Atlantide"}, []string{"code_insee_pays_naissance"}},
		{"country by its name", map[string]string{"nom_naissance": "X", "prenoms": "Y", "sexe": "M", "code_insee_pays_naissance": "Maroc"},
			schemas.Identity{NomNaissance: "X", Prenoms: []string{"Y"}, Sexe: "M", CodePaysNaissance: "99350"}, nil},
		{"France by its name, sex in words", map[string]string{"nom_naissance": "X", "prenoms": "Y", "sexe": "Féminin", "code_insee_pays_naissance": "France", "code_insee_commune_naissance": "08480"},
			schemas.Identity{NomNaissance: "X", Prenoms: []string{"Y"}, Sexe: "F", CodePaysNaissance: "99100", CodeCommuneNaissance: "08480"}, nil},
		{"future date", map[string]string{"nom_naissance": "X", "prenoms": "Y", "sexe": "M", "date_naissance": "2026-09-14", "code_insee_commune_naissance": "08480"},
			schemas.Identity{NomNaissance: "X", Prenoms: []string{"Y"}, Sexe: "M", CodePaysNaissance: "99100", CodeCommuneNaissance: "08480"}, []string{"date_naissance"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, errs := schemas.ParseIdentity(tc.fields, today)
			checkParsed(t, got, errs, tc.want, tc.errCol)
		})
	}
}

// checkParsed compares a parse with the identity and error columns
// expected (the identity only when no error is).
func checkParsed(t *testing.T, got schemas.Identity, errs []schemas.FieldError, want schemas.Identity, errCol []string) {
	t.Helper()
	var cols []string
	for _, e := range errs {
		cols = append(cols, e.Column)
	}
	if !reflect.DeepEqual(cols, errCol) {
		t.Errorf("error columns = %v, want %v (%v)", cols, errCol, errs)
	}
	if len(errCol) == 0 && !reflect.DeepEqual(got, want) {
		t.Errorf("identity = %+v\nwant       %+v", got, want)
	}
}

func TestParseFor(t *testing.T) {
	civ := map[string]string{"nom_naissance": "MARTIN", "prenoms": "Léa Anne", "sexe": "F", "date_naissance": "14/05/2012"}
	with := func(kv ...string) map[string]string {
		m := map[string]string{}
		for k, v := range civ {
			m[k] = v
		}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return m
	}
	for _, tc := range []struct {
		name   string
		check  schemas.Check
		fields map[string]string
		want   schemas.Identity
		errCol []string
	}{
		{"boursier by INE alone", schemas.CheckEtudiantBoursier, map[string]string{"ine": " 1234567890a "},
			schemas.Identity{INE: "1234567890A"}, nil},
		{"boursier, bad INE", schemas.CheckEtudiantBoursier, map[string]string{"ine": "12345"}, schemas.Identity{}, []string{"ine"}},
		{"boursier by identity, no birth place needed", schemas.CheckEtudiantBoursier, civ,
			schemas.Identity{NomNaissance: "MARTIN", Prenoms: []string{"Léa", "Anne"}, Sexe: "F", AnneeNaissance: 2012, MoisNaissance: 5, JourNaissance: 14, CodePaysNaissance: "99100"}, nil},
		{"boursier needs a full date", schemas.CheckEtudiantBoursier, with("date_naissance", "05/2012"), schemas.Identity{}, []string{"date_naissance"}},
		{"boursier, sex optional", schemas.CheckEtudiantBoursier, with("sexe", ""),
			schemas.Identity{NomNaissance: "MARTIN", Prenoms: []string{"Léa", "Anne"}, AnneeNaissance: 2012, MoisNaissance: 5, JourNaissance: 14, CodePaysNaissance: "99100"}, nil},
		{"statut etudiant keeps the first first name", schemas.CheckStatutEtudiant, civ,
			schemas.Identity{NomNaissance: "MARTIN", Prenoms: []string{"Léa"}, Sexe: "F", AnneeNaissance: 2012, MoisNaissance: 5, JourNaissance: 14, CodePaysNaissance: "99100"}, nil},
		{"statut etudiant needs the sex", schemas.CheckStatutEtudiant, with("sexe", ""), schemas.Identity{}, []string{"sexe"}},
		{"france travail", schemas.CheckFranceTravail, map[string]string{"identifiant_france_travail": " jdupont75 "}, schemas.Identity{IdentifiantFT: "jdupont75"}, nil},
		{"france travail, missing", schemas.CheckFranceTravail, civ, schemas.Identity{}, []string{"identifiant_france_travail"}},
		{"scolarite", schemas.CheckScolarite, with("code_etablissement", "0751234a", "annee_scolaire", "2026-2027"),
			schemas.Identity{NomNaissance: "MARTIN", Prenoms: []string{"Léa", "Anne"}, Sexe: "F", AnneeNaissance: 2012, MoisNaissance: 5, JourNaissance: 14,
				CodePaysNaissance: "99100", CodeEtablissement: "0751234A", AnneeScolaire: "2026-2027"}, nil},
		{"scolarite, school year of the day", schemas.CheckScolarite, with("code_etablissement", "0751234A"),
			schemas.Identity{NomNaissance: "MARTIN", Prenoms: []string{"Léa", "Anne"}, Sexe: "F", AnneeNaissance: 2012, MoisNaissance: 5, JourNaissance: 14,
				CodePaysNaissance: "99100", CodeEtablissement: "0751234A", AnneeScolaire: schemas.SchoolYear(today)}, nil},
		{"scolarite, bad UAI and year", schemas.CheckScolarite, with("code_etablissement", "75123", "annee_scolaire", "2026-2028"), schemas.Identity{}, []string{"code_etablissement", "annee_scolaire"}},
		{"scolarite, no school", schemas.CheckScolarite, civ, schemas.Identity{}, []string{"code_etablissement"}},
		{"a DSS benefit takes the QF rules", schemas.CheckRSA, civ, schemas.Identity{}, []string{"code_insee_commune_naissance"}},
		{"the first three first names are sent", schemas.CheckQuotientFamilial, with("prenoms", "Léa Anne Marie Jeanne", "code_insee_commune_naissance", "08480"),
			schemas.Identity{NomNaissance: "MARTIN", Prenoms: []string{"Léa", "Anne", "Marie"}, Sexe: "F", AnneeNaissance: 2012, MoisNaissance: 5, JourNaissance: 14,
				CodePaysNaissance: "99100", CodeCommuneNaissance: "08480"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, errs := schemas.ParseFor(tc.check, tc.fields, today)
			checkParsed(t, got, errs, tc.want, tc.errCol)
		})
	}
}

func TestNewReader_ColumnsPerCheck(t *testing.T) {
	for _, tc := range []struct {
		header  string
		checks  []schemas.Check
		missing string // "" when the header is enough
	}{
		{"ine", []schemas.Check{schemas.CheckEtudiantBoursier, schemas.CheckStatutEtudiant}, ""},
		{"nom_naissance;prenoms;date_naissance", []schemas.Check{schemas.CheckEtudiantBoursier}, ""},
		{"nom_naissance;prenoms", []schemas.Check{schemas.CheckEtudiantBoursier}, "ine (ou nom_naissance, prenoms, date_naissance)"},
		{"identifiant_france_travail", []schemas.Check{schemas.CheckFranceTravail}, ""},
		{"nom_naissance;prenoms;sexe;date_naissance", []schemas.Check{schemas.CheckScolarite}, "code_etablissement"},
		{"ine", []schemas.Check{schemas.CheckQuotientFamilial}, "nom_naissance, prenoms, code_insee_commune_naissance"},
	} {
		_, err := NewReader(strings.NewReader(tc.header+"\nx\n"), "f.csv", today, tc.checks...)
		switch {
		case tc.missing == "" && err != nil:
			t.Errorf("%q for %v: %v", tc.header, tc.checks, err)
		case tc.missing != "" && (err == nil || !strings.Contains(err.Error(), "colonnes manquantes : "+tc.missing)):
			t.Errorf("%q for %v: %v, want missing %s", tc.header, tc.checks, err, tc.missing)
		}
	}
}

func TestReader_Sample(t *testing.T) {
	f, err := os.Open("../../deploy/samples/cantine-demo.csv")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, err := NewReader(f, "cantine-demo.csv", today)
	if err != nil {
		t.Fatal(err)
	}
	invalid := map[string]string{}
	n := 0
	for {
		row, err := r.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		n++
		if len(row.Invalid(0)) > 0 {
			invalid[row.Reference] = strings.Join(row.Invalid(0), " | ")
		}
	}
	want := map[string]string{
		"FAM-0012": "colonne « date_naissance »",
		"FAM-0014": "colonne « code_insee_commune_naissance »",
	}
	if len(invalid) != len(want) || n != 16 {
		t.Fatalf("%d rows, invalid = %v", n, invalid)
	}
	for ref, col := range want {
		if !strings.Contains(invalid[ref], col) {
			t.Errorf("%s: %q does not name %s", ref, invalid[ref], col)
		}
	}
}

func FuzzReader(f *testing.F) {
	f.Add(hdr + "A;LEFEBVRE;ALEXIS;F;1982-12-27;08480\n")
	f.Add("\ufeff" + strings.ReplaceAll(hdr, ";", ",") + "\"A,\"\"x\"\"\",B,C,M,2000,2A004\r\n\n")
	f.Add(hdr + "\"unterminated;X;Y;F;;;\n")
	f.Add("")
	f.Add("Liste des inscrits\n;;;\n" + hdr + "A;LEFEBVRE;ALEXIS;F;1982-12-27;08480\n")
	f.Add("Export \"cantine\n" + strings.ReplaceAll(hdr, ";", ",") + "A,B,C,M,2000,2A004\n")
	f.Add("\"nom;prenoms;sexe\"\n\"A;B;M\"\n")
	f.Fuzz(func(t *testing.T, in string) {
		// The header found, and the header given on each of the first
		// lines: rows come after it, numbered by the file's lines.
		for headerRow := 0; headerRow <= 3; headerRow++ {
			fuzzRows(t, in, headerRow)
		}
	})
}

// fuzzRows reads in with headerRow, checking what FuzzReader promises.
func fuzzRows(t *testing.T, in string, headerRow int) {
	t.Helper()
	r, err := Open(strings.NewReader(in), "fuzz.csv", Options{Now: today, HeaderRow: headerRow})
	if err != nil {
		var fe *FileError
		if !errors.As(err, &fe) {
			t.Fatalf("NewReader error is not a FileError: %v", err)
		}
		return
	}
	if headerRow > 0 && r.HeaderLine() != headerRow {
		t.Fatalf("header read on line %d, want %d", r.HeaderLine(), headerRow)
	}
	last := int64(r.HeaderLine())
	for i := 0; i < 10000; i++ {
		row, err := r.Next()
		if errors.Is(err, io.EOF) {
			return
		}
		if err != nil {
			t.Fatalf("Next: %v", err)
		}
		// A row is its line: numbers grow, and a row has one input
		// per check, broken or not (the splitter makes a result of each).
		if row.Number <= last || row.Number != int64(row.Line) {
			t.Fatalf("row number %d (line %d) after %d", row.Number, row.Line, last)
		}
		if len(row.Checks) != 1 || row.Checks[0].Check != schemas.CheckQuotientFamilial {
			t.Fatalf("line %d: %d check inputs", row.Line, len(row.Checks))
		}
		last = row.Number
	}
}

func TestReader_NoHeaderDoesNotEchoData(t *testing.T) {
	_, err := readAll(t, "DUPONT;JEAN;M;2014-05-10;08480\n")
	if err == nil || strings.Contains(err.Error(), "DUPONT") || strings.Contains(err.Error(), "2014") {
		t.Fatalf("err = %v", err)
	}
}

// FuzzOpenXLSX: whatever bytes come as a workbook, the reader returns rows
// or a FileError, never a panic or another error.
func FuzzOpenXLSX(f *testing.F) {
	sample, err := os.ReadFile("../../deploy/samples/cantine-mairie.xlsx")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(sample)
	f.Add(sample[:len(sample)/2])
	f.Add([]byte("PK\x03\x04"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, in []byte) {
		r, err := OpenXLSX(context.Background(), bytes.NewReader(in), "fuzz.xlsx", Options{Now: today})
		if err != nil {
			var fe *FileError
			if !errors.As(err, &fe) {
				t.Fatalf("OpenXLSX error is not a FileError: %v", err)
			}
			return
		}
		for i := 0; i < 10000; i++ {
			_, err := r.Next()
			if errors.Is(err, io.EOF) {
				return
			}
			var fe *FileError
			if err != nil && !errors.As(err, &fe) {
				t.Fatalf("Next: %v", err)
			}
			if err != nil {
				return
			}
		}
	})
}

// TestMalformedCorpus: every file of testdata/malformed fails with its
// file-level message, or reads with its row-level one, or (the controls)
// reads cleanly. The reader is picked by OpenFile, as the splitter does.
func TestMalformedCorpus(t *testing.T) {
	want := map[string]string{
		"01-vide.csv":                          "file: le fichier est vide",
		"02-lignes-blanches.csv":               "file: le fichier est vide",
		"03-en-tete-seul.csv":                  "norows",
		"04-sans-en-tete.csv":                  "file: aucune des 5 colonnes de la première ligne n'est reconnue",
		"05-colonnes-manquantes.csv":           "file: colonnes manquantes : code_insee_commune_naissance",
		"06-colonne-en-double.csv":             "file: « NOM DE NAISSANCE » apparaît deux fois",
		"07-numero-allocataire.csv":            "file: numéro allocataire CAF",
		"08-classeur-renomme.csv":              "file: classeur Excel illisible",
		"09-pdf.csv":                           "file: ce fichier est un PDF",
		"10-binaire.csv":                       "file: ce fichier est un fichier binaire",
		"11-ancien-xls.xls":                    "file: un ancien classeur Excel (.xls)",
		"12-guillemet-non-ferme.csv":           "row: ligne 2 : guillemet",
		"13-nombre-de-champs.csv":              "row: ligne 2 : 4 champs au lieu de 7",
		"14-date-impossible.csv":               "row: ligne 2, colonne « date_naissance » : date impossible",
		"15-date-future.csv":                   "row: ligne 2, colonne « date_naissance » : année hors limites",
		"16-sexe-inconnu.csv":                  "row: ligne 2, colonne « sexe » : valeur non reconnue",
		"17-commune-invalide.csv":              "row: ligne 2, colonne « code_insee_commune_naissance » : code commune INSEE (COG) invalide",
		"18-pays-inconnu.csv":                  "row: ligne 2, colonne « code_insee_pays_naissance » : pays non reconnu",
		"19-nom-avec-chiffre.csv":              "row: ligne 2, colonne « nom_naissance » : caractères non acceptés",
		"20-prenom-avec-chiffre.csv":           "row: ligne 2, colonne « prenoms » : caractères non acceptés",
		"21-commune-manquante.csv":             "row: ligne 2, colonne « code_insee_commune_naissance » : valeur manquante",
		"22-departement-invalide.csv":          "row: ligne 2, colonne « departement_naissance » : département invalide",
		"23-utf16-sans-bom.csv":                "file: ce fichier est un fichier binaire",
		"24-reference-trop-longue.csv":         "row: ligne 2, colonne « reference » : référence trop longue",
		"25-classeur-tronque.xlsx":             "file: classeur Excel illisible",
		"26-mois-impossible.csv":               "row: ligne 2, colonne « date_naissance » : mois impossible",
		"27-separateur-tabulation.csv":         "ok",
		"28-classeur-colonnes-manquantes.xlsx": "file: colonnes manquantes : code_insee_commune_naissance",
	}
	files, err := os.ReadDir("testdata/malformed")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 25 || len(files) != len(want) {
		t.Fatalf("%d files in the corpus, %d expectations", len(files), len(want))
	}
	for _, fi := range files {
		name := fi.Name()
		t.Run(name, func(t *testing.T) {
			exp, ok := want[name]
			if !ok {
				t.Fatal("no expectation")
			}
			raw, err := os.ReadFile(filepath.Join("testdata/malformed", name))
			if err != nil {
				t.Fatal(err)
			}
			r, err := OpenFile(context.Background(), bytes.NewReader(raw), name, Options{Now: today})
			got := "ok"
			switch {
			case err != nil:
				got = "file: " + err.Error()
			default:
				var rows int
				for {
					row, err := r.Next()
					if errors.Is(err, io.EOF) {
						break
					}
					if err != nil {
						got = "file: " + err.Error()
						break
					}
					rows++
					if bad := row.Invalid(0); len(bad) > 0 {
						got = "row: " + strings.Join(bad, " | ")
					}
				}
				if rows == 0 && got == "ok" {
					got = "norows"
				}
			}
			kind, text, _ := strings.Cut(exp, ": ")
			if !strings.HasPrefix(got, kind) || !strings.Contains(got, text) {
				t.Errorf("got %q\nwant %q", got, exp)
			}
			if strings.Contains(got, "DUPONT") || strings.Contains(got, "DUP0NT") {
				t.Errorf("message echoes a name: %q", got)
			}
		})
	}
}

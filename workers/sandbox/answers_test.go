package sandbox

import (
	"bytes"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The reference answers below are the sandbox's first, map-based
// answers: the appending ones must give the same bytes.

func answerQFReference(per Person, q map[string][]string, now time.Time) (int, []byte) {
	switch per.Outcome {
	case OutcomeNoFile:
		return http.StatusNotFound, []byte(`{"errors":[{"code":"37003","title":"Dossier allocataire absent CNAV","detail":"Le dossier allocataire n'a pas été trouvé auprès de la CNAV.","meta":{"provider":"CNAV"}}]}`)
	case OutcomeUnknown:
		return http.StatusUnprocessableEntity, []byte(`{"errors":[{"code":"35560","title":"Identité non reconnue par le fournisseur de données","detail":"Les paramètres d'identité fournis ne correspondent à aucune personne connue du fournisseur de données.","meta":{"provider":"CNAF & MSA"}}]}`)
	}
	year, month := now.Year(), int(now.Month())
	if v := first(q, "annee"); v != "" {
		year, _ = strconv.Atoi(v)
	}
	if v := first(q, "mois"); v != "" {
		month, _ = strconv.Atoi(v)
	}
	type member struct {
		NomNaissance string  `json:"nom_naissance"`
		NomUsage     *string `json:"nom_usage"`
		Prenoms      string  `json:"prenoms"`
		DateNaiss    string  `json:"date_naissance"`
		Sexe         string  `json:"sexe"`
	}
	allocs := []member{{NomNaissance: per.NomNaissance, Prenoms: strings.Join(per.Prenoms, " "), DateNaiss: per.Birth.Format("2006-01-02"), Sexe: per.Sexe}}
	enfants := []member{}
	for _, c := range per.Children {
		enfants = append(enfants, member{NomNaissance: per.NomNaissance, Prenoms: c.Prenom, DateNaiss: c.Birth.Format("2006-01-02"), Sexe: c.Sexe})
	}
	fournisseur := "CNAF"
	if per.Outcome == OutcomeMSA {
		fournisseur = "MSA"
	}
	var valeur *int
	switch per.Outcome {
	case OutcomeQFZero:
		zero := 0
		valeur = &zero
	case OutcomeQFNull:
	default:
		v := per.QF
		valeur = &v
	}
	civ := "Madame"
	if per.Sexe == "M" {
		civ = "Monsieur"
	}
	body := map[string]any{
		"data": map[string]any{
			"allocataires": allocs,
			"enfants":      enfants,
			"adresse": map[string]any{
				"destinataire": civ + " " + per.NomNaissance + " " + strings.Join(per.Prenoms, " "), "complement_information": nil,
				"complement_information_geographique": nil, "numero_libelle_voie": "1 RUE DE LA MAIRIE", "lieu_dit": nil,
				"code_postal_ville": "08000 CHARLEVILLE-MEZIERES", "pays": "FRANCE",
			},
			"quotient_familial": map[string]any{
				"fournisseur": fournisseur, "valeur": valeur, "annee": year, "mois": month,
				"annee_calcul": now.Year(), "mois_calcul": int(now.Month()),
			},
		},
		"links": map[string]any{},
		"meta":  map[string]any{},
	}
	b, err := json.Marshal(body)
	if err != nil {
		return http.StatusInternalServerError, []byte(`{"errors":[]}`)
	}
	return http.StatusOK, b
}

func answerStatusReference(per Person, route string, now time.Time) (int, []byte) {
	switch per.Outcome {
	case OutcomeNoFile:
		return http.StatusNotFound, []byte(dssNotFound)
	case OutcomeUnknown:
		return http.StatusUnprocessableEntity, []byte(`{"errors":[{"code":"36560","title":"Identité non reconnue par le fournisseur de données","detail":"Les paramètres d'identité fournis ne correspondent à aucune personne connue du fournisseur de données.","meta":{"provider":"Sécurité sociale"}}]}`)
	}
	h := fnv.New64a()
	fmt.Fprintf(h, "%s/%d", route, per.Index)
	v := h.Sum64()
	beneficiary := int(v%1000) < benefitRates[route]
	data := map[string]any{"est_beneficiaire": beneficiary, "date_debut_droit": nil}
	if beneficiary {
		data["date_debut_droit"] = now.AddDate(0, -int(v>>10%60)-1, 0).Format("2006-01") + "-01"
	}
	flag := func(name string) {
		if beneficiary {
			data[name] = v>>20%3 == 0
		} else {
			data[name] = nil
		}
	}
	switch route {
	case "complementaire_sante_solidaire":
		flag("avec_participation")
	case "revenu_solidarite_active", "prime_activite":
		flag("avec_majoration")
	}
	b, err := json.Marshal(map[string]any{"data": data, "links": map[string]any{}, "meta": map[string]any{}})
	if err != nil {
		return http.StatusInternalServerError, []byte(`{"errors":[]}`)
	}
	return http.StatusOK, b
}

func answerScolariteReference(per Person, c, v int, q map[string][]string) (int, []byte) {
	ch := per.Children[c]
	year := first(q, "anneeScolaire")
	start, _ := strconv.Atoi(year[:4])
	age := start - ch.Birth.Year()
	h := fnv.New64a()
	fmt.Fprintf(h, "men/%d/%d", per.Index, c)
	x := h.Sum64()
	switch r := int(x % 1000); {
	case age < 3 || age > 18 || r < pupilUnknownRate:
		return http.StatusNotFound, []byte(menNotFound)
	case r < pupilUnknownRate+pupilNotEnrolledRate:
		return http.StatusNotFound, []byte(menNotEnrolled)
	}
	if len(year) == 4 {
		year += "-" + strconv.Itoa(start+1)
	}
	boursier := int(x>>10%1000) < pupilBoursierRate
	var echelon any
	if boursier {
		echelon = int(x>>20%6) + 1
	}
	data := map[string]any{
		"identite":                     map[string]any{"nom": per.NomNaissance, "prenom": ch.Prenom, "sexe": ch.Sexe, "date_naissance": ch.Birth.Format("2006-01-02")},
		"module_elementaire_formation": map[string]any{"code_mef_stat": nil, "libelle": nil},
		"etablissement":                map[string]any{"code_uai": strings.ToUpper(first(q, "codeEtablissement")), "code_ministere_tutelle": "06"},
		"annee_scolaire":               year,
		"est_scolarise":                true,
		"statut_eleve":                 map[string]any{"code": "ST", "libelle": "SCOLAIRE"},
		"est_boursier":                 boursier,
		"echelon_bourse":               echelon,
	}
	if v >= 5 {
		regimes := []struct{ code, label string }{{"2", "Demi-pensionnaire dans l'établissement"}, {"2", "Demi-pensionnaire dans l'établissement"},
			{"0", "Externe libre"}, {"1", "Externe surveillé"}, {"3", "Interne dans l'établissement"}}
		rg := regimes[x>>30%uint64(len(regimes))]
		data["regime_pensionnat"] = map[string]any{"code": rg.code, "libelle": rg.label}
	}
	b, err := json.Marshal(map[string]any{"data": data, "links": map[string]any{}, "meta": map[string]any{}})
	if err != nil {
		return http.StatusInternalServerError, []byte(`{"errors":[]}`)
	}
	return http.StatusOK, b
}

// answerPeople is a population with every outcome, some amended to odd
// values, and one person whose names need JSON escaping.
func answerPeople(t testing.TB) []Person {
	t.Helper()
	pop := NewPopulation(600, 11)
	zero, big := 0, 123456
	for i, c := range map[int]Change{3: {QF: &zero}, 4: {QF: &big}, 5: {Outcome: OutcomeQFNull}, 6: {Outcome: OutcomeMSA}} {
		if err := pop.Amend(i, c); err != nil {
			t.Fatal(err)
		}
	}
	var people []Person
	for i := 0; i < pop.Len(); i++ {
		people = append(people, pop.Person(i))
	}
	odd := pop.Person(7)
	odd.NomNaissance, odd.Prenoms = `D'<ALMEIDA> & "CO"`+"\u2028\x01\xff", []string{"ÉLODIE", "A\\B"}
	for c := range odd.Children {
		odd.Children[c].Prenom = "<LÉA>\t"
	}
	return append(people, odd)
}

func TestAnswers_SameBytesAsMaps(t *testing.T) {
	people := answerPeople(t)
	clocks := []time.Time{caseClock, time.Date(2025, 1, 5, 0, 0, 0, 0, time.UTC), time.Date(2026, 7, 14, 23, 59, 0, 0, time.FixedZone("x", 3600))}
	periods := []map[string][]string{{}, {"annee": {"2024"}, "mois": {"3"}}, {"annee": {" 2023 "}}, {"mois": {"x"}}}
	for _, per := range people {
		for _, now := range clocks {
			for _, q := range periods {
				gs, gb := per.answerQF(q, now)
				ws, wb := answerQFReference(per, q, now)
				if gs != ws || !bytes.Equal(gb, wb) {
					t.Fatalf("QF of person %d at %v for %v:\n%d %s\nwant\n%d %s", per.Index, now, q, gs, gb, ws, wb)
				}
			}
			for route := range benefitRates {
				gs, gb := per.answerStatus(route, now)
				ws, wb := answerStatusReference(per, route, now)
				if gs != ws || !bytes.Equal(gb, wb) {
					t.Fatalf("%s of person %d at %v:\n%d %s\nwant\n%d %s", route, per.Index, now, gs, gb, ws, wb)
				}
			}
		}
		for c := range per.Children {
			for _, v := range []int{3, 4, 5} {
				for _, q := range []map[string][]string{{"anneeScolaire": {"2024"}, "codeEtablissement": {"0751234a"}},
					{"anneeScolaire": {"2019-2020"}, "codeEtablissement": {"<0080001A>"}}, {"anneeScolaire": {"2030"}}} {
					gs, gb := per.answerScolarite(c, v, q)
					ws, wb := answerScolariteReference(per, c, v, q)
					if gs != ws || !bytes.Equal(gb, wb) {
						t.Fatalf("scolarité v%d of child %d of person %d for %v:\n%d %s\nwant\n%d %s", v, c, per.Index, q, gs, gb, ws, wb)
					}
				}
			}
		}
	}
}

func FuzzAppendJSONString(f *testing.F) {
	for _, s := range []string{"", "MARTIN", "LÉA", "D'ALMEIDA", `a"b\c`, "<&>", "\u2028\u2029", "\x00\x1f\x7f", "\xff\xfe", "\ufffd", "\b\f\n\r\t"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		want, err := json.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		if got := appendJSONString(nil, s); !bytes.Equal(got, want) {
			t.Fatalf("%q: %s, want %s", s, got, want)
		}
	})
}

// BenchmarkAnswerQF builds one person's QF answer.
func BenchmarkAnswerQF(b *testing.B) {
	per := NewPopulation(20, 1).Person(2)
	q := map[string][]string{}
	now := time.Date(2025, 3, 10, 9, 0, 0, 0, time.UTC)
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		per.answerQF(q, now)
	}
}

// referenceParamsKey is the sandbox's first paramsKey, with fmt.
func referenceParamsKey(q map[string][]string) uint64 {
	h := fnv.New64a()
	for _, k := range keyParams {
		fmt.Fprintf(h, "%s=%s;", k, strings.Join(q[k], ","))
	}
	if p := q["prenoms"]; len(p) > 0 {
		fmt.Fprintf(h, "prenom=%s;", p[0])
	}
	return h.Sum64()
}

// TestKeys_SameAsWithMaps: the identity keys computed from a person's
// fields are those of their parameter sets, and both are the sums the
// first, fmt-based paramsKey gave.
func TestKeys_SameAsWithMaps(t *testing.T) {
	for _, per := range answerPeople(t) {
		if got, want := per.key(), referenceParamsKey(per.Params()); got != want || paramsKey(per.Params()) != want {
			t.Fatalf("person %d: key %x, paramsKey %x, want %x", per.Index, got, paramsKey(per.Params()), want)
		}
		for c := range per.Children {
			if got, want := per.childKey(c), referenceParamsKey(per.ChildParams(c)); got != want || paramsKey(per.ChildParams(c)) != want {
				t.Fatalf("child %d of person %d: key %x, want %x", c, per.Index, got, want)
			}
		}
	}
	for _, q := range []map[string][]string{{}, {"prenoms": {"a", "b"}, "nomNaissance": {"x", "y"}}, {"moisDateNaissance": {""}}} {
		if got, want := paramsKey(q), referenceParamsKey(q); got != want {
			t.Fatalf("%v: %x, want %x", q, got, want)
		}
	}
}

func FuzzAppendLower(f *testing.F) {
	for _, s := range []string{"", "MARTIN", "LÉA", "ÀÖØÞ", "İSTANBUL", "\xff\xfe", "\ufffd", "ΣΑΣ", "ǅ"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if got, want := string(appendLower([]byte("x"), s)), "x"+strings.ToLower(s); got != want {
			t.Fatalf("%q: %q, want %q", s, got, want)
		}
	})
}

// referenceRequestParams is the sandbox's first requestParams.
func referenceRequestParams(q map[string][]string) map[string][]string {
	out := make(map[string][]string, len(q))
	for k, vs := range q {
		if k == "recipient" {
			continue
		}
		k = strings.TrimSuffix(k, "[]")
		for _, v := range vs {
			out[k] = append(out[k], strings.ToLower(v))
		}
	}
	return out
}

func TestRequestParams(t *testing.T) {
	for _, q := range []map[string][]string{
		{},
		{"recipient": {"13002526500013"}},
		nominal,
		{"recipient": {"1"}, "nomNaissance": {"LEFÈVRE"}, "prenoms[]": {"ÉLODIE", "Anne", "x\xffY"}, "sexeEtatCivil": {"F"}, "empty": {}, "blank": {""}},
		// Both spellings: the lists are merged (in either order).
		{"prenoms[]": {"A", "B"}, "prenoms": {"C"}, "nomNaissance[]": {"D"}},
	} {
		got, want := requestParams(q), referenceRequestParams(q)
		if len(got) != len(want) {
			t.Fatalf("%v: %v, want %v", q, got, want)
		}
		for k, w := range want {
			g := append([]string(nil), got[k]...)
			if _, both := q[k+"[]"]; both {
				slices.Sort(g)
				w = slices.Sorted(slices.Values(w))
			}
			if !slices.Equal(g, w) {
				t.Fatalf("%v: %s = %q, want %q", q, k, got[k], want[k])
			}
		}
	}
}

// TestWriteCSV_SameAsFmt: the rosters are the lines the first, fmt-based
// writers gave.
func TestWriteCSV_SameAsFmt(t *testing.T) {
	pop := NewPopulation(300, 5)
	var want, wantPupils bytes.Buffer
	fmt.Fprintln(&want, "reference;nom_naissance;prenoms;sexe;date_naissance;code_insee_pays_naissance;code_insee_commune_naissance")
	fmt.Fprintln(&wantPupils, "reference;nom_naissance;prenoms;sexe;date_naissance;code_etablissement")
	for i := 0; i < pop.Len(); i++ {
		per := pop.Person(i)
		date := per.Birth.Format("2006-01-02")
		switch per.DateParts {
		case 2:
			date = per.Birth.Format("01/2006")
		case 1:
			date = per.Birth.Format("2006")
		}
		fmt.Fprintf(&want, "SYN-%07d;%s;%s;%s;%s;%s;%s\n", i+1, per.NomNaissance, strings.Join(per.Prenoms, " "), per.Sexe, date, per.Pays, per.Commune)
		for c, ch := range per.Children {
			fmt.Fprintf(&wantPupils, "SYN-%07d-%d;%s;%s;%s;%s;%s\n", i+1, c+1, per.NomNaissance, ch.Prenom, ch.Sexe, ch.Birth.Format("2006-01-02"), per.School(c))
		}
	}
	var got, gotPupils bytes.Buffer
	if err := pop.WriteCSV(&got); err != nil {
		t.Fatal(err)
	}
	if err := pop.WriteChildrenCSV(&gotPupils, 0, pop.Len()); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.Bytes(), want.Bytes()) || !bytes.Equal(gotPupils.Bytes(), wantPupils.Bytes()) {
		t.Fatalf("rosters differ:\n%s\nwant\n%s", got.String()[:300], want.String()[:300])
	}
	for _, n := range []int{1, 999, 1234567, 12345678, 987654321} {
		if got, want := string(appendReference(nil, n)), fmt.Sprintf("SYN-%07d", n); got != want {
			t.Errorf("reference %d: %s, want %s", n, got, want)
		}
	}
}

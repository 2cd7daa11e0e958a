package sandbox

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"gopkg.in/yaml.v3"
)

// caseClock is a day in the era of the official cases (their QF answers are
// computed in 2024-12), so that their annee/mois parameters validate.
var caseClock = time.Date(2024, 12, 31, 10, 0, 0, 0, time.UTC)

const qfPath = "/v3/dss/quotient_familial/identite"

func newServer(t *testing.T, cfg Config) *Server {
	t.Helper()
	if cfg.Now == nil {
		cfg.Now = func() time.Time { return caseClock }
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func token(t *testing.T, scopes []string, exp time.Time) string {
	t.Helper()
	tok, err := Token([]byte(DefaultSecret), scopes, exp)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// get sends GET path?q with a Bearer token ("" for none).
func get(s http.Handler, tok, path string, q url.Values) *httptest.ResponseRecorder {
	req := httptest.NewRequest(http.MethodGet, path+"?"+q.Encode(), nil)
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	rec := httptest.NewRecorder()
	s.ServeHTTP(rec, req)
	return rec
}

func sortedNames(m map[string]rawCase) []string {
	names := make([]string, 0, len(m))
	for n := range m {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

type rawCase struct {
	Params  map[string]any `yaml:"params"`
	Status  int            `yaml:"status"`
	Payload string         `yaml:"payload"`
}

func readCases(t *testing.T, dir string) map[string]rawCase {
	t.Helper()
	files, _ := filepath.Glob("cases/" + dir + "/*.y*ml")
	if len(files) == 0 {
		t.Fatal("no embedded cases")
	}
	out := map[string]rawCase{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var c rawCase
		if err := yaml.Unmarshal(b, &c); err != nil {
			t.Fatal(err)
		}
		out[filepath.Base(f)] = c
	}
	return out
}

// request builds the request a client sends to route rt for params.
func request(t *testing.T, rt routeDef, params map[string]any) *http.Request {
	t.Helper()
	q := url.Values{}
	if rt.auth != authAPIKey {
		q.Set("recipient", "13002526500013")
	}
	for k, v := range params {
		if list, ok := v.([]any); ok {
			for _, x := range list {
				q.Add(k+"[]", fmt.Sprint(x))
			}
			continue
		}
		q.Set(k, fmt.Sprint(v))
	}
	req := httptest.NewRequest(http.MethodGet, rt.path+"?"+q.Encode(), nil)
	tok := token(t, AllScopes, caseClock.AddDate(10, 0, 0)) // as staging tokens, valid ten years
	if rt.auth == authAPIKey {
		req.Header.Set("X-Api-Key", tok)
	} else {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	return req
}

// unmatched changes the identifying value of params so that no case matches.
func unmatched(params map[string]any) map[string]any {
	out := map[string]any{}
	for k, v := range params {
		out[k] = v
	}
	// An extra parameter alone makes staging's exact-set matching miss.
	out["nomUsage"] = "INCONNU"
	for k, v := range map[string]string{"nomNaissance": "INCONNU", "nom": "INCONNU", "ine": "1234567999Z", "identifiant": "inconnu", "family_name": "INCONNU"} {
		if _, ok := out[k]; ok {
			out[k] = v
		}
	}
	return out
}

func TestServer_AnswersEveryOfficialCase(t *testing.T) {
	limits := Limits{PerSecond: 100000, IPPerMinute: 100000}
	s := newServer(t, Config{Limits: limits})
	// A case asking for a QF period is replayed on the last day of its
	// year, as staging would answer it then: the API serves the current
	// year and the two before, so mai23 and mai26 never hold together.
	byYear := map[int]*Server{}
	server := func(params map[string]any) *Server {
		y, ok := params["annee"].(int)
		if !ok || y <= caseClock.Year() {
			return s
		}
		if byYear[y] == nil {
			now := time.Date(y, 12, 31, 10, 0, 0, 0, time.UTC)
			byYear[y] = newServer(t, Config{Limits: limits, Now: func() time.Time { return now }})
		}
		return byYear[y]
	}
	total := 0
	for _, rt := range routeTable {
		if rt.dir == "" {
			continue // no official cases: answered from the population
		}
		if rt.payload != nil && !strings.Contains(rt.path, "/v4/") {
			t.Fatalf("%s rewrites cases", rt.path)
		}
		cases := readCases(t, rt.dir)
		var probe map[string]any
		for _, name := range sortedNames(cases) {
			if cases[name].Status == 200 && probe == nil {
				probe = cases[name].Params
			}
		}
		for name, c := range cases {
			total++
			t.Run(rt.dir+"/"+name, func(t *testing.T) {
				params := c.Params
				if name == "404.yaml" {
					// The route's default answer: what a valid request
					// matching no case gets.
					params = unmatched(probe)
				}
				rec := httptest.NewRecorder()
				server(params).ServeHTTP(rec, request(t, rt, params))
				if rec.Code != c.Status {
					t.Fatalf("status %d, want %d: %s", rec.Code, c.Status, rec.Body)
				}
				want := []byte(c.Payload)
				if rt.payload != nil && c.Status == 200 {
					want = rt.payload(want) // a version sharing another's cases
				}
				if !bytes.Equal(rec.Body.Bytes(), want) {
					t.Fatalf("%s: body differs:\n%s\nwant\n%s", rt.path, rec.Body, want)
				}
				if rec.Header().Get("X-Request-ID") == "" || rec.Header().Get("RateLimit-Limit") == "" {
					t.Fatalf("headers %v", rec.Header())
				}
			})
		}
	}
	t.Logf("%d official cases replayed", total)
}

// refreshedCases are the embedded cases taken from the operator's mocks
// newer than the shared snapshot (datagouv/apistration, mocks/payloads/,
// file versions of the commits given), and the shared cases they replace.
var refreshedCases = struct {
	added, removed map[string]string
}{
	added: map[string]string{
		"api_particulier_v3_cnav_quotient_familial_with_civility/200-couple-2_enfants-qf_msa_150_mai26.yaml":                 "30a6b5da465474f038eda31d411ee9fc7b16b5be",
		"api_particulier_v3_cnav_quotient_familial_with_civility/422-identite-cas-limite-erreur-phonetique.yaml":             "9c0f5eebedd45b4f4d6421af4b9b59d085e297a5",
		"api_particulier_v3_cnav_quotient_familial_with_civility/422-identite-cas-limite-faute-de-frappe.yaml":               "49b9cd4a4cf6e7bb8235d0b551d472896db270bc",
		"api_particulier_v3_cnav_quotient_familial_with_civility/422-identite-cas-nominal-trop-peu-de-donnee-naissance.yaml": "0a14cbf346d23db8d1c96aaa4c609bd0f1dcfb59",
		"api_particulier_v3_cnav_quotient_familial_with_civility/422-identite-cas-nominal-trop-peu-de-donnee-prenom.yaml":    "49b9cd4a4cf6e7bb8235d0b551d472896db270bc",
		"api_particulier_v3_cnav_allocation_rentree_scolaire_with_civility/200_allocataire.yaml":                             "987806c73c7e277c06f695660f86d8441abcc194",
		"api_particulier_v3_cnav_allocation_rentree_scolaire_with_civility/200_enfant_mercier_pierre_allocataire.yaml":       "59412175c1a05f425adce4e1d014cbbe31c72f12",
		"api_particulier_v3_cnav_allocation_rentree_scolaire_with_civility/200_non_beneficiaire.yaml":                        "987806c73c7e277c06f695660f86d8441abcc194",
		"api_particulier_v3_cnav_allocation_rentree_scolaire_with_civility/200_ouvrant_droit.yaml":                           "33103aec4f8ac71de4decb2b83b02f96c42136ec",
		"api_particulier_v3_cnav_allocation_rentree_scolaire_with_civility/404.yaml":                                         "3e9dc2e26e93d6310b01073876be32c738595634",
		"api_particulier_v3_cnav_allocation_rentree_scolaire_with_civility/502.yaml":                                         "1742b5c92c6412a3f5c3c82cda61e6e7caf776e9",
	},
	// The QF sandbox answers a failed identity match with 422 35560 since
	// the provider-prefix change (pull request #365, 2026-08-26).
	removed: map[string]string{
		"api_particulier_v3_cnav_quotient_familial_with_civility/404-identite-cas-limite-erreur-phonetique.yaml":             "422-identite-cas-limite-erreur-phonetique.yaml",
		"api_particulier_v3_cnav_quotient_familial_with_civility/404-identite-cas-limite-faute-de-frappe.yaml":               "422-identite-cas-limite-faute-de-frappe.yaml",
		"api_particulier_v3_cnav_quotient_familial_with_civility/404-identite-cas-nominal-trop-peu-de-donnee-naissance.yaml": "422-identite-cas-nominal-trop-peu-de-donnee-naissance.yaml",
		"api_particulier_v3_cnav_quotient_familial_with_civility/404-identite-cas-nominal-trop-peu-de-donnee-prenom.yaml":    "422-identite-cas-nominal-trop-peu-de-donnee-prenom.yaml",
	},
}

// TestEmbeddedCasesMatchShared: every embedded case is byte for byte the
// shared snapshot's, but the ones refreshed from newer operator mocks.
func TestEmbeddedCasesMatchShared(t *testing.T) {
	shared := "../../../shared/reference/sandbox-cases"
	files, _ := filepath.Glob(filepath.Join(shared, "*", "*.y*ml"))
	if len(files) == 0 {
		t.Skip("../shared not beside the repository: nothing to compare")
	}
	embedded, _ := filepath.Glob("cases/*/*.y*ml")
	if want := len(files) - len(refreshedCases.removed) + len(refreshedCases.added); len(embedded) != want {
		t.Fatalf("%d embedded cases, want %d (%d shared, %d removed, %d added)", len(embedded), want, len(files),
			len(refreshedCases.removed), len(refreshedCases.added))
	}
	for _, f := range files {
		rel, _ := filepath.Rel(shared, f)
		got, err := os.ReadFile(filepath.Join("cases", rel))
		if by, ok := refreshedCases.removed[rel]; ok {
			if err == nil {
				t.Errorf("%s is still embedded beside %s", rel, by)
			}
			continue
		}
		want, _ := os.ReadFile(f)
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s differs from the shared case", rel)
		}
	}
	for rel := range refreshedCases.added {
		if _, err := os.Stat(filepath.Join("cases", rel)); err != nil {
			t.Errorf("refreshed case %s: %v", rel, err)
		}
	}
}

var nominal = url.Values{
	"recipient": {"13002526500013"}, "nomNaissance": {"LEFEBVRE"}, "prenoms[]": {"ALEXIS", "GÉRÔME", "JEAN-PHILIPPE"},
	"anneeDateNaissance": {"1982"}, "moisDateNaissance": {"12"}, "jourDateNaissance": {"27"}, "sexeEtatCivil": {"F"},
	"codeCogInseePaysNaissance": {"99100"}, "codeCogInseeCommuneNaissance": {"08480"},
}

func with(q url.Values, kv ...string) url.Values {
	out := url.Values{}
	for k, v := range q {
		out[k] = append([]string(nil), v...)
	}
	for i := 0; i < len(kv); i += 2 {
		if kv[i+1] == "" {
			out.Del(kv[i])
		} else {
			out.Set(kv[i], kv[i+1])
		}
	}
	return out
}

func TestServer_AuthAndMatching(t *testing.T) {
	s := newServer(t, Config{})
	good := token(t, AllScopes, caseClock.Add(time.Hour))
	forged, _ := Token([]byte("other secret"), AllScopes, caseClock.Add(time.Hour))
	for _, tc := range []struct {
		name   string
		tok    string
		q      url.Values
		status int
		code   string
	}{
		{"nominal", good, nominal, 200, ""},
		{"lower-cased matching", good, with(nominal, "nomNaissance", "Lefebvre"), 200, ""},
		{"extra annee misses the case", good, with(nominal, "annee", strconv.Itoa(caseClock.Year())), 404, "37003"},
		{"no token", "", nominal, 401, "00101"},
		{"garbage token", "abc.def.ghi", nominal, 401, "00101"},
		{"forged token", forged, nominal, 401, "00101"},
		{"expired token", token(t, AllScopes, caseClock.Add(-time.Second)), nominal, 401, "00103"},
		{"wrong scopes", token(t, []string{"cnous_statut_boursier"}, caseClock.Add(time.Hour)), nominal, 403, "00100"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := get(s, tc.tok, qfPath, tc.q)
			if rec.Code != tc.status || (tc.code != "" && !strings.Contains(rec.Body.String(), `"code":"`+tc.code+`"`) && !strings.Contains(rec.Body.String(), `"code": "`+tc.code+`"`)) {
				t.Fatalf("status %d body %s; want %d %s", rec.Code, rec.Body, tc.status, tc.code)
			}
		})
	}
}

func TestServer_Validation(t *testing.T) {
	// Mid-June, so that a month of the current year can be in the future.
	now := time.Date(2024, 6, 15, 10, 0, 0, 0, time.UTC)
	s := newServer(t, Config{Limits: Limits{PerSecond: 1000, IPPerMinute: 100000}, Now: func() time.Time { return now }})
	tok := token(t, AllScopes, now.Add(time.Hour))
	prenoms := func(q url.Values, p ...string) url.Values {
		q = with(q)
		q["prenoms[]"] = p
		return q
	}
	triplet := with(nominal, "codeCogInseeCommuneNaissance", "", "nomCommuneNaissance", "Sedan", "codeCogInseeDepartementNaissance", "08")
	for _, tc := range []struct {
		name  string
		q     url.Values
		codes []string
	}{
		{"recipient missing", with(nominal, "recipient", ""), []string{"00210"}},
		{"recipient not Luhn", with(nominal, "recipient", "13002526500014"), []string{"00210"}},
		{"La Poste SIRET", with(nominal, "recipient", "35600000000010"), nil},
		{"name with digit", with(nominal, "nomNaissance", "LEF3BVRE"), []string{"00420"}},
		{"typographic apostrophe", with(nominal, "nomNaissance", "D’ARC"), []string{"00420"}},
		{"sex missing: optional on the CNAV routes", with(nominal, "sexeEtatCivil", ""), nil},
		{"sex invalid", with(nominal, "sexeEtatCivil", "X"), []string{"00427"}},
		{"country invalid", with(nominal, "codeCogInseePaysNaissance", "100"), []string{"00400"}},
		{"born in France without commune", with(nominal, "codeCogInseeCommuneNaissance", ""), []string{"00365"}},
		{"born in France, name without departement", with(nominal, "codeCogInseeCommuneNaissance", "", "nomCommuneNaissance", "Sedan"), []string{"00428"}},
		{"commune invalid", with(nominal, "codeCogInseeCommuneNaissance", "20123"), []string{"00365"}},
		{"bad departement", with(nominal, "codeCogInseeCommuneNaissance", "", "nomCommuneNaissance", "Sedan", "codeCogInseeDepartementNaissance", "99"), []string{"00428"}},
		{"impossible date", with(nominal, "jourDateNaissance", "31", "moisDateNaissance", "2"), []string{"00363"}},
		{"annee too old", with(nominal, "annee", "2020", "mois", "1"), []string{"00356"}},
		{"mois 13", with(nominal, "annee", "2024", "mois", "13"), []string{"00354"}},
		{"nominal", nominal, nil},
		{"recipient with letters", with(nominal, "recipient", "1300252650001A"), []string{"00210"}},
		{"La Poste SIRET, bad digit sum", with(nominal, "recipient", "35600000000011"), []string{"00210"}},
		{"name missing", with(nominal, "nomNaissance", ""), []string{"00420"}},
		{"accented and hyphenated names", prenoms(with(nominal, "nomNaissance", "D'ÉPINAY-LÉVÊQUE"), "Zoé", "ANNE MARIE"), nil},
		{"prenoms missing", prenoms(nominal), []string{"00367"}},
		{"four prenoms", prenoms(nominal, "A", "B", "C", "D"), []string{"00367"}},
		{"prenom with digit", prenoms(nominal, "ALEXIS", "G3RÔME"), []string{"00367"}},
		{"sex lower-case", with(nominal, "sexeEtatCivil", "f"), nil},
		{"born abroad without commune", with(nominal, "codeCogInseePaysNaissance", "99350", "codeCogInseeCommuneNaissance", ""), nil},
		{"French Algeria", with(nominal, "codeCogInseePaysNaissance", "92352", "codeCogInseeCommuneNaissance", ""), nil},
		{"country of 4 digits", with(nominal, "codeCogInseePaysNaissance", "9910"), []string{"00400"}},
		{"Corsican commune", with(nominal, "codeCogInseeCommuneNaissance", "2A004"), nil},
		{"commune of 4 digits", with(nominal, "codeCogInseeCommuneNaissance", "8480"), []string{"00365"}},
		{"triplet", triplet, nil},
		{"triplet in Corsica", with(triplet, "codeCogInseeDepartementNaissance", "2B"), nil},
		{"triplet overseas", with(triplet, "codeCogInseeDepartementNaissance", "971"), nil},
		{"triplet without year", with(triplet, "anneeDateNaissance", ""), []string{"00365"}},
		{"triplet without name", with(triplet, "nomCommuneNaissance", ""), []string{"00365"}},
		{"triplet without departement", with(triplet, "codeCogInseeDepartementNaissance", ""), []string{"00428"}},
		{"departement 975", with(triplet, "codeCogInseeDepartementNaissance", "975"), []string{"00428"}},
		{"departement 96", with(triplet, "codeCogInseeDepartementNaissance", "96"), []string{"00428"}},
		{"commune code and bad departement", with(nominal, "codeCogInseeDepartementNaissance", "00"), []string{"00428"}},
		{"year only", with(nominal, "moisDateNaissance", "", "jourDateNaissance", ""), nil},
		{"no birth date", with(nominal, "anneeDateNaissance", "", "moisDateNaissance", "", "jourDateNaissance", ""), nil},
		{"year not a number", with(nominal, "anneeDateNaissance", "19x2"), []string{"00363"}},
		{"month 13", with(nominal, "moisDateNaissance", "13"), []string{"00363"}},
		{"day 32", with(nominal, "jourDateNaissance", "32"), []string{"00363"}},
		{"born before 1900", with(nominal, "anneeDateNaissance", "1899"), []string{"00363"}},
		{"born 1900-01-01", with(nominal, "anneeDateNaissance", "1900", "moisDateNaissance", "1", "jourDateNaissance", "1"), nil},
		{"born today", with(nominal, "anneeDateNaissance", "2024", "moisDateNaissance", "6", "jourDateNaissance", "15"), []string{"00363"}},
		{"born yesterday", with(nominal, "anneeDateNaissance", "2024", "moisDateNaissance", "6", "jourDateNaissance", "14"), nil},
		{"annee of two digits", with(nominal, "annee", "24"), []string{"00356"}},
		{"annee next year", with(nominal, "annee", "2025"), []string{"00356"}},
		{"annee N-2", with(nominal, "annee", "2022", "mois", "12"), nil},
		{"mois 0", with(nominal, "annee", "2024", "mois", "0"), []string{"00354"}},
		{"current month", with(nominal, "annee", "2024", "mois", "6"), nil},
		{"next month", with(nominal, "annee", "2024", "mois", "7"), []string{"00354"}},
		{"next month, annee absent", with(nominal, "mois", "7"), []string{"00354"}},
		{"July of last year", with(nominal, "annee", "2023", "mois", "7"), nil},
		{"several errors at once", with(nominal, "recipient", "1", "sexeEtatCivil", "X", "codeCogInseePaysNaissance", "1"), []string{"00210", "00427", "00400"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := get(s, tok, qfPath, tc.q)
			if len(tc.codes) == 0 {
				// A 422 naming no parameter is the provider's verdict
				// (35560, identity not recognised), not a rejection.
				if rec.Code == 422 && strings.Contains(rec.Body.String(), `"parameter"`) {
					t.Fatalf("rejected: %s", rec.Body)
				}
				return
			}
			if rec.Code != 422 {
				t.Fatalf("status %d, want 422: %s", rec.Code, rec.Body)
			}
			for _, c := range tc.codes {
				if !strings.Contains(rec.Body.String(), `"code":"`+c+`"`) {
					t.Errorf("body lacks %s: %s", c, rec.Body)
				}
			}
			if n := strings.Count(rec.Body.String(), `"code"`); n != len(tc.codes) {
				t.Errorf("%d errors, want %d: %s", n, len(tc.codes), rec.Body)
			}
		})
	}
}

func TestServer_RateLimit(t *testing.T) {
	now := time.Date(2026, 9, 14, 22, 0, 0, 300e6, time.UTC)
	s := newServer(t, Config{Now: func() time.Time { return now }})
	tok := token(t, AllScopes, now.Add(time.Hour))
	other := token(t, AllScopes, now.Add(time.Hour))
	for i := 1; i <= 20; i++ {
		rec := get(s, tok, qfPath, nominal)
		if rec.Code != 200 || rec.Header().Get("RateLimit-Remaining") != strconv.Itoa(20-i) {
			t.Fatalf("call %d: %d remaining %s", i, rec.Code, rec.Header().Get("RateLimit-Remaining"))
		}
	}
	rec := get(s, tok, qfPath, nominal)
	if rec.Code != 429 || rec.Header().Get("Retry-After") != "1" || rec.Header().Get("RateLimit-Reset") != strconv.FormatInt(now.Unix()+1, 10) {
		t.Fatalf("21st call: %d %v", rec.Code, rec.Header())
	}
	b, _ := io.ReadAll(rec.Body)
	if string(b) != `{"errors":[{"code":"00429","title":"Trop de requêtes","detail":"Vous avez effectué trop de requêtes","meta":{}}]}` {
		t.Fatalf("429 body %s", b)
	}
	if rec := get(s, other, qfPath, nominal); rec.Code != 200 {
		t.Fatalf("another token is limited too: %d", rec.Code)
	}
	now = now.Add(time.Second)
	if rec := get(s, tok, qfPath, nominal); rec.Code != 200 {
		t.Fatalf("next window: %d", rec.Code)
	}
	if s.Calls() != 23 {
		t.Fatalf("Calls = %d", s.Calls())
	}
}

func TestServer_OtherRoutes(t *testing.T) {
	s := newServer(t, Config{})
	for _, tc := range []struct {
		path   string
		status int
		want   string
	}{
		{"/api/pings", 200, `"status":"ok"`},
		{"/api/cnaf_msa_quotient_familial/ping", 200, `"status":"ok"`},
		{"/api/caf/famille", 410, "31/10/2025"},
		{"/api/v2/composition-familiale", 410, "31/10/2025"},
		{"/nope", 404, "Cette URL n'existe pas sur Api particulier, veuillez vérifier votre URL."},
	} {
		rec := get(s, "", tc.path, nil)
		if rec.Code != tc.status || !strings.Contains(rec.Body.String(), tc.want) {
			t.Errorf("%s: %d %s", tc.path, rec.Code, rec.Body)
		}
	}
}

func TestServer_MaskScopes(t *testing.T) {
	s := newServer(t, Config{MaskScopes: true})
	tok := token(t, []string{"cnaf_quotient_familial"}, caseClock.Add(time.Hour))
	rec := get(s, tok, qfPath, nominal)
	if rec.Code != 200 || !strings.Contains(rec.Body.String(), `"valeur": 2550`) || strings.Contains(rec.Body.String(), "allocataires") {
		t.Fatalf("masked answer: %s", rec.Body)
	}
	// Other routes: an MEN token without the bursary scope, a MESRI token
	// without the enrolment scope of admissions.
	pop := NewPopulation(50, 2)
	s = newServer(t, Config{MaskScopes: true, Population: pop})
	men := token(t, []string{"men_statut_scolarite", "men_statut_etablissement"}, caseClock.Add(time.Hour))
	for i := 0; i < pop.Len(); i++ {
		per := pop.Person(i)
		for c, ch := range per.Children {
			if ch.Birth.Year() > 2018 {
				continue
			}
			q := caseQueryLists(per.ChildParams(c))
			q.Set("codeEtablissement", per.School(c))
			q.Set("anneeScolaire", "2024-2025")
			rec := get(s, men, "/v5/men/scolarites/identite", q)
			if rec.Code != 200 {
				continue
			}
			b := rec.Body.String()
			if !strings.Contains(b, `"est_scolarise"`) || !strings.Contains(b, `"code_uai"`) || strings.Contains(b, "est_boursier") ||
				strings.Contains(b, "identite") || strings.Contains(b, "regime_pensionnat") {
				t.Fatalf("masked MEN answer: %s", b)
			}
			return
		}
	}
	t.Fatal("no pupil found")
}

func TestServer_MaskScopesMESRIAdmissions(t *testing.T) {
	s := newServer(t, Config{MaskScopes: true})
	tok := token(t, []string{"mesri_admissions", "mesri_admission_regime_formation"}, caseClock.Add(time.Hour))
	rec := get(s, tok, "/v3/mesri/statut_etudiant/ine", url.Values{"recipient": {"13002526500013"}, "ine": {"1234567890C"}})
	b := rec.Body.String()
	if rec.Code != 200 || !strings.Contains(b, "regime_formation") || strings.Contains(b, "est_inscrit") || strings.Contains(b, `"identite"`) {
		t.Fatalf("masked MESRI answer: %d %s", rec.Code, b)
	}
}

func TestValidSIRET(t *testing.T) {
	for s, want := range map[string]bool{"13002526500013": true, "13002526500014": false, "1300252650001": false, "35600000000010": true, "abcdefghijklmn": false} {
		if ValidSIRET(s) != want {
			t.Errorf("ValidSIRET(%s) != %v", s, want)
		}
	}
}

func TestServer_LegacyV2(t *testing.T) {
	now := time.Date(2026, 9, 14, 22, 0, 0, 0, time.UTC)
	s := newServer(t, Config{Limits: Limits{PerSecond: 1}, Now: func() time.Time { return now }})
	tok := token(t, AllScopes, now.Add(time.Hour))
	call := func(key string) *httptest.ResponseRecorder {
		req := httptest.NewRequest(http.MethodGet, "/api/v2/situations-pole-emploi?identifiant=default", nil)
		if key != "" {
			req.Header.Set("X-Api-Key", key)
		}
		rec := httptest.NewRecorder()
		s.ServeHTTP(rec, req)
		return rec
	}
	if rec := call(""); rec.Code != 401 || !strings.Contains(rec.Body.String(), `"error":"access_denied"`) {
		t.Fatalf("no key: %d %s", rec.Code, rec.Body)
	}
	if rec := call(tok); rec.Code != 200 {
		t.Fatalf("first call: %d %s", rec.Code, rec.Body)
	}
	if rec := call(tok); rec.Code != 429 || rec.Body.String() != `{"errors":["Vous avez effectué trop de requêtes"]}` {
		t.Fatalf("v2 429: %d %s", rec.Code, rec.Body)
	}
	// v2 and v3 have separate buckets for one token.
	if rec := get(s, tok, "/v3/france_travail/statut/identifiant", url.Values{"recipient": {"13002526500013"}, "identifiant": {"default"}}); rec.Code != 200 {
		t.Fatalf("v3 after v2 limit: %d", rec.Code)
	}
	// The v1 QF route of the api_particulier_v2_cnaf_* cases is gone.
	if rec := get(s, tok, "/api/v2/composition-familiale", url.Values{"numeroAllocataire": {"2345678"}, "codePostal": {"75001"}}); rec.Code != 410 {
		t.Fatalf("removed route: %d", rec.Code)
	}
}

func TestServer_RouteValidation(t *testing.T) {
	s := newServer(t, Config{Limits: Limits{PerSecond: 1000, IPPerMinute: 100000}})
	tok := token(t, AllScopes, caseClock.Add(time.Hour))
	for _, tc := range []struct {
		name, path string
		q          url.Values
		code       string
	}{
		{"INE format", "/v3/mesri/statut_etudiant/ine", url.Values{"recipient": {"13002526500013"}, "ine": {"12345"}}, "00360"},
		{"identifiant missing", "/v3/france_travail/statut/identifiant", url.Values{"recipient": {"13002526500013"}}, "00380"},
		{"MESRI one first name", "/v3/mesri/statut_etudiant/identite", url.Values{"recipient": {"13002526500013"}, "nomNaissance": {"MARTIN"},
			"prenoms[]": {"Jacques", "Paul"}, "anneeDateNaissance": {"2004"}, "moisDateNaissance": {"1"}, "jourDateNaissance": {"1"}, "sexeEtatCivil": {"M"}}, "00421"},
		{"CNOUS campaignYear", "/v4/cnous/etudiant_boursier/identite", url.Values{"recipient": {"13002526500013"}, "nomNaissance": {"Pagnol"},
			"prenoms[]": {"Marcel"}, "anneeDateNaissance": {"1998"}, "moisDateNaissance": {"7"}, "jourDateNaissance": {"12"}, "campaignYear": {"2019"}}, "00368"},
		{"FranceConnect recipient", "/v3/dss/quotient_familial/france_connect", url.Values{"recipient": {"123"}}, "00210"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := get(s, tok, tc.path, tc.q)
			if rec.Code != 422 || !strings.Contains(rec.Body.String(), `"code":"`+tc.code+`"`) {
				t.Fatalf("%d %s", rec.Code, rec.Body)
			}
		})
	}
}

func TestServer_IntrospectPingsBlacklist(t *testing.T) {
	tok := token(t, []string{"cnaf_quotient_familial"}, caseClock.Add(time.Hour))
	parts := strings.Split(tok, ".")
	payload, _ := b64.DecodeString(parts[1])
	var c claims
	json.Unmarshal(payload, &c)
	s := newServer(t, Config{Blacklist: []string{c.JTI}})
	good := token(t, []string{"cnaf_quotient_familial"}, caseClock.Add(time.Hour))
	rec := get(s, good, "/api/introspect", nil)
	if rec.Code != 200 || !strings.Contains(rec.Body.String(), `"scopes":["cnaf_quotient_familial"]`) || !strings.Contains(rec.Body.String(), `"_id":`) {
		t.Fatalf("introspect: %d %s", rec.Code, rec.Body)
	}
	if rec := get(s, "", "/api/introspect", nil); rec.Code != 401 {
		t.Fatalf("introspect without token: %d", rec.Code)
	}
	if rec := get(s, tok, qfPath, nominal); rec.Code != 401 || !strings.Contains(rec.Body.String(), "00105") {
		t.Fatalf("blacklisted token: %d %s", rec.Code, rec.Body)
	}
	if rec := get(s, "", "/api/pings", nil); rec.Code != 200 || strings.Count(rec.Body.String(), `"status":"ok"`) != len(pingNames) {
		t.Fatalf("pings: %s", rec.Body)
	}
	if rec := get(s, "", "/api/men_scolarite/ping", nil); rec.Code != 200 {
		t.Fatalf("men ping: %d", rec.Code)
	}
}

func TestServer_MENValidation(t *testing.T) {
	s := newServer(t, Config{Limits: Limits{PerSecond: 1000, IPPerMinute: 100000}})
	tok := token(t, AllScopes, caseClock.Add(time.Hour))
	pupil := url.Values{"recipient": {"13002526500013"}, "nomNaissance": {"MARTIN"}, "prenoms[]": {"EMMA"}, "sexeEtatCivil": {"F"},
		"anneeDateNaissance": {"2012"}, "moisDateNaissance": {"8"}, "jourDateNaissance": {"15"}, "anneeScolaire": {"2024"}}
	for _, tc := range []struct {
		name, version string
		q             url.Values
		status        int
		code          string
	}{
		{"school", "v3", with(pupil, "codeEtablissement", "0132733A"), 404, "30003"},
		{"bad UAI", "v3", with(pupil, "codeEtablissement", "13273"), 422, "00410"},
		{"no perimeter", "v4", pupil, 422, "00410"},
		{"bad school year", "v3", with(pupil, "codeEtablissement", "0132733A", "anneeScolaire", "24-25"), 422, "00411"},
		{"departements need a degree", "v4", with(pupil, "codesBcnDepartements[]", "013"), 422, "00412"},
		{"departements with degree", "v5", with(pupil, "codesBcnDepartements[]", "013", "degreEtablissement", "2D"), 404, "30003"},
		{"both perimeters", "v4", with(pupil, "codesBcnDepartements[]", "013", "codesBcnRegions[]", "93", "degreEtablissement", "1D"), 422, "00413"},
		{"school and perimeter", "v4", with(pupil, "codeEtablissement", "0132733A", "codesBcnRegions[]", "93"), 422, "00419"},
		{"bad departement", "v4", with(pupil, "codesBcnDepartements[]", "13", "degreEtablissement", "1D"), 422, "00416"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := get(s, tok, "/"+tc.version+"/men/scolarites/identite", tc.q)
			if rec.Code != tc.status || !strings.Contains(rec.Body.String(), `"code":"`+tc.code+`"`) {
				t.Fatalf("%d %s", rec.Code, rec.Body)
			}
		})
	}
}

func TestServer_ErrorBodies(t *testing.T) {
	s := newServer(t, Config{})
	tok := token(t, AllScopes, caseClock.Add(time.Hour))
	for _, tc := range []struct {
		name, tok string
		q         url.Values
		status    int
		body      string
	}{
		{"00101", "", nominal, 401, `{"errors":[{"code":"00101","title":"Interdit","detail":"Votre token n'est pas valide ou n'est pas renseigné","source":{"parameter":"token"},"meta":{}}]}`},
		{"00100", token(t, []string{"pole_emploi_paiements"}, caseClock.Add(time.Hour)), nominal, 403,
			`{"errors":[{"code":"00100","title":"Privilèges insuffisants","detail":"Votre token est valide mais vos privilèges sont insuffisants. Listez vos privilèges sur /api/introspect","source":{"parameter":"token"},"meta":{}}]}`},
		{"00210", tok, with(nominal, "recipient", "123"), 422,
			`{"errors":[{"code":"00210","title":"Entité non traitable","detail":"Le paramètre recipient n'est pas un siret valide","source":{"parameter":"recipient"},"meta":{}}]}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := get(s, tc.tok, qfPath, tc.q)
			if rec.Code != tc.status || rec.Body.String() != tc.body {
				t.Fatalf("%d %s\nwant %d %s", rec.Code, rec.Body, tc.status, tc.body)
			}
			if ct := rec.Header().Get("Content-Type"); ct != "application/json; charset=utf-8" {
				t.Fatalf("Content-Type %q", ct)
			}
			if id := rec.Header().Get("X-Request-ID"); !uuidPattern.MatchString(id) {
				t.Fatalf("X-Request-ID %q", id)
			}
		})
	}
}

func TestConfig_Validate(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
		ok   bool
	}{
		{"zero", Config{}, true},
		{"limit", Config{Limits: Limits{PerSecond: 5}}, true},
		{"negative limit", Config{Limits: Limits{PerSecond: -1}}, false},
		{"negative latency", Config{Faults: Faults{LatencyP50: -time.Second}}, false},
		{"p99 below p50", Config{Faults: Faults{LatencyP50: time.Second, LatencyP99: time.Millisecond}}, false},
		{"negative PerMinute", Config{Limits: Limits{PerMinute: -1}}, false},
		{"unknown fault", Config{Faults: Faults{Rates: map[string]float64{"418": 0.1}}}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.cfg.Validate(); (err == nil) != tc.ok {
				t.Fatalf("Validate() = %v, want ok %v", err, tc.ok)
			}
			if _, err := New(tc.cfg); (err == nil) != tc.ok {
				t.Fatalf("New: %v, want ok %v", err, tc.ok)
			}
		})
	}
}

// TestServer_RememberedTokens: a token verified once is remembered, yet
// every request still checks its expiry at the request's time, and a
// forged or blacklisted token is refused however often it comes.
func TestServer_RememberedTokens(t *testing.T) {
	now := caseClock
	leaked := token(t, AllScopes, caseClock.Add(time.Hour))
	parts := strings.Split(leaked, ".")
	payload, _ := b64.DecodeString(parts[1])
	var c claims
	if err := json.Unmarshal(payload, &c); err != nil {
		t.Fatal(err)
	}
	s := newServer(t, Config{Limits: Limits{PerSecond: 1000, IPPerMinute: 100000}, Blacklist: []string{c.JTI}, Now: func() time.Time { return now }})
	good := token(t, AllScopes, caseClock.Add(time.Hour))
	forged := parts[0] + "." + parts[1] + "." + b64.EncodeToString([]byte("not the signature"))
	for _, tc := range []struct {
		name   string
		at     time.Time
		tok    string
		status int
		code   string
	}{
		{"first use verifies", caseClock, good, 200, ""},
		{"second use remembered", caseClock.Add(time.Minute), good, 200, ""},
		{"remembered token expires", caseClock.Add(time.Hour), good, 401, "00103"},
		{"still expired", caseClock.Add(2 * time.Hour), good, 401, "00103"},
		{"forged", caseClock, forged, 401, "00101"},
		{"forged again", caseClock, forged, 401, "00101"},
		{"blacklisted", caseClock, leaked, 401, "00105"},
		{"blacklisted again", caseClock, leaked, 401, "00105"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			now = tc.at
			rec := get(s, tc.tok, qfPath, nominal)
			if rec.Code != tc.status || (tc.code != "" && !strings.Contains(rec.Body.String(), `"code":"`+tc.code+`"`)) {
				t.Fatalf("status %d body %s; want %d %s", rec.Code, rec.Body, tc.status, tc.code)
			}
		})
	}
	// The FranceConnect key of a token stays the same from call to call.
	for i := 0; i < 2; i++ {
		if rec := get(s, "fc-access-token", "/v3/dss/quotient_familial/france_connect", url.Values{"recipient": {"13002526500013"}}); rec.Code == 401 {
			t.Fatalf("FranceConnect call %d: %d %s", i, rec.Code, rec.Body)
		}
	}
	n := 0
	for _, st := range s.Stats().Tokens {
		if st.Key == "fc:"+tokenKey("fc-access-token") {
			n = int(st.Requests)
		}
	}
	if n != 2 {
		t.Fatalf("FranceConnect token counted %d times under its key, want 2: %+v", n, s.Stats().Tokens)
	}
}

// TestServer_HeaderNamesCanonical: the header names the hot path sets
// directly are those Header.Set would store, so the bytes on the wire are
// the same, and every header of an answer has its canonical name.
func TestServer_HeaderNamesCanonical(t *testing.T) {
	for _, h := range []string{hdrRequestID, hdrRateLimitLimit, hdrRateLimitRemaining, hdrRateLimitReset, hdrRetryAfter,
		hdrResponseCached, hdrCacheExpiresIn, hdrContentType} {
		if c := http.CanonicalHeaderKey(h); c != h {
			t.Errorf("header %q is stored as %q by Header.Set", h, c)
		}
	}
	s := newServer(t, Config{Limits: Limits{PerSecond: 1, IPPerMinute: 100000}})
	tok := token(t, AllScopes, caseClock.Add(time.Hour))
	for i, want := range []int{200, 429} {
		rec := get(s, tok, qfPath, nominal)
		if rec.Code != want {
			t.Fatalf("call %d: %d, want %d", i, rec.Code, want)
		}
		for k := range rec.Header() {
			if c := http.CanonicalHeaderKey(k); c != k {
				t.Errorf("call %d: header %q, canonical %q", i, k, c)
			}
		}
		if id := rec.Header().Get("X-Request-ID"); !uuidPattern.MatchString(id) || id[14] != '4' {
			t.Errorf("call %d: request id %q is no version 4 UUID", i, id)
		}
	}
}

// TestServer_LogLine: one debug line per answer, with the path, status and
// request id, never the query (identities) nor the token.
func TestServer_LogLine(t *testing.T) {
	var buf bytes.Buffer
	s := newServer(t, Config{Log: zerolog.New(&buf).Level(zerolog.DebugLevel)})
	tok := token(t, AllScopes, caseClock.Add(time.Hour))
	rec := get(s, tok, qfPath, nominal)
	line := buf.String()
	if strings.Count(line, "\n") != 1 || !strings.Contains(line, `"path":"`+qfPath+`"`) || !strings.Contains(line, `"status":200`) ||
		!strings.Contains(line, `"request_id":"`+rec.Header().Get("X-Request-ID")+`"`) || !strings.Contains(line, `"took":`) {
		t.Fatalf("log line %s", line)
	}
	for _, secret := range []string{tok, "LEFEBVRE", "1982", "recipient"} {
		if strings.Contains(line, secret) {
			t.Fatalf("log line holds %q: %s", secret, line)
		}
	}
	buf.Reset()
	quiet := newServer(t, Config{Log: zerolog.New(&buf).Level(zerolog.InfoLevel)})
	if get(quiet, tok, qfPath, nominal); buf.Len() != 0 {
		t.Fatalf("debug line at info level: %s", buf.String())
	}
}

// TestServer_AllocationRentreeScolaire: the ARS route answers its official
// cases, needs its own scope, takes no sex (optional on the CNAV routes)
// and answers an unmatched identity with its 404 case.
func TestServer_AllocationRentreeScolaire(t *testing.T) {
	const path = "/v3/dss/allocation_rentree_scolaire/identite"
	s := newServer(t, Config{Limits: Limits{PerSecond: 1000, IPPerMinute: 100000}})
	tok := token(t, []string{"cnav_allocation_rentree_scolaire"}, caseClock.Add(time.Hour))
	dupont := url.Values{"recipient": {"13002526500013"}, "nomNaissance": {"DUPONT"}, "prenoms[]": {"PIERRE"},
		"anneeDateNaissance": {"1985"}, "moisDateNaissance": {"3"}, "jourDateNaissance": {"12"},
		"codeCogInseeCommuneNaissance": {"75112"}, "codeCogInseePaysNaissance": {"99100"}, "sexeEtatCivil": {"M"}}
	for _, tc := range []struct {
		name   string
		tok    string
		q      url.Values
		status int
		want   string
	}{
		{"allocataire", tok, dupont, 200, `"status": "allocataire"`},
		{"ouvrant droit", tok, with(dupont, "nomNaissance", "MARTIN", "anneeDateNaissance", "1990", "moisDateNaissance", "7", "jourDateNaissance", "22",
			"codeCogInseeCommuneNaissance", "69123", "sexeEtatCivil", "F", "prenoms[]", "SOPHIE"), 404, `"code": "23003"`}, // one of two first names: no match
		{"without sex: not rejected, no case matches", tok, with(dupont, "sexeEtatCivil", ""), 404, `"code": "23003"`},
		{"other scope", token(t, QFScopes, caseClock.Add(time.Hour)), dupont, 403, `"code":"00100"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := get(s, tc.tok, path, tc.q)
			if rec.Code != tc.status || !strings.Contains(rec.Body.String(), tc.want) {
				t.Fatalf("status %d body %s; want %d with %s", rec.Code, rec.Body, tc.status, tc.want)
			}
		})
	}
}

// TestPopulation_UnidentifiedPerson: the synthetic people the provider
// cannot identify get the provider-prefixed 422 of 2026-08-26 (35560 on
// the QF route, 36560 on the other DSS routes), with meta.provider.
func TestPopulation_UnidentifiedPerson(t *testing.T) {
	per := Person{Outcome: OutcomeUnknown}
	if st, b := per.answerQF(nil, caseClock); st != 422 || !strings.Contains(string(b), `"code":"35560"`) || !strings.Contains(string(b), `"provider":"CNAF & MSA"`) {
		t.Errorf("QF: %d %s", st, b)
	}
	if st, b := per.answerStatus("revenu_solidarite_active", caseClock); st != 422 || !strings.Contains(string(b), `"code":"36560"`) || !strings.Contains(string(b), `"provider":"Sécurité sociale"`) {
		t.Errorf("RSA: %d %s", st, b)
	}
}

package workers

import (
	"net/http"
	"net/url"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/apbatch/apbatch/schemas"
)

func TestAdapters_Decode(t *testing.T) {
	now := time.Date(2026, 9, 15, 10, 0, 0, 0, time.UTC)
	yes, no := true, false
	i32 := func(v int32) *int32 { return &v }
	for _, tc := range []struct {
		name  string
		check schemas.Check
		body  string
		want  schemas.Facts
		bad   bool
	}{
		{"C2S with participation", schemas.CheckC2S, `{"data":{"est_beneficiaire":true,"avec_participation":true,"date_debut_droit":"2025-01-01"}}`,
			schemas.Facts{Beneficiary: &yes, C2SWithParticipation: &yes, BenefitSince: "2025-01-01"}, false},
		{"RSA not beneficiary", schemas.CheckRSA, `{"data":{"est_beneficiaire":false,"avec_majoration":null,"date_debut_droit":null}}`,
			schemas.Facts{Beneficiary: &no}, false},
		{"every field masked by scopes", schemas.CheckAAH, `{"data":{}}`, schemas.Facts{}, false},
		{"no data at all", schemas.CheckASF, `{"links":{}}`, schemas.Facts{}, true},
		{"ARS allocataire", schemas.CheckARS, `{"data":{"status":"allocataire","date_debut_droit":"2024-08-09"},"links":{},"meta":{}}`,
			schemas.Facts{Beneficiary: &yes, BenefitSince: "2024-08-09"}, false},
		{"ARS ouvrant droit", schemas.CheckARS, `{"data":{"status":"ouvrant_droit","date_debut_droit":"2024-08-09"}}`,
			schemas.Facts{Beneficiary: &yes, BenefitSince: "2024-08-09"}, false},
		{"ARS non beneficiaire", schemas.CheckARS, `{"data":{"status":"non_beneficiaire","date_debut_droit":null}}`,
			schemas.Facts{Beneficiary: &no}, false},
		{"ARS unknown status", schemas.CheckARS, `{"data":{"status":"autre"}}`, schemas.Facts{}, false},
		{"CNOUS v3", schemas.CheckEtudiantBoursier, `{"data":{"est_boursier":true,"echelon_bourse":{"echelon":"0bis"},"periode_versement_bourse":{"date_rentree":"2025-09-01","duree":10}}}`,
			schemas.Facts{ScholarshipHolder: &yes, ScholarshipLevel: "0bis", ScholarshipStart: "2025-09-01", ScholarshipMonths: i32(10)}, false},
		{"CNOUS v4 statut_boursier", schemas.CheckEtudiantBoursier, `{"data":{"statut_boursier":{"est_boursier":false,"est_radie":true}}}`,
			schemas.Facts{ScholarshipHolder: &no}, false},
		{"MESRI: the enrolment wins over a later admission", schemas.CheckStatutEtudiant, `{"data":{"admissions":[
			{"date_debut":"2025-09-01","est_inscrit":true,"regime_formation":{"code":"RF1"},"etablissement_etudes":{"uai":"0751717J"}},
			{"date_debut":"2026-07-01","est_inscrit":false,"regime_formation":{"code":"RF2"},"etablissement_etudes":{"uai":"0310000A"}}]}}`,
			schemas.Facts{StudentEnrolled: &yes, StudentRegime: "RF1", EstablishmentUAI: "0751717J"}, false},
		{"MESRI: no admission", schemas.CheckStatutEtudiant, `{"data":{"admissions":[]}}`, schemas.Facts{StudentEnrolled: &no}, false},
		{"MESRI: admissions masked", schemas.CheckStatutEtudiant, `{"data":{"identite":{}}}`, schemas.Facts{}, false},
		{"France Travail registered", schemas.CheckFranceTravail, `{"data":{"inscription":{"date_debut":"2024-03-01","date_fin":null,"categorie":{"code":1}}}}`,
			schemas.Facts{JobseekerRegistered: &yes, JobseekerSince: "2024-03-01", JobseekerCategory: i32(1)}, false},
		{"France Travail registration ended", schemas.CheckFranceTravail, `{"data":{"inscription":{"date_debut":"2024-03-01","date_fin":"2025-03-01","categorie":{"code":"2"}}}}`,
			schemas.Facts{JobseekerRegistered: &no, JobseekerSince: "2024-03-01", JobseekerCategory: i32(2)}, false},
		{"France Travail category beyond int32", schemas.CheckFranceTravail, `{"data":{"inscription":{"date_debut":"2024-03-01","categorie":{"code":4294967297}}}}`,
			schemas.Facts{JobseekerRegistered: &yes, JobseekerSince: "2024-03-01"}, false},
		{"CNOUS duration beyond int32", schemas.CheckEtudiantBoursier, `{"data":{"est_boursier":true,"periode_versement_bourse":{"duree":1e300}}}`,
			schemas.Facts{ScholarshipHolder: &yes}, false},
		{"MEN v5", schemas.CheckScolarite, `{"data":{"est_scolarise":true,"annee_scolaire":"2026-2027","statut_eleve":{"code":"ST"},"est_boursier":true,"echelon_bourse":3,
			"etablissement":{"code_uai":"0751234A"},"regime_pensionnat":{"code":"2","libelle":"Demi-pensionnaire dans l'établissement"}}}`,
			schemas.Facts{PupilEnrolled: &yes, SchoolYear: "2026-2027", PupilStatus: "ST", ScholarshipHolder: &yes, ScholarshipLevel: "3",
				EstablishmentUAI: "0751234A", BoardingRegime: "2"}, false},
		{"MEN not boursier", schemas.CheckScolarite, `{"data":{"est_scolarise":true,"est_boursier":false,"echelon_bourse":null}}`,
			schemas.Facts{PupilEnrolled: &yes, ScholarshipHolder: &no}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, ok := adapterFor(tc.check)
			if !ok {
				t.Fatalf("no adapter for %s", tc.check)
			}
			o := classify(http.StatusOK, http.Header{}, []byte(tc.body), now, a.decode)
			if tc.bad {
				if o.Status != schemas.StatusProviderError || o.Code != schemas.CodeBadResponse {
					t.Fatalf("status %s %s, want a bad response", o.Status, o.Code)
				}
				return
			}
			if o.Status != schemas.StatusOK || !reflect.DeepEqual(o.Facts, tc.want) {
				t.Fatalf("%s %+v\nwant %+v", o.Status, o.Facts, tc.want)
			}
		})
	}
}

func TestAdapters_Routes(t *testing.T) {
	id := schemas.Identity{NomNaissance: "MARTIN", NomUsage: "DURAND", Prenoms: []string{"LÉA"}, Sexe: "F", AnneeNaissance: 2012, MoisNaissance: 5,
		JourNaissance: 14, CodePaysNaissance: "99100", CodeCommuneNaissance: "08105", CodeEtablissement: "0751234A", AnneeScolaire: "2026-2027"}
	noSex := id
	noSex.Sexe = ""
	for _, tc := range []struct {
		check schemas.Check
		id    schemas.Identity
		path  string
		has   []string
		lacks []string
		ping  string
	}{
		{schemas.CheckARS, id, "/v3/dss/allocation_rentree_scolaire/identite", []string{"nomUsage", "sexeEtatCivil", "codeCogInseePaysNaissance"}, []string{"annee"}, "cnav_allocation_rentree_scolaire"},
		{schemas.CheckARS, noSex, "/v3/dss/allocation_rentree_scolaire/identite", []string{"nomNaissance"}, []string{"sexeEtatCivil"}, "cnav_allocation_rentree_scolaire"},
		{schemas.CheckQuotientFamilial, noSex, QuotientFamilialPath, []string{"nomNaissance"}, []string{"sexeEtatCivil"}, QuotientFamilialPing},
		{schemas.CheckPrimeActivite, id, "/v3/dss/prime_activite/identite", []string{"nomUsage", "codeCogInseePaysNaissance", "codeCogInseeCommuneNaissance"}, []string{"annee", "codeEtablissement"}, "cnaf_msa_prime_activite"},
		{schemas.CheckEtudiantBoursier, schemas.Identity{INE: "1234567890A"}, CNOUSINEPath, []string{"ine", "recipient"}, []string{"nomNaissance"}, "cnous_etudiant_boursier_ine"},
		{schemas.CheckStatutEtudiant, id, MESRIIdentitePath, []string{"codeCogInseeCommuneNaissance", "sexeEtatCivil"}, []string{"nomUsage", "codeCogInseePaysNaissance"}, "mesri_statut_etudiant_identite"},
		{schemas.CheckFranceTravail, schemas.Identity{IdentifiantFT: "jdupont"}, FranceTravailPath, []string{"identifiant"}, []string{"nomNaissance"}, "pole_emploi_status"},
		{schemas.CheckScolarite, id, ScolaritesPath, []string{"codeEtablissement", "anneeScolaire", "sexeEtatCivil"}, []string{"codeCogInseeCommuneNaissance", "codeCogInseePaysNaissance", "nomUsage"}, "men_scolarite"},
	} {
		a, _ := adapterFor(tc.check)
		job := schemas.Job{Check: tc.check, Recipient: "13002526500013", Identity: tc.id}
		path, q := a.route(job)
		if path != tc.path || a.ping(job) != tc.ping {
			t.Errorf("%s: %s ping %s", tc.check, path, a.ping(job))
		}
		if a.appendQuery != nil {
			if got, _ := a.appendTarget(nil, job); string(got) != path+"?"+q.Encode() {
				t.Errorf("%s: appended %s, want %s", tc.check, got, path+"?"+q.Encode())
			}
		}
		for _, k := range tc.has {
			if !q.Has(k) {
				t.Errorf("%s: query lacks %s: %s", tc.check, k, redact(q))
			}
		}
		for _, k := range tc.lacks {
			if q.Has(k) {
				t.Errorf("%s: query has %s", tc.check, k)
			}
		}
	}
}

// redact lists a query's keys only.
func redact(q url.Values) []string {
	var keys []string
	for k := range q {
		keys = append(keys, k)
	}
	return keys
}

func TestScalar(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{``, ""},
		{`null`, ""},
		{` 3 `, "3"},
		{`"0bis"`, "0bis"},
		{`"5\/6"`, "5/6"},
		{`"\ud83c\udf93"`, "\U0001F393"},
		{`{"echelon":"5"}`, ""},
		{`["5"]`, ""},
	} {
		if got := scalar([]byte(tc.in)); got != tc.want {
			t.Errorf("scalar(%s) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// queryCases are identities and periods whose query has every optional
// part, and bytes that need escaping.
var queryCases = []struct {
	period schemas.Period
	id     schemas.Identity
}{
	{schemas.Period{}, lefebvre},
	{schemas.Period{Year: 2026, Month: 9}, schemas.Identity{NomNaissance: "BERNARD", NomUsage: "DURAND", Prenoms: []string{"ELODIE"}, Sexe: "F",
		AnneeNaissance: 1990, MoisNaissance: 3, CodePaysNaissance: "99100", NomCommuneNaissance: "Sedan", CodeDepartementNaissance: "08"}},
	{schemas.Period{Year: 2026}, schemas.Identity{NomNaissance: "D'ARTAGNAN & fils", Prenoms: []string{"Jean Marie", "Zoë+1", "a/b?c=d#e~_.-", ""},
		AnneeNaissance: 2001, JourNaissance: 4, CodePaysNaissance: "99350", NomCommuneNaissance: "Saint-Étienne"}},
	{schemas.Period{Month: -1}, schemas.Identity{AnneeNaissance: -3, MoisNaissance: 14, JourNaissance: -2, Sexe: "\x00\xff%", CodeCommuneNaissance: "2A004",
		NomCommuneNaissance: "ignored", CodeDepartementNaissance: "ignored"}},
	{schemas.Period{}, schemas.Identity{}},
}

// TestAppendTarget_SameAsRoute: the routes that build their query without
// url.Values build the same URL as route and Encode.
func TestAppendTarget_SameAsRoute(t *testing.T) {
	for _, c := range schemas.Checks {
		a, ok := adapterFor(c)
		if !ok {
			t.Fatalf("no adapter for %s", c)
		}
		for i, tc := range queryCases {
			job := schemas.Job{Check: c, Recipient: "13002526500013", Period: tc.period, Identity: tc.id}
			path, q := a.route(job)
			got, gotPath := a.appendTarget([]byte("http://api.test"), job)
			if want := "http://api.test" + path + "?" + q.Encode(); string(got) != want || gotPath != path {
				t.Errorf("%s, case %d: %s %s\nwant %s", c, i, gotPath, got, want)
			}
		}
	}
}

// FuzzQuotientFamilialQuery: whatever the identity, the QF query built
// without url.Values is the one url.Values encodes.
func FuzzQuotientFamilialQuery(f *testing.F) {
	for _, tc := range queryCases {
		id := tc.id
		f.Add(tc.period.Year, tc.period.Month, id.NomNaissance, id.NomUsage, strings.Join(id.Prenoms, "|"), id.AnneeNaissance, id.MoisNaissance,
			id.JourNaissance, id.CodeCommuneNaissance, id.NomCommuneNaissance)
	}
	f.Fuzz(func(t *testing.T, year, month int, nom, usage, prenoms string, y, m, d int, commune, townName string) {
		id := schemas.Identity{NomNaissance: nom, NomUsage: usage, Sexe: usage, AnneeNaissance: y, MoisNaissance: m, JourNaissance: d,
			CodePaysNaissance: prenoms, CodeCommuneNaissance: commune, NomCommuneNaissance: townName, CodeDepartementNaissance: nom}
		if prenoms != "" {
			id.Prenoms = strings.Split(prenoms, "|")
		}
		period := schemas.Period{Year: year, Month: month}
		want := QueryQuotientFamilial(townName, period, id).Encode()
		if got := appendQuotientFamilialQuery([]byte("x?"), townName, period, id); string(got) != "x?"+want {
			t.Fatalf("query %s\nwant     x?%s", got, want)
		}
		if got := string(appendQueryEscape(nil, nom)); got != url.QueryEscape(nom) {
			t.Fatalf("escape %q = %s, want %s", nom, got, url.QueryEscape(nom))
		}
	})
}

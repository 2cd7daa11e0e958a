package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/parquet-go/parquet-go"
	"gopkg.in/yaml.v3"

	"github.com/apbatch/apbatch/schemas"
	"github.com/apbatch/apbatch/workers/sandbox"
)

// caseRoutes maps the official case folders apbatch's checks call to those
// checks.
var caseRoutes = map[string]schemas.Check{
	"api_particulier_v3_cnav_quotient_familial_with_civility":           schemas.CheckQuotientFamilial,
	"api_particulier_v3_cnous_etudiant_boursier_with_civility":          schemas.CheckEtudiantBoursier,
	"api_particulier_v3_cnous_etudiant_boursier_with_ine":               schemas.CheckEtudiantBoursier,
	"api_particulier_v3_mesri_statut_etudiant_with_civility":            schemas.CheckStatutEtudiant,
	"api_particulier_v3_mesri_statut_etudiant_with_ine":                 schemas.CheckStatutEtudiant,
	"api_particulier_v3_france_travail_statut_with_identifiant":         schemas.CheckFranceTravail,
	"api_particulier_v3_cnav_allocation_rentree_scolaire_with_civility": schemas.CheckARS,
}

// caseColumns maps a case's API parameters to roster columns.
var caseColumns = map[string]string{
	"nomNaissance": schemas.ColNomNaissance, "sexeEtatCivil": schemas.ColSexe,
	"codeCogInseePaysNaissance": schemas.ColPaysNaissance, "codeCogInseeCommuneNaissance": schemas.ColCommuneNaissance,
	"nomCommuneNaissance": schemas.ColNomCommuneNaissance, "codeCogInseeDepartementNaissance": schemas.ColDepartementNaissance,
	"ine": schemas.ColINE, "identifiant": schemas.ColIdentifiantFT,
}

// checksRow is one result row with the columns of every check.
type checksRow struct {
	RowNumber           int64   `parquet:"row_number"`
	Reference           *string `parquet:"reference,optional"`
	Check               string  `parquet:"check_name"`
	Status              string  `parquet:"status"`
	ErrorCode           *string `parquet:"error_code,optional"`
	QFValue             *int64  `parquet:"qf_value,optional"`
	NeedsReview         bool    `parquet:"needs_review"`
	Beneficiary         *bool   `parquet:"beneficiary,optional"`
	BenefitSince        *int32  `parquet:"benefit_since,optional"`
	ScholarshipHolder   *bool   `parquet:"scholarship_holder,optional"`
	StudentEnrolled     *bool   `parquet:"student_enrolled,optional"`
	EstablishmentUAI    *string `parquet:"establishment_uai,optional"`
	JobseekerRegistered *bool   `parquet:"jobseeker_registered,optional"`
	PupilEnrolled       *bool   `parquet:"pupil_enrolled,optional"`
	BoardingRegime      *string `parquet:"boarding_regime,optional"`
}

// officialRows turns the official cases of caseRoutes into roster rows, one
// per case a valid roster row can express (not the 404 fallbacks, not the
// QF cases for a given month), with the status the pipeline must give.
func officialRows(t *testing.T, now time.Time) (rows []map[string]string, want map[string]schemas.Status) {
	t.Helper()
	want = map[string]schemas.Status{}
	perRoute := map[string]int{}
	for dir, check := range caseRoutes {
		files, err := filepath.Glob(filepath.Join("../../workers/sandbox/cases", dir, "*.y*ml"))
		if err != nil || len(files) == 0 {
			t.Fatalf("cases of %s: %v", dir, err)
		}
		for _, f := range files {
			if filepath.Base(f) == "404.yaml" {
				continue
			}
			raw, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			var c struct {
				Params  map[string]any `yaml:"params"`
				Status  int            `yaml:"status"`
				Payload string         `yaml:"payload"`
			}
			if err := yaml.Unmarshal(raw, &c); err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			row, ok := caseRow(c.Params)
			if !ok {
				continue
			}
			if _, errs := schemas.ParseFor(check, row, now); len(errs) > 0 {
				continue
			}
			ref := dir + "/" + filepath.Base(f)
			row[schemas.ColReference] = ref
			rows = append(rows, row)
			want[ref] = expectedStatus(c.Status, c.Payload)
			perRoute[dir]++
		}
	}
	for dir := range caseRoutes {
		if perRoute[dir] == 0 {
			t.Errorf("no usable official case in %s", dir)
		}
	}
	return rows, want
}

// caseRow builds a roster row from a case's parameters; false when a roster
// cannot express them.
func caseRow(params map[string]any) (map[string]string, bool) {
	row := map[string]string{}
	var y, m, d string
	for k, v := range params {
		switch k {
		case "prenoms":
			list, _ := v.([]any)
			var p []string
			for _, x := range list {
				p = append(p, fmt.Sprint(x))
			}
			// Commas keep a first name with a space whole.
			row[schemas.ColPrenoms] = strings.Join(p, ", ")
			if len(p) == 1 && strings.Contains(p[0], " ") {
				row[schemas.ColPrenoms] += ","
			}
		case "anneeDateNaissance":
			y = fmt.Sprint(v)
		case "moisDateNaissance":
			m = fmt.Sprintf("%02v", v)
		case "jourDateNaissance":
			d = fmt.Sprintf("%02v", v)
		default:
			col, ok := caseColumns[k]
			if !ok {
				return nil, false // annee/mois of a given month, and the like
			}
			row[col] = fmt.Sprint(v)
		}
	}
	switch {
	case d != "":
		row[schemas.ColDateNaissance] = y + "-" + m + "-" + d
	case m != "":
		row[schemas.ColDateNaissance] = m + "/" + y
	default:
		row[schemas.ColDateNaissance] = y
	}
	return row, true
}

// expectedStatus is the result status an API answer must give.
func expectedStatus(status int, payload string) schemas.Status {
	switch {
	case status == 200:
		return schemas.StatusOK
	case status == 404:
		return schemas.StatusNotFound
	case status == 422 && strings.Contains(payload, `"35560"`):
		// Identity not recognised by the provider (XX560, since 2026-08-26).
		return schemas.StatusIdentityUnresolved
	case status == 422:
		return schemas.StatusInvalidInput
	case status == 401 || status == 403:
		return schemas.StatusUnauthorized
	}
	return schemas.StatusProviderError
}

func TestRun_EveryCheckAgainstTheSandbox(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	dir := t.TempDir()
	now := time.Now()

	// A sandbox generous enough for a test, with the official cases and a
	// synthetic population for the routes without any.
	pop := sandbox.NewPopulation(40, 3)
	sb, err := sandbox.New(sandbox.Config{Population: pop, Limits: sandbox.Limits{PerSecond: 5000, IPPerMinute: 1 << 22}})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(sb)
	defer srv.Close()
	defer sb.Close()
	tok, err := sandbox.Token([]byte(sandbox.DefaultSecret), sandbox.AllScopes, now.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	tokenFile := filepath.Join(dir, "token")
	if err := os.WriteFile(tokenFile, []byte(tok), 0o600); err != nil {
		t.Fatal(err)
	}

	rows, want := officialRows(t, now)
	dssWant := map[string]schemas.Status{}
	for i := 0; i < pop.Len(); i++ {
		per := pop.Person(i)
		id := per.Identity()
		date := fmt.Sprint(id.AnneeNaissance)
		if id.JourNaissance != 0 {
			date = per.Birth.Format(time.DateOnly)
		} else if id.MoisNaissance != 0 {
			date = per.Birth.Format("01/2006")
		}
		ref := fmt.Sprintf("parent-%d", i)
		rows = append(rows, map[string]string{schemas.ColReference: ref, schemas.ColNomNaissance: per.NomNaissance,
			schemas.ColPrenoms: strings.Join(per.Prenoms, " "), schemas.ColSexe: per.Sexe, schemas.ColDateNaissance: date,
			schemas.ColPaysNaissance: per.Pays, schemas.ColCommuneNaissance: per.Commune})
		switch per.Outcome {
		case sandbox.OutcomeNoFile:
			dssWant[ref] = schemas.StatusNotFound
		case sandbox.OutcomeUnknown:
			dssWant[ref] = schemas.StatusIdentityUnresolved
		default:
			dssWant[ref] = schemas.StatusOK
		}
		for c, ch := range per.Children {
			rows = append(rows, map[string]string{schemas.ColReference: fmt.Sprintf("pupil-%d-%d", i, c), schemas.ColNomNaissance: per.NomNaissance,
				schemas.ColPrenoms: ch.Prenom, schemas.ColSexe: ch.Sexe, schemas.ColDateNaissance: ch.Birth.Format(time.DateOnly),
				schemas.ColCodeEtablissement: per.School(c)})
		}
	}
	roster := filepath.Join(dir, "toutes-verifications.csv")
	cols := schemas.Columns
	var sb2 strings.Builder
	sb2.WriteString(strings.Join(cols, ";") + "\n")
	for _, r := range rows {
		vals := make([]string, len(cols))
		for i, c := range cols {
			vals[i] = r[c]
		}
		sb2.WriteString(strings.Join(vals, ";") + "\n")
	}
	if err := os.WriteFile(roster, []byte(sb2.String()), 0o600); err != nil {
		t.Fatal(err)
	}

	outDir := filepath.Join(dir, "out")
	sumPath := filepath.Join(dir, "summary.json")
	code, stdout, stderr := runApbatch(t, ctx, "run", "--checks", "all", "--data-dir", filepath.Join(dir, "data"),
		"--provider-url", srv.URL, "--token-file", tokenFile, "--recipient", "13002526500013", "--no-maintenance-skip",
		"--rate", "2000", "--ip-limit", "1000000", "--in-flight", "64", "--flush-interval", "1s",
		"--out", outDir, "--summary-json", sumPath, roster)
	if code != 0 {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	var sum summary
	body, _ := os.ReadFile(sumPath)
	if err := json.Unmarshal(body, &sum); err != nil {
		t.Fatal(err)
	}
	if sum.RowsTotal != int64(len(rows)) || len(sum.Batches) != 1 || len(sum.Batches[0].Checks) != len(schemas.Checks) {
		t.Fatalf("summary: %s", body)
	}

	// Every row has exactly one result per check, in the published files.
	results := map[string]map[schemas.Check]checksRow{}
	n := 0
	err = filepath.WalkDir(filepath.Join(outDir, sum.BatchID), func(p string, d fs.DirEntry, err error) error {
		if err != nil || !strings.HasSuffix(p, ".parquet") {
			return err
		}
		got, err := parquet.ReadFile[checksRow](p)
		if err != nil {
			return err
		}
		for _, r := range got {
			ref := *r.Reference
			if results[ref] == nil {
				results[ref] = map[schemas.Check]checksRow{}
			}
			if _, dup := results[ref][schemas.Check(r.Check)]; dup {
				t.Errorf("%s: two results for %s", ref, r.Check)
			}
			results[ref][schemas.Check(r.Check)] = r
			n++
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n != len(rows)*len(schemas.Checks) {
		t.Fatalf("%d results for %d rows × %d checks", n, len(rows), len(schemas.Checks))
	}

	// The official cases: the status the API answers, and the values of a 200.
	for ref, st := range want {
		check := caseRoutes[strings.Split(ref, "/")[0]]
		r := results[ref][check]
		if schemas.Status(r.Status) != st {
			code := ""
			if r.ErrorCode != nil {
				code = *r.ErrorCode
			}
			t.Errorf("%s (%s): status %s %s, the API answers %s", ref, check, r.Status, code, st)
			continue
		}
		if st != schemas.StatusOK {
			continue
		}
		var set bool
		switch check {
		case schemas.CheckQuotientFamilial:
			set = r.QFValue != nil || r.NeedsReview
		case schemas.CheckEtudiantBoursier:
			set = r.ScholarshipHolder != nil
		case schemas.CheckStatutEtudiant:
			set = r.StudentEnrolled != nil
		case schemas.CheckFranceTravail:
			set = r.JobseekerRegistered != nil
		case schemas.CheckARS:
			set = r.Beneficiary != nil
		}
		if !set {
			t.Errorf("%s (%s): ok without its values: %+v", ref, check, r)
		}
	}
	// The DSS benefits, from the synthetic population.
	for ref, st := range dssWant {
		for _, check := range []schemas.Check{schemas.CheckC2S, schemas.CheckRSA, schemas.CheckPrimeActivite, schemas.CheckAAH, schemas.CheckASF} {
			r := results[ref][check]
			if schemas.Status(r.Status) != st || (st == schemas.StatusOK && r.Beneficiary == nil) {
				t.Errorf("%s (%s): %+v, want %s", ref, check, r, st)
			}
		}
		if r := results[ref][schemas.CheckScolarite]; r.Status != string(schemas.StatusInvalidInput) {
			t.Errorf("%s: a parent without a school is checked on scolarite: %+v", ref, r)
		}
	}
	// Pupils: enrolled at their school, or unknown to the MEN.
	var pupils, enrolled int
	for ref, byCheck := range results {
		if !strings.HasPrefix(ref, "pupil-") {
			continue
		}
		pupils++
		r := byCheck[schemas.CheckScolarite]
		switch schemas.Status(r.Status) {
		case schemas.StatusOK:
			enrolled++
			if r.PupilEnrolled == nil || !*r.PupilEnrolled || r.EstablishmentUAI == nil || r.BoardingRegime == nil {
				t.Errorf("%s: %+v", ref, r)
			}
		case schemas.StatusNotFound:
		default:
			t.Errorf("%s on scolarite: %+v", ref, r)
		}
	}
	if pupils == 0 || enrolled == 0 {
		t.Fatalf("%d pupils, %d enrolled", pupils, enrolled)
	}
	if !strings.Contains(stdout, "par vérification :") {
		t.Errorf("no per-check summary:\n%s", stdout)
	}
	t.Logf("%d rows × %d checks: %d official cases, %d parents, %d pupils (%d enrolled)", len(rows), len(schemas.Checks), len(want), len(dssWant), pupils, enrolled)
}

// TestRun_ChecksARS: apbatch run --checks ars on a small roster (the
// official ARS cases, a row without a sex, a row with an unknown sex) ends
// with one result per row: the API's answer for each case, the row
// without a sex sent (no case matches it: 404), the unknown sex rejected.
func TestRun_ChecksARS(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dir := t.TempDir()
	now := time.Now()
	sb, err := sandbox.New(sandbox.Config{Limits: sandbox.Limits{PerSecond: 5000, IPPerMinute: 1 << 22}})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(sb)
	defer srv.Close()
	defer sb.Close()
	tok, err := sandbox.Token([]byte(sandbox.DefaultSecret), []string{"cnav_allocation_rentree_scolaire"}, now.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	tokenFile := filepath.Join(dir, "token")
	if err := os.WriteFile(tokenFile, []byte(tok), 0o600); err != nil {
		t.Fatal(err)
	}
	yes, no := true, false
	roster := "reference;nom_naissance;prenoms;sexe;date_naissance;code_insee_pays_naissance;code_insee_commune_naissance\n" +
		"allocataire;DUPONT;PIERRE;M;12/03/1985;99100;75112\n" +
		"enfant;MERCIER;PIERRE;M;10/01/2013;99100;75102\n" +
		"non-beneficiaire;BERNARD;LUCAS;M;05/01/1978;99100;13055\n" +
		"ouvrant-droit;MARTIN;SOPHIE MARIE;F;22/07/1990;99100;69123\n" +
		"sans-dossier;DUBOCHE;JEROME;M;05/12/1972;99100;08480\n" +
		"sans-sexe;DUPONT;PIERRE;;12/03/1985;99100;75112\n" +
		"sexe-inconnu;DUPONT;PIERRE;X;12/03/1985;99100;75112\n"
	want := map[string]struct {
		status      schemas.Status
		beneficiary *bool
	}{
		"allocataire": {schemas.StatusOK, &yes}, "enfant": {schemas.StatusOK, &yes}, "non-beneficiaire": {schemas.StatusOK, &no},
		"ouvrant-droit": {schemas.StatusOK, &yes}, "sans-dossier": {schemas.StatusNotFound, nil},
		"sans-sexe": {schemas.StatusNotFound, nil}, "sexe-inconnu": {schemas.StatusInvalidInput, nil},
	}
	path := filepath.Join(dir, "ars.csv")
	if err := os.WriteFile(path, []byte(roster), 0o600); err != nil {
		t.Fatal(err)
	}
	outDir, sumPath := filepath.Join(dir, "out"), filepath.Join(dir, "summary.json")
	code, stdout, stderr := runApbatch(t, ctx, "run", "--checks", "ars", "--data-dir", filepath.Join(dir, "data"),
		"--provider-url", srv.URL, "--token-file", tokenFile, "--recipient", "13002526500013", "--no-maintenance-skip",
		"--flush-interval", "1s", "--out", outDir, "--summary-json", sumPath, path)
	if code != 0 {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	var sum summary
	body, _ := os.ReadFile(sumPath)
	if err := json.Unmarshal(body, &sum); err != nil {
		t.Fatal(err)
	}
	if sum.RowsTotal != int64(len(want)) || len(sum.Batches) != 1 || len(sum.Batches[0].Checks) != 1 {
		t.Fatalf("summary: %s", body)
	}
	got := map[string]checksRow{}
	err = filepath.WalkDir(filepath.Join(outDir, sum.BatchID), func(p string, d fs.DirEntry, err error) error {
		if err != nil || !strings.HasSuffix(p, ".parquet") {
			return err
		}
		rows, err := parquet.ReadFile[checksRow](p)
		for _, r := range rows {
			if _, dup := got[*r.Reference]; dup {
				t.Errorf("%s: two results", *r.Reference)
			}
			if r.Check != string(schemas.CheckARS) {
				t.Errorf("%s: check %s", *r.Reference, r.Check)
			}
			got[*r.Reference] = r
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("%d results for %d rows", len(got), len(want))
	}
	for ref, w := range want {
		r := got[ref]
		if schemas.Status(r.Status) != w.status || (w.beneficiary == nil) != (r.Beneficiary == nil) ||
			(w.beneficiary != nil && *w.beneficiary != *r.Beneficiary) {
			t.Errorf("%s: %s beneficiary %v, want %s %v", ref, r.Status, r.Beneficiary, w.status, w.beneficiary)
		}
	}
	if r := got["allocataire"]; r.BenefitSince == nil {
		t.Errorf("allocataire without date_debut_droit: %+v", r)
	}
}

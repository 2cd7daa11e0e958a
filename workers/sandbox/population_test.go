package sandbox_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/apbatch/apbatch/pipeline/csv"
	"github.com/apbatch/apbatch/schemas"
	"github.com/apbatch/apbatch/workers"
	"github.com/apbatch/apbatch/workers/sandbox"
)

func TestPopulation_Proportions(t *testing.T) {
	pop := sandbox.NewPopulation(50000, 42)
	count := map[string]int{}
	kids := map[int]int{}
	partial, abroad := 0, 0
	for i := 0; i < pop.Len(); i++ {
		p := pop.Person(i)
		count[p.Outcome]++
		kids[len(p.Children)]++
		if p.DateParts < 3 {
			partial++
		}
		if p.Commune == "" {
			abroad++
		}
	}
	within := func(name string, got int, lo, hi float64) {
		f := float64(got) / float64(pop.Len())
		if f < lo || f > hi {
			t.Errorf("%s: %.3f, want between %.3f and %.3f", name, f, lo, hi)
		}
	}
	within("CNAF", count[sandbox.OutcomeCNAF], 0.76, 0.80)
	within("MSA", count[sandbox.OutcomeMSA], 0.08, 0.10)
	within("404", count[sandbox.OutcomeNoFile], 0.07, 0.09)
	within("422 00355", count[sandbox.OutcomeUnknown], 0.02, 0.03)
	within("QF 0", count[sandbox.OutcomeQFZero], 0.01, 0.02)
	within("QF null", count[sandbox.OutcomeQFNull], 0.005, 0.015)
	within("partial birth dates", partial, 0.13, 0.17)
	within("born abroad", abroad, 0.06, 0.08)
	for n := 0; n <= 5; n++ {
		if kids[n] == 0 {
			t.Errorf("no family with %d children", n)
		}
	}
	if a, b := sandbox.NewPopulation(10, 42).Person(7), pop.Person(7); a.NomNaissance != b.NomNaissance || !a.Birth.Equal(b.Birth) {
		t.Error("the same seed gives different people")
	}
}

// TestPopulation_RosterRoundTrip writes the roster, reads it with apbatch's
// own reader, calls the sandbox with the client's query and gets each
// person's outcome.
func TestPopulation_RosterRoundTrip(t *testing.T) {
	pop := sandbox.NewPopulation(400, 9)
	var buf bytes.Buffer
	if err := pop.WriteCSV(&buf); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	r, err := csv.NewReader(&buf, "pop.csv", now)
	if err != nil {
		t.Fatal(err)
	}
	sb, err := sandbox.New(sandbox.Config{Population: pop, Limits: sandbox.Limits{PerSecond: 100000, IPPerMinute: 1000000}})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(sb)
	defer srv.Close()
	tok, _ := sandbox.Token([]byte(sandbox.DefaultSecret), sandbox.AllScopes, now.Add(time.Hour))
	client := &workers.Client{BaseURL: srv.URL}
	want := map[string]schemas.Status{
		sandbox.OutcomeCNAF: schemas.StatusOK, sandbox.OutcomeMSA: schemas.StatusOK, sandbox.OutcomeQFZero: schemas.StatusOK,
		sandbox.OutcomeQFNull: schemas.StatusOK, sandbox.OutcomeNoFile: schemas.StatusNotFound, sandbox.OutcomeUnknown: schemas.StatusIdentityUnresolved,
	}
	for i := 0; ; i++ {
		row, err := r.Next()
		if errors.Is(err, io.EOF) {
			if i != pop.Len() {
				t.Fatalf("%d rows, want %d", i, pop.Len())
			}
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		if bad := row.Invalid(0); len(bad) > 0 {
			t.Fatalf("row %d invalid: %v", row.Number, bad)
		}
		per := pop.Person(i)
		o, err := client.QuotientFamilial(t.Context(), tok, "13002526500013", schemas.Period{}, row.Checks[0].Identity)
		if err != nil {
			t.Fatal(err)
		}
		if o.Status != want[per.Outcome] {
			t.Fatalf("person %d (%s): status %s code %s", i, per.Outcome, o.Status, o.Code)
		}
		if o.Status != schemas.StatusOK {
			continue
		}
		switch {
		case per.Outcome == sandbox.OutcomeQFNull && o.QF.Valeur != nil,
			per.Outcome == sandbox.OutcomeQFZero && (o.QF.Valeur == nil || *o.QF.Valeur != 0),
			per.Outcome == sandbox.OutcomeCNAF && (o.QF.Valeur == nil || *o.QF.Valeur != int64(per.QF) || o.QF.Fournisseur != "CNAF"),
			per.Outcome == sandbox.OutcomeMSA && o.QF.Fournisseur != "MSA",
			int(o.QF.Enfants) != len(per.Children):
			b, _ := json.Marshal(o.QF)
			t.Fatalf("person %d (%s): %s", i, per.Outcome, b)
		}
	}
}

func TestPopulation_AnswersPeriod(t *testing.T) {
	pop := sandbox.NewPopulation(50, 1)
	sb, _ := sandbox.New(sandbox.Config{Population: pop})
	var per sandbox.Person
	for i := 0; i < pop.Len(); i++ {
		if per = pop.Person(i); per.Outcome == sandbox.OutcomeCNAF {
			break
		}
	}
	now := time.Now()
	id := per.Identity()
	q := workers.QueryQuotientFamilial("13002526500013", schemas.Period{Year: now.Year(), Month: 1}, id)
	req := httptest.NewRequest(http.MethodGet, workers.QuotientFamilialPath+"?"+q.Encode(), nil)
	tok, _ := sandbox.Token([]byte(sandbox.DefaultSecret), sandbox.AllScopes, now.Add(time.Hour))
	req.Header.Set("Authorization", "Bearer "+tok)
	rec := httptest.NewRecorder()
	sb.ServeHTTP(rec, req)
	var body struct {
		Data struct {
			QF struct {
				Annee, Mois int
			} `json:"quotient_familial"`
		}
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &body); rec.Code != 200 || err != nil || body.Data.QF.Annee != now.Year() || body.Data.QF.Mois != 1 {
		t.Fatalf("%d %s", rec.Code, rec.Body)
	}
}

func TestPopulation_BenefitRoutes(t *testing.T) {
	pop := sandbox.NewPopulation(300, 4)
	sb, _ := sandbox.New(sandbox.Config{Population: pop, Limits: sandbox.Limits{PerSecond: 100000, IPPerMinute: 1000000}})
	now := time.Now()
	tok, _ := sandbox.Token([]byte(sandbox.DefaultSecret), sandbox.AllScopes, now.Add(time.Hour))
	for _, route := range []string{"complementaire_sante_solidaire", "revenu_solidarite_active", "prime_activite",
		"allocation_adulte_handicape", "allocation_soutien_familial"} {
		t.Run(route, func(t *testing.T) {
			beneficiaries := 0
			for i := 0; i < pop.Len(); i++ {
				per := pop.Person(i)
				id := per.Identity()
				q := workers.QueryQuotientFamilial("13002526500013", schemas.Period{}, id)
				req := httptest.NewRequest(http.MethodGet, "/v3/dss/"+route+"/identite?"+q.Encode(), nil)
				req.Header.Set("Authorization", "Bearer "+tok)
				rec := httptest.NewRecorder()
				sb.ServeHTTP(rec, req)
				want := map[string]int{sandbox.OutcomeNoFile: 404, sandbox.OutcomeUnknown: 422}[per.Outcome]
				if want == 0 {
					want = 200
				}
				if rec.Code != want {
					t.Fatalf("person %d (%s): %d %s", i, per.Outcome, rec.Code, rec.Body)
				}
				if rec.Code != 200 {
					continue
				}
				var body struct {
					Data map[string]any `json:"data"`
				}
				if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
					t.Fatal(err)
				}
				if b, _ := body.Data["est_beneficiaire"].(bool); b {
					beneficiaries++
					if body.Data["date_debut_droit"] == nil {
						t.Fatalf("beneficiary without date_debut_droit: %s", rec.Body)
					}
				} else if body.Data["date_debut_droit"] != nil {
					t.Fatalf("non-beneficiary with a date: %s", rec.Body)
				}
			}
			if beneficiaries == 0 || beneficiaries > pop.Len()/3 {
				t.Fatalf("%d beneficiaries of %d", beneficiaries, pop.Len())
			}
		})
	}
}

// TestPopulation_Amend: a change of a person (directly or by POST
// /_sandbox/people) changes their answers and nobody else's.
func TestPopulation_Amend(t *testing.T) {
	pop := sandbox.NewPopulation(200, 3)
	var cnaf []int
	for i := 0; i < pop.Len() && len(cnaf) < 3; i++ {
		if pop.Person(i).Outcome == sandbox.OutcomeCNAF {
			cnaf = append(cnaf, i)
		}
	}
	before := make([]sandbox.Person, pop.Len())
	for i := range before {
		before[i] = pop.Person(i)
	}
	sb, err := sandbox.New(sandbox.Config{Population: pop, Limits: sandbox.Limits{PerSecond: 100000, IPPerMinute: 1000000}})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(sb)
	defer srv.Close()
	qf := 123
	if err := pop.Amend(cnaf[0], sandbox.Change{QF: &qf}); err != nil {
		t.Fatal(err)
	}
	body := `[{"index": ` + strconv.Itoa(cnaf[1]) + `, "outcome": "404"}]`
	resp, err := http.Post(srv.URL+"/_sandbox/people", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("POST /_sandbox/people: %d", resp.StatusCode)
	}
	for _, bad := range []string{`[{"index": 999, "qf": 1}]`, `[{"index": 1, "outcome": "dead"}]`, `{`} {
		resp, err := http.Post(srv.URL+"/_sandbox/people", "application/json", strings.NewReader(bad))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("POST %s: %d, want 400", bad, resp.StatusCode)
		}
	}
	tok, _ := sandbox.Token([]byte(sandbox.DefaultSecret), sandbox.AllScopes, time.Now().Add(time.Hour))
	client := &workers.Client{BaseURL: srv.URL}
	for _, tc := range []struct {
		i      int
		status schemas.Status
		qf     int64
	}{
		{cnaf[0], schemas.StatusOK, 123},
		{cnaf[1], schemas.StatusNotFound, 0},
		{cnaf[2], schemas.StatusOK, int64(before[cnaf[2]].QF)},
	} {
		o, err := client.QuotientFamilial(t.Context(), tok, "13002526500013", schemas.Period{}, pop.Person(tc.i).Identity())
		if err != nil {
			t.Fatal(err)
		}
		if o.Status != tc.status || (tc.status == schemas.StatusOK && (o.QF.Valeur == nil || *o.QF.Valeur != tc.qf)) {
			t.Errorf("person %d: %s %v, want %s %d", tc.i, o.Status, o.QF.Valeur, tc.status, tc.qf)
		}
	}
	for i, b := range before {
		a := pop.Person(i)
		if i != cnaf[0] && i != cnaf[1] && (a.QF != b.QF || a.Outcome != b.Outcome) {
			t.Errorf("person %d changed", i)
		}
		if a.NomNaissance != b.NomNaissance || !a.Birth.Equal(b.Birth) {
			t.Errorf("person %d: identity changed", i)
		}
	}
}

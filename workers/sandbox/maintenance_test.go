package sandbox

import (
	"encoding/json"
	"net/http"
	"net/url"
	"testing"
	"time"
)

func TestServer_MaintenanceWindows(t *testing.T) {
	men := with(nominal, "codeCogInseePaysNaissance", "", "codeCogInseeCommuneNaissance", "", "codeEtablissement", "0751234A", "anneeScolaire", "2024-2025")
	at := func(s string) time.Time {
		tm, err := time.ParseInLocation("2006-01-02 15:04", s, paris)
		if err != nil {
			t.Fatal(err)
		}
		return tm
	}
	for _, tc := range []struct {
		name, path string
		maint      bool
		now        string
		status     int
		code       string
		retryIn    int
	}{
		{"CNAF Sunday maintenance", qfPath, true, "2024-12-29 23:10", 503, "37020", 35 * 60},
		{"CNAF on a Monday evening", qfPath, true, "2024-12-30 23:10", 200, "", 0},
		{"MEN nightly maintenance", "/v5/men/scolarites/identite", true, "2024-12-30 01:30", 503, "30020", 60 * 60},
		{"MEN out of its window", "/v5/men/scolarites/identite", true, "2024-12-30 02:30", 404, "30003", 0},
		{"maintenance not asked (staging)", qfPath, false, "2024-12-29 23:10", 200, "", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			now := at(tc.now)
			s := newServer(t, Config{Maintenance: tc.maint, Now: func() time.Time { return now }})
			q := nominal
			if tc.path != qfPath {
				q = men
			}
			rec := get(s, token(t, AllScopes, now.Add(time.Hour)), tc.path, q)
			if rec.Code != tc.status {
				t.Fatalf("status %d, want %d: %s", rec.Code, tc.status, rec.Body)
			}
			if tc.code == "" {
				return
			}
			var body struct {
				Errors []struct {
					Code string `json:"code"`
					Meta struct {
						RetryIn int `json:"retry_in"`
					} `json:"meta"`
				} `json:"errors"`
			}
			if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil || len(body.Errors) != 1 {
				t.Fatalf("body %s: %v", rec.Body, err)
			}
			if e := body.Errors[0]; e.Code != tc.code || e.Meta.RetryIn != tc.retryIn {
				t.Errorf("code %s retry_in %d, want %s %d", e.Code, e.Meta.RetryIn, tc.code, tc.retryIn)
			}
		})
	}
}

func TestPopulation_PupilsOnTheMENRoute(t *testing.T) {
	pop := NewPopulation(300, 7)
	s := newServer(t, Config{Population: pop, Limits: Limits{PerSecond: 1 << 20, IPPerMinute: 1 << 20}})
	tok := token(t, AllScopes, caseClock.Add(time.Hour))
	counts := map[int]int{}
	for i := 0; i < pop.Len(); i++ {
		per := pop.Person(i)
		for c, ch := range per.Children {
			if !ch.Birth.Before(caseClock.AddDate(0, 0, -1)) {
				continue // born after the test's clock
			}
			q := caseQueryLists(per.ChildParams(c))
			q.Set("codeEtablissement", per.School(c))
			q.Set("anneeScolaire", "2024-2025")
			rec := get(s, tok, "/v5/men/scolarites/identite", q)
			counts[rec.Code]++
			if rec.Code != http.StatusOK {
				continue
			}
			var body struct {
				Data struct {
					EstScolarise  bool   `json:"est_scolarise"`
					AnneeScolaire string `json:"annee_scolaire"`
					Etablissement struct {
						CodeUAI string `json:"code_uai"`
					} `json:"etablissement"`
					Regime *struct {
						Code string `json:"code"`
					} `json:"regime_pensionnat"`
				} `json:"data"`
			}
			if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
				t.Fatal(err)
			}
			d := body.Data
			if !d.EstScolarise || d.AnneeScolaire != "2024-2025" || d.Etablissement.CodeUAI != per.School(c) || d.Regime == nil {
				t.Fatalf("child %d/%d: %s", i, c, rec.Body)
			}
		}
		// A parent is not a pupil; a child has no benefits file.
		if rec := get(s, tok, "/v5/men/scolarites/identite", with(caseQueryLists(per.Params()), "codeEtablissement", "0751234A", "anneeScolaire", "2024", "codeCogInseePaysNaissance", "", "codeCogInseeCommuneNaissance", "")); per.DateParts == 3 && rec.Code != http.StatusNotFound {
			t.Fatalf("parent %d on MEN: %d %s", i, rec.Code, rec.Body)
		}
	}
	if counts[http.StatusOK] == 0 || counts[http.StatusNotFound] == 0 || len(counts) != 2 {
		t.Fatalf("answers by status: %v", counts)
	}
}

// caseQueryLists builds a request from a lower-cased parameter set.
func caseQueryLists(p map[string][]string) url.Values {
	q := url.Values{"recipient": {"13002526500013"}}
	for k, vs := range p {
		if k == "prenoms" {
			k = "prenoms[]"
		}
		q[k] = vs
	}
	return q
}

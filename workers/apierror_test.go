package workers

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/rs/zerolog"
	kafkago "github.com/segmentio/kafka-go"

	"github.com/apbatch/apbatch/schemas"
)

func TestErrorSummary(t *testing.T) {
	long := strings.Repeat("é", 300)
	tests := []struct {
		name string
		errs []apiError
		want string
	}{
		{"none", nil, ""},
		{"title and code", []apiError{{Code: "37003", Title: "Dossier allocataire absent", Detail: "DUPONT JEAN inconnu"}}, "Dossier allocataire absent (37003)"},
		{"code that is a name", []apiError{{Code: "DUPONT", Title: "Erreur"}}, "Erreur"},
		{"code too long", []apiError{{Code: "003551", Title: "Erreur"}}, "Erreur"},
		{"control characters", []apiError{{Code: "00429", Title: "Trop\nde\t\x00requêtes "}}, "Trop de requêtes (00429)"},
		{"long title", []apiError{{Code: "00000", Title: long}}, strings.Repeat("é", maxErrorTitle) + "… (00000)"},
		{"invalid UTF-8", []apiError{{Title: "a\xffb"}}, "ab"},
		{"many errors", []apiError{{Code: "00351", Title: "A"}, {Code: "00352", Title: "B"}, {Code: "00353", Title: "C"}, {Code: "00354", Title: "D"}, {Code: "00355", Title: "E"}},
			"A (00351) ; B (00352) ; C (00353) ; et 2 autres erreurs"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := errorSummary(tt.errs)
			if got != tt.want {
				t.Errorf("errorSummary = %q, want %q", got, tt.want)
			}
			if !utf8.ValidString(got) || utf8.RuneCountInString(got) > maxErrorsShown*(maxErrorTitle+40)+30 {
				t.Errorf("unbounded or invalid: %q", got)
			}
		})
	}
}

// rawResults keeps the result messages as produced.
type rawResults struct {
	mu   sync.Mutex
	msgs [][]byte
}

func (r *rawResults) WriteMessages(_ context.Context, msgs ...kafkago.Message) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, m := range msgs {
		r.msgs = append(r.msgs, append([]byte(nil), m.Value...))
	}
	return nil
}

// TestPool_ErrorBodyEchoingIdentity: an API whose error bodies echo the
// query (the person's names and birth date in detail, meta, an invalid
// code or provider) gives results whose Kafka message holds none of it:
// only the code and the title travel.
func TestPool_ErrorBodyEchoingIdentity(t *testing.T) {
	const name, first, birth = "ZYGOMAR", "QUENTILIEN", "1982-12-27"
	echo := name + " " + first + " né le " + birth
	tests := []struct {
		name, body string
		status     int
		wantStatus schemas.Status
		wantCode   string
		wantMsg    string
	}{
		{"not found", `{"errors":[{"code":"37003","title":"Dossier allocataire absent","detail":"Aucun dossier pour ` + echo + `","meta":{"provider":"CNAF"}}]}`,
			http.StatusNotFound, schemas.StatusNotFound, "37003", "Dossier allocataire absent (37003)"},
		{"validation", `{"errors":[{"code":"00351","title":"Entité non traitable","detail":"Le nom ` + name + ` est invalide","source":{"parameter":"nomNaissance"}},` +
			`{"code":"00352","title":"Entité non traitable","detail":"Le prénom ` + first + ` est invalide","source":{"parameter":"` + first + `"}}]}`,
			http.StatusUnprocessableEntity, schemas.StatusInvalidInput, "00351", "Entité non traitable (00351) ; Entité non traitable (00352)"},
		{"provider error", `{"errors":[{"code":"37366","title":"Mauvaise réponse du fournisseur de données","detail":"` + echo + `",` +
			`"meta":{"provider":"` + name + `-CNAF né le 27/12","provider_error_code":"X","provider_error_message":"` + echo + `"}}]}`,
			http.StatusBadGateway, schemas.StatusProviderError, "37366", "Mauvaise réponse du fournisseur de données (37366)"},
		{"code echoing", `{"errors":[{"code":"` + echo + `","title":"Erreur","detail":"` + echo + `"}]}`,
			http.StatusBadRequest, schemas.StatusInvalidInput, "HTTP_400", "Erreur"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(tt.status)
				w.Write([]byte(tt.body))
			}))
			defer srv.Close()
			out := &rawResults{}
			p := &Pool{AllowClearJobs: true, Results: out, Client: &Client{BaseURL: srv.URL}, Tokens: func(string) (string, error) { return "tok", nil },
				Log: zerolog.Nop(), IPLimit: -1, Retry: RetryPolicy{MaxAttempts: 2, BaseDelay: time.Millisecond}}
			job := schemas.Job{Version: schemas.JobVersion, BatchID: "b1", Tenant: "sedan", Check: schemas.CheckQuotientFamilial, LookupID: "l1",
				Recipient: "13002526500013", Rows: []schemas.RowRef{{Number: 1}},
				Identity: schemas.Identity{NomNaissance: name, Prenoms: []string{first}, Sexe: "M", AnneeNaissance: 1982, MoisNaissance: 12, JourNaissance: 27, CodePaysNaissance: "99100", CodeCommuneNaissance: "08480"}}
			v, _ := json.Marshal(job)
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			if err := p.process(ctx, ctx, zerolog.Nop(), kafkago.Message{Value: v}, &jobSlots{}); err != nil {
				t.Fatal(err)
			}
			if len(out.msgs) != 1 {
				t.Fatalf("%d results", len(out.msgs))
			}
			raw := string(out.msgs[0])
			for _, s := range []string{name, first, birth, "27/12"} {
				if strings.Contains(raw, s) {
					t.Errorf("the result message holds %q: %s", s, raw)
				}
			}
			res, err := schemas.DecodeResult(out.msgs[0])
			if err != nil {
				t.Fatal(err)
			}
			if res.Status != tt.wantStatus || res.ErrorCode != tt.wantCode || !strings.HasSuffix(res.ErrorMessage, tt.wantMsg) {
				t.Errorf("result %s %s %q, want %s %s …%q", res.Status, res.ErrorCode, res.ErrorMessage, tt.wantStatus, tt.wantCode, tt.wantMsg)
			}
			if res.Provider != "" && res.Provider != "CNAF" {
				t.Errorf("provider %q", res.Provider)
			}
		})
	}
}

// TestPool_UnknownErrorCodes: answers whose code the error catalogue does
// not know keep their HTTP status's fallback and are counted by check,
// status and code; known codes are not counted.
func TestPool_UnknownErrorCodes(t *testing.T) {
	answers := map[string]struct {
		status int
		body   string
	}{
		"INCONNU":  {http.StatusUnprocessableEntity, `{"errors":[{"code":"35599","title":"Nouvelle erreur","detail":"x","meta":{"provider":"CNAF & MSA"}}]}`},
		"CONNU":    {http.StatusUnprocessableEntity, `{"errors":[{"code":"35560","title":"Identité non reconnue par le fournisseur de données","detail":"x","meta":{"provider":"CNAF & MSA"}}]}`},
		"SANSCODE": {http.StatusNotFound, `Cette URL n'existe pas`},
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a := answers[r.URL.Query().Get("nomNaissance")]
		w.WriteHeader(a.status)
		w.Write([]byte(a.body))
	}))
	defer srv.Close()
	reg := prometheus.NewRegistry()
	m, err := NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	out := &rawResults{}
	p := &Pool{AllowClearJobs: true, Results: out, Client: &Client{BaseURL: srv.URL}, Tokens: func(string) (string, error) { return "tok", nil },
		Log: zerolog.Nop(), IPLimit: -1, Metrics: m, Retry: RetryPolicy{MaxAttempts: 1}}
	want := map[string]schemas.Status{"INCONNU": schemas.StatusInvalidInput, "CONNU": schemas.StatusIdentityUnresolved, "SANSCODE": schemas.StatusNotFound}
	for i, name := range []string{"INCONNU", "CONNU", "SANSCODE", "INCONNU"} {
		job := schemas.Job{Version: schemas.JobVersion, BatchID: "b1", Tenant: "sedan", Check: schemas.CheckQuotientFamilial, LookupID: name,
			Recipient: "13002526500013", Rows: []schemas.RowRef{{Number: int64(i + 1)}},
			Identity: schemas.Identity{NomNaissance: name, Prenoms: []string{"JEAN"}, CodePaysNaissance: "99350"}}
		v, _ := json.Marshal(job)
		if err := p.process(context.Background(), context.Background(), zerolog.Nop(), kafkago.Message{Value: v}, &jobSlots{}); err != nil {
			t.Fatal(err)
		}
		res, err := schemas.DecodeResult(out.msgs[len(out.msgs)-1])
		if err != nil {
			t.Fatal(err)
		}
		if res.Status != want[name] {
			t.Errorf("%s: status %s, want %s", name, res.Status, want[name])
		}
	}
	const metric = `# HELP apbatch_api_unknown_error_codes_total Error answers whose code the error catalogue does not know (classified by HTTP status), by check, HTTP status and code.
# TYPE apbatch_api_unknown_error_codes_total counter
apbatch_api_unknown_error_codes_total{check="quotient_familial",code="35599",http_status="422"} 2
apbatch_api_unknown_error_codes_total{check="quotient_familial",code="APB_BAD_RESPONSE",http_status="404"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(metric), "apbatch_api_unknown_error_codes_total"); err != nil {
		t.Error(err)
	}
}

// TestPool_Delegation: a tenant whose configuration names an editor
// delegation sends it as delegation_id; others send none; the API's 422
// 00212 (several delegations match the SIRET) ends unauthorized with the
// French explanation, never retried.
func TestPool_Delegation(t *testing.T) {
	const uuid = "6f3c8d9a-1b2c-4d5e-8f90-a1b2c3d4e5f6"
	var mu sync.Mutex
	got := map[string][]string{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		got[r.URL.Query().Get("nomNaissance")] = r.URL.Query()["delegation_id"]
		mu.Unlock()
		if r.URL.Query().Get("delegation_id") == "" {
			w.WriteHeader(http.StatusUnprocessableEntity)
			w.Write([]byte(`{"errors":[{"code":"00212","title":"Entité non traitable","detail":"Plusieurs délégations actives existent pour ce SIRET. Le paramètre delegation_id est requis pour identifier la délégation.","source":{"parameter":"delegation_id"}}]}`))
			return
		}
		w.WriteHeader(http.StatusNotFound)
		w.Write([]byte(`{"errors":[{"code":"37003","title":"Dossier allocataire absent CNAV","detail":"x","meta":{"provider":"CNAV"}}]}`))
	}))
	defer srv.Close()
	out := &rawResults{}
	p := &Pool{AllowClearJobs: true, Results: out, Client: &Client{BaseURL: srv.URL}, Tokens: func(string) (string, error) { return "tok", nil },
		Log: zerolog.Nop(), IPLimit: -1, Delegations: map[string]string{"editeur-sedan": uuid}, Retry: RetryPolicy{MaxAttempts: 3, BaseDelay: time.Millisecond}}
	for i, tenant := range []string{"editeur-sedan", "charleville"} {
		job := schemas.Job{Version: schemas.JobVersion, BatchID: "b1", Tenant: tenant, Check: schemas.CheckQuotientFamilial, LookupID: tenant,
			Recipient: "13002526500013", Rows: []schemas.RowRef{{Number: int64(i + 1)}},
			Identity: schemas.Identity{NomNaissance: strings.ToUpper(strings.ReplaceAll(tenant, "-", "")), Prenoms: []string{"JEAN"}, CodePaysNaissance: "99350"}}
		v, _ := json.Marshal(job)
		if err := p.process(context.Background(), context.Background(), zerolog.Nop(), kafkago.Message{Value: v}, &jobSlots{}); err != nil {
			t.Fatal(err)
		}
	}
	if d := got["EDITEURSEDAN"]; len(d) != 1 || d[0] != uuid {
		t.Errorf("delegation sent %v, want %s", d, uuid)
	}
	if d, ok := got["CHARLEVILLE"]; !ok || len(d) != 0 {
		t.Errorf("a tenant without a delegation sent %v", d)
	}
	res, err := schemas.DecodeResult(out.msgs[1])
	if err != nil {
		t.Fatal(err)
	}
	if res.Status != schemas.StatusUnauthorized || res.ErrorCode != "00212" || res.Attempts != 1 ||
		!strings.Contains(res.ErrorMessage, "Plusieurs délégations de l'éditeur") || !strings.Contains(res.ErrorMessage, "delegation_id") {
		t.Errorf("00212: %s %s attempts %d %q", res.Status, res.ErrorCode, res.Attempts, res.ErrorMessage)
	}
}

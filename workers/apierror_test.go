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

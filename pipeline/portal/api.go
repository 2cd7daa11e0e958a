package portal

import (
	_ "embed"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/apbatch/apbatch/pipeline"
	"github.com/apbatch/apbatch/pipeline/ledger"
	"github.com/apbatch/apbatch/schemas"
)

//go:embed openapi.json
var openAPISpec []byte

// apiBatch is a batch as the JSON API gives it.
type apiBatch struct {
	ID       string `json:"id"`
	State    string `json:"state"`
	Label    string `json:"label"`
	Campaign string `json:"campaign"`
	File     string `json:"file,omitempty"`
	// Checks are the batch's checks.
	Checks       []schemas.Check          `json:"checks"`
	RowsTotal    int64                    `json:"rows_total"`
	RowsByStatus map[schemas.Status]int64 `json:"rows_by_status"`
	Progress     int                      `json:"progress_percent"`
	ETASeconds   int64                    `json:"eta_seconds,omitempty"`
	ETA          string                   `json:"eta,omitempty"`
	Error        string                   `json:"error,omitempty"`
	CreatedAt    time.Time                `json:"created_at"`
	CompletedAt  *time.Time               `json:"completed_at,omitempty"`
	Links        map[string]string        `json:"links"`
}

func toAPI(v pipeline.BatchView) apiBatch {
	a := apiBatch{ID: v.ID, State: v.State, Label: v.Label, Campaign: v.Campaign, File: v.File, Checks: v.Checks,
		RowsTotal: v.RowsTotal, RowsByStatus: v.RowsByStatus, Progress: v.Percent, Error: v.Error,
		CreatedAt: v.CreatedAt, CompletedAt: v.CompletedAt}
	if a.Checks == nil {
		a.Checks = []schemas.Check{}
	}
	if a.RowsByStatus == nil {
		a.RowsByStatus = map[schemas.Status]int64{}
	}
	if v.ETA > 0 {
		a.ETASeconds, a.ETA = int64(v.ETA/time.Second), pipeline.FormatETA(v.ETA)
	}
	self := "/api/v1/batches/" + url.PathEscape(v.ID)
	a.Links = map[string]string{"self": self, "page": "/lots/" + url.PathEscape(v.ID)}
	if v.Published() {
		for _, f := range []string{"xlsx", "csv", "parquet"} {
			a.Links[f] = self + "/resultats." + f
		}
	}
	return a
}

// apiError answers a JSON error, in French.
func apiError(w http.ResponseWriter, status int, msg, detail string) {
	writeJSON(w, status, map[string]string{"error": msg, "detail": detail})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	enc.Encode(v)
}

// api wraps a JSON API handler: the tenant comes from the bearer API key,
// or, for reading only, from the portal's session (its pages' live
// progress).
func (p *Portal) api(h func(w http.ResponseWriter, r *http.Request, tenant string)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if auth := r.Header.Get("Authorization"); auth != "" {
			key, ok := strings.CutPrefix(auth, "Bearer ")
			tenant, known := p.APIKeys.Tenant(key)
			if !ok || !known {
				w.Header().Set("WWW-Authenticate", `Bearer realm="apbatch"`)
				apiError(w, http.StatusUnauthorized, "clé d'API refusée", "envoyez l'en-tête Authorization: Bearer <clé> avec la clé d'API de votre collectivité")
				return
			}
			h(w, r, tenant)
			return
		}
		if s, ok := p.sessionOf(r); ok && r.Method == http.MethodGet {
			h(w, r, s.Tenant)
			return
		}
		w.Header().Set("WWW-Authenticate", `Bearer realm="apbatch"`)
		apiError(w, http.StatusUnauthorized, "authentification requise", "envoyez l'en-tête Authorization: Bearer <clé> avec la clé d'API de votre collectivité")
	}
}

func (p *Portal) openAPI(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Write(openAPISpec)
}

func (p *Portal) apiList(w http.ResponseWriter, r *http.Request, tenant string) {
	vs, err := p.tenantBatches(r.Context(), tenant)
	if err != nil {
		apiError(w, http.StatusInternalServerError, "erreur interne", p.internal(err))
		return
	}
	out := make([]apiBatch, 0, len(vs))
	for _, v := range vs {
		out = append(out, toAPI(v))
	}
	writeJSON(w, http.StatusOK, map[string]any{"batches": out})
}

func (p *Portal) apiCreate(w http.ResponseWriter, r *http.Request, tenant string) {
	up, err := p.readUpload(w, r)
	if err == nil {
		defer up.cleanup()
		var b ledger.Batch
		var reused bool
		if b, reused, err = p.submit(r, tenant, up); err == nil {
			status := http.StatusCreated
			if reused {
				status = http.StatusOK
			}
			if b.State == "received" {
				writeJSON(w, status, apiBatch{ID: b.ID, State: b.State, Label: "reçu, en attente", Campaign: b.Campaign,
					Checks: []schemas.Check{}, RowsByStatus: map[schemas.Status]int64{},
					Links: map[string]string{"self": "/api/v1/batches/" + url.PathEscape(b.ID)}})
				return
			}
			v, err := pipeline.ViewBatch(r.Context(), p.Ledger, b, p.now())
			if err == nil {
				writeJSON(w, status, toAPI(v))
				return
			}
		}
	}
	var ue *uploadError
	if errors.As(err, &ue) {
		apiError(w, ue.status, "fichier refusé", ue.msg)
		return
	}
	apiError(w, http.StatusInternalServerError, "erreur interne", p.internal(err))
}

// apiBatchOf returns the batch of the path for tenant, or answers 404.
func (p *Portal) apiBatchOf(w http.ResponseWriter, r *http.Request, tenant string) (ledger.Batch, bool) {
	b, err := p.batchOf(r, tenant)
	if errors.Is(err, ledger.ErrNotFound) {
		apiError(w, http.StatusNotFound, "lot introuvable", "ce lot n'existe pas ou n'appartient pas à votre collectivité ; GET /api/v1/batches liste les vôtres")
		return b, false
	}
	if err != nil {
		apiError(w, http.StatusInternalServerError, "erreur interne", p.internal(err))
		return b, false
	}
	return b, true
}

func (p *Portal) apiGet(w http.ResponseWriter, r *http.Request, tenant string) {
	b, ok := p.apiBatchOf(w, r, tenant)
	if !ok {
		return
	}
	v, err := pipeline.ViewBatch(r.Context(), p.Ledger, b, p.now())
	if err != nil {
		apiError(w, http.StatusInternalServerError, "erreur interne", p.internal(err))
		return
	}
	writeJSON(w, http.StatusOK, toAPI(v))
}

func (p *Portal) apiDownload(w http.ResponseWriter, r *http.Request, tenant string) {
	format, ok := exportFormat(r.PathValue("file"))
	if !ok {
		apiError(w, http.StatusNotFound, "fichier inconnu", "les résultats sont en resultats.xlsx, resultats.csv ou resultats.parquet")
		return
	}
	b, ok := p.apiBatchOf(w, r, tenant)
	if !ok {
		return
	}
	if err := p.sendExport(w, r, b, format); err != nil {
		var ue *uploadError
		if errors.As(err, &ue) {
			apiError(w, ue.status, "résultats indisponibles", ue.msg)
			return
		}
		apiError(w, http.StatusInternalServerError, "erreur interne", p.internal(err))
	}
}

func (p *Portal) apiCancel(w http.ResponseWriter, r *http.Request, tenant string) {
	b, ok := p.apiBatchOf(w, r, tenant)
	if !ok {
		return
	}
	nb, err := p.cancel(r, b)
	if err != nil {
		var ue *uploadError
		if errors.As(err, &ue) {
			apiError(w, ue.status, "annulation impossible", ue.msg)
			return
		}
		apiError(w, http.StatusInternalServerError, "erreur interne", p.internal(err))
		return
	}
	v, err := pipeline.ViewBatch(r.Context(), p.Ledger, nb, p.now())
	if err != nil {
		apiError(w, http.StatusInternalServerError, "erreur interne", p.internal(err))
		return
	}
	writeJSON(w, http.StatusOK, toAPI(v))
}

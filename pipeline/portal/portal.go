// Package portal is the agents' web portal and its JSON API: a town-hall
// agent signs in, uploads a roster, follows its verification and downloads
// the priced workbook, in French; the town's software does the same with
// an API key. It is a front end of the pipeline beside the CLI: uploads go
// through pipeline.Submit like bucket events, views through
// pipeline.ViewBatch, downloads through pipeline.Exporter.
package portal

import (
	"context"
	"embed"
	"errors"
	"html/template"
	"io/fs"
	"net/http"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"github.com/apbatch/apbatch/pipeline"
	"github.com/apbatch/apbatch/pipeline/ledger"
	"github.com/apbatch/apbatch/pipeline/s3"
	"github.com/apbatch/apbatch/schemas"
	"github.com/apbatch/apbatch/workers"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// SignIn is an external sign-in the portal redirects agents to (OpenID
// Connect, see OIDC).
type SignIn interface {
	// Begin redirects the browser to the provider.
	Begin(w http.ResponseWriter, r *http.Request)
	// Finish completes the sign-in on the redirect URL. Its errors are
	// French sentences without personal data.
	Finish(ctx context.Context, w http.ResponseWriter, r *http.Request) (Identity, error)
}

// TokenStatus is what the settings page shows of a tenant's API token:
// never the token, its claims only.
type TokenStatus struct {
	// Known is false when this process does not hold the tenant's token.
	Known     bool
	ID        string
	ExpiresAt time.Time
	Expiry    workers.Expiry
	Scopes    []string
	// Problem says, in French, why the token cannot be read.
	Problem string
}

// TokenStatusOf reads the claims of the token lookup gives for tenant.
func TokenStatusOf(lookup func(tenant string) (string, error), tenant string, now time.Time) TokenStatus {
	if lookup == nil {
		return TokenStatus{}
	}
	tok, err := lookup(tenant)
	if err != nil || tok == "" {
		return TokenStatus{Known: true, Problem: "aucun jeton API Particulier n'est configuré pour votre collectivité ; demandez-le à l'administrateur d'apbatch"}
	}
	c, err := workers.DecodeToken(tok)
	if err != nil {
		return TokenStatus{Known: true, Problem: "le jeton configuré n'est pas lisible ; demandez à l'administrateur de le vérifier (apbatch token check)"}
	}
	return TokenStatus{Known: true, ID: c.ID, ExpiresAt: c.ExpiresAt, Expiry: workers.ExpiryAt(c.ExpiresAt, now), Scopes: c.Scopes}
}

// Portal serves the agents' pages and the JSON API.
type Portal struct {
	S3     *s3.Client
	Ledger *ledger.Store
	// Events receives the upload events of the files agents upload.
	Events pipeline.MessageWriter
	Log    zerolog.Logger
	// Exporter writes the downloads (S3 and Ledger are set from the
	// portal's when empty).
	Exporter *pipeline.Exporter
	// SessionKey signs the cookies (≥ 32 bytes), the same on every replica.
	SessionKey []byte
	// Secure marks the cookies Secure: outside the local mode, where the
	// portal is served over HTTPS.
	Secure bool
	// Local, in local mode, is the one-time sign-in link of the default
	// tenant; OIDC, in production, the external sign-in. One of them.
	Local *LocalSignIn
	OIDC  SignIn
	// APIKeys authenticate the JSON API (and the sign-in form in local
	// mode).
	APIKeys *APIKeys
	// Checks are those an upload runs when the agent ticks none: the
	// ingest role's default.
	Checks []schemas.Check
	// Tokens, when set, gives a tenant's token status (settings page).
	Tokens func(ctx context.Context, tenant string) TokenStatus
	// TmpDir receives uploads and exports while they are in transit.
	TmpDir string
	// Now is the clock; nil is time.Now.
	Now func() time.Time

	signer signer
	pages  map[string]*template.Template
}

func (p *Portal) now() time.Time {
	if p.Now != nil {
		return p.Now()
	}
	return time.Now()
}

// Handler returns the portal's routes behind its security headers.
func (p *Portal) Handler() (http.Handler, error) {
	if len(p.SessionKey) < 32 {
		return nil, errors.New("portal: the session key must hold at least 32 bytes")
	}
	if (p.Local == nil) == (p.OIDC == nil) {
		return nil, errors.New("portal: give either the local sign-in or OpenID Connect")
	}
	p.signer = signer{key: p.SessionKey}
	if p.Exporter == nil {
		p.Exporter = &pipeline.Exporter{TmpDir: p.TmpDir}
	}
	if p.Exporter.S3 == nil {
		p.Exporter.S3 = p.S3
	}
	if p.Exporter.Ledger == nil {
		p.Exporter.Ledger = p.Ledger
	}
	if err := p.parseTemplates(); err != nil {
		return nil, err
	}
	static, err := fs.Sub(staticFS, "static")
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.Handle("GET /static/", http.StripPrefix("/static/", http.FileServerFS(static)))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok\n")) })
	mux.HandleFunc("GET /{$}", p.home)
	mux.HandleFunc("GET /connexion", p.signInPage)
	mux.HandleFunc("POST /connexion", p.signInWithKey)
	mux.HandleFunc("GET /connexion/oidc", p.signInOIDC)
	mux.HandleFunc("GET /connexion/retour", p.signInReturn)
	mux.HandleFunc("POST /deconnexion", p.signOut)
	mux.HandleFunc("GET /lots", p.page(p.batchesPage))
	mux.HandleFunc("GET /lots/nouveau", p.page(p.uploadPage))
	mux.HandleFunc("POST /lots", p.page(p.uploadForm))
	mux.HandleFunc("GET /lots/{id}", p.page(p.batchPage))
	mux.HandleFunc("GET /lots/{id}/etat", p.page(p.batchState))
	mux.HandleFunc("GET /lots/{id}/{file}", p.page(p.download))
	mux.HandleFunc("POST /lots/{id}/annuler", p.page(p.cancelForm))
	mux.HandleFunc("GET /parametres", p.page(p.settingsPage))
	mux.HandleFunc("POST /parametres/{what}", p.page(p.settingsForm))
	mux.HandleFunc("GET /api/v1/openapi.json", p.openAPI)
	mux.HandleFunc("GET /api/v1/batches", p.api(p.apiList))
	mux.HandleFunc("POST /api/v1/batches", p.api(p.apiCreate))
	mux.HandleFunc("GET /api/v1/batches/{id}", p.api(p.apiGet))
	mux.HandleFunc("GET /api/v1/batches/{id}/{file}", p.api(p.apiDownload))
	mux.HandleFunc("POST /api/v1/batches/{id}/cancel", p.api(p.apiCancel))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/api/") {
			apiError(w, http.StatusNotFound, "adresse inconnue", "consultez /api/v1/openapi.json pour la liste des routes")
			return
		}
		p.errorPage(w, r, http.StatusNotFound, "Page introuvable", "Cette adresse ne correspond à aucune page. Revenez à la liste de vos lots.")
	})
	return p.logged(secureHeaders(mux)), nil
}

// csp is the portal's Content-Security-Policy: its own files only, no
// inline script or style, no framing.
const csp = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; " +
	"form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

// secureHeaders sets the security headers of every answer.
func secureHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", csp)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Referrer-Policy", "same-origin")
		h.Set("Cache-Control", "no-store")
		next.ServeHTTP(w, r)
	})
}

// statusRecorder keeps the status of an answer for the log.
type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (s *statusRecorder) WriteHeader(code int) {
	if s.status == 0 {
		s.status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Write(b []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	return s.ResponseWriter.Write(b)
}

// logged logs each request by its route pattern, never its URL (which may
// hold a sign-in code) nor anything posted.
func (p *Portal) logged(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := &statusRecorder{ResponseWriter: w}
		next.ServeHTTP(rec, r)
		ev := p.Log.Debug()
		if rec.status >= 500 {
			ev = p.Log.Warn()
		}
		ev.Str("component", "web").Str("method", r.Method).Str("route", r.Pattern).Int("status", rec.status).
			Dur("took", time.Since(start)).Msg("request")
	})
}

// page wraps the handler of a page for signed-in agents: others are sent
// to the sign-in page; posted forms must carry the CSRF token.
func (p *Portal) page(h func(w http.ResponseWriter, r *http.Request, s session)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		s, ok := p.sessionOf(r)
		if !ok {
			if r.Method == http.MethodGet && !strings.HasSuffix(r.URL.Path, "/etat") {
				http.Redirect(w, r, "/connexion", http.StatusSeeOther)
				return
			}
			p.errorPage(w, r, http.StatusUnauthorized, "Session expirée", "Votre session a expiré ou vous n'êtes pas connecté. Connectez-vous à nouveau.")
			return
		}
		h(w, r, s)
	}
}

// batchOf returns the batch named in r's path if it belongs to tenant;
// another tenant's batch is not found, as an unknown one.
func (p *Portal) batchOf(r *http.Request, tenant string) (ledger.Batch, error) {
	id := r.PathValue("id")
	if len(id) > 64 {
		return ledger.Batch{}, ledger.ErrNotFound
	}
	b, err := p.Ledger.Batch(r.Context(), id)
	if err != nil {
		return b, err
	}
	if b.Tenant != tenant {
		return ledger.Batch{}, ledger.ErrNotFound
	}
	return b, nil
}

// tenantBatches returns the tenant's batches, newest first.
func (p *Portal) tenantBatches(ctx context.Context, tenant string) ([]pipeline.BatchView, error) {
	bs, err := p.Ledger.TenantBatches(ctx, tenant, "")
	if err != nil {
		return nil, err
	}
	out := make([]pipeline.BatchView, 0, len(bs))
	for i := len(bs) - 1; i >= 0; i-- {
		v, err := pipeline.ViewBatch(ctx, p.Ledger, bs[i], p.now())
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, nil
}

// exportFormat returns the export format of a download's file name.
func exportFormat(file string) (string, bool) {
	switch file {
	case "resultats.xlsx":
		return pipeline.FormatXLSX, true
	case "resultats.csv":
		return pipeline.FormatCSV, true
	case "resultats.parquet":
		return pipeline.FormatParquet, true
	}
	return "", false
}

// contentTypes of the downloads.
var contentTypes = map[string]string{
	pipeline.FormatXLSX:    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
	pipeline.FormatCSV:     "text/csv; charset=utf-8",
	pipeline.FormatParquet: "application/vnd.apache.parquet",
}

// internal logs an unexpected error (without the request) and says what
// to do.
func (p *Portal) internal(err error) string {
	p.Log.Error().Str("component", "web").Err(err).Msg("request failed")
	return "Une erreur inattendue s'est produite ; réessayez dans un instant. Si elle persiste, signalez-la à l'administrateur d'apbatch avec l'heure (" +
		p.now().Format("02/01/2006 15:04") + ")."
}

// schoolYear is the campaign an upload defaults to: the school year of
// now in Paris, as YYYY-09.
func (p *Portal) schoolYear() string {
	return pipeline.SchoolYearCampaign(p.now().In(paris))
}

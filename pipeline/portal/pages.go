package portal

import (
	"bytes"
	"errors"
	"fmt"
	"html/template"
	"io"
	"mime/multipart"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/apbatch/apbatch/pipeline"
	"github.com/apbatch/apbatch/pipeline/ledger"
	"github.com/apbatch/apbatch/pipeline/s3"
	"github.com/apbatch/apbatch/schemas"
)

// view is what every page template gets.
type view struct {
	Title   string
	Tenant  string
	CSRF    string
	Nav     string
	Notice  string // role="status"
	Problem string // role="alert"
	Data    any
}

// notices are the messages a redirect names in its query (?m=): codes,
// never personal data.
var notices = map[string]string{
	"annule":     "Le lot est annulé : aucun nouvel appel ne sera fait ; ses résultats déjà obtenus sont téléchargeables.",
	"reutilise":  "Ce fichier avait déjà été vérifié pour cette campagne : voici son lot, sans nouvel appel.",
	"depose":     "Fichier reçu : la vérification commence. Cette page se met à jour toute seule.",
	"tarifs":     "La grille tarifaire est enregistrée ; elle s'appliquera aux prochains dépôts.",
	"colonnes":   "La correspondance de colonnes est enregistrée ; elle s'appliquera aux prochains dépôts.",
	"deconnecte": "Vous êtes déconnecté.",
}

var funcs = template.FuncMap{
	"eta":         pipeline.FormatETA,
	"statusLabel": func(s schemas.Status) string { return s.Label() },
	"checkLabel":  func(c schemas.Check) string { return c.Label() },
	"date": func(t time.Time) string {
		return t.In(paris).Format("02/01/2006 à 15:04")
	},
	"day": func(t time.Time) string { return t.In(paris).Format("02/01/2006") },
	"count": func(m map[schemas.Status]int64, s any) int64 {
		return m[schemas.Status(fmt.Sprint(s))]
	},
	"statuses": func() []schemas.Status { return schemas.Statuses },
	"price":    func(s string) string { return strings.Replace(s, ".", ",", 1) + " €" },
}

// paris is the time zone agents read dates in.
var paris = func() *time.Location {
	l, err := time.LoadLocation("Europe/Paris")
	if err != nil {
		return time.UTC
	}
	return l
}()

// parseTemplates reads each page with the layout.
func (p *Portal) parseTemplates() error {
	p.pages = map[string]*template.Template{}
	for _, name := range []string{"connexion", "lots", "nouveau", "lot", "parametres", "erreur"} {
		t, err := template.New("layout.html").Funcs(funcs).ParseFS(templateFS, "templates/layout.html", "templates/"+name+".html")
		if err != nil {
			return fmt.Errorf("portal: template %s: %w", name, err)
		}
		p.pages[name] = t
	}
	return nil
}

// render writes a page; a template error is logged and answered 500.
func (p *Portal) render(w http.ResponseWriter, r *http.Request, status int, name string, v view) {
	if v.CSRF == "" {
		v.CSRF = p.csrf(w, r)
	}
	if v.Notice == "" {
		v.Notice = notices[r.URL.Query().Get("m")]
	}
	var buf bytes.Buffer
	if err := p.pages[name].Execute(&buf, v); err != nil {
		p.Log.Error().Str("component", "web").Err(err).Str("page", name).Msg("render")
		http.Error(w, "erreur interne", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	w.Write(buf.Bytes())
}

// errorPage answers status with a page saying what happened and what to
// do next.
func (p *Portal) errorPage(w http.ResponseWriter, r *http.Request, status int, title, what string) {
	s, _ := p.sessionOf(r)
	p.render(w, r, status, "erreur", view{Title: title, Tenant: s.Tenant, Problem: what})
}

func (p *Portal) home(w http.ResponseWriter, r *http.Request) {
	if _, ok := p.sessionOf(r); ok {
		http.Redirect(w, r, "/lots", http.StatusSeeOther)
		return
	}
	http.Redirect(w, r, "/connexion", http.StatusSeeOther)
}

// signInData is the sign-in page's.
type signInData struct {
	// Local: the API key signs in; Link: a link printed by apbatch web too.
	Local, Link bool
}

func (p *Portal) signInPage(w http.ResponseWriter, r *http.Request) {
	if code := r.URL.Query().Get("jeton"); code != "" && p.Local != nil {
		if !p.Local.use(code) {
			p.render(w, r, http.StatusUnauthorized, "connexion", view{Title: "Connexion", Data: signInData{Local: true},
				Problem: "Ce lien de connexion a déjà servi ou n'est plus valable. Relancez « apbatch web » pour en obtenir un nouveau, ou saisissez la clé d'accès ci-dessous."})
			return
		}
		if err := p.setSession(w, Identity{Tenant: p.Local.Tenant, Subject: "local"}); err != nil {
			p.errorPage(w, r, http.StatusInternalServerError, "Erreur", p.internal(err))
			return
		}
		http.Redirect(w, r, "/lots", http.StatusSeeOther)
		return
	}
	if _, ok := p.sessionOf(r); ok {
		http.Redirect(w, r, "/lots", http.StatusSeeOther)
		return
	}
	p.render(w, r, http.StatusOK, "connexion", view{Title: "Connexion", Data: signInData{Local: p.Local != nil, Link: p.Local != nil && p.Local.Tenant != ""}})
}

// signInWithKey signs in with the tenant's API key (local mode).
func (p *Portal) signInWithKey(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 8<<10)
	if p.Local == nil {
		p.errorPage(w, r, http.StatusNotFound, "Page introuvable", "Connectez-vous avec le bouton de la page de connexion.")
		return
	}
	if !p.checkCSRF(r, r.PostFormValue("csrf")) {
		p.render(w, r, http.StatusForbidden, "connexion", view{Title: "Connexion", Data: signInData{Local: true},
			Problem: "Le formulaire a expiré. Saisissez à nouveau la clé d'accès."})
		return
	}
	tenant, ok := p.APIKeys.Tenant(r.PostFormValue("cle"))
	if !ok {
		p.render(w, r, http.StatusUnauthorized, "connexion", view{Title: "Connexion", Data: signInData{Local: true},
			Problem: "Cette clé d'accès n'est pas reconnue. Copiez-la depuis le fichier web-api.key du dossier de données d'apbatch, sans espace."})
		return
	}
	if err := p.setSession(w, Identity{Tenant: tenant, Subject: "api-key"}); err != nil {
		p.errorPage(w, r, http.StatusInternalServerError, "Erreur", p.internal(err))
		return
	}
	http.Redirect(w, r, "/lots", http.StatusSeeOther)
}

func (p *Portal) signInOIDC(w http.ResponseWriter, r *http.Request) {
	if p.OIDC == nil {
		http.Redirect(w, r, "/connexion", http.StatusSeeOther)
		return
	}
	p.OIDC.Begin(w, r)
}

func (p *Portal) signInReturn(w http.ResponseWriter, r *http.Request) {
	if p.OIDC == nil {
		http.Redirect(w, r, "/connexion", http.StatusSeeOther)
		return
	}
	id, err := p.OIDC.Finish(r.Context(), w, r)
	if err != nil {
		p.Log.Info().Str("component", "web").Err(err).Msg("sign-in refused")
		p.render(w, r, http.StatusForbidden, "connexion", view{Title: "Connexion", Data: signInData{}, Problem: err.Error()})
		return
	}
	if err := p.setSession(w, id); err != nil {
		p.errorPage(w, r, http.StatusInternalServerError, "Erreur", p.internal(err))
		return
	}
	p.Log.Info().Str("component", "web").Str("tenant", id.Tenant).Msg("signed in")
	http.Redirect(w, r, "/lots", http.StatusSeeOther)
}

func (p *Portal) signOut(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 8<<10)
	if !p.checkCSRF(r, r.PostFormValue("csrf")) {
		p.errorPage(w, r, http.StatusForbidden, "Formulaire expiré", "Le formulaire a expiré. Rechargez la page puis réessayez.")
		return
	}
	p.clearSession(w)
	http.Redirect(w, r, "/connexion?m=deconnecte", http.StatusSeeOther)
}

func (p *Portal) batchesPage(w http.ResponseWriter, r *http.Request, s session) {
	vs, err := p.tenantBatches(r.Context(), s.Tenant)
	if err != nil {
		p.errorPage(w, r, http.StatusInternalServerError, "Erreur", p.internal(err))
		return
	}
	p.render(w, r, http.StatusOK, "lots", view{Title: "Mes lots", Tenant: s.Tenant, Nav: "lots", Data: vs})
}

// uploadData is the upload page's.
type uploadData struct {
	Checks   []checkChoice
	Campaign string
	Grid     *schemas.TariffGrid
	MaxMB    int
	MaxXLSX  int
}

type checkChoice struct {
	Check   schemas.Check
	Checked bool
}

func (p *Portal) uploadPage(w http.ResponseWriter, r *http.Request, s session) {
	p.renderUpload(w, r, s, http.StatusOK, "", nil)
}

func (p *Portal) renderUpload(w http.ResponseWriter, r *http.Request, s session, status int, problem string, chosen []schemas.Check) {
	if chosen == nil {
		chosen = p.defaultChecks()
	}
	d := uploadData{Campaign: p.schoolYear(), MaxMB: pipeline.MaxFileSize >> 20, MaxXLSX: int(pipeline.SizeLimit("x.xlsx") >> 20)}
	for _, c := range schemas.Checks {
		d.Checks = append(d.Checks, checkChoice{Check: c, Checked: slices.Contains(chosen, c)})
	}
	d.Grid = p.grid(r, s.Tenant)
	p.render(w, r, status, "nouveau", view{Title: "Déposer un fichier", Tenant: s.Tenant, Nav: "nouveau", Problem: problem, Data: d})
}

func (p *Portal) defaultChecks() []schemas.Check {
	if len(p.Checks) > 0 {
		return p.Checks
	}
	return []schemas.Check{schemas.CheckQuotientFamilial}
}

// grid returns the tenant's tariff grid, nil when it has none (or it does
// not read).
func (p *Portal) grid(r *http.Request, tenant string) *schemas.TariffGrid {
	raw, err := pipeline.ReadConfig(r.Context(), p.S3, pipeline.TariffKey(tenant))
	if err != nil || raw == nil {
		return nil
	}
	g, err := schemas.ParseTariffGrid(raw)
	if err != nil {
		return nil
	}
	return &g
}

// upload is what an upload form or API call posted.
type upload struct {
	file     string
	body     *os.File
	size     int64
	cleanup  func()
	checks   []schemas.Check
	campaign string
	csrf     string
	// headerRow is the line of the file's header, 0: found by the reader.
	headerRow int
}

// uploadError is a refusal of an upload, in French, with its status.
type uploadError struct {
	status int
	msg    string
}

func (e *uploadError) Error() string { return e.msg }

// readUpload streams a multipart upload: its fields, and its file spooled
// to TmpDir within the size limits.
func (p *Portal) readUpload(w http.ResponseWriter, r *http.Request) (*upload, error) {
	r.Body = http.MaxBytesReader(w, r.Body, pipeline.MaxFileSize+1<<20)
	mr, err := r.MultipartReader()
	if err != nil {
		return nil, &uploadError{http.StatusBadRequest, "le formulaire n'a pas été envoyé comme un dépôt de fichier (multipart/form-data, champ « file »)"}
	}
	up := &upload{}
	fail := func(e error) (*upload, error) {
		if up.cleanup != nil {
			up.cleanup()
		}
		return nil, e
	}
	var checks []string
	for {
		part, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			var mbe *http.MaxBytesError
			if errors.As(err, &mbe) {
				return fail(&uploadError{http.StatusRequestEntityTooLarge, pipeline.TooLarge("x.csv").Error()})
			}
			return fail(&uploadError{http.StatusBadRequest, "l'envoi du fichier a été interrompu ; réessayez"})
		}
		switch part.FormName() {
		case "file":
			if up.body != nil || part.FileName() == "" {
				part.Close()
				continue
			}
			up.file = part.FileName()
			f, size, cleanup, err := pipeline.SpoolUpload(part, p.TmpDir, up.file)
			part.Close()
			if err != nil {
				status := http.StatusBadRequest
				if errors.Is(err, pipeline.ErrTooLarge) {
					status = http.StatusRequestEntityTooLarge
				}
				var mbe *http.MaxBytesError
				if errors.As(err, &mbe) {
					return fail(&uploadError{http.StatusRequestEntityTooLarge, pipeline.TooLarge(up.file).Error()})
				}
				return fail(&uploadError{status, err.Error()})
			}
			up.body, up.size, up.cleanup = f, size, cleanup
		case "checks", "campaign", "csrf", "header_row":
			b, err := io.ReadAll(io.LimitReader(part, 4<<10))
			part.Close()
			if err != nil {
				return fail(&uploadError{http.StatusBadRequest, "l'envoi du formulaire a été interrompu ; réessayez"})
			}
			v := strings.TrimSpace(string(b))
			switch part.FormName() {
			case "checks":
				checks = append(checks, v)
			case "campaign":
				up.campaign = v
			case "csrf":
				up.csrf = v
			case "header_row":
				if v == "" {
					break
				}
				n, err := strconv.Atoi(v)
				if err != nil || n < 1 || n > 1000 {
					return fail(&uploadError{http.StatusBadRequest, "la ligne des en-têtes doit être un numéro de ligne du fichier (1, 2, 3…), ou rester vide pour qu'apbatch la trouve"})
				}
				up.headerRow = n
			}
		default:
			part.Close()
		}
	}
	if up.body == nil {
		return fail(&uploadError{http.StatusBadRequest, "aucun fichier n'a été choisi : choisissez le fichier CSV ou Excel de vos familles"})
	}
	if up.size == 0 {
		return fail(&uploadError{http.StatusBadRequest, "le fichier « " + baseName(up.file) + " » est vide : enregistrez-le à nouveau depuis votre logiciel, puis déposez-le"})
	}
	if joined := strings.Join(checks, ","); strings.Trim(joined, ", ") != "" {
		cs, err := schemas.ParseChecks(joined)
		if err != nil {
			return fail(&uploadError{http.StatusBadRequest, "vérifications inconnues (" + err.Error() + ")"})
		}
		up.checks = cs
	}
	return up, nil
}

// baseName is the name of an uploaded file without its folders.
func baseName(f string) string {
	f = strings.ReplaceAll(f, `\`, "/")
	if i := strings.LastIndex(f, "/"); i >= 0 {
		f = f[i+1:]
	}
	return f
}

// submit hands an upload to the pipeline and waits briefly for its batch.
// reused is set when the same content was verified before in the campaign.
func (p *Portal) submit(r *http.Request, tenant string, up *upload) (b ledger.Batch, reused bool, err error) {
	campaign := up.campaign
	if campaign == "" {
		campaign = p.schoolYear()
	}
	if !pipeline.ValidTenant(campaign) {
		return b, false, &uploadError{http.StatusBadRequest, "la campagne « " + campaign + " » n'est pas valable : écrivez-la comme 2026-09 (lettres, chiffres, « - », « _ » ou « . »)"}
	}
	checks := up.checks
	if len(checks) == 0 {
		checks = p.defaultChecks()
	}
	name := baseName(up.file)
	if _, err := pipeline.ParseIncomingKey(pipeline.IncomingKey{Tenant: tenant, Campaign: campaign, File: name}.String()); err != nil {
		return b, false, &uploadError{http.StatusBadRequest, "le nom du fichier n'est pas accepté : renommez-le avec des lettres, des chiffres et « - » (par exemple familles-2026.csv)"}
	}
	started := p.now()
	sub, err := pipeline.Submit(r.Context(), p.S3, p.Events, pipeline.Submission{Tenant: tenant, Campaign: campaign, File: name,
		Body: up.body, Size: up.size, Checks: checks, HeaderRow: up.headerRow})
	if err != nil {
		if errors.Is(err, pipeline.ErrTooLarge) {
			return b, false, &uploadError{http.StatusRequestEntityTooLarge, err.Error()}
		}
		return b, false, err
	}
	p.Log.Info().Str("component", "web").Str("tenant", tenant).Str("batch_id", sub.BatchID).Msg("roster uploaded")
	b, err = pipeline.WaitRecorded(r.Context(), p.Ledger, sub.BatchID, 15*time.Second)
	if errors.Is(err, ledger.ErrNotFound) {
		// The ingest role is busy: the batch appears in the list soon.
		return ledger.Batch{ID: sub.BatchID, Tenant: tenant, Campaign: campaign, State: "received"}, false, nil
	}
	if err != nil {
		return b, false, err
	}
	reused = b.CreatedAt.Before(started.Add(-time.Second))
	if reused && b.Checks != schemas.JoinChecks(checks) {
		return b, true, &uploadError{http.StatusConflict, fmt.Sprintf("ce fichier a déjà été vérifié pour la campagne %s avec d'autres vérifications (lot %s) ; "+
			"pour lancer d'autres vérifications sur le même fichier, choisissez une autre campagne", campaign, b.ID)}
	}
	return b, reused, nil
}

func (p *Portal) uploadForm(w http.ResponseWriter, r *http.Request, s session) {
	up, err := p.readUpload(w, r)
	if err != nil {
		p.uploadRefused(w, r, s, err, nil)
		return
	}
	defer up.cleanup()
	if !p.checkCSRF(r, up.csrf) {
		p.renderUpload(w, r, s, http.StatusForbidden, "Le formulaire a expiré : choisissez à nouveau le fichier, puis déposez-le.", up.checks)
		return
	}
	b, reused, err := p.submit(r, s.Tenant, up)
	if err != nil {
		p.uploadRefused(w, r, s, err, up.checks)
		return
	}
	m := "depose"
	if reused {
		m = "reutilise"
	}
	http.Redirect(w, r, "/lots/"+url.PathEscape(b.ID)+"?m="+m, http.StatusSeeOther)
}

func (p *Portal) uploadRefused(w http.ResponseWriter, r *http.Request, s session, err error, checks []schemas.Check) {
	var ue *uploadError
	if errors.As(err, &ue) {
		p.renderUpload(w, r, s, ue.status, "Fichier refusé : "+ue.msg+".", checks)
		return
	}
	p.renderUpload(w, r, s, http.StatusInternalServerError, p.internal(err), checks)
}

// batchData is the batch page's.
type batchData struct {
	pipeline.BatchView
	Corrections []pipeline.Correction
	More        int
}

// maxCorrections is how many lines to correct the batch page lists.
const maxCorrections = 100

func (p *Portal) batchPage(w http.ResponseWriter, r *http.Request, s session) {
	b, err := p.batchOf(r, s.Tenant)
	if errors.Is(err, ledger.ErrNotFound) {
		p.errorPage(w, r, http.StatusNotFound, "Lot introuvable", "Ce lot n'existe pas ou n'appartient pas à votre collectivité. Revenez à la liste de vos lots.")
		return
	}
	if err != nil {
		p.errorPage(w, r, http.StatusInternalServerError, "Erreur", p.internal(err))
		return
	}
	v, err := pipeline.ViewBatch(r.Context(), p.Ledger, b, p.now())
	if err != nil {
		p.errorPage(w, r, http.StatusInternalServerError, "Erreur", p.internal(err))
		return
	}
	d := batchData{BatchView: v}
	if v.Published() && v.RowsByStatus[schemas.StatusInvalidInput] > 0 {
		cs, n, err := pipeline.Corrections(r.Context(), p.Exporter, b.ID, maxCorrections)
		if err != nil {
			p.Log.Warn().Str("component", "web").Str("batch_id", b.ID).Err(err).Msg("lines to correct not read")
		}
		d.Corrections, d.More = cs, n-len(cs)
	}
	p.render(w, r, http.StatusOK, "lot", view{Title: "Lot " + v.File, Tenant: s.Tenant, Nav: "lots", Data: d})
}

// batchState answers the live progress of a batch page (JSON).
func (p *Portal) batchState(w http.ResponseWriter, r *http.Request, s session) {
	p.apiGet(w, r, s.Tenant)
}

func (p *Portal) download(w http.ResponseWriter, r *http.Request, s session) {
	format, ok := exportFormat(r.PathValue("file"))
	if !ok {
		p.errorPage(w, r, http.StatusNotFound, "Page introuvable", "Ce fichier n'existe pas. Utilisez les boutons de téléchargement de la page du lot.")
		return
	}
	b, err := p.batchOf(r, s.Tenant)
	if errors.Is(err, ledger.ErrNotFound) {
		p.errorPage(w, r, http.StatusNotFound, "Lot introuvable", "Ce lot n'existe pas ou n'appartient pas à votre collectivité.")
		return
	}
	if err != nil {
		p.errorPage(w, r, http.StatusInternalServerError, "Erreur", p.internal(err))
		return
	}
	if err := p.sendExport(w, r, b, format); err != nil {
		var ue *uploadError
		if errors.As(err, &ue) {
			p.errorPage(w, r, ue.status, "Téléchargement impossible", ue.msg)
			return
		}
		p.errorPage(w, r, http.StatusInternalServerError, "Erreur", p.internal(err))
	}
}

// sendExport writes the batch's export into a temporary file, then sends
// it: a failure is an error page, not a truncated file.
func (p *Portal) sendExport(w http.ResponseWriter, r *http.Request, b ledger.Batch, format string) error {
	if !b.Published() {
		return &uploadError{http.StatusConflict, "Les résultats de ce lot ne sont pas encore prêts (" + pipeline.StateLabel(b.State) + "). Revenez quand la vérification est terminée."}
	}
	f, err := os.CreateTemp(p.TmpDir, "export-*")
	if err != nil {
		return err
	}
	defer func() { f.Close(); os.Remove(f.Name()) }()
	if _, err := p.Exporter.Export(r.Context(), b.ID, format, f); err != nil {
		if errors.Is(err, pipeline.ErrInputReplaced) {
			return &uploadError{http.StatusGone, err.Error()}
		}
		return err
	}
	size, err := f.Seek(0, io.SeekCurrent)
	if err != nil {
		return err
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return err
	}
	w.Header().Set("Content-Type", contentTypes[format])
	w.Header().Set("Content-Disposition", `attachment; filename="resultats.`+format+`"`)
	w.Header().Set("Content-Length", fmt.Sprint(size))
	_, err = io.Copy(w, f)
	return err
}

func (p *Portal) cancelForm(w http.ResponseWriter, r *http.Request, s session) {
	r.Body = http.MaxBytesReader(w, r.Body, 8<<10)
	if !p.checkCSRF(r, r.PostFormValue("csrf")) {
		p.errorPage(w, r, http.StatusForbidden, "Formulaire expiré", "Le formulaire a expiré. Rechargez la page du lot puis réessayez.")
		return
	}
	b, err := p.batchOf(r, s.Tenant)
	if errors.Is(err, ledger.ErrNotFound) {
		p.errorPage(w, r, http.StatusNotFound, "Lot introuvable", "Ce lot n'existe pas ou n'appartient pas à votre collectivité.")
		return
	}
	if err == nil {
		_, err = p.cancel(r, b)
	}
	if err != nil {
		var ue *uploadError
		if errors.As(err, &ue) {
			p.errorPage(w, r, ue.status, "Annulation impossible", ue.msg)
			return
		}
		p.errorPage(w, r, http.StatusInternalServerError, "Erreur", p.internal(err))
		return
	}
	http.Redirect(w, r, "/lots/"+url.PathEscape(b.ID)+"?m=annule", http.StatusSeeOther)
}

// cancel cancels a running batch.
func (p *Portal) cancel(r *http.Request, b ledger.Batch) (ledger.Batch, error) {
	if b.Ended() {
		return b, &uploadError{http.StatusConflict, "Ce lot est déjà " + pipeline.StateLabel(b.State) + " : il n'y a plus rien à annuler."}
	}
	nb, err := pipeline.CancelBatch(r.Context(), p.S3, p.Ledger, b.ID, 5*time.Second)
	if err != nil {
		return nb, err
	}
	p.Log.Info().Str("component", "web").Str("tenant", b.Tenant).Str("batch_id", b.ID).Msg("batch cancelled")
	return nb, nil
}

// settingsData is the settings page's.
type settingsData struct {
	Grid    *schemas.TariffGrid
	Columns map[string]string
	Token   TokenStatus
}

func (p *Portal) settingsPage(w http.ResponseWriter, r *http.Request, s session) {
	p.renderSettings(w, r, s, http.StatusOK, "")
}

func (p *Portal) renderSettings(w http.ResponseWriter, r *http.Request, s session, status int, problem string) {
	d := settingsData{Grid: p.grid(r, s.Tenant)}
	if raw, err := pipeline.ReadConfig(r.Context(), p.S3, pipeline.ColumnsKey(s.Tenant)); err == nil && raw != nil {
		d.Columns, _ = pipeline.ParseColumns(raw)
	}
	if p.Tokens != nil {
		d.Token = p.Tokens(r.Context(), s.Tenant)
	}
	p.render(w, r, status, "parametres", view{Title: "Paramètres", Tenant: s.Tenant, Nav: "parametres", Problem: problem, Data: d})
}

// maxConfigSize bounds a grid or mapping file.
const maxConfigSize = 64 << 10

func (p *Portal) settingsForm(w http.ResponseWriter, r *http.Request, s session) {
	what := r.PathValue("what")
	var key, label string
	var check func([]byte) error
	switch what {
	case "tarifs":
		key, label = pipeline.TariffKey(s.Tenant), "La grille tarifaire"
		check = func(b []byte) error { _, err := schemas.ParseTariffGrid(b); return err }
	case "colonnes":
		key, label = pipeline.ColumnsKey(s.Tenant), "La correspondance de colonnes"
		check = func(b []byte) error { _, err := pipeline.ParseColumns(b); return err }
	default:
		p.errorPage(w, r, http.StatusNotFound, "Page introuvable", "Revenez à la page des paramètres.")
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxConfigSize+8<<10)
	if err := r.ParseMultipartForm(maxConfigSize + 8<<10); err != nil {
		p.renderSettings(w, r, s, http.StatusBadRequest, label+" n'a pas été reçue : choisissez un fichier YAML de moins de 64 Ko.")
		return
	}
	if !p.checkCSRF(r, r.FormValue("csrf")) {
		p.renderSettings(w, r, s, http.StatusForbidden, "Le formulaire a expiré : choisissez à nouveau le fichier.")
		return
	}
	raw, err := formFile(r.MultipartForm, "file")
	if err != nil {
		p.renderSettings(w, r, s, http.StatusBadRequest, label+" n'a pas été reçue : choisissez un fichier YAML.")
		return
	}
	if err := check(raw); err != nil {
		p.renderSettings(w, r, s, http.StatusBadRequest, label+" est refusée : "+err.Error()+". Corrigez le fichier, puis déposez-le à nouveau.")
		return
	}
	if _, err := p.S3.Put(r.Context(), key, bytes.NewReader(raw), int64(len(raw)), "application/yaml"); err != nil {
		p.renderSettings(w, r, s, http.StatusInternalServerError, p.internal(err))
		return
	}
	p.Log.Info().Str("component", "web").Str("tenant", s.Tenant).Str("config", what).Msg("configuration updated")
	http.Redirect(w, r, "/parametres?m="+what, http.StatusSeeOther)
}

// formFile reads the file field name of a parsed multipart form.
func formFile(f *multipart.Form, name string) ([]byte, error) {
	if f == nil || len(f.File[name]) == 0 {
		return nil, s3.ErrNotFound
	}
	fh, err := f.File[name][0].Open()
	if err != nil {
		return nil, err
	}
	defer fh.Close()
	return io.ReadAll(io.LimitReader(fh, maxConfigSize+1))
}

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/oauth2-proxy/mockoidc"
	"golang.org/x/text/encoding/charmap"
)

// webSample is the roster agents upload in the portal's tests (18 rows).
const webSample = "../../deploy/samples/cantine-mairie.csv"

// sampleWords returns the personal data of a Windows-1252 roster like
// webSample: children's and parents' names and birth dates.
func sampleWords(t *testing.T, roster []byte) []string {
	t.Helper()
	text, err := charmap.Windows1252.NewDecoder().Bytes(roster)
	if err != nil {
		t.Fatal(err)
	}
	var words []string
	for i, line := range strings.Split(string(text), "\n") {
		f := strings.Split(strings.TrimSpace(line), ";")
		if i == 0 || len(f) < 7 {
			continue
		}
		for _, col := range []int{1, 3, 4, 6} {
			for _, w := range strings.FieldsFunc(f[col], func(r rune) bool { return r == ' ' || r == ',' }) {
				if len(w) >= 4 {
					words = append(words, w)
				}
			}
		}
	}
	if len(words) < 20 {
		t.Fatalf("the roster's personal data was not read: %v", words)
	}
	return words
}

// Sirets of the test's two collectivités, and their tenants.
const (
	webSiretA = "21750001600019"
	webSiretB = "21690123100011"
)

// webAgent is a mockoidc user whose ID token carries a siret claim.
type webAgent struct{ sub, siret string }

func (a *webAgent) ID() string { return a.sub }

func (a *webAgent) Userinfo([]string) ([]byte, error) {
	return json.Marshal(map[string]any{"sub": a.sub, "siret": a.siret})
}

func (a *webAgent) Claims(_ []string, base *mockoidc.IDTokenClaims) (jwt.Claims, error) {
	raw, err := json.Marshal(base)
	if err != nil {
		return nil, err
	}
	claims := jwt.MapClaims{}
	if err := json.Unmarshal(raw, &claims); err != nil {
		return nil, err
	}
	claims["siret"] = a.siret
	return claims, nil
}

// webPortal is an "apbatch web" process of the test.
type webPortal struct {
	base   string
	log    *syncBuffer
	keys   map[string]string // tenant → API key
	dir    string
	stopFn func()
}

// startWeb runs "apbatch web" with args until the test ends; with an OIDC
// provider, agents of ville-a and ville-b sign in through it, and both
// tenants have an API key.
func startWeb(t *testing.T, ctx context.Context, idp *mockoidc.MockOIDC, args ...string) *webPortal {
	t.Helper()
	dir := t.TempDir()
	addr := freeAddr(t)
	wp := &webPortal{base: "http://" + addr, log: &syncBuffer{}, dir: dir, keys: map[string]string{}}
	keysDir := filepath.Join(dir, "keys")
	if err := os.Mkdir(keysDir, 0o700); err != nil {
		t.Fatal(err)
	}
	for _, tenant := range []string{"ville-a", "ville-b"} {
		k := "key-" + tenant + "-" + randomHexForTest(t)
		wp.keys[tenant] = k
		if err := os.WriteFile(filepath.Join(keysDir, tenant+".key"), []byte(k+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	vars := map[string]string{"APBATCH_WEB_API_KEYS_DIR": keysDir}
	if idp != nil {
		vars["APBATCH_OIDC_ISSUER"] = idp.Issuer()
		vars["APBATCH_OIDC_CLIENT_ID"] = idp.ClientID
		vars["APBATCH_OIDC_CLIENT_SECRET"] = idp.ClientSecret
		vars["APBATCH_OIDC_REDIRECT_URL"] = wp.base + "/connexion/retour"
		vars["APBATCH_OIDC_TENANTS"] = webSiretA + "=ville-a," + webSiretB + "=ville-b"
		// mockoidc knows no "siret" scope; the claim comes regardless.
		vars["APBATCH_OIDC_SCOPES"] = "openid,email"
	}
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		e := env{stdout: io.Discard, stderr: wp.log, getenv: func(k string) string { return vars[k] }}
		all := append([]string{"web", "--listen", addr, "--data-dir", filepath.Join(dir, "data"), "--flush-interval", "300ms",
			"--log-level", "debug"}, args...)
		if code := runMain(ctx, e, all); code != 0 && ctx.Err() == nil {
			t.Errorf("web: exit %d\n%s", code, wp.log.String())
		}
	}()
	wp.stopFn = func() { cancel(); wg.Wait() }
	t.Cleanup(wp.stopFn)
	for {
		if r, err := http.Get(wp.base + "/healthz"); err == nil {
			r.Body.Close()
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("the portal did not start:\n%s", wp.log.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	return wp
}

func randomHexForTest(t *testing.T) string {
	t.Helper()
	return fmt.Sprintf("%x", time.Now().UnixNano())
}

// browser returns an HTTP client with its own cookies that does not follow
// redirects to other pages of the portal blindly: it follows them (the
// OIDC flow needs it) and keeps its cookies.
func browser(t *testing.T) *http.Client {
	t.Helper()
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &http.Client{Jar: jar, Timeout: 30 * time.Second}
}

// get returns the status and body of a GET.
func get(t *testing.T, c *http.Client, u string, header ...string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// postForm posts a form and returns the status and body.
func postForm(t *testing.T, c *http.Client, u string, form url.Values) (int, string) {
	t.Helper()
	resp, err := c.PostForm(u, form)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

var csrfPattern = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// csrfOf returns the CSRF token of a page's forms.
func csrfOf(t *testing.T, page string) string {
	t.Helper()
	m := csrfPattern.FindStringSubmatch(page)
	if m == nil {
		t.Fatalf("no CSRF token in the page:\n%s", page)
	}
	return m[1]
}

// multipartBody builds an upload of a file and fields.
func multipartBody(t *testing.T, name string, content io.Reader, fields map[string]string) (*bytes.Buffer, string) {
	t.Helper()
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	for k, v := range fields {
		mw.WriteField(k, v)
	}
	fw, err := mw.CreateFormFile("file", name)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(fw, content); err != nil {
		t.Fatal(err)
	}
	mw.Close()
	return &buf, mw.FormDataContentType()
}

// apiUpload posts a roster to the JSON API with key and returns the
// status and decoded answer.
func apiUpload(t *testing.T, base, key, name string, body []byte, fields map[string]string) (int, map[string]any) {
	t.Helper()
	buf, ct := multipartBody(t, name, bytes.NewReader(body), fields)
	req, _ := http.NewRequest(http.MethodPost, base+"/api/v1/batches", buf)
	req.Header.Set("Content-Type", ct)
	req.Header.Set("Authorization", "Bearer "+key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatalf("answer %d is not JSON: %v", resp.StatusCode, err)
	}
	return resp.StatusCode, out
}

// apiWaitComplete polls the API until batch id is complete.
func apiWaitComplete(t *testing.T, ctx context.Context, base, key, id string) map[string]any {
	t.Helper()
	for {
		code, body := get(t, http.DefaultClient, base+"/api/v1/batches/"+id, "Authorization", "Bearer "+key)
		var b map[string]any
		json.Unmarshal([]byte(body), &b)
		if code == http.StatusOK && b["state"] == "complete" {
			return b
		}
		if ctx.Err() != nil || b["state"] == "failed" {
			t.Fatalf("batch %s not complete: %d %s", id, code, body)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// signInOIDC signs an agent in through the provider; it returns the
// final page.
func signInOIDC(t *testing.T, c *http.Client, idp *mockoidc.MockOIDC, base string, agent *webAgent) (int, string) {
	t.Helper()
	idp.QueueUser(agent)
	return get(t, c, base+"/connexion/oidc")
}

// TestWeb_API: the JSON API answers as its documentation says: upload
// (201, id and state), list, get (rows_total and rows_by_status once
// complete), the three exports, cancel of an ended batch refused, errors
// in French JSON; the OpenAPI file lists every route.
func TestWeb_API(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	wp := startWeb(t, ctx, nil, "--tenant", "ville-a", "--tariff", "../../deploy/samples/tarifs-cantine.yaml")
	key := wp.keys["ville-a"]
	sample, err := os.ReadFile(webSample)
	if err != nil {
		t.Fatal(err)
	}
	code, b := apiUpload(t, wp.base, key, "cantine-mairie.csv", sample, map[string]string{"checks": "qf", "campaign": "2026-09"})
	if code != http.StatusCreated || b["id"] == "" || b["state"] == nil {
		t.Fatalf("upload: %d %v", code, b)
	}
	id := b["id"].(string)
	done := apiWaitComplete(t, ctx, wp.base, key, id)
	if done["rows_total"].(float64) != 18 {
		t.Fatalf("rows_total %v, want 18", done["rows_total"])
	}
	byStatus := done["rows_by_status"].(map[string]any)
	sum := 0.0
	for _, n := range byStatus {
		sum += n.(float64)
	}
	if sum != 18 || byStatus["ok"] == nil {
		t.Fatalf("rows_by_status %v: want 18 results with ok ones", byStatus)
	}
	_, list := get(t, http.DefaultClient, wp.base+"/api/v1/batches", "Authorization", "Bearer "+key)
	if !strings.Contains(list, id) {
		t.Fatalf("list without the batch: %s", list)
	}
	for _, f := range []string{"resultats.xlsx", "resultats.csv", "resultats.parquet"} {
		code, body := get(t, http.DefaultClient, wp.base+"/api/v1/batches/"+id+"/"+f, "Authorization", "Bearer "+key)
		if code != http.StatusOK || len(body) < 100 {
			t.Fatalf("%s: %d, %d bytes", f, code, len(body))
		}
		if f == "resultats.csv" && !strings.Contains(body, "tarif") && !strings.Contains(body, "Tarif") {
			t.Fatalf("the CSV has no price column:\n%s", body[:min(len(body), 400)])
		}
	}
	req, _ := http.NewRequest(http.MethodPost, wp.base+"/api/v1/batches/"+id+"/cancel", nil)
	req.Header.Set("Authorization", "Bearer "+key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var e map[string]string
	json.NewDecoder(resp.Body).Decode(&e)
	resp.Body.Close()
	if resp.StatusCode != http.StatusConflict || !strings.Contains(e["detail"], "terminé") {
		t.Fatalf("cancel of a complete batch: %d %v", resp.StatusCode, e)
	}
	// Errors: JSON, French, with what to do.
	code, body := get(t, http.DefaultClient, wp.base+"/api/v1/batches")
	if code != http.StatusUnauthorized || !strings.Contains(body, "Authorization: Bearer") {
		t.Fatalf("no key: %d %s", code, body)
	}
	code, body = get(t, http.DefaultClient, wp.base+"/api/v1/batches/bnope", "Authorization", "Bearer "+key)
	if code != http.StatusNotFound || !strings.Contains(body, "lot introuvable") {
		t.Fatalf("unknown batch: %d %s", code, body)
	}
	code, b = apiUpload(t, wp.base, key, "vide.csv", nil, nil)
	if code != http.StatusBadRequest || !strings.Contains(b["detail"].(string), "vide") {
		t.Fatalf("empty file: %d %v", code, b)
	}
	_, spec := get(t, http.DefaultClient, wp.base+"/api/v1/openapi.json")
	for _, route := range []string{`"/batches"`, `"/batches/{id}"`, `"/batches/{id}/resultats.xlsx"`, `"/batches/{id}/resultats.csv"`,
		`"/batches/{id}/resultats.parquet"`, `"/batches/{id}/cancel"`} {
		if !strings.Contains(spec, route) {
			t.Errorf("openapi.json lacks %s", route)
		}
	}
	var doc map[string]any
	if err := json.Unmarshal([]byte(spec), &doc); err != nil || doc["openapi"] == nil {
		t.Fatalf("openapi.json: %v", err)
	}
}

// TestWeb_UploadLimits: a workbook over 50 MB is refused with 413 and a
// French message saying what to do, without the file being kept.
func TestWeb_UploadLimits(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	wp := startWeb(t, ctx, nil, "--tenant", "ville-a")
	big := io.LimitReader(zeros{}, 51<<20)
	pr, pw := io.Pipe()
	mw := multipart.NewWriter(pw)
	go func() {
		fw, _ := mw.CreateFormFile("file", "familles.xlsx")
		io.Copy(fw, big)
		mw.Close()
		pw.Close()
	}()
	req, _ := http.NewRequest(http.MethodPost, wp.base+"/api/v1/batches", pr)
	req.Header.Set("Content-Type", mw.FormDataContentType())
	req.Header.Set("Authorization", "Bearer "+wp.keys["ville-a"])
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var e map[string]string
	json.NewDecoder(resp.Body).Decode(&e)
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge || !strings.Contains(e["detail"], "50 Mo") || !strings.Contains(e["detail"], "CSV") {
		t.Fatalf("51 MB workbook: %d %v", resp.StatusCode, e)
	}
	tmp, _ := os.ReadDir(filepath.Join(wp.dir, "data", "tmp"))
	for _, f := range tmp {
		if strings.HasPrefix(f.Name(), "upload-") {
			t.Errorf("the refused upload was kept: %s", f.Name())
		}
	}
}

// TestWeb_HeaderRow: an upload names the line of its header (header_row,
// as --header-row) when titles stand above it; a value that is no line
// number is refused in French.
func TestWeb_HeaderRow(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	wp := startWeb(t, ctx, nil, "--tenant", "ville-a")
	roster, err := os.ReadFile(webSample)
	if err != nil {
		t.Fatal(err)
	}
	titled := append([]byte("Mairie de Ville-A;;;;;;\r\nInscrits cantine 2026;;;;;;\r\n"), roster...)
	key := wp.keys["ville-a"]
	if code, e := apiUpload(t, wp.base, key, "titre.csv", titled, map[string]string{"header_row": "zéro"}); code != http.StatusBadRequest ||
		!strings.Contains(fmt.Sprint(e["detail"]), "ligne des en-têtes") {
		t.Fatalf("header_row=zéro: %d %v", code, e)
	}
	code, b := apiUpload(t, wp.base, key, "titre.csv", titled, map[string]string{"header_row": "3"})
	if code != http.StatusCreated {
		t.Fatalf("header_row=3: %d %v", code, b)
	}
	done := apiWaitComplete(t, ctx, wp.base, key, fmt.Sprint(b["id"]))
	if done["rows_total"] != float64(18) {
		t.Fatalf("a roster under two title lines: %v rows, want 18", done["rows_total"])
	}
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// TestWeb_LocalSignIn: the printed link signs in once; the portal refuses
// to listen beyond loopback without OpenID Connect; pages need a session;
// forms need their CSRF token; every answer has the security headers.
func TestWeb_LocalSignIn(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	code, _, stderr := runApbatch(t, ctx, "web", "--listen", "0.0.0.0:0", "--data-dir", t.TempDir())
	if code == 0 || !strings.Contains(stderr, "loopback") {
		t.Fatalf("web on 0.0.0.0 without OIDC: exit %d\n%s", code, stderr)
	}
	wp := startWeb(t, ctx, nil, "--tenant", "ville-a")
	link := regexp.MustCompile(`http://\S+/connexion\?jeton=[0-9a-f]+`).FindString(wp.log.String())
	if link == "" {
		t.Fatalf("no sign-in link printed:\n%s", wp.log.String())
	}
	info, err := os.Stat(filepath.Join(wp.dir, "data", "web-api.key"))
	if err != nil || info.Mode().Perm() != 0o600 {
		t.Fatalf("web-api.key: %v %v", info, err)
	}
	anon := browser(t)
	if code, body := get(t, anon, wp.base+"/lots"); code != http.StatusOK || !strings.Contains(body, "Connexion") {
		t.Fatalf("/lots without a session: %d, want the sign-in page", code)
	}
	c := browser(t)
	code, page := get(t, c, link)
	if code != http.StatusOK || !strings.Contains(page, "Mes lots") {
		t.Fatalf("sign-in link: %d\n%s", code, page)
	}
	if code, page := get(t, browser(t), link); code != http.StatusUnauthorized || !strings.Contains(page, "déjà servi") {
		t.Fatalf("the link used twice: %d\n%s", code, page)
	}
	resp, err := c.Get(wp.base + "/lots")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	for h, want := range map[string]string{"Content-Security-Policy": "default-src 'none'", "X-Frame-Options": "DENY", "X-Content-Type-Options": "nosniff"} {
		if !strings.Contains(resp.Header.Get(h), want) {
			t.Errorf("header %s = %q", h, resp.Header.Get(h))
		}
	}
	u, _ := url.Parse(wp.base)
	for _, ck := range c.Jar.Cookies(u) {
		if ck.Name == "apbatch_session" && ck.Value == "" {
			t.Error("empty session cookie")
		}
	}
	// CSRF: a form posted without its token, or with another browser's,
	// changes nothing.
	_, settings := get(t, c, wp.base+"/parametres")
	token := csrfOf(t, settings)
	other := browser(t)
	get(t, other, link) // a used link: this browser has a csrf cookie of its own but no session
	for name, form := range map[string]url.Values{"none": {}, "forged": {"csrf": {"x" + token}}} {
		if code, _ := postForm(t, c, wp.base+"/deconnexion", form); code != http.StatusForbidden {
			t.Errorf("sign-out with CSRF token %s: %d, want 403", name, code)
		}
	}
	if code, page := postForm(t, c, wp.base+"/deconnexion", url.Values{"csrf": {token}}); code != http.StatusOK || !strings.Contains(page, "déconnecté") {
		t.Fatalf("sign-out: %d", code)
	}
	if code, body := get(t, c, wp.base+"/lots"); code != http.StatusOK || !strings.Contains(body, "Clé d'accès") {
		t.Fatalf("after sign-out /lots: %d", code)
	}
	// The API key signs in too (the local mode's fallback).
	_, signIn := get(t, c, wp.base+"/connexion")
	raw, _ := os.ReadFile(filepath.Join(wp.dir, "data", "web-api.key"))
	if code, page := postForm(t, c, wp.base+"/connexion", url.Values{"csrf": {csrfOf(t, signIn)}, "cle": {strings.TrimSpace(string(raw))}}); code != http.StatusOK || !strings.Contains(page, "Mes lots") {
		t.Fatalf("sign-in with the key: %d\n%s", code, page)
	}
}

// TestWeb_OIDCTenantIsolation: agents sign in through OpenID Connect, the
// tenant from their siret claim; an agent of ville-a never sees,
// downloads or cancels ville-b's batches, through the pages or the API;
// an unknown siret is refused in French; uploads need the CSRF token; no
// personal data reaches the logs.
func TestWeb_OIDCTenantIsolation(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	idp, err := mockoidc.Run()
	if err != nil {
		t.Fatal(err)
	}
	defer idp.Shutdown()
	wp := startWeb(t, ctx, idp, "--rate", "2")
	sample, err := os.ReadFile(webSample)
	if err != nil {
		t.Fatal(err)
	}
	// ville-b's batch, through its API key; slow enough to be running
	// when ville-a tries to cancel it.
	code, b := apiUpload(t, wp.base, wp.keys["ville-b"], "familles-b.csv", sample, nil)
	if code != http.StatusCreated {
		t.Fatalf("upload of ville-b: %d %v", code, b)
	}
	idB := b["id"].(string)

	// Unknown siret: refused, in French, without the siret.
	stranger := browser(t)
	code, page := signInOIDC(t, stranger, idp, wp.base, &webAgent{sub: "agent-x", siret: "99999999999999"})
	if code != http.StatusForbidden || !strings.Contains(page, "collectivité") || strings.Contains(page, "99999999999999") {
		t.Fatalf("unknown siret: %d\n%s", code, page)
	}
	a := browser(t)
	code, page = signInOIDC(t, a, idp, wp.base, &webAgent{sub: "agent-a", siret: webSiretA})
	if code != http.StatusOK || !strings.Contains(page, "Mes lots") || !strings.Contains(page, "ville-a") {
		t.Fatalf("sign-in of ville-a: %d\n%s", code, page)
	}
	if strings.Contains(page, idB) || strings.Contains(page, "familles-b.csv") {
		t.Fatal("ville-a's list shows ville-b's batch")
	}
	token := csrfOf(t, page)
	for _, path := range []string{"/lots/" + idB, "/lots/" + idB + "/etat", "/lots/" + idB + "/resultats.xlsx", "/lots/" + idB + "/resultats.csv", "/lots/" + idB + "/resultats.parquet"} {
		if code, body := get(t, a, wp.base+path); code != http.StatusNotFound || strings.Contains(body, "familles-b") {
			t.Errorf("ville-a GET %s: %d, want 404", path, code)
		}
	}
	if code, _ := postForm(t, a, wp.base+"/lots/"+idB+"/annuler", url.Values{"csrf": {token}}); code != http.StatusNotFound {
		t.Errorf("ville-a cancels ville-b's batch: %d, want 404", code)
	}
	keyA := wp.keys["ville-a"]
	for _, path := range []string{"/api/v1/batches/" + idB, "/api/v1/batches/" + idB + "/resultats.xlsx"} {
		if code, _ := get(t, http.DefaultClient, wp.base+path, "Authorization", "Bearer "+keyA); code != http.StatusNotFound {
			t.Errorf("ville-a's key GET %s: %d, want 404", path, code)
		}
	}
	req, _ := http.NewRequest(http.MethodPost, wp.base+"/api/v1/batches/"+idB+"/cancel", nil)
	req.Header.Set("Authorization", "Bearer "+keyA)
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusNotFound {
		t.Errorf("ville-a's key cancels ville-b's batch: %v %v", resp.StatusCode, err)
	}
	if _, list := get(t, http.DefaultClient, wp.base+"/api/v1/batches", "Authorization", "Bearer "+keyA); strings.Contains(list, idB) {
		t.Error("ville-a's API list holds ville-b's batch")
	}
	// A session cookie does not authorise API writes (no CSRF there).
	req, _ = http.NewRequest(http.MethodPost, wp.base+"/api/v1/batches/"+idB+"/cancel", nil)
	if resp, err := a.Do(req); err != nil || resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("API cancel with a session cookie: %v %v", resp.StatusCode, err)
	}

	// Upload through the page: refused without the CSRF token, accepted
	// with it; ville-b's agent does not see it.
	upload := func(fields map[string]string) (int, string) {
		buf, ct := multipartBody(t, "familles-a.csv", bytes.NewReader(sample), fields)
		resp, err := a.Post(wp.base+"/lots", ct, buf)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	if code, _ := upload(map[string]string{"checks": "qf"}); code != http.StatusForbidden {
		t.Fatalf("page upload without CSRF token: %d, want 403", code)
	}
	code, page = upload(map[string]string{"csrf": token, "checks": "qf", "campaign": "2026-09"})
	if code != http.StatusOK || !strings.Contains(page, "familles-a.csv") {
		t.Fatalf("page upload: %d\n%s", code, page)
	}
	bAgent := browser(t)
	if code, page := signInOIDC(t, bAgent, idp, wp.base, &webAgent{sub: "agent-b", siret: webSiretB}); code != http.StatusOK || strings.Contains(page, "familles-a.csv") || !strings.Contains(page, "familles-b.csv") {
		t.Fatalf("ville-b's list: %d, want its own batch only", code)
	}
	apiWaitComplete(t, ctx, wp.base, wp.keys["ville-b"], idB)

	for _, s := range []string{webSiretA, webSiretB, "familles-a.csv", "familles-b.csv", keyA, "jeton="} {
		if strings.Contains(wp.log.String(), s) {
			t.Errorf("the logs hold %q", s)
		}
	}
	for _, w := range sampleWords(t, sample) {
		if strings.Contains(wp.log.String(), w) {
			t.Errorf("the logs hold a roster's word %q", w)
		}
	}
}

// TestServe_WebRole: in production the portal is one more role: "serve
// --roles web" beside the pipeline's role processes, on Kafka, S3 and the
// ledger; a roster uploaded through its API is verified by the other
// roles and downloadable from it. Without OpenID Connect the role does
// not start, and says what to configure.
func TestServe_WebRole(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	environ, _ := roleServices(t, ctx)
	if code, _, stderr := runApbatchEnv(t, ctx, environ, "serve", "--roles", "web"); code == 0 || !strings.Contains(stderr, "APBATCH_OIDC_ISSUER") {
		t.Fatalf("web role without OIDC: exit %d\n%s", code, stderr)
	}
	idp, err := mockoidc.Run()
	if err != nil {
		t.Fatal(err)
	}
	defer idp.Shutdown()
	addr := freeAddr(t)
	keysDir := t.TempDir()
	if err := os.WriteFile(filepath.Join(keysDir, "ville-a.key"), []byte("cle-ville-a-0123456789\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for k, v := range map[string]string{"APBATCH_WEB_ADDR": addr, "APBATCH_WEB_API_KEYS_DIR": keysDir,
		"APBATCH_WEB_SESSION_KEY": strings.Repeat("ab", 32), "APBATCH_OIDC_ISSUER": idp.Issuer(),
		"APBATCH_OIDC_CLIENT_ID": idp.ClientID, "APBATCH_OIDC_CLIENT_SECRET": idp.ClientSecret,
		"APBATCH_OIDC_REDIRECT_URL": "http://" + addr + "/connexion/retour", "APBATCH_OIDC_TENANTS": webSiretA + "=ville-a",
		"APBATCH_OIDC_SCOPES": "openid,email"} {
		environ[k] = v
	}
	pipelineLog, stopPipeline := startServe(t, ctx, environ, "ingest,work,write")
	defer stopPipeline()
	webLog, stopWeb := startServe(t, ctx, environ, "web")
	defer stopWeb()
	base := "http://" + addr
	for {
		if r, err := http.Get(base + "/healthz"); err == nil {
			r.Body.Close()
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("the web role did not start:\n%s", webLog.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	sample, err := os.ReadFile(webSample)
	if err != nil {
		t.Fatal(err)
	}
	code, b := apiUpload(t, base, "cle-ville-a-0123456789", "cantine-mairie.csv", sample, map[string]string{"checks": "qf"})
	if code != http.StatusCreated {
		t.Fatalf("upload: %d %v\n%s", code, b, webLog.String())
	}
	done := apiWaitComplete(t, ctx, base, "cle-ville-a-0123456789", b["id"].(string))
	if done["rows_total"].(float64) != 18 {
		t.Fatalf("rows_total %v\n%s", done["rows_total"], pipelineLog.String())
	}
	if code, body := get(t, http.DefaultClient, base+"/api/v1/batches/"+b["id"].(string)+"/resultats.xlsx", "Authorization", "Bearer cle-ville-a-0123456789"); code != http.StatusOK || len(body) < 1000 {
		t.Fatalf("download: %d", code)
	}
	a := browser(t)
	if code, page := signInOIDC(t, a, idp, base, &webAgent{sub: "agent-a", siret: webSiretA}); code != http.StatusOK || !strings.Contains(page, "cantine-mairie.csv") {
		t.Fatalf("agent's list: %d\n%s", code, page)
	}
	for _, w := range sampleWords(t, sample) {
		if strings.Contains(webLog.String(), w) {
			t.Errorf("the web role's logs hold a roster's word %q", w)
		}
	}
}

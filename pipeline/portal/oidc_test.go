package portal

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/oauth2-proxy/mockoidc"
	"golang.org/x/oauth2"
)

// Test data: a SIRET, an agent's email and subject that must never appear in
// an error.
const (
	siretA    = "21750001600019"
	siretB    = "21690123100011"
	siretNone = "99999999999999"
	email     = "agent.etat-civil@mairie.example"
	subject   = "sub-4f6c1e0a"
	// callbackPath is the redirect URL's path on the test portal.
	callbackPath = "/connexion/retour"
)

// testKey is a 32-byte HMAC key for the flow cookie.
var testKey = []byte("0123456789abcdef0123456789abcdef")

// agent is a mockoidc.User with extra claims in the ID token and at userinfo.
type agent struct {
	sub, email string
	idClaims   map[string]any // added to the ID token's claims
	info       map[string]any // added to (or overriding) userinfo's claims
}

func (a *agent) ID() string { return a.sub }

func (a *agent) Userinfo([]string) ([]byte, error) {
	claims := map[string]any{"sub": a.sub, "email": a.email}
	for k, v := range a.info {
		claims[k] = v
	}
	return json.Marshal(claims)
}

func (a *agent) Claims(_ []string, base *mockoidc.IDTokenClaims) (jwt.Claims, error) {
	raw, err := json.Marshal(base)
	if err != nil {
		return nil, err
	}
	claims := jwt.MapClaims{}
	if err := json.Unmarshal(raw, &claims); err != nil {
		return nil, err
	}
	claims["email"] = a.email
	for k, v := range a.idClaims {
		claims[k] = v
	}
	return claims, nil
}

// result is what the test portal's redirect handler got from Finish.
type result struct {
	id  Identity
	err error
}

// harness is a mockoidc provider and a test portal serving Begin at /connexion
// and Finish at /connexion/retour, with an agent's browser (a cookie jar).
type harness struct {
	idp     *mockoidc.MockOIDC
	app     *httptest.Server
	o       *OIDC
	browser *http.Client
	offset  atomic.Int64 // added to the portal's clock, in nanoseconds
	results chan result

	mu        sync.Mutex
	authorize url.Values // the last authorization request mockoidc received
	token     url.Values // the last token request mockoidc received
}

// now is the portal's clock: the real time plus offset.
func (h *harness) now() time.Time { return time.Now().Add(time.Duration(h.offset.Load())) }

// newHarness starts mockoidc and the portal; setup, if set, runs before both
// are started, to add middleware to the provider or change the portal's
// configuration. user is queued for the first sign-in.
func newHarness(t *testing.T, user mockoidc.User, setup func(*harness)) *harness {
	t.Helper()
	idp, err := mockoidc.NewServer(nil)
	if err != nil {
		t.Fatalf("mockoidc: %v", err)
	}
	h := &harness{idp: idp, results: make(chan result, 1)}
	if err := idp.AddMiddleware(h.record); err != nil {
		t.Fatal(err)
	}

	mux := http.NewServeMux()
	mux.HandleFunc("/connexion", func(w http.ResponseWriter, r *http.Request) { h.o.Begin(w, r) })
	mux.HandleFunc(callbackPath, func(w http.ResponseWriter, r *http.Request) {
		id, err := h.o.Finish(r.Context(), w, r)
		h.results <- result{id, err}
		if err != nil {
			http.Error(w, err.Error(), http.StatusForbidden)
			return
		}
		fmt.Fprintln(w, id.Tenant)
	})
	h.app = httptest.NewServer(mux)
	t.Cleanup(h.app.Close)

	h.o = &OIDC{
		ClientID:     idp.ClientID,
		ClientSecret: idp.ClientSecret,
		RedirectURL:  h.app.URL + callbackPath,
		// mockoidc knows no "siret" scope; the claim is sent regardless.
		Scopes:     []string{"email"},
		Tenants:    map[string]string{siretA: "ville-a", siretB: "ville-b"},
		Key:        testKey,
		HTTPClient: &http.Client{Timeout: 10 * time.Second},
		now:        h.now,
	}
	if setup != nil {
		setup(h)
	}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if err := idp.Start(ln, nil); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = idp.Shutdown() })
	if user != nil {
		idp.QueueUser(user)
	}

	h.o.Issuer = idp.Issuer()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := h.o.Open(ctx); err != nil {
		t.Fatalf("Open: %v", err)
	}

	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	h.browser = &http.Client{Jar: jar, Timeout: 10 * time.Second}
	return h
}

// record is mockoidc middleware keeping the authorization and token requests.
func (h *harness) record(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case mockoidc.AuthorizationEndpoint:
			h.mu.Lock()
			h.authorize = r.URL.Query()
			h.mu.Unlock()
		case mockoidc.TokenEndpoint:
			if err := r.ParseForm(); err == nil {
				h.mu.Lock()
				h.token = cloneValues(r.PostForm)
				h.mu.Unlock()
			}
		}
		next.ServeHTTP(w, r)
	})
}

func cloneValues(v url.Values) url.Values {
	out := url.Values{}
	for k, vs := range v {
		out[k] = append([]string(nil), vs...)
	}
	return out
}

// signIn runs a whole sign-in in the browser: Begin, mockoidc's authorization
// endpoint, then Finish on the redirect URL; it returns what Finish returned.
func (h *harness) signIn(t *testing.T) result {
	t.Helper()
	resp, err := h.browser.Get(h.app.URL + "/connexion")
	if err != nil {
		t.Fatalf("sign-in: %v", err)
	}
	resp.Body.Close()
	select {
	case res := <-h.results:
		return res
	case <-time.After(10 * time.Second):
		t.Fatalf("sign-in: Finish never ran (last status %d at %s)", resp.StatusCode, resp.Request.URL.Path)
		return result{}
	}
}

// flowCookieLeft reports whether the browser still holds the flow cookie.
func (h *harness) flowCookieLeft(t *testing.T) bool {
	t.Helper()
	u, err := url.Parse(h.app.URL + callbackPath)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range h.browser.Jar.Cookies(u) {
		if c.Name == flowCookie {
			return true
		}
	}
	return false
}

// onPath returns middleware that runs do instead of (or, if do calls next,
// around) the endpoint at path.
func onPath(path string, do func(w http.ResponseWriter, r *http.Request, next http.Handler)) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path != path {
				next.ServeHTTP(w, r)
				return
			}
			do(w, r, next)
		})
	}
}

// rewriteQuery returns middleware that sets key to value in the authorization
// request before mockoidc reads it.
func rewriteQuery(key, value string) func(http.Handler) http.Handler {
	return onPath(mockoidc.AuthorizationEndpoint, func(w http.ResponseWriter, r *http.Request, next http.Handler) {
		q := r.URL.Query()
		q.Set(key, value)
		r.URL.RawQuery = q.Encode()
		next.ServeHTTP(w, r)
	})
}

// redirectError returns middleware making the authorization endpoint send the
// agent back with an error parameter (and the right state).
func redirectError(code string) func(http.Handler) http.Handler {
	return onPath(mockoidc.AuthorizationEndpoint, func(w http.ResponseWriter, r *http.Request, _ http.Handler) {
		q := r.URL.Query()
		to := q.Get("redirect_uri") + "?" + url.Values{"error": {code}, "state": {q.Get("state")}}.Encode()
		http.Redirect(w, r, to, http.StatusFound)
	})
}

// tokenError returns middleware making the token endpoint fail with status
// and an OAuth error whose description holds the code, as some providers do.
func tokenError(status int, code string) func(http.Handler) http.Handler {
	return onPath(mockoidc.TokenEndpoint, func(w http.ResponseWriter, r *http.Request, _ http.Handler) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_ = json.NewEncoder(w).Encode(map[string]string{
			"error": code, "error_description": "Invalid code: " + r.FormValue("code"),
		})
	})
}

// signedUserinfo returns middleware turning mockoidc's JSON userinfo into a
// JWT signed with the provider's key, as ProConnect answers.
func signedUserinfo(idp *mockoidc.MockOIDC) func(http.Handler) http.Handler {
	return onPath(mockoidc.UserinfoEndpoint, func(w http.ResponseWriter, r *http.Request, next http.Handler) {
		rec := httptest.NewRecorder()
		next.ServeHTTP(rec, r)
		claims := jwt.MapClaims{}
		if rec.Code != http.StatusOK || json.Unmarshal(rec.Body.Bytes(), &claims) != nil {
			http.Error(w, "userinfo", http.StatusInternalServerError)
			return
		}
		signed, err := idp.Keypair.SignJWT(claims)
		if err != nil {
			http.Error(w, "sign", http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/jwt")
		_, _ = w.Write([]byte(signed))
	})
}

// checkRefusal fails unless err is want, refused at the step whose cause
// contains step (any step if ""), and its text is exactly want's sentence: it
// then holds neither claim values, email, subject, code nor token.
func checkRefusal(t *testing.T, err, want error, step string, secrets ...string) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("error = %v, want %v", err, want)
	}
	var fe *flowError
	if !errors.As(err, &fe) {
		t.Fatalf("error %T is not a *flowError", err)
	}
	if cause := fmt.Sprint(fe.cause); !strings.Contains(cause, step) {
		t.Errorf("refused at %q, want the step %q", cause, step)
	}
	if err.Error() != want.Error() {
		t.Errorf("error text = %q, want exactly %q", err.Error(), want.Error())
	}
	for _, s := range secrets {
		if s != "" && strings.Contains(err.Error(), s) {
			t.Errorf("error text %q contains %q", err.Error(), s)
		}
	}
}

func TestOIDC_Finish(t *testing.T) {
	withSiret := func(v any) *agent {
		return &agent{sub: subject, email: email, idClaims: map[string]any{"siret": v}}
	}
	tests := []struct {
		name       string
		user       *agent
		setup      func(*harness)
		wantTenant string
		wantErr    error
		wantStep   string // part of the refusal's cause
	}{
		{name: "siret in the ID token", user: withSiret(siretA), wantTenant: "ville-a"},
		{name: "siret as a JSON number", user: withSiret(int64(21690123100011)), wantTenant: "ville-b"},
		{name: "siret with spaces around", user: withSiret(" " + siretA + " "), wantTenant: "ville-a"},
		{
			name:       "siret at userinfo only",
			user:       &agent{sub: subject, email: email, info: map[string]any{"siret": siretB}},
			wantTenant: "ville-b",
		},
		{
			name: "siret at a signed userinfo (application/jwt)",
			user: &agent{sub: subject, email: email, info: map[string]any{"siret": siretA}},
			setup: func(h *harness) {
				_ = h.idp.AddMiddleware(signedUserinfo(h.idp))
			},
			wantTenant: "ville-a",
		},
		{
			name: "configured tenant claim",
			user: &agent{sub: subject, email: email, idClaims: map[string]any{"organization": "org-7", "siret": siretA}},
			setup: func(h *harness) {
				h.o.TenantClaim = "organization"
				h.o.Tenants = map[string]string{"org-7": "ville-7"}
			},
			wantTenant: "ville-7",
		},
		{name: "siret not in the tenant map", user: withSiret(siretNone), wantErr: ErrUnknownTenant, wantStep: "<nil>"},
		{name: "no siret anywhere", user: &agent{sub: subject, email: email}, wantErr: ErrNoTenant, wantStep: "nor at userinfo"},
		{name: "siret of the wrong type", user: withSiret([]string{siretA}), wantErr: ErrNoTenant, wantStep: "nor at userinfo"},
		{
			name:     "userinfo for another subject",
			user:     &agent{sub: subject, email: email, info: map[string]any{"sub": "someone-else", "siret": siretA}},
			wantErr:  ErrInvalid,
			wantStep: "userinfo subject differs",
		},
		{
			name:     "state changed on the way",
			user:     withSiret(siretA),
			setup:    func(h *harness) { _ = h.idp.AddMiddleware(rewriteQuery("state", "forged-state")) },
			wantErr:  ErrInvalid,
			wantStep: "state differs",
		},
		{
			name:     "nonce changed on the way",
			user:     withSiret(siretA),
			setup:    func(h *harness) { _ = h.idp.AddMiddleware(rewriteQuery("nonce", "forged-nonce")) },
			wantErr:  ErrInvalid,
			wantStep: "nonce differs",
		},
		{
			name: "ID token for another client (audience)",
			user: withSiret(siretA),
			setup: func(h *harness) {
				// The portal says it is "other-client"; the provider is told
				// the real client, so the ID token's audience is not the portal.
				real := h.o.ClientID
				h.o.ClientID = "other-client"
				_ = h.idp.AddMiddleware(func(next http.Handler) http.Handler {
					return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
						switch r.URL.Path {
						case mockoidc.AuthorizationEndpoint:
							q := r.URL.Query()
							q.Set("client_id", real)
							r.URL.RawQuery = q.Encode()
						case mockoidc.TokenEndpoint:
							_ = r.ParseForm()
							r.PostForm.Set("client_id", real)
							r.Form.Set("client_id", real)
						}
						next.ServeHTTP(w, r)
					})
				})
			},
			wantErr:  ErrInvalid,
			wantStep: "expected audience",
		},
		{
			name:     "ID token already expired",
			user:     withSiret(siretA),
			setup:    func(h *harness) { h.idp.AccessTTL = -time.Minute },
			wantErr:  ErrInvalid,
			wantStep: "token is expired",
		},
		{
			name: "flow cookie expired at the provider",
			user: withSiret(siretA),
			setup: func(h *harness) {
				_ = h.idp.AddMiddleware(onPath(mockoidc.AuthorizationEndpoint, func(w http.ResponseWriter, r *http.Request, next http.Handler) {
					h.offset.Store(int64(flowTTL + time.Second))
					next.ServeHTTP(w, r)
				}))
			},
			wantErr:  ErrExpired,
			wantStep: "flow cookie refused",
		},
		{name: "agent cancels", user: withSiret(siretA), setup: func(h *harness) { _ = h.idp.AddMiddleware(redirectError("access_denied")) }, wantErr: ErrDenied, wantStep: "error access_denied"},
		{name: "provider unavailable", user: withSiret(siretA), setup: func(h *harness) { _ = h.idp.AddMiddleware(redirectError("temporarily_unavailable")) }, wantErr: ErrUnavailable, wantStep: "error temporarily_unavailable"},
		{name: "code refused", user: withSiret(siretA), setup: func(h *harness) { _ = h.idp.AddMiddleware(tokenError(http.StatusBadRequest, "invalid_grant")) }, wantErr: ErrExpired, wantStep: "HTTP 400 invalid_grant"},
		{name: "token endpoint fails", user: withSiret(siretA), setup: func(h *harness) { _ = h.idp.AddMiddleware(tokenError(http.StatusInternalServerError, "server_error")) }, wantErr: ErrUnavailable, wantStep: "HTTP 500 server_error"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, tt.user, tt.setup)
			res := h.signIn(t)
			if h.flowCookieLeft(t) {
				t.Error("the flow cookie is still in the browser after Finish")
			}
			if tt.wantErr != nil {
				h.mu.Lock()
				code := h.token.Get("code")
				h.mu.Unlock()
				checkRefusal(t, res.err, tt.wantErr, tt.wantStep, siretA, siretB, siretNone, email, subject, code)
				if res.id != (Identity{}) {
					t.Errorf("identity = %+v on error", res.id)
				}
				return
			}
			if res.err != nil {
				t.Fatalf("Finish: %v", res.err)
			}
			if want := (Identity{Tenant: tt.wantTenant, Subject: subject}); res.id != want {
				t.Errorf("identity = %+v, want %+v", res.id, want)
			}
		})
	}
}

func TestOIDC_Finish_pkce(t *testing.T) {
	h := newHarness(t, &agent{sub: subject, email: email, idClaims: map[string]any{"siret": siretA}}, nil)
	if res := h.signIn(t); res.err != nil {
		t.Fatalf("Finish: %v", res.err)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if got := h.authorize.Get("code_challenge_method"); got != "S256" {
		t.Errorf("authorization request code_challenge_method = %q, want S256", got)
	}
	challenge, verifier := h.authorize.Get("code_challenge"), h.token.Get("code_verifier")
	if challenge == "" || verifier == "" {
		t.Fatalf("code_challenge %q, code_verifier %q: want both", challenge, verifier)
	}
	if want := oauth2.S256ChallengeFromVerifier(verifier); challenge != want {
		t.Errorf("code_challenge = %q, want S256(code_verifier) = %q", challenge, want)
	}
	if strings.Contains(h.authorize.Encode(), verifier) {
		t.Error("the PKCE verifier itself reached the authorization request")
	}
	if h.authorize.Get("nonce") == "" || h.authorize.Get("state") == "" {
		t.Errorf("authorization request lacks state or nonce: %v", h.authorize)
	}
}

func TestOIDC_Begin(t *testing.T) {
	h := newHarness(t, nil, func(h *harness) { h.o.Scopes = nil; h.o.Secure = true })

	w := httptest.NewRecorder()
	h.o.Begin(w, httptest.NewRequest(http.MethodGet, "/connexion", nil))
	resp := w.Result()
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("status = %d, want 302", resp.StatusCode)
	}
	loc, err := url.Parse(resp.Header.Get("Location"))
	if err != nil {
		t.Fatal(err)
	}
	if got := loc.Scheme + "://" + loc.Host + loc.Path; got != h.idp.AuthorizationEndpoint() {
		t.Errorf("redirect to %s, want the authorization endpoint %s", got, h.idp.AuthorizationEndpoint())
	}
	q := loc.Query()
	for key, want := range map[string]string{
		"response_type":         "code",
		"client_id":             h.idp.ClientID,
		"redirect_uri":          h.app.URL + callbackPath,
		"scope":                 "openid email siret",
		"code_challenge_method": "S256",
	} {
		if got := q.Get(key); got != want {
			t.Errorf("%s = %q, want %q", key, got, want)
		}
	}

	cookies := resp.Cookies()
	if len(cookies) != 1 || cookies[0].Name != flowCookie {
		t.Fatalf("cookies = %v, want one %s", cookies, flowCookie)
	}
	c := cookies[0]
	if !c.HttpOnly || !c.Secure || c.SameSite != http.SameSiteLaxMode || c.Path != "/connexion" || c.MaxAge != 600 {
		t.Errorf("cookie HttpOnly=%v Secure=%v SameSite=%v Path=%q MaxAge=%d, want true true Lax /connexion 600",
			c.HttpOnly, c.Secure, c.SameSite, c.Path, c.MaxAge)
	}
	f, err := h.o.open(c.Value)
	if err != nil {
		t.Fatalf("cookie does not open: %v", err)
	}
	if f.State != q.Get("state") || f.Nonce != q.Get("nonce") {
		t.Errorf("cookie state/nonce %q/%q, redirect %q/%q", f.State, f.Nonce, q.Get("state"), q.Get("nonce"))
	}
	if got := q.Get("code_challenge"); got != oauth2.S256ChallengeFromVerifier(f.Verifier) {
		t.Errorf("code_challenge %q is not S256 of the cookie's verifier", got)
	}
	if exp := time.Unix(f.Expires, 0); exp.Sub(h.now()) > flowTTL || exp.Sub(h.now()) < flowTTL-time.Minute {
		t.Errorf("cookie expires at %v, want about 10 minutes from now", exp)
	}
	if strings.Contains(resp.Header.Get("Location"), f.Verifier) {
		t.Error("the PKCE verifier is in the redirect")
	}

	// Each sign-in has its own state, nonce and verifier.
	w2 := httptest.NewRecorder()
	h.o.Begin(w2, httptest.NewRequest(http.MethodGet, "/connexion", nil))
	f2, err := h.o.open(w2.Result().Cookies()[0].Value)
	if err != nil {
		t.Fatal(err)
	}
	if f2.State == f.State || f2.Nonce == f.Nonce || f2.Verifier == f.Verifier {
		t.Error("two sign-ins share a state, nonce or verifier")
	}
}

func TestOIDC_scopes(t *testing.T) {
	tests := []struct {
		in   []string
		want string
	}{
		{nil, "openid email siret"},
		{[]string{"email"}, "openid email"},
		{[]string{"email", "openid", "siret", "email"}, "openid email siret"},
		{[]string{"openid"}, "openid"},
	}
	for _, tt := range tests {
		o := &OIDC{Scopes: tt.in}
		if got := strings.Join(o.scopes(), " "); got != tt.want {
			t.Errorf("scopes(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// TestOIDC_Finish_cookie checks the refusals that come before any request to
// the provider: the flow cookie, the state, the error parameter, the code.
func TestOIDC_Finish_cookie(t *testing.T) {
	h := newHarness(t, nil, nil)
	w := httptest.NewRecorder()
	h.o.Begin(w, httptest.NewRequest(http.MethodGet, "/connexion", nil))
	good := w.Result().Cookies()[0].Value
	f, err := h.o.open(good)
	if err != nil {
		t.Fatal(err)
	}
	other := &OIDC{Key: bytes.Repeat([]byte{7}, 32)}
	seal := func(o *OIDC, f flow) string {
		v, err := o.seal(f)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	body, sig, _ := strings.Cut(good, ".")
	longer := f
	longer.Expires += 3600
	longerBody, _, _ := strings.Cut(seal(h.o, longer), ".")
	past := f
	past.Expires = h.now().Add(-time.Second).Unix()
	flipped := []byte(sig)
	flipped[0] ^= 'A' ^ 'B'

	const code = "code-3d1f"
	tests := []struct {
		name   string
		cookie string // "" sends no cookie
		query  url.Values
		want   error
		step   string // part of the refusal's cause
	}{
		{"no cookie", "", url.Values{"state": {f.State}, "code": {code}}, ErrExpired, "no flow cookie"},
		{"expired cookie", seal(h.o, past), url.Values{"state": {f.State}, "code": {code}}, ErrExpired, "flow cookie refused"},
		{"expiry extended, old signature", longerBody + "." + sig, url.Values{"state": {f.State}, "code": {code}}, ErrInvalid, "flow cookie refused"},
		{"signature altered", body + "." + string(flipped), url.Values{"state": {f.State}, "code": {code}}, ErrInvalid, "flow cookie refused"},
		{"signature missing", body, url.Values{"state": {f.State}, "code": {code}}, ErrInvalid, "flow cookie refused"},
		{"signature not base64", body + ".%%%", url.Values{"state": {f.State}, "code": {code}}, ErrInvalid, "flow cookie refused"},
		{"signed with another key", seal(other, f), url.Values{"state": {f.State}, "code": {code}}, ErrInvalid, "flow cookie refused"},
		{"signed but empty", seal(h.o, flow{Expires: f.Expires}), url.Values{"state": {""}, "code": {code}}, ErrInvalid, "flow cookie refused"},
		{"garbage", "garbage", url.Values{"state": {f.State}, "code": {code}}, ErrInvalid, "flow cookie refused"},
		{"state missing", good, url.Values{"code": {code}}, ErrInvalid, "state differs"},
		{"state mismatch", good, url.Values{"state": {f.State + "x"}, "code": {code}}, ErrInvalid, "state differs"},
		{"provider error", good, url.Values{"state": {f.State}, "error": {"access_denied"}}, ErrDenied, "error access_denied"},
		{"provider error, odd code", good, url.Values{"state": {f.State}, "error": {siretA}}, ErrDenied, "error (other)"},
		{"provider error, wrong state", good, url.Values{"state": {"x"}, "error": {"access_denied"}}, ErrInvalid, "state differs"},
		{"no code", good, url.Values{"state": {f.State}}, ErrInvalid, "without code"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodGet, callbackPath+"?"+tt.query.Encode(), nil)
			if tt.cookie != "" {
				r.AddCookie(&http.Cookie{Name: flowCookie, Value: tt.cookie})
			}
			w := httptest.NewRecorder()
			id, err := h.o.Finish(context.Background(), w, r)
			checkRefusal(t, err, tt.want, tt.step, code, f.State, f.Nonce, f.Verifier, siretA)
			if id != (Identity{}) {
				t.Errorf("identity = %+v on error", id)
			}
			cleared := false
			for _, c := range w.Result().Cookies() {
				cleared = cleared || (c.Name == flowCookie && c.MaxAge < 0 && c.Path == "/connexion")
			}
			if !cleared {
				t.Error("Finish did not clear the flow cookie")
			}
		})
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.token != nil {
		t.Error("a refused redirect reached the token endpoint")
	}
}

func TestOIDC_notOpen(t *testing.T) {
	o := &OIDC{}
	w := httptest.NewRecorder()
	o.Begin(w, httptest.NewRequest(http.MethodGet, "/connexion", nil))
	if w.Code != http.StatusServiceUnavailable {
		t.Errorf("Begin before Open: status %d, want 503", w.Code)
	}
	_, err := o.Finish(context.Background(), httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, callbackPath, nil))
	checkRefusal(t, err, ErrUnavailable, "before Open")
}

func TestOIDC_Finish_canceled(t *testing.T) {
	h := newHarness(t, nil, nil)
	w := httptest.NewRecorder()
	h.o.Begin(w, httptest.NewRequest(http.MethodGet, "/connexion", nil))
	c := w.Result().Cookies()[0]
	f, err := h.o.open(c.Value)
	if err != nil {
		t.Fatal(err)
	}
	r := httptest.NewRequest(http.MethodGet, callbackPath+"?"+url.Values{"state": {f.State}, "code": {"c"}}.Encode(), nil)
	r.AddCookie(c)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err = h.o.Finish(ctx, httptest.NewRecorder(), r)
	checkRefusal(t, err, ErrUnavailable, "context canceled")
	if !errors.Is(err, context.Canceled) {
		t.Errorf("error %v does not match context.Canceled", err)
	}
}

func TestOIDC_Open(t *testing.T) {
	missing := httptest.NewServer(http.NotFoundHandler())
	t.Cleanup(missing.Close)
	closed := httptest.NewServer(http.NotFoundHandler())
	closed.Close()

	for name, issuer := range map[string]string{"discovery 404": missing.URL, "issuer down": closed.URL} {
		t.Run(name, func(t *testing.T) {
			o := &OIDC{
				Issuer: issuer, ClientID: "c", RedirectURL: "https://portail.example/connexion/retour",
				Tenants: map[string]string{siretA: "ville-a"}, Key: testKey,
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			err := o.Open(ctx)
			if err == nil || !strings.Contains(err.Error(), issuer) {
				t.Fatalf("Open = %v, want an error naming %s", err, issuer)
			}
		})
	}

	t.Run("invalid configuration", func(t *testing.T) {
		err := (&OIDC{}).Open(context.Background())
		if err == nil || !strings.Contains(err.Error(), "Issuer") {
			t.Fatalf("Open = %v, want the Issuer field named", err)
		}
	})
}

func TestOIDC_Validate(t *testing.T) {
	valid := func() *OIDC {
		return &OIDC{
			Issuer: "https://idp.example", ClientID: "c", RedirectURL: "https://portail.example/connexion/retour",
			Tenants: map[string]string{siretA: "ville-a"}, Key: testKey,
		}
	}
	tests := []struct {
		name   string
		change func(*OIDC)
		want   string // "" for valid
	}{
		{"valid", func(*OIDC) {}, ""},
		{"redirect at /connexion itself", func(o *OIDC) { o.RedirectURL = "https://portail.example/connexion" }, ""},
		{"no issuer", func(o *OIDC) { o.Issuer = "" }, "Issuer"},
		{"relative issuer", func(o *OIDC) { o.Issuer = "idp.example" }, "Issuer"},
		{"no client", func(o *OIDC) { o.ClientID = "" }, "ClientID"},
		{"no redirect", func(o *OIDC) { o.RedirectURL = "" }, "RedirectURL"},
		{"redirect outside the cookie path", func(o *OIDC) { o.RedirectURL = "https://portail.example/retour" }, "RedirectURL"},
		{"redirect on a lookalike path", func(o *OIDC) { o.RedirectURL = "https://portail.example/connexions" }, "RedirectURL"},
		{"short key", func(o *OIDC) { o.Key = testKey[:31] }, "Key"},
		{"no tenants", func(o *OIDC) { o.Tenants = nil }, "Tenants"},
		{"bad tenant", func(o *OIDC) { o.Tenants = map[string]string{siretA: "ville a"} }, "Tenants"},
		{"empty claim value", func(o *OIDC) { o.Tenants = map[string]string{"": "ville-a"} }, "Tenants"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := valid()
			tt.change(o)
			err := o.Validate()
			switch {
			case tt.want == "" && err != nil:
				t.Errorf("Validate = %v, want nil", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Errorf("Validate = %v, want an error naming %s", err, tt.want)
			}
		})
	}
}

func TestParseTenantMap(t *testing.T) {
	tests := []struct {
		in      string
		want    map[string]string
		wantErr bool
	}{
		{in: "21750001600019=paris", want: map[string]string{"21750001600019": "paris"}},
		{in: "a=t1,b=t2", want: map[string]string{"a": "t1", "b": "t2"}},
		{in: " a = t1 , b=t2 ,", want: map[string]string{"a": "t1", "b": "t2"}},
		{in: "a=Ville_de.Lyon-3", want: map[string]string{"a": "Ville_de.Lyon-3"}},
		{in: "a=t1,,b=t1", want: map[string]string{"a": "t1", "b": "t1"}},
		{in: "", wantErr: true},
		{in: " , ", wantErr: true},
		{in: "a", wantErr: true},
		{in: "=t1", wantErr: true},
		{in: "a=", wantErr: true},
		{in: "a=t 1", wantErr: true},
		{in: "a=t/1", wantErr: true},
		{in: "a=b=c", wantErr: true},
		{in: "a=tenant-é", wantErr: true},
		{in: "a=t1,a=t2", wantErr: true},
		{in: "a=t1, a =t1", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseTenantMap(tt.in)
			if tt.wantErr {
				if err == nil {
					t.Fatalf("ParseTenantMap(%q) = %v, want an error", tt.in, got)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseTenantMap(%q): %v", tt.in, err)
			}
			if fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Errorf("ParseTenantMap(%q) = %v, want %v", tt.in, got, tt.want)
			}
		})
	}
}

func ExampleParseTenantMap() {
	tenants, err := ParseTenantMap("21750001600019=paris, 21690123100011=lyon")
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(tenants)
	// Output: map[21690123100011:lyon 21750001600019:paris]
}

func ExampleOIDC() {
	tenants, err := ParseTenantMap("21750001600019=paris")
	if err != nil {
		fmt.Println(err)
		return
	}
	signIn := &OIDC{
		Issuer:       "https://idp.example",
		ClientID:     "apbatch-portail",
		ClientSecret: "secret",
		RedirectURL:  "https://portail.example/connexion/retour",
		Tenants:      tenants,
		Key:          []byte("a key of at least thirty-two bytes!"),
		Secure:       true,
	}
	if err := signIn.Open(context.Background()); err != nil {
		fmt.Println(err)
		return
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /connexion", signIn.Begin)
	mux.HandleFunc("GET /connexion/retour", func(w http.ResponseWriter, r *http.Request) {
		id, err := signIn.Finish(r.Context(), w, r)
		switch {
		case errors.Is(err, ErrUnavailable):
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
		case errors.Is(err, ErrExpired), errors.Is(err, ErrInvalid):
			http.Error(w, err.Error(), http.StatusBadRequest)
		case err != nil:
			http.Error(w, err.Error(), http.StatusForbidden)
		default:
			// Start the portal's own session for id.Tenant and id.Subject.
			fmt.Fprintln(w, "Bienvenue,", id.Tenant)
		}
	})
}

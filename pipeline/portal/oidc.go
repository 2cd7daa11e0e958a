package portal

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"
)

// Names and lifetimes of the sign-in flow.
const (
	// flowCookie is the name of the short-lived cookie that carries a sign-in
	// from Begin to Finish.
	flowCookie = "apbatch_oidc"
	// flowPath is the path of the flow cookie: Begin and the redirect URL
	// must be served under it.
	flowPath = "/connexion"
	// flowTTL is how long a sign-in may take between Begin and Finish.
	flowTTL = 10 * time.Minute
	// minKeyLen is the shortest accepted HMAC key, in bytes.
	minKeyLen = 32
)

// Errors returned by Finish. Each one is a French sentence that says what the
// agent should do next, safe to show and to log: it never holds a claim value,
// an email, a code or a token. Callers choose the HTTP status with errors.Is:
// ErrExpired and ErrInvalid are the browser's to fix (400, or a redirect to the
// sign-in page), ErrDenied, ErrNoTenant and ErrUnknownTenant refuse the agent
// (403), ErrUnavailable is the provider's or apbatch's fault (502 or 503).
var (
	// ErrExpired: the flow cookie is missing or past its 10 minutes, or the
	// provider no longer accepts the code.
	ErrExpired error = notice("La connexion a expiré ; recommencez depuis la page de connexion.")
	// ErrInvalid: the flow cookie's signature, the state, the ID token or its
	// nonce did not check out, or the redirect carried no code.
	ErrInvalid error = notice("La connexion n'a pas pu être vérifiée ; recommencez depuis la page de connexion.")
	// ErrDenied: the provider returned an error parameter (the agent cancelled,
	// or the provider refused the sign-in).
	ErrDenied error = notice("La connexion a été refusée ou annulée auprès du fournisseur d'identité ; recommencez depuis la page de connexion, et contactez votre administrateur si le refus persiste.")
	// ErrUnavailable: the provider could not be reached or answered badly, or
	// the sign-in was not opened.
	ErrUnavailable error = notice("La connexion est momentanément indisponible ; réessayez dans quelques minutes.")
	// ErrNoTenant: neither the ID token nor the userinfo endpoint holds the
	// configured tenant claim.
	ErrNoTenant error = notice("Le fournisseur d'identité n'a pas transmis l'établissement de rattachement de votre compte ; demandez à l'administrateur de vérifier la configuration de la connexion.")
	// ErrUnknownTenant: the tenant claim's value is not in Tenants.
	ErrUnknownTenant error = notice("Votre compte n'est rattaché à aucune collectivité connue d'apbatch ; demandez à l'administrateur d'ajouter votre SIRET.")
)

// notice is a sentinel error whose text is a whole French sentence meant for
// the agent (capitalised and punctuated, unlike Go's usual error strings).
type notice string

func (n notice) Error() string { return string(n) }

// flowError is an error of Finish: its text is its kind's (one of the Err
// sentinels above); cause, when set, describes the failed step without
// personal data (a context error, go-oidc's verification error, or a fixed
// text), for errors.Is and errors.As only.
type flowError struct {
	kind  error
	cause error
}

func (e *flowError) Error() string { return e.kind.Error() }

func (e *flowError) Unwrap() []error {
	if e.cause == nil {
		return []error{e.kind}
	}
	return []error{e.kind, e.cause}
}

// fail returns an error of kind with an optional cause.
func fail(kind, cause error) error { return &flowError{kind: kind, cause: cause} }

// Identity is who signed in: the tenant (collectivité) and an opaque subject.
type Identity struct {
	// Tenant is the tenant that Tenants maps the agent's claim to.
	Tenant string
	// Subject is the provider's "sub" for the agent: stable for one provider,
	// meaningless elsewhere.
	Subject string
}

// OIDC signs agents in through an OpenID Connect provider (ProConnect, the
// State's sign-in for public agents, or any other): authorization code flow
// with PKCE (S256), state and nonce; the tenant comes from a configured claim
// mapped to a tenant.
//
// The flow keeps no server-side state: Begin puts the state, the nonce and the
// PKCE verifier in a short-lived cookie signed with Key (HMAC-SHA256), and
// Finish checks it. Both the page that calls Begin and RedirectURL must be
// served under /connexion, the cookie's path.
//
// Set the fields, then call Open once; after Open, Begin and Finish are safe
// for concurrent use. The fields must not change after Open.
type OIDC struct {
	// Issuer is the provider's issuer URL; discovery reads
	// Issuer + "/.well-known/openid-configuration". Required.
	Issuer string
	// ClientID is apbatch's client identifier at the provider. Required.
	ClientID string
	// ClientSecret is apbatch's client secret at the provider, sent in the
	// token request's body if discovery lists client_secret_post, else in
	// Basic authentication if it lists client_secret_basic, else whichever
	// the token endpoint accepts. Default: none.
	ClientSecret string
	// RedirectURL is the absolute URL the provider sends the agent back to,
	// where Finish runs; its path must be under /connexion. Required.
	RedirectURL string
	// Scopes are the scopes requested. Default: openid, email, siret
	// (ProConnect's scope names); openid is always included.
	Scopes []string
	// TenantClaim is the claim, in the ID token or else at the userinfo
	// endpoint, whose value Tenants maps to a tenant. Default: "siret".
	TenantClaim string
	// Tenants maps a TenantClaim value to a tenant (see ParseTenantMap); a
	// value absent from the map is refused. Required.
	Tenants map[string]string
	// Key is the HMAC-SHA256 key of the short-lived flow cookie: at least 32
	// random bytes, the same on every instance of the portal. Required.
	Key []byte
	// Secure marks the flow cookie Secure (sent over HTTPS only). Default:
	// false; set it in production.
	Secure bool
	// HTTPClient makes the requests to the provider (discovery, keys, token,
	// userinfo). Default: http.DefaultClient.
	HTTPClient *http.Client

	now      func() time.Time // Default: time.Now; tests use a fake clock.
	provider *oidc.Provider
	verifier *oidc.IDTokenVerifier
	config   *oauth2.Config
}

// Validate checks the configuration; its errors name the field.
func (o *OIDC) Validate() error {
	if err := checkURL(o.Issuer); err != nil {
		return fmt.Errorf("portal: oidc: Issuer: %w", err)
	}
	if o.ClientID == "" {
		return errors.New("portal: oidc: ClientID is required")
	}
	if err := checkURL(o.RedirectURL); err != nil {
		return fmt.Errorf("portal: oidc: RedirectURL: %w", err)
	}
	if u, _ := url.Parse(o.RedirectURL); u.Path != flowPath && !strings.HasPrefix(u.Path, flowPath+"/") {
		return fmt.Errorf("portal: oidc: RedirectURL: path %q is not under %s, the flow cookie's path", u.Path, flowPath)
	}
	if len(o.Key) < minKeyLen {
		return fmt.Errorf("portal: oidc: Key has %d bytes, want at least %d", len(o.Key), minKeyLen)
	}
	if len(o.Tenants) == 0 {
		return errors.New("portal: oidc: Tenants is empty: every sign-in would be refused")
	}
	for value, tenant := range o.Tenants {
		if value == "" {
			return errors.New("portal: oidc: Tenants: empty claim value")
		}
		if !validTenant(tenant) {
			return fmt.Errorf("portal: oidc: Tenants: tenant %q: want letters, digits, '.', '_' or '-'", tenant)
		}
	}
	return nil
}

// checkURL reports whether s is an absolute http or https URL.
func checkURL(s string) error {
	if s == "" {
		return errors.New("required")
	}
	u, err := url.Parse(s)
	if err != nil {
		return fmt.Errorf("parse: %w", err)
	}
	if (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return fmt.Errorf("%q is not an absolute http(s) URL", s)
	}
	return nil
}

// Open validates the configuration, reads the provider's discovery document
// and prepares the ID token verifier. It blocks until discovery answers or ctx
// is done. The signing keys are fetched later, when a token is first verified.
func (o *OIDC) Open(ctx context.Context) error {
	if err := o.Validate(); err != nil {
		return err
	}
	if o.now == nil {
		o.now = time.Now
	}
	ctx = o.clientContext(ctx)
	provider, err := oidc.NewProvider(ctx, o.Issuer)
	if err != nil {
		return fmt.Errorf("portal: oidc: discover issuer %s: %w", o.Issuer, err)
	}
	var meta struct {
		AuthMethods []string `json:"token_endpoint_auth_methods_supported"`
	}
	if err := provider.Claims(&meta); err != nil {
		return fmt.Errorf("portal: oidc: read discovery of issuer %s: %w", o.Issuer, err)
	}
	endpoint := provider.Endpoint()
	switch {
	case slices.Contains(meta.AuthMethods, "client_secret_post"):
		endpoint.AuthStyle = oauth2.AuthStyleInParams
	case slices.Contains(meta.AuthMethods, "client_secret_basic"):
		endpoint.AuthStyle = oauth2.AuthStyleInHeader
	}
	o.provider = provider
	o.verifier = provider.Verifier(&oidc.Config{ClientID: o.ClientID, Now: o.now})
	o.config = &oauth2.Config{
		ClientID:     o.ClientID,
		ClientSecret: o.ClientSecret,
		Endpoint:     endpoint,
		RedirectURL:  o.RedirectURL,
		Scopes:       o.scopes(),
	}
	return nil
}

// clientContext returns ctx carrying HTTPClient, if set, for go-oidc and oauth2.
func (o *OIDC) clientContext(ctx context.Context) context.Context {
	if o.HTTPClient == nil {
		return ctx
	}
	return oidc.ClientContext(ctx, o.HTTPClient)
}

// scopes returns Scopes or the default, with openid first and no duplicate.
func (o *OIDC) scopes() []string {
	in := o.Scopes
	if len(in) == 0 {
		in = []string{"email", "siret"}
	}
	out := []string{oidc.ScopeOpenID}
	for _, s := range in {
		if s != "" && !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out
}

// tenantClaim returns TenantClaim or its default.
func (o *OIDC) tenantClaim() string {
	if o.TenantClaim == "" {
		return "siret"
	}
	return o.TenantClaim
}

// flow is what the flow cookie carries from Begin to Finish.
type flow struct {
	State    string `json:"s"`
	Nonce    string `json:"n"`
	Verifier string `json:"v"`
	Expires  int64  `json:"e"` // Unix seconds
}

// seal encodes f as base64url(JSON) "." base64url(HMAC-SHA256).
func (o *OIDC) seal(f flow) (string, error) {
	payload, err := json.Marshal(f)
	if err != nil {
		return "", fmt.Errorf("portal: oidc: encode flow: %w", err)
	}
	body := base64.RawURLEncoding.EncodeToString(payload)
	return body + "." + base64.RawURLEncoding.EncodeToString(o.mac(body)), nil
}

// open decodes a value made by seal, checking its signature, then its expiry.
func (o *OIDC) open(value string) (flow, error) {
	body, sig, ok := strings.Cut(value, ".")
	if !ok {
		return flow{}, ErrInvalid
	}
	got, err := base64.RawURLEncoding.DecodeString(sig)
	if err != nil || !hmac.Equal(got, o.mac(body)) {
		return flow{}, ErrInvalid
	}
	payload, err := base64.RawURLEncoding.DecodeString(body)
	if err != nil {
		return flow{}, ErrInvalid
	}
	var f flow
	if err := json.Unmarshal(payload, &f); err != nil || f.State == "" || f.Nonce == "" || f.Verifier == "" {
		return flow{}, ErrInvalid
	}
	if !o.now().Before(time.Unix(f.Expires, 0)) {
		return flow{}, ErrExpired
	}
	return f, nil
}

// mac is the HMAC-SHA256 of the cookie's name and body under Key.
func (o *OIDC) mac(body string) []byte {
	m := hmac.New(sha256.New, o.Key)
	m.Write([]byte(flowCookie + "." + body)) // a hash.Hash's Write never fails
	return m.Sum(nil)
}

// Begin starts a sign-in: sets a signed, HttpOnly, SameSite=Lax cookie
// "apbatch_oidc" holding state, nonce, PKCE verifier and expiry (10 min), path
// "/connexion", and redirects (302) to the provider. Before Open it answers
// 503.
func (o *OIDC) Begin(w http.ResponseWriter, r *http.Request) {
	if o.config == nil {
		http.Error(w, ErrUnavailable.Error(), http.StatusServiceUnavailable)
		return
	}
	f := flow{
		State:    rand.Text(),
		Nonce:    rand.Text(),
		Verifier: oauth2.GenerateVerifier(),
		Expires:  o.now().Add(flowTTL).Unix(),
	}
	value, err := o.seal(f)
	if err != nil {
		http.Error(w, ErrUnavailable.Error(), http.StatusInternalServerError)
		return
	}
	http.SetCookie(w, &http.Cookie{
		Name:     flowCookie,
		Value:    value,
		Path:     flowPath,
		MaxAge:   int(flowTTL / time.Second),
		Secure:   o.Secure,
		HttpOnly: true,
		SameSite: http.SameSiteLaxMode,
	})
	w.Header().Set("Cache-Control", "no-store")
	to := o.config.AuthCodeURL(f.State, oauth2.S256ChallengeOption(f.Verifier), oidc.Nonce(f.Nonce))
	http.Redirect(w, r, to, http.StatusFound)
}

// clear removes the flow cookie.
func (o *OIDC) clear(w http.ResponseWriter) {
	http.SetCookie(w, &http.Cookie{
		Name:     flowCookie,
		Value:    "",
		Path:     flowPath,
		MaxAge:   -1,
		Secure:   o.Secure,
		HttpOnly: true,
		SameSite: http.SameSiteLaxMode,
	})
}

// Finish completes a sign-in on the redirect URL: checks the cookie's
// signature and expiry, the state, the provider's error parameter, exchanges
// the code with the PKCE verifier, verifies the ID token (audience, issuer,
// expiry) and its nonce, reads TenantClaim from the ID token claims or else
// from the userinfo endpoint (plain or signed JSON, whose subject must be the
// ID token's), maps it through Tenants, and clears the flow cookie, whatever
// the outcome: a flow is tried once.
//
// Finish only sets the cookie on w; the caller writes the response. It blocks
// on the token and userinfo requests until they answer or ctx is done. Its
// errors are the Err sentinels' French sentences (see ErrExpired).
func (o *OIDC) Finish(ctx context.Context, w http.ResponseWriter, r *http.Request) (Identity, error) {
	if o.config == nil {
		return Identity{}, fail(ErrUnavailable, errors.New("portal: oidc: Finish before Open"))
	}
	o.clear(w)
	c, err := r.Cookie(flowCookie)
	if err != nil || c.Value == "" {
		return Identity{}, fail(ErrExpired, errors.New("portal: oidc: no flow cookie"))
	}
	f, err := o.open(c.Value)
	if err != nil {
		return Identity{}, fail(err, errors.New("portal: oidc: flow cookie refused"))
	}
	q := r.URL.Query()
	if !hmac.Equal([]byte(q.Get("state")), []byte(f.State)) {
		return Identity{}, fail(ErrInvalid, errors.New("portal: oidc: state differs from the flow cookie's"))
	}
	if code := q.Get("error"); code != "" {
		return Identity{}, providerError(code)
	}
	code := q.Get("code")
	if code == "" {
		return Identity{}, fail(ErrInvalid, errors.New("portal: oidc: redirect without code"))
	}

	ctx = o.clientContext(ctx)
	tok, err := o.config.Exchange(ctx, code, oauth2.VerifierOption(f.Verifier))
	if err != nil {
		return Identity{}, exchangeError(ctx, err)
	}
	raw, ok := tok.Extra("id_token").(string)
	if !ok || raw == "" {
		return Identity{}, fail(ErrUnavailable, errors.New("portal: oidc: token response without id_token"))
	}
	idt, err := o.verifier.Verify(ctx, raw)
	if err != nil {
		if ctx.Err() != nil {
			return Identity{}, fail(ErrUnavailable, ctx.Err())
		}
		// go-oidc's verification errors name issuers, audiences and
		// times, never the token's subject or claims.
		return Identity{}, fail(ErrInvalid, fmt.Errorf("portal: oidc: ID token refused: %w", err))
	}
	if !hmac.Equal([]byte(idt.Nonce), []byte(f.Nonce)) {
		return Identity{}, fail(ErrInvalid, errors.New("portal: oidc: ID token nonce differs from the flow cookie's"))
	}
	if idt.Subject == "" {
		return Identity{}, fail(ErrInvalid, errors.New("portal: oidc: ID token without subject"))
	}
	if idt.AccessTokenHash != "" {
		if err := idt.VerifyAccessToken(tok.AccessToken); err != nil {
			return Identity{}, fail(ErrInvalid, errors.New("portal: oidc: access token does not match at_hash"))
		}
	}

	value, err := o.claimValue(ctx, idt, tok)
	if err != nil {
		return Identity{}, err
	}
	tenant, ok := o.Tenants[value]
	if !ok {
		return Identity{}, fail(ErrUnknownTenant, nil)
	}
	return Identity{Tenant: tenant, Subject: idt.Subject}, nil
}

// claimValue returns the tenant claim's value from the ID token, or else from
// the userinfo endpoint.
func (o *OIDC) claimValue(ctx context.Context, idt *oidc.IDToken, tok *oauth2.Token) (string, error) {
	var claims map[string]json.RawMessage
	if err := idt.Claims(&claims); err != nil {
		return "", fail(ErrInvalid, errors.New("portal: oidc: ID token claims unreadable"))
	}
	if v := claimString(claims[o.tenantClaim()]); v != "" {
		return v, nil
	}
	if o.provider.UserInfoEndpoint() == "" {
		return "", fail(ErrNoTenant, errors.New("portal: oidc: no tenant claim in the ID token, no userinfo endpoint"))
	}
	info, err := o.provider.UserInfo(ctx, oauth2.StaticTokenSource(tok))
	if err != nil {
		if ctx.Err() != nil {
			return "", fail(ErrUnavailable, ctx.Err())
		}
		return "", fail(ErrUnavailable, errors.New("portal: oidc: userinfo request failed"))
	}
	if info.Subject != idt.Subject {
		return "", fail(ErrInvalid, errors.New("portal: oidc: userinfo subject differs from the ID token's"))
	}
	claims = nil
	if err := info.Claims(&claims); err != nil {
		return "", fail(ErrUnavailable, errors.New("portal: oidc: userinfo claims unreadable"))
	}
	if v := claimString(claims[o.tenantClaim()]); v != "" {
		return v, nil
	}
	return "", fail(ErrNoTenant, errors.New("portal: oidc: no tenant claim in the ID token nor at userinfo"))
}

// claimString returns a claim holding a JSON string or number as trimmed text,
// or "" for any other claim.
func claimString(raw json.RawMessage) string {
	var s string
	if err := json.Unmarshal(raw, &s); err == nil {
		return strings.TrimSpace(s)
	}
	var n json.Number
	if err := json.Unmarshal(raw, &n); err == nil {
		return n.String()
	}
	return ""
}

// providerError maps the redirect's error parameter (RFC 6749 §4.1.2.1).
func providerError(code string) error {
	cause := fmt.Errorf("portal: oidc: provider returned error %s", safeCode(code))
	switch code {
	case "server_error", "temporarily_unavailable":
		return fail(ErrUnavailable, cause)
	}
	return fail(ErrDenied, cause)
}

// exchangeError maps a failed code exchange: a refused grant (the code expired
// or was used) asks for a new sign-in, anything else is the provider's.
func exchangeError(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return fail(ErrUnavailable, ctx.Err())
	}
	var re *oauth2.RetrieveError
	if errors.As(err, &re) {
		status := 0
		if re.Response != nil {
			status = re.Response.StatusCode
		}
		cause := fmt.Errorf("portal: oidc: exchange code: HTTP %d %s", status, safeCode(re.ErrorCode))
		if re.ErrorCode == "invalid_grant" {
			return fail(ErrExpired, cause)
		}
		return fail(ErrUnavailable, cause)
	}
	return fail(ErrUnavailable, errors.New("portal: oidc: exchange code: request failed"))
}

// safeCode returns an OAuth error code if it is a plain short token
// ([a-z_], RFC 6749's vocabulary), else "(other)": it may reach a log.
func safeCode(code string) string {
	if code == "" || len(code) > 40 || strings.TrimLeft(code, "abcdefghijklmnopqrstuvwxyz_") != "" {
		return "(other)"
	}
	return code
}

// ParseTenantMap parses the configuration format "siret1=tenant1,siret2=tenant2"
// into a claim value → tenant map. Entries and both sides of '=' are trimmed;
// blank entries are skipped. A tenant has letters, digits, '.', '_' or '-';
// a claim value is not empty and appears once. At least one entry is required.
func ParseTenantMap(s string) (map[string]string, error) {
	m := make(map[string]string)
	for i, entry := range strings.Split(s, ",") {
		if strings.TrimSpace(entry) == "" {
			continue
		}
		value, tenant, ok := strings.Cut(entry, "=")
		if !ok {
			return nil, fmt.Errorf("portal: tenant map: entry %d: want claim=tenant", i+1)
		}
		value, tenant = strings.TrimSpace(value), strings.TrimSpace(tenant)
		if value == "" {
			return nil, fmt.Errorf("portal: tenant map: entry %d: empty claim value", i+1)
		}
		if !validTenant(tenant) {
			return nil, fmt.Errorf("portal: tenant map: entry %d: tenant %q: want letters, digits, '.', '_' or '-'", i+1, tenant)
		}
		if prev, dup := m[value]; dup {
			return nil, fmt.Errorf("portal: tenant map: entry %d: claim value %q already maps to %q", i+1, value, prev)
		}
		m[value] = tenant
	}
	if len(m) == 0 {
		return nil, errors.New("portal: tenant map: no entry")
	}
	return m, nil
}

// validTenant reports whether t is a non-empty run of ASCII letters, digits,
// '.', '_' or '-'.
func validTenant(t string) bool {
	if t == "" {
		return false
	}
	for _, c := range []byte(t) {
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-'
		if !ok {
			return false
		}
	}
	return true
}

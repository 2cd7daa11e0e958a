package portal

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/apbatch/apbatch/pipeline"
)

// Cookies of the portal.
const (
	sessionCookie = "apbatch_session"
	csrfCookie    = "apbatch_csrf"
	// sessionTTL is how long a sign-in lasts.
	sessionTTL = 12 * time.Hour
)

// session is what the signed session cookie holds: no personal data,
// the tenant and an opaque subject.
type session struct {
	Tenant  string `json:"t"`
	Subject string `json:"s"`
	Expires int64  `json:"e"`
}

// signer signs and checks cookie values with HMAC-SHA256.
type signer struct{ key []byte }

func (s signer) mac(purpose string, b []byte) []byte {
	m := hmac.New(sha256.New, s.key)
	m.Write([]byte(purpose))
	m.Write([]byte{0})
	m.Write(b)
	return m.Sum(nil)
}

// seal returns v as JSON, base64url, and its MAC.
func (s signer) seal(purpose string, v any) (string, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(b) + "." + base64.RawURLEncoding.EncodeToString(s.mac(purpose, b)), nil
}

// open checks a value sealed for purpose and decodes it into v.
func (s signer) open(purpose, value string, v any) error {
	body, sig, ok := strings.Cut(value, ".")
	if !ok {
		return errors.New("portal: malformed cookie")
	}
	b, err1 := base64.RawURLEncoding.DecodeString(body)
	m, err2 := base64.RawURLEncoding.DecodeString(sig)
	if err1 != nil || err2 != nil || !hmac.Equal(m, s.mac(purpose, b)) {
		return errors.New("portal: cookie signature does not match")
	}
	return json.Unmarshal(b, v)
}

// csrfToken is the token forms carry: the MAC of the browser's random
// csrf cookie, so that another site can neither read nor forge it.
func (s signer) csrfToken(cookie string) string {
	return base64.RawURLEncoding.EncodeToString(s.mac("csrf", []byte(cookie)))
}

// randomToken returns n random bytes in hex.
func randomToken(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(fmt.Sprintf("portal: random: %v", err))
	}
	return hex.EncodeToString(b)
}

// APIKeys authenticates the JSON API's bearer keys: each key belongs to
// one tenant. Keys are kept as SHA-256 digests.
type APIKeys struct {
	byDigest map[[32]byte]string
}

// Add gives key to tenant.
func (k *APIKeys) Add(tenant, key string) {
	if k.byDigest == nil {
		k.byDigest = map[[32]byte]string{}
	}
	k.byDigest[sha256.Sum256([]byte(strings.TrimSpace(key)))] = tenant
}

// Tenant returns the tenant of key, if any (constant time in the key).
func (k *APIKeys) Tenant(key string) (string, bool) {
	if k == nil || strings.TrimSpace(key) == "" {
		return "", false
	}
	d := sha256.Sum256([]byte(strings.TrimSpace(key)))
	found := ""
	for dk, t := range k.byDigest {
		if subtle.ConstantTimeCompare(dk[:], d[:]) == 1 {
			found = t
		}
	}
	return found, found != ""
}

// Len is the number of keys.
func (k *APIKeys) Len() int { return len(k.byDigest) }

// LoadAPIKeys reads a folder of one key per tenant, files <tenant>.key or
// <tenant> (a mounted Kubernetes Secret), into keys.
func LoadAPIKeys(dir string, keys *APIKeys) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("web API keys: %w", err)
	}
	for _, e := range entries {
		name := strings.TrimSuffix(e.Name(), ".key")
		if e.IsDir() || strings.HasPrefix(e.Name(), ".") || !pipeline.ValidTenant(name) {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			return fmt.Errorf("web API keys: %w", err)
		}
		if strings.TrimSpace(string(b)) != "" {
			keys.Add(name, string(b))
		}
	}
	return nil
}

// LocalKey returns the API key kept in path for the local mode (made on
// first use, mode 0600).
func LocalKey(path string) (string, error) {
	if b, err := os.ReadFile(path); err == nil {
		if k := strings.TrimSpace(string(b)); k != "" {
			return k, nil
		}
	}
	k := "apb_" + randomToken(24)
	if err := os.WriteFile(path, []byte(k+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("web API key: %w", err)
	}
	return k, nil
}

// SessionKey returns the key signing the portal's cookies: hex in value
// when given (APBATCH_WEB_SESSION_KEY), else a key kept in path (made on
// first use, mode 0600).
func SessionKey(value, path string) ([]byte, error) {
	if v := strings.TrimSpace(value); v != "" {
		k, err := hex.DecodeString(v)
		if err != nil || len(k) < 32 {
			return nil, errors.New("APBATCH_WEB_SESSION_KEY: want at least 32 bytes in hex (openssl rand -hex 32)")
		}
		return k, nil
	}
	if path == "" {
		return nil, errors.New("no session key: set APBATCH_WEB_SESSION_KEY (openssl rand -hex 32), the same for every replica")
	}
	if b, err := os.ReadFile(path); err == nil {
		if k, err := hex.DecodeString(strings.TrimSpace(string(b))); err == nil && len(k) >= 32 {
			return k, nil
		}
	}
	k := make([]byte, 32)
	if _, err := rand.Read(k); err != nil {
		return nil, err
	}
	if err := os.WriteFile(path, []byte(hex.EncodeToString(k)+"\n"), 0o600); err != nil {
		return nil, fmt.Errorf("session key: %w", err)
	}
	return k, nil
}

// LocalSignIn is the sign-in of the local mode: a link printed by the
// command, valid once, for the default tenant (as notebook servers do).
type LocalSignIn struct {
	Tenant string

	mu   sync.Mutex
	code string
}

// NewLocalSignIn returns a local sign-in for tenant with a fresh code.
func NewLocalSignIn(tenant string) *LocalSignIn {
	return &LocalSignIn{Tenant: tenant, code: randomToken(16)}
}

// Link returns the one-time sign-in link of the portal at base.
func (l *LocalSignIn) Link(base string) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.TrimRight(base, "/") + "/connexion?jeton=" + l.code
}

// use consumes code; true when it was the valid one. A new code is made
// for the next link.
func (l *LocalSignIn) use(code string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.code == "" || subtle.ConstantTimeCompare([]byte(code), []byte(l.code)) != 1 {
		return false
	}
	l.code = randomToken(16)
	return true
}

// setSession signs the agent in.
func (p *Portal) setSession(w http.ResponseWriter, id Identity) error {
	v, err := p.signer.seal("session", session{Tenant: id.Tenant, Subject: id.Subject, Expires: p.now().Add(sessionTTL).Unix()})
	if err != nil {
		return err
	}
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: v, Path: "/", HttpOnly: true, Secure: p.Secure,
		SameSite: http.SameSiteLaxMode, MaxAge: int(sessionTTL / time.Second)})
	return nil
}

// clearSession signs the agent out.
func (p *Portal) clearSession(w http.ResponseWriter) {
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: "", Path: "/", HttpOnly: true, Secure: p.Secure,
		SameSite: http.SameSiteLaxMode, MaxAge: -1})
}

// sessionOf returns the signed-in agent of r.
func (p *Portal) sessionOf(r *http.Request) (session, bool) {
	c, err := r.Cookie(sessionCookie)
	if err != nil {
		return session{}, false
	}
	var s session
	if err := p.signer.open("session", c.Value, &s); err != nil || s.Expires < p.now().Unix() || !pipeline.ValidTenant(s.Tenant) {
		return session{}, false
	}
	return s, true
}

// csrf returns the token of r's forms, setting the browser's csrf cookie
// when it has none.
func (p *Portal) csrf(w http.ResponseWriter, r *http.Request) string {
	c, err := r.Cookie(csrfCookie)
	if err != nil || len(c.Value) != 32 {
		c = &http.Cookie{Name: csrfCookie, Value: randomToken(16), Path: "/", HttpOnly: true, Secure: p.Secure, SameSite: http.SameSiteStrictMode}
		http.SetCookie(w, c)
		// Forms rendered in this response use it.
		r.AddCookie(c)
	}
	return p.signer.csrfToken(c.Value)
}

// checkCSRF verifies the token a form posted.
func (p *Portal) checkCSRF(r *http.Request, token string) bool {
	c, err := r.Cookie(csrfCookie)
	if err != nil || token == "" {
		return false
	}
	return subtle.ConstantTimeCompare([]byte(token), []byte(p.signer.csrfToken(c.Value))) == 1
}

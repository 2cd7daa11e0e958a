package sandbox

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"time"
)

// claims are the JWT claims the sandbox issues and checks.
type claims struct {
	UID     string   `json:"uid"`
	JTI     string   `json:"jti"`
	Scopes  []string `json:"scopes"`
	Sub     string   `json:"sub"`
	IAT     int64    `json:"iat"`
	Version string   `json:"version"`
	Exp     int64    `json:"exp"`
	// Habilitation is the authorization_request_id the API resolves a
	// token to (from its records; here, a claim): v3 routes count their
	// rate limits by it when set, so that the tokens of one habilitation
	// share them.
	Habilitation string `json:"authorization_request_id,omitempty"`
}

var uuidPattern = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)

var b64 = base64.RawURLEncoding

// Token returns an HS256 JWT signed with secret, with a random UUID as uid
// and jti, the given scopes and expiry, sub "sandbox" and version "1.0".
func Token(secret []byte, scopes []string, exp time.Time) (string, error) {
	return HabilitationToken(secret, scopes, exp, "")
}

// HabilitationToken is Token for a token of the habilitation habilitation
// (its authorization_request_id claim; "" for none): the v3 routes' rate
// limits count the requests of all its tokens together.
func HabilitationToken(secret []byte, scopes []string, exp time.Time, habilitation string) (string, error) {
	id := newUUID()
	c := claims{UID: id, JTI: id, Scopes: scopes, Sub: "sandbox", IAT: time.Now().Unix(), Version: "1.0", Exp: exp.Unix(), Habilitation: habilitation}
	header, err := json.Marshal(map[string]string{"alg": "HS256", "typ": "JWT"})
	if err != nil {
		return "", fmt.Errorf("sandbox: encode token header: %w", err)
	}
	payload, err := json.Marshal(c)
	if err != nil {
		return "", fmt.Errorf("sandbox: encode token claims: %w", err)
	}
	signing := b64.EncodeToString(header) + "." + b64.EncodeToString(payload)
	return signing + "." + b64.EncodeToString(sign(secret, signing)), nil
}

func sign(secret []byte, s string) []byte {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(s))
	return m.Sum(nil)
}

type authError struct {
	status int
	errs   []apiError
}

// authenticate checks the token of an Authorization header ("Bearer "
// and the token); see authenticateToken.
func (s *Server) authenticate(authorization string, now time.Time) (claims, *authError) {
	tok, ok := strings.CutPrefix(authorization, "Bearer ")
	if !ok {
		return claims{}, &authError{status: http.StatusUnauthorized, errs: []apiError{errTokenInvalid}}
	}
	return s.authenticateToken(tok, now)
}

// authenticateToken checks a token: signature, UUID uid/jti, blacklist,
// expiry. Like production, which caches the decoded user for an hour, a
// verified token is remembered (the blacklist and expiry are still checked
// on every request).
func (s *Server) authenticateToken(tok string, now time.Time) (claims, *authError) {
	c, ok := s.tokens.get(tok)
	if !ok {
		var aerr *authError
		if c, aerr = s.verify(tok); aerr != nil {
			return claims{}, aerr
		}
		s.tokens.put(tok, c)
	}
	for _, b := range s.cfg.Blacklist {
		if b == c.JTI {
			return claims{}, &authError{status: http.StatusUnauthorized, errs: []apiError{errTokenBlacklisted}}
		}
	}
	if c.Exp != 0 && now.Unix() >= c.Exp {
		return claims{}, &authError{status: http.StatusUnauthorized, errs: []apiError{errTokenExpired}}
	}
	return c, nil
}

// verify checks a token's signature and claims.
func (s *Server) verify(tok string) (claims, *authError) {
	invalid := &authError{status: http.StatusUnauthorized, errs: []apiError{errTokenInvalid}}
	parts := strings.Split(strings.TrimSpace(tok), ".")
	if len(parts) != 3 {
		return claims{}, invalid
	}
	sig, err := b64.DecodeString(parts[2])
	if err != nil || !hmac.Equal(sig, sign(s.cfg.Secret, parts[0]+"."+parts[1])) {
		return claims{}, invalid
	}
	var h struct {
		Alg string `json:"alg"`
	}
	hb, err := b64.DecodeString(parts[0])
	if err != nil || json.Unmarshal(hb, &h) != nil || h.Alg != "HS256" {
		return claims{}, invalid
	}
	var c claims
	pb, err := b64.DecodeString(parts[1])
	if err != nil || json.Unmarshal(pb, &c) != nil {
		return claims{}, invalid
	}
	if !uuidPattern.MatchString(c.UID) || !uuidPattern.MatchString(c.JTI) {
		return claims{}, invalid
	}
	return c, nil
}

// tokenCacheSize bounds each map of a tokenCache: past it, the map starts
// afresh.
const tokenCacheSize = 10000

// tokenCache remembers, per token, its verified claims and the key
// FranceConnect routes count it under, so that neither the signature nor
// the hash is computed again on every request. Safe for concurrent use;
// the zero value is ready.
type tokenCache struct {
	mu     sync.RWMutex
	claims map[string]claims
	fcKeys map[string]string
}

func (tc *tokenCache) get(tok string) (claims, bool) {
	tc.mu.RLock()
	defer tc.mu.RUnlock()
	c, ok := tc.claims[tok]
	return c, ok
}

func (tc *tokenCache) put(tok string, c claims) {
	tc.mu.Lock()
	defer tc.mu.Unlock()
	if tc.claims == nil || len(tc.claims) >= tokenCacheSize {
		tc.claims = make(map[string]claims)
	}
	tc.claims[tok] = c
}

// fcRateKey returns "fc:" and tokenKey(tok), the key a FranceConnect
// token is counted under, computed once per token.
func (tc *tokenCache) fcRateKey(tok string) string {
	tc.mu.RLock()
	k, ok := tc.fcKeys[tok]
	tc.mu.RUnlock()
	if ok {
		return k
	}
	k = "fc:" + tokenKey(tok)
	tc.mu.Lock()
	defer tc.mu.Unlock()
	if tc.fcKeys == nil || len(tc.fcKeys) >= tokenCacheSize {
		tc.fcKeys = make(map[string]string)
	}
	tc.fcKeys[tok] = k
	return k
}

// tokenKey identifies a token without keeping it.
func tokenKey(tok string) string {
	h := sha256.Sum256([]byte(tok))
	return b64.EncodeToString(h[:12])
}

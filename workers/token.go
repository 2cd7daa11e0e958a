package workers

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// TokenClaims are what a client can read of an API Particulier token (a
// JWT) without the operator's key: which token it is, what it may do and
// when it ends. They are read, not verified: the API verifies the
// signature, and keeps each token's current scopes and expiry in its own
// records (see Client.Introspect), which a prolongation or a change of
// scopes updates without a new token.
type TokenClaims struct {
	// ID is the token's jti (its uid when jti is absent): names the token
	// in the operator's portal and in support requests, without
	// revealing it.
	ID string
	// Subject is the sub claim: the habilitation's title ("staging" or
	// "sandbox" for test tokens).
	Subject string
	// Habilitation is the authorization_request_id claim (at the top of
	// the claims or in extra_info): the habilitation the token belongs
	// to, which the API counts its rate limits by. Empty when absent, or
	// when it is not what a habilitation's id looks like
	// (ValidHabilitation).
	Habilitation string
	// Scopes are the data masks the token was issued with.
	Scopes []string
	// IssuedAt is the iat claim; zero when absent.
	IssuedAt time.Time
	// ExpiresAt is the exp claim; zero when absent.
	ExpiresAt time.Time
}

// ErrMalformedToken is returned (wrapped) by DecodeToken for a value that
// is not a JWT with the claims of an API Particulier token.
var ErrMalformedToken = errors.New("not an API Particulier token (a JWT)")

// maxTokenLen bounds what DecodeToken reads; real tokens are under 1 KiB.
const maxTokenLen = 16 << 10

// maxUnix is the last second of year 9999, the latest date a claim may
// hold.
const maxUnix = 253402300799

// DecodeToken reads the claims of token, a JWT (header.payload.signature,
// base64url). The signature is not checked. Its errors wrap
// ErrMalformedToken and say what is wrong in fixed words: they never hold
// the token nor any part of it.
func DecodeToken(token string) (TokenClaims, error) {
	malformed := func(what string) (TokenClaims, error) {
		return TokenClaims{}, fmt.Errorf("workers: decode token: %s: %w", what, ErrMalformedToken)
	}
	token = strings.TrimSpace(token)
	switch {
	case token == "":
		return malformed("empty")
	case len(token) > maxTokenLen:
		return malformed("too long")
	}
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return malformed("not three parts separated by dots")
	}
	var header struct {
		Alg string `json:"alg"`
	}
	if !decodePart(parts[0], &header) {
		return malformed("header is not base64url JSON")
	}
	if header.Alg == "" {
		return malformed("header names no algorithm")
	}
	var payload struct {
		JTI    string   `json:"jti"`
		UID    string   `json:"uid"`
		Sub    string   `json:"sub"`
		Scopes []string `json:"scopes"`
		IAT    *float64 `json:"iat"`
		Exp    *float64 `json:"exp"`
		// AR is the habilitation, a string or a number.
		AR        json.RawMessage `json:"authorization_request_id"`
		ExtraInfo struct {
			AR json.RawMessage `json:"authorization_request_id"`
		} `json:"extra_info"`
	}
	if !decodePart(parts[1], &payload) {
		return malformed("payload is not base64url JSON claims")
	}
	c := TokenClaims{ID: payload.JTI, Subject: payload.Sub, Scopes: payload.Scopes}
	if c.Habilitation = habilitationClaim(payload.AR); c.Habilitation == "" {
		c.Habilitation = habilitationClaim(payload.ExtraInfo.AR)
	}
	if c.ID == "" {
		c.ID = payload.UID
	}
	var ok bool
	if c.IssuedAt, ok = numericDate(payload.IAT); !ok {
		return malformed("iat is not a date")
	}
	if c.ExpiresAt, ok = numericDate(payload.Exp); !ok {
		return malformed("exp is not a date")
	}
	return c, nil
}

// habilitationClaim returns the habilitation an authorization_request_id
// claim names: a string, or a whole number written as such; "" when absent
// or not a habilitation's id.
func habilitationClaim(raw json.RawMessage) string {
	if len(raw) == 0 {
		return ""
	}
	var id string
	if raw[0] == '"' {
		if json.Unmarshal(raw, &id) != nil {
			return ""
		}
	} else if _, err := strconv.ParseUint(string(raw), 10, 64); err == nil {
		id = string(raw) // a whole number, as the API's records are
	}
	if !ValidHabilitation(id) {
		return ""
	}
	return id
}

// decodePart decodes one base64url part of a JWT into v; false when it is
// not base64url or not the JSON object v expects. Padding is tolerated.
func decodePart(part string, v any) bool {
	raw, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(part, "="))
	if err != nil {
		return false
	}
	return json.Unmarshal(raw, v) == nil
}

// numericDate converts a JWT NumericDate (seconds since 1970, possibly
// fractional); zero when absent, false when out of range.
func numericDate(v *float64) (time.Time, bool) {
	if v == nil {
		return time.Time{}, true
	}
	f := *v
	if math.IsNaN(f) || f < 0 || f > maxUnix {
		return time.Time{}, false
	}
	sec, frac := math.Modf(f)
	return time.Unix(int64(sec), int64(frac*1e9)).UTC(), true
}

// expiryReminders are the days before its expiry at which the operator
// e-mails a token's owners, nearest last (the operator's token mailer:
// 90, 60, 30, 15 and 7 days, then on the day).
var expiryReminders = [...]int{90, 60, 30, 15, 7}

// Expiry is how close a token is to its expiry at one instant.
type Expiry struct {
	// DaysLeft counts the days until the expiry, a part of a day counting
	// as a day; once expired, 0 or minus the whole days since.
	DaysLeft int
	// Reminder is the nearest of the operator's reminders (90, 60, 30, 15
	// or 7 days before) already reached: the smallest of them DaysLeft is
	// within; 0 when none is, or once expired.
	Reminder int
	// Expired is set from the expiry instant on.
	Expired bool
}

// ExpiryAt says how close a token expiring at exp is to its end at now.
// A zero exp (no exp claim) never expires.
func ExpiryAt(exp, now time.Time) Expiry {
	if exp.IsZero() {
		return Expiry{DaysLeft: math.MaxInt32}
	}
	const day = 24 * time.Hour
	left := exp.Sub(now)
	if left <= 0 {
		return Expiry{DaysLeft: -int(-left / day), Expired: true}
	}
	e := Expiry{DaysLeft: int(left / day)}
	if left%day != 0 {
		e.DaysLeft++
	}
	for _, r := range expiryReminders {
		if e.DaysLeft <= r {
			e.Reminder = r
		}
	}
	return e
}

// IntrospectPath is the route that tells what the API knows of a token.
const IntrospectPath = "/api/introspect"

// Introspection is the API's own record of a token (GET /api/introspect):
// its current scopes, which win over the token's claims.
type Introspection struct {
	// ID is the token's jti.
	ID string `json:"_id"`
	// Name is the habilitation's name; often empty.
	Name string `json:"name"`
	// Scopes are the token's current scopes.
	Scopes []string `json:"scopes"`
}

// TokenRefusedError is the API's refusal of a token (401 or 403): invalid,
// expired or banned.
type TokenRefusedError struct {
	HTTPStatus int
	// Code and Message are the API's first error code and its words.
	Code, Message string
}

// Error describes the refusal; it never holds the token.
func (e *TokenRefusedError) Error() string {
	msg := fmt.Sprintf("workers: the API refuses the token (HTTP %d", e.HTTPStatus)
	if e.Code != "" {
		msg += ", " + e.Code
	}
	msg += ")"
	if e.Message != "" {
		msg += ": " + e.Message
	}
	return msg
}

// Introspect asks the API what it knows of token (GET /api/introspect,
// the token in the Authorization header only). It returns a
// *TokenRefusedError when the API refuses the token, an error wrapping
// ErrTransport when it gets no answer, and another error for any other
// answer. It blocks until the answer or ctx's end.
func (c *Client) Introspect(ctx context.Context, token string) (Introspection, error) {
	req, err := c.newRequest(ctx, bearer(token), IntrospectPath, string(c.appendBase(nil))+IntrospectPath)
	if err != nil {
		return Introspection{}, err
	}
	resp, err := c.httpClient().Do(req)
	if err != nil {
		return Introspection{}, transportError(IntrospectPath, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	if err != nil {
		return Introspection{}, transportError(IntrospectPath, err)
	}
	switch resp.StatusCode {
	case http.StatusOK:
		var in Introspection
		if err := json.Unmarshal(raw, &in); err != nil {
			return Introspection{}, fmt.Errorf("workers: %s: the answer is not the expected JSON", IntrospectPath)
		}
		return in, nil
	case http.StatusUnauthorized, http.StatusForbidden:
		o := classify(resp.StatusCode, resp.Header, raw, time.Now(), nil)
		return Introspection{}, &TokenRefusedError{HTTPStatus: resp.StatusCode, Code: o.Code, Message: o.Message}
	}
	return Introspection{}, fmt.Errorf("workers: %s: HTTP %d", IntrospectPath, resp.StatusCode)
}

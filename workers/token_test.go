package workers

import (
	"context"
	"encoding/base64"
	"errors"
	"net/http/httptest"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/apbatch/apbatch/schemas"
	"github.com/apbatch/apbatch/workers/sandbox"
)

// jwt assembles a token from a JSON header and payload, with a dummy
// signature.
func jwt(header, payload string) string {
	enc := base64.RawURLEncoding.EncodeToString
	return enc([]byte(header)) + "." + enc([]byte(payload)) + "." + enc([]byte("signature"))
}

func TestDecodeToken(t *testing.T) {
	const hs = `{"alg":"HS256","typ":"JWT"}`
	id := "3f6c1a52-7e0b-4c1d-9a8e-2b5d7f9c0e11"
	for _, tc := range []struct {
		name  string
		token string
		want  TokenClaims
		bad   bool
	}{
		{"production claims", jwt(hs, `{"uid":"`+id+`","jti":"`+id+`","scopes":["cnaf_quotient_familial","cnaf_enfants"],"sub":"Mairie de Trifouilly - cantine",
			"extra_info":{},"iat":1767225600,"version":"1.0","exp":1814659200}`),
			TokenClaims{ID: id, Subject: "Mairie de Trifouilly - cantine", Scopes: []string{"cnaf_quotient_familial", "cnaf_enfants"},
				IssuedAt: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), ExpiresAt: time.Date(2027, 7, 4, 0, 0, 0, 0, time.UTC)}, false},
		{"uid when no jti, fractional exp", jwt(hs, `{"uid":"`+id+`","exp":1767225600.5}`),
			TokenClaims{ID: id, ExpiresAt: time.Date(2026, 1, 1, 0, 0, 0, 5e8, time.UTC)}, false},
		{"habilitation claim, a number", jwt(hs, `{"jti":"`+id+`","authorization_request_id":51234}`), TokenClaims{ID: id, Habilitation: "51234"}, false},
		{"habilitation claim, a string", jwt(hs, `{"authorization_request_id":"51234"}`), TokenClaims{Habilitation: "51234"}, false},
		{"habilitation in extra_info", jwt(hs, `{"extra_info":{"authorization_request_id":"60001"}}`), TokenClaims{Habilitation: "60001"}, false},
		{"top-level habilitation wins", jwt(hs, `{"authorization_request_id":1,"extra_info":{"authorization_request_id":2}}`), TokenClaims{Habilitation: "1"}, false},
		{"habilitation not an id: ignored", jwt(hs, `{"authorization_request_id":"Jean Dupont"}`), TokenClaims{}, false},
		{"habilitation a fraction: ignored", jwt(hs, `{"authorization_request_id":1.5}`), TokenClaims{}, false},
		{"habilitation null: ignored", jwt(hs, `{"authorization_request_id":null}`), TokenClaims{}, false},
		{"no claims at all", jwt(hs, `{}`), TokenClaims{}, false},
		{"padding and surrounding space", " " + strings.Replace(jwt(hs, `{"sub":"x"}`), ".", "==.", 2) + "\n", TokenClaims{Subject: "x"}, false},
		{"empty", "", TokenClaims{}, true},
		{"two parts", "abc.def", TokenClaims{}, true},
		{"four parts", jwt(hs, `{}`) + ".x", TokenClaims{}, true},
		{"header not base64", "*." + strings.SplitN(jwt(hs, `{}`), ".", 2)[1], TokenClaims{}, true},
		{"header without alg", jwt(`{"typ":"JWT"}`, `{}`), TokenClaims{}, true},
		{"payload not JSON", jwt(hs, `not json`), TokenClaims{}, true},
		{"payload an array", jwt(hs, `[1,2]`), TokenClaims{}, true},
		{"scopes a string", jwt(hs, `{"scopes":"a b"}`), TokenClaims{}, true},
		{"exp a string", jwt(hs, `{"exp":"tomorrow"}`), TokenClaims{}, true},
		{"exp negative", jwt(hs, `{"exp":-1}`), TokenClaims{}, true},
		{"exp past year 9999", jwt(hs, `{"exp":1e300}`), TokenClaims{}, true},
		{"too long", jwt(hs, `{"sub":"`+strings.Repeat("a", maxTokenLen)+`"}`), TokenClaims{}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := DecodeToken(tc.token)
			if tc.bad {
				if !errors.Is(err, ErrMalformedToken) {
					t.Fatalf("err = %v, want ErrMalformedToken", err)
				}
				assertNoTokenIn(t, err.Error(), tc.token)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("got %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

// assertNoTokenIn fails when msg holds the token or one of its parts.
func assertNoTokenIn(t *testing.T, msg, token string) {
	t.Helper()
	token = strings.TrimSpace(token)
	if len(token) >= 8 && strings.Contains(msg, token) {
		t.Fatalf("message %q holds the token", msg)
	}
	for _, p := range strings.Split(token, ".") {
		if p = strings.Trim(p, "= \n"); len(p) >= 8 && strings.Contains(msg, p) {
			t.Fatalf("message %q holds a part of the token", msg)
		}
	}
}

func FuzzDecodeToken(f *testing.F) {
	const hs = `{"alg":"HS256","typ":"JWT"}`
	tok, err := sandbox.Token([]byte(sandbox.DefaultSecret), sandbox.AllScopes, time.Now().Add(time.Hour))
	if err != nil {
		f.Fatal(err)
	}
	for _, seed := range []string{tok, "", ".", "..", "a.b.c", jwt(hs, `{"exp":1e300}`), jwt(hs, `{"iat":12345678901234567890}`),
		jwt(hs, `{"scopes":[1]}`), jwt(`{"alg":""}`, `{}`), jwt(hs, `{"exp":NaN}`), jwt(hs, `{"sub":"é\u0000"}`)} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, token string) {
		c, err := DecodeToken(token)
		if err != nil {
			if !errors.Is(err, ErrMalformedToken) {
				t.Fatalf("error %v does not wrap ErrMalformedToken", err)
			}
			assertNoTokenIn(t, err.Error(), token)
			return
		}
		for _, d := range []time.Time{c.IssuedAt, c.ExpiresAt} {
			if !d.IsZero() && (d.Year() < 1970 || d.Year() > 9999) {
				t.Fatalf("date %v out of range", d)
			}
		}
		_ = ExpiryAt(c.ExpiresAt, time.Now())
	})
}

func TestExpiryAt(t *testing.T) {
	now := time.Date(2026, 9, 1, 12, 0, 0, 0, time.UTC)
	day := 24 * time.Hour
	for _, tc := range []struct {
		name string
		left time.Duration
		want Expiry
	}{
		{"200 days: no reminder yet", 200 * day, Expiry{DaysLeft: 200}},
		{"91 days", 91 * day, Expiry{DaysLeft: 91}},
		{"90 days", 90 * day, Expiry{DaysLeft: 90, Reminder: 90}},
		{"61 days", 61 * day, Expiry{DaysLeft: 61, Reminder: 90}},
		{"60 days", 60 * day, Expiry{DaysLeft: 60, Reminder: 60}},
		{"31 days", 31 * day, Expiry{DaysLeft: 31, Reminder: 60}},
		{"30 days", 30 * day, Expiry{DaysLeft: 30, Reminder: 30}},
		{"16 days", 16 * day, Expiry{DaysLeft: 16, Reminder: 30}},
		{"15 days", 15 * day, Expiry{DaysLeft: 15, Reminder: 15}},
		{"10 days: the 15-day reminder", 10 * day, Expiry{DaysLeft: 10, Reminder: 15}},
		{"a second short of 10 days counts as 10", 10*day - time.Second, Expiry{DaysLeft: 10, Reminder: 15}},
		{"8 days", 8 * day, Expiry{DaysLeft: 8, Reminder: 15}},
		{"7 days", 7 * day, Expiry{DaysLeft: 7, Reminder: 7}},
		{"one hour", time.Hour, Expiry{DaysLeft: 1, Reminder: 7}},
		{"0 days: expired", 0, Expiry{DaysLeft: 0, Expired: true}},
		{"-1 day: expired", -day, Expiry{DaysLeft: -1, Expired: true}},
		{"-36 hours", -36 * time.Hour, Expiry{DaysLeft: -1, Expired: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := ExpiryAt(now.Add(tc.left), now); got != tc.want {
				t.Fatalf("got %+v, want %+v", got, tc.want)
			}
		})
	}
	if e := ExpiryAt(time.Time{}, now); e.Expired || e.Reminder != 0 {
		t.Fatalf("no exp claim: %+v", e)
	}
	if e := ExpiryAt(time.Date(9999, 12, 31, 0, 0, 0, 0, time.UTC), now); e.Expired || e.Reminder != 0 || e.DaysLeft <= 0 {
		t.Fatalf("year 9999: %+v", e)
	}
}

func TestClient_Introspect(t *testing.T) {
	sb, err := sandbox.New(sandbox.Config{})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(sb)
	defer srv.Close()
	defer sb.Close()
	ctx := context.Background()
	c := &Client{BaseURL: srv.URL}
	scopes := []string{"cnaf_quotient_familial", "men_statut_scolarite"}
	tok, err := sandbox.Token([]byte(sandbox.DefaultSecret), scopes, time.Now().Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	claims, err := DecodeToken(tok)
	if err != nil {
		t.Fatal(err)
	}
	in, err := c.Introspect(ctx, tok)
	if err != nil {
		t.Fatal(err)
	}
	if in.ID != claims.ID || !reflect.DeepEqual(in.Scopes, scopes) {
		t.Fatalf("introspect %+v, token %+v", in, claims)
	}

	expired, _ := sandbox.Token([]byte(sandbox.DefaultSecret), scopes, time.Now().Add(-time.Hour))
	foreign, _ := sandbox.Token([]byte("another secret"), scopes, time.Now().Add(time.Hour))
	for name, tok := range map[string]string{"expired": expired, "foreign": foreign, "garbage": "x"} {
		_, err := c.Introspect(ctx, tok)
		var refused *TokenRefusedError
		if !errors.As(err, &refused) || refused.HTTPStatus != 401 || refused.Code == "" {
			t.Errorf("%s: %v, want a 401 refusal", name, err)
			continue
		}
		assertNoTokenIn(t, err.Error(), tok)
	}

	srv.Close()
	if _, err := c.Introspect(ctx, tok); !errors.Is(err, ErrTransport) {
		t.Fatalf("server down: %v, want ErrTransport", err)
	}
}

// TestChecks_Scopes checks schemas' scopes of each check against the
// sandbox, which follows the operator's authorizations table: a token with
// a check's result scopes alone passes its route's scope check; a token
// with every scope but the route's is refused (403).
func TestChecks_Scopes(t *testing.T) {
	sb, err := sandbox.New(sandbox.Config{Limits: sandbox.Limits{PerSecond: 1000, IPPerMinute: 100000}})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(sb)
	defer srv.Close()
	defer sb.Close()
	c := &Client{BaseURL: srv.URL}
	for _, check := range schemas.Checks {
		t.Run(string(check), func(t *testing.T) {
			s := check.Scopes()
			var others []string
			for _, sc := range sandbox.AllScopes {
				if !slices.Contains(s.Route, sc) {
					others = append(others, sc)
				}
			}
			if missing := slices.DeleteFunc(slices.Clone(s.Route), func(sc string) bool { return slices.Contains(sandbox.AllScopes, sc) }); len(missing) > 0 {
				t.Fatalf("scopes unknown to the sandbox: %v", missing)
			}
			job := schemas.Job{Check: check, Recipient: "13002526500013"}
			for _, tc := range []struct {
				scopes     []string
				authorized bool
			}{{s.Result, true}, {others, false}} {
				tok, err := sandbox.Token([]byte(sandbox.DefaultSecret), tc.scopes, time.Now().Add(time.Hour))
				if err != nil {
					t.Fatal(err)
				}
				o, err := c.Call(context.Background(), tok, job)
				if err != nil {
					t.Fatal(err)
				}
				if got := o.Status != schemas.StatusUnauthorized; got != tc.authorized {
					t.Errorf("scopes %v: %d %s %s", tc.scopes, o.HTTPStatus, o.Code, o.Message)
				}
			}
		})
	}
}

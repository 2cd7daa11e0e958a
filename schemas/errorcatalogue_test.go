package schemas

import (
	"strconv"
	"strings"
	"testing"
)

// TestErrors_EveryRule: every rule of the embedded catalogue is found by
// its own HTTP status and code (a concrete provider prefix for the "XX"
// ones) in every version it holds in, and in no other.
func TestErrors_EveryRule(t *testing.T) {
	c := Errors()
	if c.Latest != "2026-09-09" || len(c.Rules) < 40 {
		t.Fatalf("catalogue %s with %d rules", c.Latest, len(c.Rules))
	}
	for _, r := range c.Rules {
		code := r.Code
		if strings.HasPrefix(code, "XX") {
			code = "35" + code[2:]
		}
		for _, v := range c.Versions {
			t.Run(v+"/"+strconv.Itoa(r.HTTPStatus)+"/"+r.Code, func(t *testing.T) {
				in := (r.Since == "" || v >= r.Since) && (r.Until == "" || v < r.Until)
				got, ok := c.Lookup(v, r.HTTPStatus, code)
				switch {
				case in && (!ok || got != r):
					t.Errorf("Lookup(%s, %d, %s) = %+v, %v; want %+v", v, r.HTTPStatus, code, got, ok, r)
				case !in && ok && got == r:
					t.Errorf("Lookup(%s, %d, %s) found the rule outside its versions %q–%q", v, r.HTTPStatus, code, r.Since, r.Until)
				}
			})
		}
		if r.ProviderCalled() != !strings.HasPrefix(r.Code, "00") {
			t.Errorf("%s: ProviderCalled %v", r.Code, r.ProviderCalled())
		}
	}
}

// TestErrorCatalogue_Lookup covers the codes whose meaning matters most,
// by version: 00355 changes meaning on 2026-09-09, the provider-prefixed
// XX56Z subcodes appear on 2026-08-26, a "00" code never matches an "XX"
// rule, and unknown codes fall back on their HTTP status.
func TestErrorCatalogue_Lookup(t *testing.T) {
	c := Errors()
	tests := []struct {
		version    string
		http       int
		code       string
		wantKnown  bool
		wantKind   ErrorKind
		wantStatus Status
		retryable  bool
	}{
		{"2026-04-28", 422, "00355", true, KindIdentityUnresolved, StatusIdentityUnresolved, false},
		{"2026-08-26", 422, "00355", true, KindIdentityUnresolved, StatusIdentityUnresolved, false},
		{"2026-09-09", 422, "00355", true, KindPeriodRejected, StatusInvalidInput, false},
		{"", 422, "00355", true, KindPeriodRejected, StatusInvalidInput, false},           // latest by default
		{"1999-01-01", 422, "00355", true, KindPeriodRejected, StatusInvalidInput, false}, // unknown: latest
		{"2026-04-28", 422, "35560", false, KindInvalidParameter, StatusInvalidInput, false},
		{"2026-08-26", 422, "35560", true, KindIdentityUnresolved, StatusIdentityUnresolved, false},
		{"2026-09-09", 422, "35560", true, KindIdentityUnresolved, StatusIdentityUnresolved, false},
		{"2026-09-09", 422, "26560", true, KindIdentityUnresolved, StatusIdentityUnresolved, false},
		{"2026-09-09", 422, "35561", true, KindCivilityRejected, StatusInvalidInput, false},
		{"2026-09-09", 422, "25562", true, KindIdentifierRejected, StatusInvalidInput, false},
		{"2026-09-09", 422, "35563", true, KindIdentityAmbiguous, StatusIdentityUnresolved, false},
		{"2026-09-09", 422, "35564", true, KindIdentityUnusable, StatusProviderError, false},
		{"2026-08-26", 422, "35565", false, KindInvalidParameter, StatusInvalidInput, false},
		{"2026-09-09", 422, "35565", true, KindPeriodRejected, StatusInvalidInput, false},
		{"2026-09-09", 422, "00560", false, KindInvalidParameter, StatusInvalidInput, false}, // 00: no provider, no XX rule
		{"2026-09-09", 422, "00212", true, KindDelegationAmbiguous, StatusUnauthorized, false},
		{"2026-09-09", 404, "37003", true, KindNotFound, StatusNotFound, false},
		{"2026-09-09", 404, "23003", true, KindNotFound, StatusNotFound, false},
		{"2026-09-09", 404, "30004", true, KindNotFound, StatusNotFound, false},
		{"2026-09-09", 409, "26015", true, KindIdentityAmbiguous, StatusIdentityUnresolved, false},
		{"2026-09-09", 409, "00015", true, KindInFlight, StatusProviderError, true},
		{"2026-09-09", 429, "00429", true, KindRateLimited, StatusProviderError, true},
		{"2026-09-09", 502, "37999", true, KindProviderUnknown, StatusProviderError, true},
		{"2026-09-09", 502, "35008", true, KindProviderThrottled, StatusProviderError, true},
		{"2026-09-09", 503, "30020", true, KindMaintenance, StatusProviderError, true},
		{"2026-09-09", 504, "24002", true, KindProviderTimeout, StatusProviderError, true},
		{"2026-09-09", 401, "00103", true, KindUnauthorized, StatusUnauthorized, false},
		{"2026-09-09", 404, "00003", false, KindNotFound, StatusNotFound, false}, // unknown code, HTTP fallback
		{"2026-09-09", 502, "37366", false, KindProviderFailure, StatusProviderError, true},
		{"2026-09-09", 418, "", false, KindUnknown, StatusProviderError, false},
		{"2026-09-09", 422, "35560x", false, KindInvalidParameter, StatusInvalidInput, false},
	}
	for _, tt := range tests {
		r, ok := c.Lookup(tt.version, tt.http, tt.code)
		if ok != tt.wantKnown || r.Kind != tt.wantKind || r.Status != tt.wantStatus || r.Retryable != tt.retryable {
			t.Errorf("Lookup(%q, %d, %q) = %s %s retryable %v known %v; want %s %s %v %v",
				tt.version, tt.http, tt.code, r.Kind, r.Status, r.Retryable, ok, tt.wantKind, tt.wantStatus, tt.retryable, tt.wantKnown)
		}
		if ok && r.Message == "" {
			t.Errorf("Lookup(%q, %d, %q): no agent message", tt.version, tt.http, tt.code)
		}
	}
}

// TestErrors_Messages: every agent message is French prose an agent can
// read: no code, no English word the catalogue's authors might have left.
func TestErrors_Messages(t *testing.T) {
	for _, r := range Errors().Rules {
		if r.Message != strings.TrimSpace(r.Message) || strings.ContainsAny(r.Message, "\n\t") || len(r.Message) > 200 {
			t.Errorf("%s: message %q", r.Code, r.Message)
		}
	}
	m, _ := Errors().Lookup("", 422, "00212")
	if !strings.Contains(m.Message, "délégations") || !strings.Contains(m.Message, "delegation_id") {
		t.Errorf("00212: %q", m.Message)
	}
}

// TestParseErrorCatalogue_Invalid: a catalogue that would classify an
// answer two ways, or into nothing, is refused.
func TestParseErrorCatalogue_Invalid(t *testing.T) {
	const head = "version: b\nversions: [a, b]\nfallbacks: [{http: 0, kind: unknown, status: provider_error}]\n"
	tests := map[string]string{
		"latest not last":    "version: a\nversions: [a, b]\nfallbacks: [{http: 0, kind: unknown, status: provider_error}]\n",
		"versions unordered": "version: a\nversions: [b, a]\nfallbacks: [{http: 0, kind: unknown, status: provider_error}]\n",
		"no fallback":        "version: b\nversions: [a, b]\n",
		"unknown kind":       head + "errors: [{http: 404, code: '37003', kind: lost, status: not_found, message: m}]\n",
		"ok status":          head + "errors: [{http: 404, code: '37003', kind: not_found, status: ok, message: m}]\n",
		"retryable 404":      head + "errors: [{http: 404, code: '37003', kind: not_found, status: not_found, retryable: true, message: m}]\n",
		"bad code":           head + "errors: [{http: 404, code: 'YY003', kind: not_found, status: not_found, message: m}]\n",
		"no message":         head + "errors: [{http: 404, code: '37003', kind: not_found, status: not_found}]\n",
		"unknown version":    head + "errors: [{http: 404, code: '37003', kind: not_found, status: not_found, message: m, since: c}]\n",
		"overlap": head + "errors: [{http: 422, code: '00355', kind: identity_unresolved, status: identity_unresolved, message: m}," +
			"{http: 422, code: '00355', kind: period_rejected, status: invalid_input, message: m, since: b}]\n",
	}
	for name, raw := range tests {
		if _, err := ParseErrorCatalogue([]byte(raw)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

package schemas

import (
	_ "embed"
	"fmt"
	"slices"
	"sync"

	"gopkg.in/yaml.v3"
)

// ErrorKind says what an API error means for a batch, whatever its code:
// the catalogue maps each code to one.
type ErrorKind string

// Error kinds of the catalogue (errors.yaml).
const (
	KindUnauthorized        ErrorKind = "unauthorized"         // token refused, scopes or IP missing
	KindDelegationAmbiguous ErrorKind = "delegation_ambiguous" // several delegations match the recipient (00212)
	KindInvalidParameter    ErrorKind = "invalid_parameter"    // a parameter refused before any provider call
	KindPeriodRejected      ErrorKind = "period_rejected"      // the QF period is outside the allowed window
	KindUnsupported         ErrorKind = "unsupported"          // the route's version is not served
	KindRateLimited         ErrorKind = "rate_limited"         // the caller's own rate limit (429)
	KindInFlight            ErrorKind = "in_flight"            // the same request is still running (409)
	KindNotFound            ErrorKind = "not_found"            // identified, no dossier
	KindIdentityUnresolved  ErrorKind = "identity_unresolved"  // the provider recognises nobody
	KindIdentityAmbiguous   ErrorKind = "identity_ambiguous"   // several people match
	KindCivilityRejected    ErrorKind = "civility_rejected"    // the provider refuses the civility's format
	KindIdentifierRejected  ErrorKind = "identifier_rejected"  // the provider refuses the identifier (INE, …)
	KindIdentityUnusable    ErrorKind = "identity_unusable"    // the provider returned an unusable identity
	KindUnavailableLegal    ErrorKind = "unavailable_legal"    // not served for legal reasons
	KindGone                ErrorKind = "gone"                 // no longer served
	KindProviderFailure     ErrorKind = "provider_failure"     // the provider failed
	KindProviderUnavailable ErrorKind = "provider_unavailable" // the provider is down or unreachable
	KindProviderTimeout     ErrorKind = "provider_timeout"     // the provider did not answer in time
	KindProviderThrottled   ErrorKind = "provider_throttled"   // the provider throttles the API (XX008)
	KindMaintenance         ErrorKind = "maintenance"          // the provider's maintenance window (XX020)
	KindProviderUnknown     ErrorKind = "provider_unknown"     // an answer the API does not know (XX999)
	KindUnknown             ErrorKind = "unknown"              // an HTTP status the catalogue has no rule for
)

var errorKinds = []ErrorKind{KindUnauthorized, KindDelegationAmbiguous, KindInvalidParameter, KindPeriodRejected,
	KindUnsupported, KindRateLimited, KindInFlight, KindNotFound, KindIdentityUnresolved, KindIdentityAmbiguous,
	KindCivilityRejected, KindIdentifierRejected, KindIdentityUnusable, KindUnavailableLegal, KindGone,
	KindProviderFailure, KindProviderUnavailable, KindProviderTimeout, KindProviderThrottled, KindMaintenance,
	KindProviderUnknown, KindUnknown}

// ErrorRule is one entry of the error catalogue: an answer's HTTP status
// and code, and what apbatch makes of it.
type ErrorRule struct {
	// HTTPStatus is the answer's status; 0 in the fallback for any status.
	HTTPStatus int `yaml:"http"`
	// Code is five characters: a code ("00355"), or "XX" and a subcode
	// ("XX560") for that subcode under any provider's prefix but "00".
	// "" in fallbacks.
	Code      string    `yaml:"code"`
	Kind      ErrorKind `yaml:"kind"`
	Retryable bool      `yaml:"retryable"`
	// Status is the result's status.
	Status Status `yaml:"status"`
	// Message is what an agent is told, in French; "" in fallbacks (the
	// API's titles are shown then).
	Message string `yaml:"message"`
	// Since and Until bound the catalogue versions the rule holds in:
	// Since included, Until excluded; "" for no bound.
	Since string `yaml:"since"`
	Until string `yaml:"until"`
}

// ProviderCalled reports whether the rule's code says a data provider was
// called: any prefix but "00".
func (r ErrorRule) ProviderCalled() bool { return len(r.Code) == 5 && r.Code[:2] != "00" }

// ErrorCatalogue is API Particulier's error catalogue (errors.yaml): rules
// by HTTP status and code, each valid in a range of the catalogue's
// versions, and fallbacks by HTTP status. Read-only once loaded; safe for
// concurrent use.
type ErrorCatalogue struct {
	// Latest is the newest version, the default.
	Latest string `yaml:"version"`
	// Versions lists the known versions, oldest first.
	Versions  []string    `yaml:"versions"`
	Rules     []ErrorRule `yaml:"errors"`
	Fallbacks []ErrorRule `yaml:"fallbacks"`

	byKey    map[ruleKey]int // rule index, per version index
	fallback map[int]int     // by HTTP status
}

type ruleKey struct {
	version, http int
	code          string
}

//go:embed errors.yaml
var errorsYAML []byte

// Errors returns the embedded catalogue (errors.yaml), parsed once. It
// panics only if the embedded file is invalid, which its tests rule out.
func Errors() *ErrorCatalogue { return embeddedErrors() }

var embeddedErrors = sync.OnceValue(func() *ErrorCatalogue {
	c, err := ParseErrorCatalogue(errorsYAML)
	if err != nil {
		panic(err)
	}
	return c
})

// ParseErrorCatalogue reads and validates a catalogue in the format of
// errors.yaml.
func ParseErrorCatalogue(raw []byte) (*ErrorCatalogue, error) {
	var c ErrorCatalogue
	if err := yaml.Unmarshal(raw, &c); err != nil {
		return nil, fmt.Errorf("schemas: error catalogue: %w", err)
	}
	if len(c.Versions) == 0 || c.Latest != c.Versions[len(c.Versions)-1] {
		return nil, fmt.Errorf("schemas: error catalogue: version %q must be the last of versions %v", c.Latest, c.Versions)
	}
	if !slices.IsSorted(c.Versions) {
		return nil, fmt.Errorf("schemas: error catalogue: versions %v not in order", c.Versions)
	}
	c.byKey = make(map[ruleKey]int)
	for i, r := range c.Rules {
		if err := c.checkRule(r, false); err != nil {
			return nil, fmt.Errorf("schemas: error catalogue: rule %d (%d %s): %w", i, r.HTTPStatus, r.Code, err)
		}
		from, to := 0, len(c.Versions)
		if r.Since != "" {
			from = slices.Index(c.Versions, r.Since)
		}
		if r.Until != "" {
			to = slices.Index(c.Versions, r.Until)
		}
		for v := from; v < to; v++ {
			k := ruleKey{v, r.HTTPStatus, r.Code}
			if j, dup := c.byKey[k]; dup {
				return nil, fmt.Errorf("schemas: error catalogue: rules %d and %d both hold %d %s in version %s", j, i, r.HTTPStatus, r.Code, c.Versions[v])
			}
			c.byKey[k] = i
		}
	}
	c.fallback = make(map[int]int)
	for i, r := range c.Fallbacks {
		if err := c.checkRule(r, true); err != nil {
			return nil, fmt.Errorf("schemas: error catalogue: fallback %d (%d): %w", i, r.HTTPStatus, err)
		}
		if _, dup := c.fallback[r.HTTPStatus]; dup {
			return nil, fmt.Errorf("schemas: error catalogue: two fallbacks for HTTP %d", r.HTTPStatus)
		}
		c.fallback[r.HTTPStatus] = i
	}
	if _, ok := c.fallback[0]; !ok {
		return nil, fmt.Errorf("schemas: error catalogue: no fallback for any other status (http: 0)")
	}
	return &c, nil
}

func (c *ErrorCatalogue) checkRule(r ErrorRule, fallback bool) error {
	switch {
	case !slices.Contains(errorKinds, r.Kind):
		return fmt.Errorf("unknown kind %q", r.Kind)
	case !r.Status.Valid() || r.Status == StatusOK:
		return fmt.Errorf("status %q is not an error status", r.Status)
	case r.Retryable && r.Status != StatusProviderError:
		return fmt.Errorf("retryable with status %s (only provider errors are retried)", r.Status)
	case r.Since != "" && !slices.Contains(c.Versions, r.Since), r.Until != "" && !slices.Contains(c.Versions, r.Until):
		return fmt.Errorf("since %q or until %q is no known version", r.Since, r.Until)
	case r.Since != "" && r.Until != "" && r.Since >= r.Until:
		return fmt.Errorf("since %q not before until %q", r.Since, r.Until)
	}
	if fallback {
		if r.Code != "" || r.Message != "" || r.Since != "" || r.Until != "" {
			return fmt.Errorf("a fallback has no code, message nor versions")
		}
		return nil
	}
	if r.HTTPStatus < 400 || r.HTTPStatus > 599 {
		return fmt.Errorf("HTTP status %d is no error", r.HTTPStatus)
	}
	if r.Message == "" {
		return fmt.Errorf("no message")
	}
	if len(r.Code) != 5 || !isDigits(r.Code[2:]) || !(r.Code[:2] == "XX" || isDigits(r.Code[:2])) {
		return fmt.Errorf("code %q is not XXYYY", r.Code)
	}
	return nil
}

// HasVersion reports whether v is one of the catalogue's versions.
func (c *ErrorCatalogue) HasVersion(v string) bool { return slices.Contains(c.Versions, v) }

// Lookup returns the rule of an answer's HTTP status and error code in
// catalogue version (the latest when "" or unknown): the code's own rule,
// else the rule of its subcode under any provider ("XX" and its last three
// digits; never for a "00" code). ok is false when no rule knows the
// code: the rule returned is then the HTTP status's fallback.
func (c *ErrorCatalogue) Lookup(version string, httpStatus int, code string) (rule ErrorRule, ok bool) {
	v := slices.Index(c.Versions, version)
	if v < 0 {
		v = len(c.Versions) - 1
	}
	if len(code) == 5 {
		if i, found := c.byKey[ruleKey{v, httpStatus, code}]; found {
			return c.Rules[i], true
		}
		if code[:2] != "00" {
			if i, found := c.byKey[ruleKey{v, httpStatus, "XX" + code[2:]}]; found {
				return c.Rules[i], true
			}
		}
	}
	return c.Fallback(httpStatus), false
}

// Fallback returns the rule of an HTTP status whose code is unknown.
func (c *ErrorCatalogue) Fallback(httpStatus int) ErrorRule {
	if i, ok := c.fallback[httpStatus]; ok {
		return c.Fallbacks[i]
	}
	return c.Fallbacks[c.fallback[0]]
}

package workers

import (
	"encoding/hex"
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// BudgetKey names the budget a call spends. The API counts its rate limits
// by habilitation (authorization_request_id) when it knows the token's, so
// that the tokens of one habilitation share one budget; by token otherwise.
// A key never holds a token: a token's key is its SHA-256, a habilitation's
// is its id, which is no secret and names no person. The zero BudgetKey is
// the key of no call.
type BudgetKey struct {
	habilitation string
	token        tokenKey
}

// habilitationPattern is what a habilitation's id may look like: the API's
// are whole numbers; a few letters, dots, dashes and underscores are let
// through, nothing that could carry a sentence or a person's name.
var habilitationPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$`)

// ValidHabilitation reports whether id can name a habilitation in a
// BudgetKey: 1 to 64 letters, digits, '.', '-' or '_', starting with a
// letter or a digit.
func ValidHabilitation(id string) bool { return habilitationPattern.MatchString(id) }

// TokenBudgetKey returns the key of token's own budget.
func TokenBudgetKey(token string) BudgetKey { return BudgetKey{token: keyOfToken(token)} }

// HabilitationBudgetKey returns the key of the budget of the habilitation
// id (ValidHabilitation must hold).
func HabilitationBudgetKey(id string) BudgetKey { return BudgetKey{habilitation: id} }

// ChooseBudgetKey returns the key of the calls made with the token whose
// key is token and whose claims are claims (zero when unreadable), for a
// tenant whose configuration names the habilitation configured ("": none):
// the configured habilitation, which the operator may set to correct or
// complete the claims; else the claims' habilitation; else the token. A
// configured value that is not a habilitation's id (ValidHabilitation) is
// ignored.
func ChooseBudgetKey(token tokenKey, claims TokenClaims, configured string) BudgetKey {
	switch {
	case ValidHabilitation(configured):
		return BudgetKey{habilitation: configured}
	case ValidHabilitation(claims.Habilitation):
		return BudgetKey{habilitation: claims.Habilitation}
	}
	return BudgetKey{token: token}
}

// Habilitation returns the habilitation the key names, or "" for a
// token's key.
func (k BudgetKey) Habilitation() string { return k.habilitation }

// Kind returns "habilitation" or "token".
func (k BudgetKey) Kind() string {
	if k.habilitation != "" {
		return budgetKindHabilitation
	}
	return budgetKindToken
}

const (
	budgetKindHabilitation = "habilitation"
	budgetKindToken        = "token"
)

// String returns "habilitation:" and the id, or the token's SHA-256 in hex:
// the name of the key's lease and shared slots in the ledger (a token's is
// the name its lease had before budgets had keys, so that replicas of
// either version take turns with it), and what logs may show of it.
func (k BudgetKey) String() string {
	if k.habilitation != "" {
		return budgetKindHabilitation + ":" + k.habilitation
	}
	return hex.EncodeToString(k.token[:])
}

// KeyLimits are per-minute limits configured per budget key, taken before
// any RateLimit-* header announces one: by key ("habilitation:1234", or a
// token's SHA-256 in hex), then by kind ("habilitation" for every
// habilitation, "token" for every token). The API's headers can only lower
// them. A nil KeyLimits configures none.
type KeyLimits map[string]int

// PerMinute returns the per-minute limit configured for key; 0 when none.
func (l KeyLimits) PerMinute(key BudgetKey) int {
	if n, ok := l[key.String()]; ok {
		return n
	}
	return l[key.Kind()]
}

// ParseKeyLimits reads KeyLimits written as "KEY=N,KEY=N": KEY is
// "habilitation", "token", "habilitation:ID" or a token's SHA-256 in hex, N
// calls per minute.
func ParseKeyLimits(s string) (KeyLimits, error) {
	out := KeyLimits{}
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		k, v, ok := strings.Cut(part, "=")
		if !ok {
			return nil, fmt.Errorf("workers: limit %q: want KEY=CALLS_PER_MINUTE", part)
		}
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		if !strings.HasPrefix(k, budgetKindHabilitation) {
			k = strings.ToLower(k) // a token's SHA-256, as String writes it
		}
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 || n > MaxLimit {
			return nil, fmt.Errorf("workers: limit of %s: want calls per minute, 1 to %d", k, MaxLimit)
		}
		if !validLimitKey(k) {
			return nil, fmt.Errorf("workers: limit of %q: want habilitation, token, habilitation:ID or a token's SHA-256 in hex", k)
		}
		if _, dup := out[k]; dup {
			return nil, fmt.Errorf("workers: limit of %s given twice", k)
		}
		out[k] = n
	}
	return out, nil
}

func validLimitKey(k string) bool {
	if k == budgetKindHabilitation || k == budgetKindToken {
		return true
	}
	if id, ok := strings.CutPrefix(k, budgetKindHabilitation+":"); ok {
		return ValidHabilitation(id)
	}
	b, err := hex.DecodeString(k)
	return err == nil && len(b) == len(tokenKey{})
}

// String writes l as ParseKeyLimits reads it, keys in order.
func (l KeyLimits) String() string {
	keys := make([]string, 0, len(l))
	for k := range l {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for i, k := range keys {
		keys[i] = k + "=" + strconv.Itoa(l[k])
	}
	return strings.Join(keys, ",")
}

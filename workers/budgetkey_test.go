package workers

import (
	"strings"
	"testing"
)

func TestChooseBudgetKey(t *testing.T) {
	const token = "header.payload.signature"
	tk := keyOfToken(token)
	for _, tc := range []struct {
		name       string
		claims     TokenClaims
		configured string
		want       string
		kind       string
	}{
		{"no habilitation: the token", TokenClaims{ID: "3f6c1a52"}, "", TokenBudgetKey(token).String(), "token"},
		{"the claims' habilitation", TokenClaims{Habilitation: "51234"}, "", "habilitation:51234", "habilitation"},
		{"the tenant's configuration", TokenClaims{}, "51234", "habilitation:51234", "habilitation"},
		{"the configuration wins over the claims", TokenClaims{Habilitation: "51234"}, "60001", "habilitation:60001", "habilitation"},
		{"an invalid configuration is ignored", TokenClaims{Habilitation: "51234"}, "Mairie de Trifouilly", "habilitation:51234", "habilitation"},
		{"an invalid configuration, no claims: the token", TokenClaims{}, "jean.dupont@example.org", TokenBudgetKey(token).String(), "token"},
		{"an invalid claim: the token", TokenClaims{Habilitation: "a b"}, "", TokenBudgetKey(token).String(), "token"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k := ChooseBudgetKey(tk, tc.claims, tc.configured)
			if k.String() != tc.want || k.Kind() != tc.kind {
				t.Fatalf("key %s (%s), want %s (%s)", k, k.Kind(), tc.want, tc.kind)
			}
			if strings.Contains(k.String(), token) {
				t.Fatalf("key %s holds the token", k)
			}
		})
	}
	// Two tokens of one habilitation share a key; of none, they do not.
	a, b := keyOfToken("token-a"), keyOfToken("token-b")
	if ChooseBudgetKey(a, TokenClaims{Habilitation: "7"}, "") != ChooseBudgetKey(b, TokenClaims{}, "7") {
		t.Fatal("two tokens of habilitation 7 have two keys")
	}
	if ChooseBudgetKey(a, TokenClaims{}, "") == ChooseBudgetKey(b, TokenClaims{}, "") {
		t.Fatal("two tokens without habilitation share a key")
	}
	// A token's key names its lease as before budgets had keys.
	if got := TokenBudgetKey(token).String(); len(got) != 64 || got != ChooseBudgetKey(tk, TokenClaims{}, "").String() {
		t.Fatalf("token key %q", got)
	}
}

func TestValidHabilitation(t *testing.T) {
	for id, want := range map[string]bool{
		"51234": true, "ar_2026-01.x": true, "A1": true,
		"": false, "-1": false, "a b": false, "x@y": false, "é": false, strings.Repeat("1", 65): false, "1/2": false,
	} {
		if got := ValidHabilitation(id); got != want {
			t.Errorf("ValidHabilitation(%q) = %v, want %v", id, got, want)
		}
	}
}

func TestKeyLimits(t *testing.T) {
	hexKey := TokenBudgetKey("tok").String()
	for _, tc := range []struct {
		in      string
		bad     bool
		key     BudgetKey
		want    int
		written string
	}{
		{in: "", key: HabilitationBudgetKey("1"), want: 0, written: ""},
		{in: "habilitation=250", key: HabilitationBudgetKey("1"), want: 250, written: "habilitation=250"},
		{in: "habilitation=250, habilitation:7=500", key: HabilitationBudgetKey("7"), want: 500, written: "habilitation=250,habilitation:7=500"},
		{in: "habilitation=250", key: TokenBudgetKey("tok"), want: 0, written: "habilitation=250"},
		{in: "token=600", key: TokenBudgetKey("tok"), want: 600, written: "token=600"},
		{in: strings.ToUpper(hexKey) + "=120,token=600", key: TokenBudgetKey("tok"), want: 120, written: hexKey + "=120,token=600"},
		{in: "habilitation", bad: true},
		{in: "habilitation=0", bad: true},
		{in: "habilitation=-5", bad: true},
		{in: "habilitation=many", bad: true},
		{in: "habilitation:a b=5", bad: true},
		{in: "tenant:lyon=5", bad: true},
		{in: "abcd=5", bad: true},
		{in: "habilitation=5,habilitation=6", bad: true},
	} {
		t.Run(tc.in, func(t *testing.T) {
			l, err := ParseKeyLimits(tc.in)
			if tc.bad {
				if err == nil {
					t.Fatalf("ParseKeyLimits(%q) = %v, want an error", tc.in, l)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := l.PerMinute(tc.key); got != tc.want {
				t.Errorf("PerMinute(%s) = %d, want %d", tc.key, got, tc.want)
			}
			if l.String() != tc.written {
				t.Errorf("String() = %q, want %q", l.String(), tc.written)
			}
		})
	}
}

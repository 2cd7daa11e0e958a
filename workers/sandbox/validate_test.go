package sandbox

import (
	"regexp"
	"testing"
)

// The regular expressions the written-out identity checks follow.
var (
	civilityNamePattern = regexp.MustCompile(`^[a-zA-ZÀ-ÖØ-öø-ÿ' -]+$`)
	siretPattern        = regexp.MustCompile(`^[0-9]{14}$`)
	paysCOGPattern      = regexp.MustCompile(`^(99[0-9]{3}|92352)$`)
	communeCOGPattern   = regexp.MustCompile(`^([013-9][0-9]|2[AB1-9])[0-9]{3}$`)
)

var identityChecks = []struct {
	name    string
	pattern *regexp.Regexp
	check   func(string) bool
}{
	{"civility name", civilityNamePattern, isCivilityName},
	{"SIRET digits", siretPattern, func(s string) bool { return len(s) == 14 && allDigits(s) }},
	{"country", paysCOGPattern, isPaysCOG},
	{"commune", communeCOGPattern, isCommuneCOG},
}

var identitySamples = []string{"", "MARTIN", "D'ALMEIDA", "JEAN-PIERRE", "LE GALL", "ÉLODIE", "ÀÖØöøÿ", "×", "÷", "Ā", "A1", "MARTIN\n",
	"\xff", "\ufffd", "13002526500013", "1300252650001", "130025265000134", "1300252650001a", "99100", "99350", "92352", "9910",
	"991000", "98100", "9A100", "08480", "2A004", "2B033", "20004", "2C004", "2a004", "97411", "0848A", " 8480", "٠٨٤٨٠"}

func TestIdentityChecks_FollowTheirPatterns(t *testing.T) {
	for _, c := range identityChecks {
		for _, s := range identitySamples {
			if got, want := c.check(s), c.pattern.MatchString(s); got != want {
				t.Errorf("%s %q: %v, want %v", c.name, s, got, want)
			}
		}
	}
}

func FuzzIdentityChecks(f *testing.F) {
	for _, s := range identitySamples {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		for _, c := range identityChecks {
			if got, want := c.check(s), c.pattern.MatchString(s); got != want {
				t.Fatalf("%s %q: %v, want %v", c.name, s, got, want)
			}
		}
	})
}

package schemas

import (
	"regexp"
	"testing"
	"time"
)

func TestParseSexe(t *testing.T) {
	for in, want := range map[string]string{"M": "M", "f": "F", "H": "M", "1": "M", "2": "F", "Masculin": "M", "Féminin": "F",
		"FEMININ": "F", "Homme": "M", "femme": "F", "M.": "M", "Mme": "F", "Madame": "F", "Monsieur": "M", "Mlle": "F", " F ": "F",
		"X": "", "": "", "3": "", "Mixte": ""} {
		if got := ParseSexe(in); got != want {
			t.Errorf("ParseSexe(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestParseBirthDate(t *testing.T) {
	now := time.Date(2026, 9, 14, 10, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		in      string
		y, m, d int
		bad     bool
	}{
		{"05/09/2014", 2014, 9, 5, false},
		{"5/9/2014", 2014, 9, 5, false},
		{"5/9/14", 2014, 9, 5, false}, // pivot: 2014, in the past
		{"5/9/82", 1982, 9, 5, false}, // pivot: 2082 would be future
		{"05-09-2014", 2014, 9, 5, false},
		{"05.09.2014", 2014, 9, 5, false},
		{"2014-09-05", 2014, 9, 5, false},
		{"05/09/2014 00:00:00", 2014, 9, 5, false},
		{"2014-09-05T00:00:00", 2014, 9, 5, false},
		{"41887", 2014, 9, 5, false}, // Excel serial
		{"09/2014", 2014, 9, 0, false},
		{"2014", 2014, 0, 0, false},
		{"", 0, 0, 0, false},
		{"31/02/2015", 0, 0, 0, true},
		{"14/13/2015", 0, 0, 0, true},
		{"2027", 0, 0, 0, true},
		{"15/09/2026", 0, 0, 0, true}, // tomorrow
		{"hier", 0, 0, 0, true},
	} {
		y, m, d, problem := ParseBirthDate(tc.in, now)
		if (problem != "") != tc.bad || y != tc.y || m != tc.m || d != tc.d {
			t.Errorf("ParseBirthDate(%q) = %d-%d-%d %q", tc.in, y, m, d, problem)
		}
	}
}

func TestCountryCode(t *testing.T) {
	for in, want := range map[string]string{"France": "99100", "FRANCE": "99100", "Maroc": "99350", "algerie": "99352",
		"Côte d'Ivoire": "99326", "COTE D IVOIRE": "99326", "Côte d’Ivoire": "99326", "USA": "99404", "États-Unis": "99404",
		"Royaume-Uni": "99132", "Viêt Nam": "99243", "RDC": "99312", "Congo": "99324", "Turquie": "99208", "Portugal": "99139",
		"Atlantide": "", "": ""} {
		if got := CountryCode(in); got != want {
			t.Errorf("CountryCode(%q) = %q, want %q", in, got, want)
		}
	}
}

// The regular expressions validName and foldSpaces replaced.
var (
	namePattern = regexp.MustCompile(`^[a-zA-ZÀ-ÖØ-öø-ÿ' -]+$`)
	spaces      = regexp.MustCompile(`\s+`)
)

func TestNameRules_SameAsRegexps(t *testing.T) {
	for _, s := range []string{"", " ", "LEFEBVRE", "Jean-Pierre", "d'Artagnan", "LÉA", "Ø", "×", "÷", "ÿ", "Ā", "a1", "a\tb",
		"  a  \t\n b \r\f ", "\v", "a\u00a0b", "\xff", "caf\xc3", "’", "x  ", " x"} {
		if got, want := validName(s), namePattern.MatchString(s); got != want {
			t.Errorf("validName(%q) = %v, want %v", s, got, want)
		}
		if got, want := foldSpaces(s), spaces.ReplaceAllString(s, " "); got != want {
			t.Errorf("foldSpaces(%q) = %q, want %q", s, got, want)
		}
	}
}

func FuzzNameRules(f *testing.F) {
	f.Add("Jean  Pierre\t’x")
	f.Fuzz(func(t *testing.T, s string) {
		if got, want := validName(s), namePattern.MatchString(s); got != want {
			t.Fatalf("validName(%q) = %v, want %v", s, got, want)
		}
		if got, want := foldSpaces(s), spaces.ReplaceAllString(s, " "); got != want {
			t.Fatalf("foldSpaces(%q) = %q, want %q", s, got, want)
		}
	})
}

package workers

import (
	"slices"
	"strconv"
	"strings"
	"unicode"
)

// Bounds of what an API error body may put in a result: the body is the
// provider's, and its free text (detail, meta, even a parameter's name in
// source) may echo the query, that is the person's identity.
const (
	maxErrorTitle  = 100 // runes of one title
	maxErrorsShown = 3   // errors listed, the others counted
)

// knownProviders are the meta.provider values of the API's error bodies
// (reference: errors_backend.rb); any other value is dropped.
var knownProviders = []string{"ACOSS", "ANTS", "CNAF", "CNAF & MSA", "CNAV", "CNOUS", "DSNJ", "France Travail", "FranceConnect",
	"GIP-MDS", "GIP", "INSEE", "MEN", "MESRI", "MSA", "RNCPS", "SDH", "Sécurité sociale"}

// errorSummary reduces a JSON:API error list to what may travel in a
// result's error_message: each error's title and code, bounded; never
// detail, source nor meta. An empty result means the body had nothing
// usable.
func errorSummary(errs []apiError) string {
	var parts []string
	for i, e := range errs {
		if i == maxErrorsShown {
			parts = append(parts, "et "+strconv.Itoa(len(errs)-i)+" autres erreurs")
			break
		}
		m := cleanText(e.Title, maxErrorTitle)
		if c := errorCode(e.Code); c != "" {
			m = strings.TrimSpace(m + " (" + c + ")")
		}
		if m != "" {
			parts = append(parts, m)
		}
	}
	return strings.Join(parts, " ; ")
}

// errorCode returns code when it is an API error code, five digits
// ("37003", "00355": provider then error), "" otherwise.
func errorCode(code string) string {
	if len(code) != 5 {
		return ""
	}
	for i := 0; i < len(code); i++ {
		if code[i] < '0' || code[i] > '9' {
			return ""
		}
	}
	return code
}

// providerName returns meta.provider when it is one of knownProviders,
// "" otherwise.
func providerName(s string) string {
	if slices.Contains(knownProviders, s) {
		return s
	}
	return ""
}

// cleanText returns s as one line of valid UTF-8 without control
// characters, spaces collapsed, cut to max runes.
func cleanText(s string, max int) string {
	s = strings.ToValidUTF8(s, "")
	var b strings.Builder
	n := 0
	space := false
	for _, r := range s {
		if unicode.IsSpace(r) || unicode.IsControl(r) {
			space = b.Len() > 0
			continue
		}
		if n == max {
			b.WriteString("…")
			break
		}
		if space {
			b.WriteByte(' ')
			n++
			space = false
			if n == max {
				b.WriteString("…")
				break
			}
		}
		b.WriteRune(r)
		n++
	}
	return b.String()
}

package pipeline

import (
	"strings"
	"unicode/utf8"
)

// formulaStarts are the first characters that make a spreadsheet read a
// cell as a formula or a command (OWASP's CSV injection list: = + - @, tab
// and carriage return), with line feed and the full-width forms an
// Asian-locale spreadsheet folds to them.
var formulaStarts = [...]rune{'=', '+', '-', '@', '\t', '\r', '\n', '＝', '＋', '－', '＠'}

// SafeCell returns s as a spreadsheet shows it without evaluating it: a
// text starting with a formula character (formulaStarts) gets a leading
// apostrophe, as OWASP recommends against CSV injection. A plain number
// (an optional sign, digits, at most one decimal point or comma: "-12",
// "+3", "-2,50") is returned as is, since a spreadsheet reads it as a
// number, not a formula; "-2+3" or "+1+1" are not numbers and are
// neutralised. Every text cell of an export (CSV or XLSX, header
// included) goes through SafeCell.
func SafeCell(s string) string {
	r, _ := utf8.DecodeRuneInString(s)
	if !isFormulaStart(r) || isPlainNumber(s) {
		return s
	}
	return "'" + s
}

func isFormulaStart(r rune) bool {
	for _, c := range formulaStarts {
		if r == c {
			return true
		}
	}
	return false
}

// isPlainNumber reports whether s is a signed decimal number: [+-] digits,
// with at most one '.' or ',' between digits.
func isPlainNumber(s string) bool {
	if s == "" {
		return false
	}
	if s[0] == '+' || s[0] == '-' {
		s = s[1:]
	}
	intPart, frac, hasSep := strings.Cut(strings.Replace(s, ",", ".", 1), ".")
	if !allDigits(intPart) {
		return false
	}
	return !hasSep || allDigits(frac)
}

func allDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

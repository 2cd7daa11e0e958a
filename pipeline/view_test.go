package pipeline

import "testing"

// TestNewCorrection: a row's message is split into the column to correct
// and what to do; the line's other problems follow.
func TestNewCorrection(t *testing.T) {
	for _, tc := range []struct {
		msg, column, action string
	}{
		{"ligne 9, colonne « Date » : date impossible", "Date", "date impossible"},
		{"ligne 9 : 3 champs au lieu de 5", "", "3 champs au lieu de 5"},
		{"ligne 9, colonne « Sexe » : valeur manquante ; ligne 9, colonne « Date » : date impossible", "Sexe",
			"valeur manquante ; ligne 9, colonne « Date » : date impossible"},
		{"autre chose", "", "autre chose"},
	} {
		c := newCorrection(9, "quotient_familial", tc.msg)
		if c.Column != tc.column || c.Action != tc.action || c.Message != tc.msg || c.Line != 9 {
			t.Errorf("%q: column %q action %q", tc.msg, c.Column, c.Action)
		}
	}
}

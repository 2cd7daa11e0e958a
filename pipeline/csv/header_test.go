package csv

import (
	"strings"
	"testing"
)

func TestCheckColumns(t *testing.T) {
	for _, tc := range []struct {
		name    string
		m       map[string]string
		wantErr string // a part of the message; "" for none
	}{
		{"none", nil, ""},
		{"own headers", map[string]string{"nom_naissance": "NOM JF", "prenoms": "Prénom usuel"}, ""},
		{"unknown column", map[string]string{"telephone": "Tel"}, "« telephone » n'est pas une colonne"},
		{"empty header", map[string]string{"nom_naissance": " -- "}, "vide"},
		{"one header for two columns", map[string]string{"nom_naissance": "NOM JF", "nom_usage": "nom  jf"}, "« nom_naissance » et « nom_usage »"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := CheckColumns(tc.m)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("err = %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("err = %v, want %q", err, tc.wantErr)
			}
		})
	}
}

package pipeline

import (
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/apbatch/apbatch/pipeline/csv"
	"github.com/apbatch/apbatch/schemas"
)

// FuzzParseColumns: whatever a tenant uploads as its column mapping, the
// reader never panics, accepts only apbatch's columns, and a file read
// with an accepted mapping reads the same every time.
func FuzzParseColumns(f *testing.F) {
	const file = "NOM JF;Prénom usuel;Sexe;Né le;Commune\nLEFEBVRE;ALEXIS;F;27/12/1982;08480\n"
	f.Add([]byte("nom_naissance: NOM JF\nprenoms: Prénom usuel\n"), file)
	f.Add([]byte("nom_naissance: NOM JF\nnom_usage: nom jf\nprenoms: Prénom usuel\ncode_insee_commune_naissance: Commune\n"), file)
	f.Add([]byte("nom_naissance: \"\"\n"), ";"+file)
	f.Add([]byte("ine: Commune\n"), file)
	f.Add([]byte("telephone: Tel\n"), file)
	f.Add([]byte("- a\n- b\n"), file)
	f.Add([]byte("{"), "")
	now := time.Date(2026, 9, 14, 0, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, raw []byte, in string) {
		m, err := ParseColumns(raw)
		if err != nil {
			return
		}
		for c := range m {
			if !slices.Contains(schemas.Columns, c) {
				t.Fatalf("column %q accepted", c)
			}
		}
		read := func() (string, []csv.Row) {
			r, err := csv.Open(strings.NewReader(in), "fuzz.csv", csv.Options{Now: now, Columns: m})
			if err != nil {
				return err.Error(), nil
			}
			var rows []csv.Row
			for i := 0; i < 100; i++ {
				row, err := r.Next()
				if err != nil {
					return err.Error(), rows
				}
				rows = append(rows, row)
			}
			return "", rows
		}
		err1, rows1 := read()
		// (Go varies map order between runs: read a few times.)
		for i := 0; i < 8; i++ {
			if err2, rows2 := read(); err2 != err1 || !reflect.DeepEqual(rows1, rows2) {
				t.Fatalf("mapping %v read the file differently: %q %+v then %q %+v", m, err1, rows1, err2, rows2)
			}
		}
	})
}

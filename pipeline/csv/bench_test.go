package csv

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"testing"
)

// roster returns n rows in the synthetic population's format: distinct
// people, some with two first names or a partial birth date.
func roster(n int) []byte {
	names := []string{"MARTIN", "BERNARD", "DUBOIS", "THOMAS", "ROBERT", "RICHARD", "PETIT", "DURAND", "LEROY", "MOREAU"}
	firsts := []string{"ALEXIS", "ELODIE", "JEAN PIERRE", "MARIE", "LÉA", "CHLOÉ", "HUGO", "LOUIS"}
	var b bytes.Buffer
	b.WriteString("reference;nom_naissance;prenoms;sexe;date_naissance;code_insee_pays_naissance;code_insee_commune_naissance\n")
	for i := 0; i < n; i++ {
		date := fmt.Sprintf("%04d-%02d-%02d", 1950+i%60, 1+i%12, 1+i%28)
		if i%17 == 0 {
			date = fmt.Sprintf("%02d/%04d", 1+i%12, 1950+i%60)
		}
		sexe := "F"
		if i%2 == 1 {
			sexe = "M"
		}
		fmt.Fprintf(&b, "SYN-%07d;%s;%s;%s;%s;99100;%05d\n", i+1, names[i%len(names)], firsts[(i/7)%len(firsts)], sexe, date, 8000+i%900)
	}
	return b.Bytes()
}

// BenchmarkCSVReader reads a 10,000-row roster for the quotient familial.
func BenchmarkCSVReader(b *testing.B) {
	const n = 10000
	in := roster(n)
	b.ReportAllocs()
	b.SetBytes(int64(len(in)))
	for b.Loop() {
		r, err := NewReader(bytes.NewReader(in), "liste.csv", today)
		if err != nil {
			b.Fatal(err)
		}
		rows := 0
		for {
			row, err := r.Next()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				b.Fatal(err)
			}
			if len(row.Invalid(0)) > 0 {
				b.Fatalf("row %d invalid: %v", row.Number, row.Invalid(0))
			}
			rows++
		}
		if rows != n {
			b.Fatalf("%d rows", rows)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/row")
}

package schemas

import (
	"fmt"
	"os"
	"regexp"
	"strings"
	"testing"
)

func TestTariffGrid_Apply(t *testing.T) {
	raw, err := os.ReadFile("../deploy/samples/tarifs-cantine.yaml")
	if err != nil {
		t.Fatal(err)
	}
	g, err := ParseTariffGrid(raw)
	if err != nil {
		t.Fatal(err)
	}
	qf := func(v int64) *int64 { return &v }
	for _, tc := range []struct {
		name    string
		r       Result
		tranche string
		cents   int64 // -1: no price
	}{
		{"lowest bracket", Result{Check: CheckQuotientFamilial, Status: StatusOK, QFValue: qf(120)}, "A", 80},
		{"upper bound is inclusive", Result{Check: CheckQuotientFamilial, Status: StatusOK, QFValue: qf(400)}, "A", 80},
		{"just above", Result{Check: CheckQuotientFamilial, Status: StatusOK, QFValue: qf(401)}, "B", 160},
		{"open last bracket", Result{Check: CheckQuotientFamilial, Status: StatusOK, QFValue: qf(9000)}, "E", 410},
		{"QF 0: review policy", Result{Check: CheckQuotientFamilial, Status: StatusOK, QFValue: qf(0), NeedsReview: true}, "A", 80},
		{"QF null: review policy", Result{Check: CheckQuotientFamilial, Status: StatusOK, NeedsReview: true}, "A", 80},
		{"no dossier", Result{Check: CheckQuotientFamilial, Status: StatusNotFound}, "E", 410},
		{"identity unresolved", Result{Check: CheckQuotientFamilial, Status: StatusIdentityUnresolved}, "E", 410},
		{"invalid row: no price", Result{Check: CheckQuotientFamilial, Status: StatusInvalidInput}, "", -1},
		{"provider error: no price", Result{Check: CheckQuotientFamilial, Status: StatusProviderError}, "", -1},
		{"other checks untouched", Result{Check: CheckRSA, Status: StatusNotFound}, "", -1},
	} {
		r := tc.r
		g.Apply(&r)
		got := int64(-1)
		if r.TarifCents != nil {
			got = *r.TarifCents
		}
		if r.Tranche != tc.tranche || got != tc.cents {
			t.Errorf("%s: %q %d, want %q %d", tc.name, r.Tranche, got, tc.tranche, tc.cents)
		}
	}
}

func TestParseTariffGrid_Errors(t *testing.T) {
	for _, tc := range []struct{ yaml, want string }{
		{"brackets: [{code: A, price: '1'}]", "version"},
		{"version: v\n", "aucune tranche"},
		{"version: v\nbrackets: [{code: A, qf_max: 500, price: '1'}, {code: B, qf_max: 400, price: '2'}, {code: C, price: '3'}]", "croître"},
		{"version: v\nbrackets: [{code: A, price: '1'}, {code: B, price: '2'}]", "seule la dernière"},
		{"version: v\nbrackets: [{code: A, qf_max: 10, price: '1'}]", "dernière tranche"},
		{"version: v\nbrackets: [{code: A, price: 'gratuit'}]", "prix"},
		{"version: v\nbrackets: [{code: A, price: '1'}]\nqf_missing: {tranche: A, price: '1.234'}", "qf_missing"},
		{"version: v\nbrackets: [{code: A, price: '1'}]\nprix: 2", "prix"},
	} {
		if _, err := ParseTariffGrid([]byte(tc.yaml)); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v, want an error about %q", tc.yaml, err, tc.want)
		}
	}
	for in, want := range map[string]int64{"2.10": 210, "2,10": 210, "3": 300, "0.5": 50} {
		if got, err := Cents(in); err != nil || got != want {
			t.Errorf("Cents(%q) = %d, %v", in, got, err)
		}
	}
}

// FuzzParseTariffGrid: whatever a tenant uploads as its tariff grid, the
// reader never panics, and a grid it accepts prices every QF with one of
// its codes at a price that is never negative and reads back the same.
var priceShape = regexp.MustCompile(`^[0-9]+(\.[0-9]{1,2})?$`)

func FuzzParseTariffGrid(f *testing.F) {
	sample, err := os.ReadFile("../deploy/samples/tarifs-cantine.yaml")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(sample, int64(650))
	f.Add([]byte("version: v1\nbrackets:\n  - {code: A, price: \"3\"}\n"), int64(0))
	f.Add([]byte("version: v1\nbrackets:\n  - {code: A, qf_max: 10, price: \"2,5\"}\n  - {code: B, price: \"92233720368547758.07\"}\n"), int64(11))
	f.Add([]byte("version: v1\nbrackets:\n  - {code: A, qf_max: 10, price: \"1.2\"}\n  - {code: B, qf_max: 5, price: \"1\"}\n"), int64(7))
	f.Add([]byte("version: v1\nbrackets:\n  - {code: A, price: \"92233720368547759\"}\n"), int64(1))
	f.Add([]byte("version: v1\nbrackets:\n  - {code: A, price: \"+2.+1\"}\n"), int64(1))
	f.Add([]byte("version: [\nbrackets"), int64(-1))
	f.Add([]byte{}, int64(0))
	f.Fuzz(func(t *testing.T, raw []byte, qf int64) {
		g, err := ParseTariffGrid(raw)
		if err != nil {
			return
		}
		codes := map[string]bool{}
		for _, b := range g.Brackets {
			codes[b.Code] = true
			c, err := Cents(b.Price)
			if err != nil || c < 0 {
				t.Fatalf("accepted price %q reads as %d cents, %v", b.Price, c, err)
			}
			if !priceShape.MatchString(strings.ReplaceAll(strings.TrimSpace(b.Price), ",", ".")) {
				t.Fatalf("accepted price %q is not euros and cents", b.Price)
			}
			if again, err := Cents(fmt.Sprintf("%d.%02d", c/100, c%100)); err != nil || again != c {
				t.Fatalf("price %q: %d cents, written back reads %d, %v", b.Price, c, again, err)
			}
		}
		r := Result{Check: CheckQuotientFamilial, Status: StatusOK, QFValue: &qf}
		g.Apply(&r)
		if r.TarifCents == nil || *r.TarifCents < 0 || !codes[r.Tranche] {
			t.Fatalf("QF %d priced %q at %v", qf, r.Tranche, r.TarifCents)
		}
	})
}

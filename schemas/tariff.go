package schemas

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// TariffGrid is a collectivité's price grid: quotient familial brackets,
// each with a code and a price per meal, and what to charge the families
// whose QF cannot be used. It is written in YAML:
//
//	version: "2026-09"
//	effective: 2026-09-01
//	brackets:
//	  - {code: A, qf_max: 450, price: "0.90"}
//	  - {code: B, qf_max: 900, price: "2.10"}
//	  - {code: C, price: "3.80"}        # no qf_max: everything above
//	qf_missing: {tranche: C, price: "3.80"}  # QF 0 or null: to review
//	not_found:  {tranche: C, price: "3.80"}  # no CAF/MSA dossier
type TariffGrid struct {
	Version   string          `yaml:"version"`
	Effective string          `yaml:"effective"`
	Brackets  []TariffBracket `yaml:"brackets"`
	QFMissing *TariffPolicy   `yaml:"qf_missing"`
	NotFound  *TariffPolicy   `yaml:"not_found"`
}

// TariffBracket is one row of a grid: QF values up to QFMax (inclusive;
// nil for the last bracket) pay Price.
type TariffBracket struct {
	Code  string `yaml:"code"`
	QFMax *int64 `yaml:"qf_max"`
	Price string `yaml:"price"`
}

// TariffPolicy is the bracket and price of families without a usable QF.
type TariffPolicy struct {
	Tranche string `yaml:"tranche"`
	Price   string `yaml:"price"`
}

// ParseTariffGrid reads and checks a grid. Messages are in French, for the
// agents who write grids.
func ParseTariffGrid(b []byte) (TariffGrid, error) {
	var g TariffGrid
	dec := yaml.NewDecoder(strings.NewReader(string(b)))
	dec.KnownFields(true)
	if err := dec.Decode(&g); err != nil {
		return g, fmt.Errorf("grille tarifaire illisible : %w", err)
	}
	return g, g.Validate()
}

// Validate checks that brackets are in increasing order, the last one open,
// codes set and prices decimal.
func (g TariffGrid) Validate() error {
	if strings.TrimSpace(g.Version) == "" {
		return errors.New("grille tarifaire : « version » manquante (par exemple \"2026-09\")")
	}
	if len(g.Brackets) == 0 {
		return errors.New("grille tarifaire : aucune tranche (« brackets »)")
	}
	var prev *int64
	for i, b := range g.Brackets {
		last := i == len(g.Brackets)-1
		switch {
		case strings.TrimSpace(b.Code) == "":
			return fmt.Errorf("grille tarifaire : tranche %d sans « code »", i+1)
		case b.QFMax == nil && !last:
			return fmt.Errorf("grille tarifaire : tranche %s sans « qf_max » (seule la dernière peut n'en pas avoir)", b.Code)
		case b.QFMax != nil && last:
			return fmt.Errorf("grille tarifaire : la dernière tranche (%s) ne doit pas avoir de « qf_max » : elle prend tous les QF au-dessus", b.Code)
		case b.QFMax != nil && prev != nil && *b.QFMax <= *prev:
			return fmt.Errorf("grille tarifaire : les « qf_max » doivent croître (tranche %s)", b.Code)
		}
		if _, err := Cents(b.Price); err != nil {
			return fmt.Errorf("grille tarifaire : tranche %s : %w", b.Code, err)
		}
		prev = b.QFMax
	}
	for name, p := range map[string]*TariffPolicy{"qf_missing": g.QFMissing, "not_found": g.NotFound} {
		if p == nil {
			continue
		}
		if _, err := Cents(p.Price); err != nil {
			return fmt.Errorf("grille tarifaire : %s : %w", name, err)
		}
	}
	return nil
}

// Cents reads a price in euros ("2.10", "2,10", "3") as cents.
func Cents(price string) (int64, error) {
	s := strings.ReplaceAll(strings.TrimSpace(price), ",", ".")
	euros, frac, hasFrac := strings.Cut(s, ".")
	if euros == "" || len(frac) > 2 || (hasFrac && frac == "") || !digits(euros) || !digits(frac) {
		return 0, fmt.Errorf("prix %q invalide (attendu par exemple \"2.10\")", price)
	}
	e, err := strconv.ParseInt(euros, 10, 64)
	if err != nil || e < 0 || e > (math.MaxInt64-99)/100 {
		return 0, fmt.Errorf("prix %q invalide (attendu par exemple \"2.10\")", price)
	}
	c := int64(0)
	if frac != "" {
		if len(frac) == 1 {
			frac += "0"
		}
		if c, err = strconv.ParseInt(frac, 10, 64); err != nil || c < 0 {
			return 0, fmt.Errorf("prix %q invalide (attendu par exemple \"2.10\")", price)
		}
	}
	return e*100 + c, nil
}

// digits reports whether s has only ASCII digits (no sign).
func digits(s string) bool {
	return strings.IndexFunc(s, func(r rune) bool { return r < '0' || r > '9' }) < 0
}

// Apply sets the tranche and price of a quotient familial result: its
// bracket when the QF is usable, the qf_missing policy when it is 0 or
// null, the not_found policy when the family has no dossier or could not
// be identified. Other results and checks are left alone.
func (g TariffGrid) Apply(r *Result) {
	if code, cents, ok := g.Price(r.Check, r.Status, r.NeedsReview, r.QFValue); ok {
		r.Tranche, r.TarifCents = code, &cents
	}
}

// ApplyRow prices a published result row as Apply does a result: it
// re-prices results already written (a new grid needs no new call), and
// clears the price of a row the grid does not price.
func (g TariffGrid) ApplyRow(r *ResultRow) {
	if r.Check != string(CheckQuotientFamilial) {
		return
	}
	r.Tranche, r.Tarif = nil, nil
	if code, cents, ok := g.Price(Check(r.Check), Status(r.Status), r.NeedsReview, r.QFValue); ok {
		r.Tranche, r.Tarif = &code, &cents
	}
}

// Price is the bracket and price, in cents, of a result of check with
// status, review flag and QF; false when the grid does not price it.
func (g TariffGrid) Price(check Check, status Status, review bool, qf *int64) (string, int64, bool) {
	if check != CheckQuotientFamilial {
		return "", 0, false
	}
	set := func(code, price string) (string, int64, bool) {
		c, err := Cents(price)
		if err != nil || code == "" {
			return "", 0, false
		}
		return code, c, true
	}
	switch {
	case status == StatusOK && !review && qf != nil:
		for _, b := range g.Brackets {
			if b.QFMax == nil || *qf <= *b.QFMax {
				return set(b.Code, b.Price)
			}
		}
	case status == StatusOK && g.QFMissing != nil:
		return set(g.QFMissing.Tranche, g.QFMissing.Price)
	case (status == StatusNotFound || status == StatusIdentityUnresolved) && g.NotFound != nil:
		return set(g.NotFound.Tranche, g.NotFound.Price)
	}
	return "", 0, false
}

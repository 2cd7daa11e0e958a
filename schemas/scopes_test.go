package schemas

import (
	"reflect"
	"slices"
	"testing"
)

func TestCheck_Scopes(t *testing.T) {
	for _, c := range Checks {
		s := c.Scopes()
		if len(s.Route) == 0 || len(s.Result) == 0 {
			t.Errorf("%s: no scopes: %+v", c, s)
		}
		for _, r := range s.Result {
			if !slices.Contains(s.Route, r) {
				t.Errorf("%s: result scope %s does not open the route", c, r)
			}
		}
		// A copy: changing it leaves the table alone.
		s.Result[0] = "x"
		if c.Scopes().Result[0] == "x" {
			t.Errorf("%s: Scopes shares the table", c)
		}
	}
}

func TestUnserved(t *testing.T) {
	var all []string
	for _, c := range Checks {
		all = append(all, c.Scopes().Route...)
	}
	for _, tc := range []struct {
		name   string
		checks []Check
		scopes []string
		want   []Check
		lack   map[Check][]string
	}{
		{"every scope", Checks, all, nil, nil},
		{"no scope", []Check{CheckQuotientFamilial, CheckScolarite}, nil,
			[]Check{CheckQuotientFamilial, CheckScolarite},
			map[Check][]string{CheckQuotientFamilial: {"cnaf_quotient_familial"}, CheckScolarite: {"men_statut_scolarite"}}},
		{"QF alone", []Check{CheckQuotientFamilial, CheckRSA}, []string{"cnaf_quotient_familial"}, []Check{CheckRSA},
			map[Check][]string{CheckRSA: {"revenu_solidarite_active"}}},
		// The route answers, but the QF value is masked: no answer.
		{"QF route without its value", []Check{CheckQuotientFamilial}, []string{"cnaf_adresse", "cnaf_enfants"},
			[]Check{CheckQuotientFamilial}, map[Check][]string{CheckQuotientFamilial: {"cnaf_quotient_familial"}}},
		{"RSA without the majoration", []Check{CheckRSA}, []string{"revenu_solidarite_active"}, nil, nil},
		{"MESRI needs the enrolment field too", []Check{CheckStatutEtudiant}, []string{"mesri_admissions", "mesri_identite"},
			[]Check{CheckStatutEtudiant}, map[Check][]string{CheckStatutEtudiant: {"mesri_admission_inscrit"}}},
		{"CNOUS, France Travail, MEN", []Check{CheckEtudiantBoursier, CheckFranceTravail, CheckScolarite},
			[]string{"cnous_statut_boursier", "pole_emploi_inscription", "men_statut_scolarite"}, nil, nil},
		{"unknown scopes are ignored", []Check{CheckAAH}, []string{"dsnj_statut_service_national"}, []Check{CheckAAH},
			map[Check][]string{CheckAAH: {"allocation_adulte_handicape"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Unserved(tc.checks, tc.scopes); !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("Unserved = %v, want %v", got, tc.want)
			}
			for _, c := range tc.checks {
				if got := c.LackingScopes(tc.scopes); !reflect.DeepEqual(got, tc.lack[c]) {
					t.Errorf("%s lacks %v, want %v", c, got, tc.lack[c])
				}
			}
		})
	}
}

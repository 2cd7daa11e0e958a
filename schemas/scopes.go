package schemas

import "slices"

// Scopes are the API Particulier scopes (the data masks a token carries)
// one check relies on, from the operator's authorizations table and
// serializers.
type Scopes struct {
	// Route are the scopes of the check's route: the API answers 403
	// (00100) to a token holding none of them.
	Route []string
	// Result are the scopes of the fields the check's result is made of
	// (the QF value, a benefit's est_beneficiaire, a student's
	// enrolment…). Each is one of Route. A token lacking one gets the
	// field masked: its route answers, but the check has no answer.
	Result []string
}

// checkScopes are the scopes of every check.
var checkScopes = map[Check]Scopes{
	CheckQuotientFamilial: {
		Route:  []string{"cnaf_quotient_familial", "cnaf_allocataires", "cnaf_enfants", "cnaf_adresse"},
		Result: []string{"cnaf_quotient_familial"},
	},
	CheckC2S: {Route: []string{"complementaire_sante_solidaire"}, Result: []string{"complementaire_sante_solidaire"}},
	CheckRSA: {
		Route:  []string{"revenu_solidarite_active", "revenu_solidarite_active_majoration"},
		Result: []string{"revenu_solidarite_active"},
	},
	CheckPrimeActivite: {Route: []string{"prime_activite", "prime_activite_majoration"}, Result: []string{"prime_activite"}},
	CheckAAH:           {Route: []string{"allocation_adulte_handicape"}, Result: []string{"allocation_adulte_handicape"}},
	CheckASF:           {Route: []string{"allocation_soutien_familial"}, Result: []string{"allocation_soutien_familial"}},
	// datagouv/apistration pull requests #164 (the route) and #256 (the
	// staging token holding the scope).
	CheckARS: {Route: []string{"cnav_allocation_rentree_scolaire"}, Result: []string{"cnav_allocation_rentree_scolaire"}},
	CheckEtudiantBoursier: {
		Route: []string{"cnous_statut_boursier", "cnous_echelon_bourse", "cnous_email", "cnous_periode_versement",
			"cnous_statut_bourse", "cnous_ville_etudes", "cnous_identite"},
		Result: []string{"cnous_statut_boursier"},
	},
	CheckStatutEtudiant: {
		Route: []string{"mesri_identite", "mesri_admissions", "mesri_admission_inscrit", "mesri_admission_regime_formation",
			"mesri_admission_commune_etudes", "mesri_admission_etablissement_etudes"},
		Result: []string{"mesri_admissions", "mesri_admission_inscrit"},
	},
	CheckFranceTravail: {
		Route:  []string{"pole_emploi_identifiant", "pole_emploi_identite", "pole_emploi_adresse", "pole_emploi_contact", "pole_emploi_inscription"},
		Result: []string{"pole_emploi_inscription"},
	},
	CheckScolarite: {
		Route: []string{"men_statut_identite", "men_statut_scolarite", "men_statut_etablissement", "men_statut_module_elementaire_formation",
			"men_statut_boursier", "men_echelon_bourse", "men_regime_pensionnat"},
		Result: []string{"men_statut_scolarite"},
	},
}

// Scopes returns the scopes check c relies on; the zero Scopes for an
// unknown check. The slices are copies.
func (c Check) Scopes() Scopes {
	s := checkScopes[c]
	return Scopes{Route: slices.Clone(s.Route), Result: slices.Clone(s.Result)}
}

// LackingScopes returns the scopes of c's result that scopes lacks, in
// the order of Scopes.Result; nil when a token with scopes serves c.
func (c Check) LackingScopes(scopes []string) []string {
	var lack []string
	for _, s := range checkScopes[c].Result {
		if !slices.Contains(scopes, s) {
			lack = append(lack, s)
		}
	}
	return lack
}

// Unserved returns the checks of checks a token with scopes cannot serve
// (see LackingScopes), in the order given; nil when it serves them all.
func Unserved(checks []Check, scopes []string) []Check {
	var out []Check
	for _, c := range checks {
		if len(c.LackingScopes(scopes)) > 0 {
			out = append(out, c)
		}
	}
	return out
}

package schemas

import (
	"fmt"
	"sort"
	"strings"
)

// Check names an API Particulier verification. A batch runs one or more
// checks; every input row gets one result per check.
type Check string

// Checks supported by apbatch, one per API route family.
const (
	// CheckQuotientFamilial is GET /v3/dss/quotient_familial/identite.
	CheckQuotientFamilial Check = "quotient_familial"
	// CheckC2S is GET /v3/dss/complementaire_sante_solidaire/identite.
	CheckC2S Check = "complementaire_sante_solidaire"
	// CheckRSA is GET /v3/dss/revenu_solidarite_active/identite.
	CheckRSA Check = "revenu_solidarite_active"
	// CheckPrimeActivite is GET /v3/dss/prime_activite/identite.
	CheckPrimeActivite Check = "prime_activite"
	// CheckAAH is GET /v3/dss/allocation_adulte_handicape/identite.
	CheckAAH Check = "allocation_adulte_handicape"
	// CheckASF is GET /v3/dss/allocation_soutien_familial/identite.
	CheckASF Check = "allocation_soutien_familial"
	// CheckARS is GET /v3/dss/allocation_rentree_scolaire/identite
	// (allocation de rentrée scolaire; scope cnav_allocation_rentree_scolaire).
	CheckARS Check = "allocation_rentree_scolaire"
	// CheckEtudiantBoursier is GET /v3/cnous/etudiant_boursier/{ine,identite}.
	CheckEtudiantBoursier Check = "etudiant_boursier"
	// CheckStatutEtudiant is GET /v3/mesri/statut_etudiant/{ine,identite}.
	CheckStatutEtudiant Check = "statut_etudiant"
	// CheckFranceTravail is GET /v3/france_travail/statut/identifiant.
	CheckFranceTravail Check = "france_travail_statut"
	// CheckScolarite is GET /v5/men/scolarites/identite.
	CheckScolarite Check = "scolarite"
)

// Checks lists every check in documentation order, which is also the order
// of a row's results.
var Checks = []Check{CheckQuotientFamilial, CheckC2S, CheckRSA, CheckPrimeActivite, CheckAAH, CheckASF, CheckARS,
	CheckEtudiantBoursier, CheckStatutEtudiant, CheckFranceTravail, CheckScolarite}

// checkAliases are the short names --checks accepts besides the full ones.
var checkAliases = map[string]Check{
	"qf": CheckQuotientFamilial, "c2s": CheckC2S, "css": CheckC2S, "rsa": CheckRSA,
	"pa": CheckPrimeActivite, "prime": CheckPrimeActivite, "aah": CheckAAH, "asf": CheckASF, "ars": CheckARS,
	"boursier": CheckEtudiantBoursier, "cnous": CheckEtudiantBoursier,
	"etudiant": CheckStatutEtudiant, "mesri": CheckStatutEtudiant,
	"france_travail": CheckFranceTravail, "ft": CheckFranceTravail,
	"men": CheckScolarite, "eleve": CheckScolarite,
}

// Valid reports whether c is a known check.
func (c Check) Valid() bool {
	for _, k := range Checks {
		if c == k {
			return true
		}
	}
	return false
}

// IsDSS reports whether c is one of the DSS routes (CAF, MSA and the
// Sécurité sociale benefits), which share their parameters and rules.
func (c Check) IsDSS() bool {
	switch c {
	case CheckQuotientFamilial, CheckC2S, CheckRSA, CheckPrimeActivite, CheckAAH, CheckASF, CheckARS:
		return true
	}
	return false
}

// ParseChecks parses a comma-separated list of checks, full names or
// aliases ("qf,boursier"), or "all". Duplicates are dropped; the result
// follows the order of Checks.
func ParseChecks(s string) ([]Check, error) {
	want := map[Check]bool{}
	for _, name := range strings.Split(s, ",") {
		name = strings.ToLower(strings.TrimSpace(name))
		if name == "" {
			continue
		}
		if name == "all" {
			for _, c := range Checks {
				want[c] = true
			}
			continue
		}
		c := Check(name)
		if a, ok := checkAliases[name]; ok {
			c = a
		}
		if !c.Valid() {
			return nil, fmt.Errorf("vérification %q inconnue ; choisissez parmi %s (ou all)", name, CheckNames())
		}
		want[c] = true
	}
	var out []Check
	for _, c := range Checks {
		if want[c] {
			out = append(out, c)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("aucune vérification demandée ; choisissez parmi %s (ou all)", CheckNames())
	}
	return out, nil
}

// CheckNames lists the checks and their aliases for messages and --help,
// e.g. "quotient_familial (qf), …".
func CheckNames() string {
	parts := make([]string, 0, len(Checks))
	for _, c := range Checks {
		var aliases []string
		for a, t := range checkAliases {
			if t == c {
				aliases = append(aliases, a)
			}
		}
		sort.Strings(aliases)
		if len(aliases) > 0 {
			parts = append(parts, string(c)+" ("+strings.Join(aliases, ", ")+")")
		} else {
			parts = append(parts, string(c))
		}
	}
	return strings.Join(parts, ", ")
}

// JoinChecks encodes checks for storage ("quotient_familial,scolarite").
func JoinChecks(cs []Check) string {
	s := make([]string, len(cs))
	for i, c := range cs {
		s[i] = string(c)
	}
	return strings.Join(s, ",")
}

// SplitChecks decodes what JoinChecks wrote; "" is the quotient familial
// alone, the only check of batches recorded before checks were selectable.
func SplitChecks(s string) []Check {
	if strings.TrimSpace(s) == "" {
		return []Check{CheckQuotientFamilial}
	}
	var out []Check
	for _, p := range strings.Split(s, ",") {
		out = append(out, Check(strings.TrimSpace(p)))
	}
	return out
}

// Label names c in French, as agents read it.
func (c Check) Label() string {
	switch c {
	case CheckQuotientFamilial:
		return "Quotient familial (CAF/MSA)"
	case CheckC2S:
		return "Complémentaire santé solidaire"
	case CheckRSA:
		return "Revenu de solidarité active"
	case CheckPrimeActivite:
		return "Prime d'activité"
	case CheckAAH:
		return "Allocation adulte handicapé"
	case CheckASF:
		return "Allocation de soutien familial"
	case CheckARS:
		return "Allocation de rentrée scolaire"
	case CheckEtudiantBoursier:
		return "Étudiant boursier"
	case CheckStatutEtudiant:
		return "Statut étudiant"
	case CheckFranceTravail:
		return "Inscription à France Travail"
	case CheckScolarite:
		return "Scolarité (élève)"
	}
	return string(c)
}

package sandbox

import (
	"bytes"
	"encoding/json"
	"strings"
)

// dataMasks lists, per route family (a path fragment), which scope each
// top-level data key needs, from the operator's serializers: production
// drops a key the token has no scope for.
var dataMasks = []struct {
	route string
	keys  map[string]string
}{
	{"/dss/quotient_familial/", map[string]string{"quotient_familial": "cnaf_quotient_familial", "allocataires": "cnaf_allocataires",
		"enfants": "cnaf_enfants", "adresse": "cnaf_adresse"}},
	{"/dss/complementaire_sante_solidaire/", map[string]string{"est_beneficiaire": "complementaire_sante_solidaire",
		"avec_participation": "complementaire_sante_solidaire", "date_debut_droit": "complementaire_sante_solidaire"}},
	{"/dss/revenu_solidarite_active/", map[string]string{"est_beneficiaire": "revenu_solidarite_active",
		"avec_majoration": "revenu_solidarite_active_majoration", "date_debut_droit": "revenu_solidarite_active"}},
	{"/dss/prime_activite/", map[string]string{"est_beneficiaire": "prime_activite",
		"avec_majoration": "prime_activite_majoration", "date_debut_droit": "prime_activite"}},
	{"/dss/allocation_adulte_handicape/", map[string]string{"est_beneficiaire": "allocation_adulte_handicape", "date_debut_droit": "allocation_adulte_handicape"}},
	{"/dss/allocation_soutien_familial/", map[string]string{"est_beneficiaire": "allocation_soutien_familial", "date_debut_droit": "allocation_soutien_familial"}},
	{"/cnous/etudiant_boursier/", map[string]string{"est_boursier": "cnous_statut_boursier", "statut_boursier": "cnous_statut_boursier",
		"echelon_bourse": "cnous_echelon_bourse", "email": "cnous_email", "periode_versement_bourse": "cnous_periode_versement",
		"statut_bourse": "cnous_statut_bourse", "etablissement_etudes": "cnous_ville_etudes", "identite": "cnous_identite"}},
	{"/mesri/statut_etudiant/", map[string]string{"identite": "mesri_identite", "admissions": "mesri_admissions"}},
	{"/france_travail/statut/", map[string]string{"identifiant": "pole_emploi_identifiant", "identite": "pole_emploi_identite",
		"adresse": "pole_emploi_adresse", "contact": "pole_emploi_contact", "inscription": "pole_emploi_inscription"}},
	{"/france_travail/indemnites/", map[string]string{"identifiant": "pole_emploi_paiements", "paiements": "pole_emploi_paiements"}},
	{"/men/scolarites/", map[string]string{"identite": "men_statut_identite", "annee_scolaire": "men_statut_scolarite",
		"est_scolarise": "men_statut_scolarite", "statut_eleve": "men_statut_scolarite", "etablissement": "men_statut_etablissement",
		"module_elementaire_formation": "men_statut_module_elementaire_formation", "est_boursier": "men_statut_boursier",
		"echelon_bourse": "men_echelon_bourse", "regime_pensionnat": "men_regime_pensionnat"}},
}

// admissionMasks are the scopes of each field of a MESRI admission.
var admissionMasks = map[string]string{"est_inscrit": "mesri_admission_inscrit", "regime_formation": "mesri_admission_regime_formation",
	"code_cog_insee_commune": "mesri_admission_commune_etudes", "etablissement_etudes": "mesri_admission_etablissement_etudes"}

// maskData drops the data keys of a 200 answer on path that the token's
// scopes do not open. Keys no mask names are kept.
func maskData(path string, body []byte, scopes []string) []byte {
	var keys map[string]string
	for _, m := range dataMasks {
		if strings.Contains(path, m.route) {
			keys = m.keys
			break
		}
	}
	if keys == nil {
		return body
	}
	var doc map[string]any
	if err := json.Unmarshal(body, &doc); err != nil {
		return body
	}
	data, _ := doc["data"].(map[string]any)
	drop(data, keys, scopes)
	if adm, ok := data["admissions"].([]any); ok {
		for _, a := range adm {
			if am, ok := a.(map[string]any); ok {
				drop(am, admissionMasks, scopes)
			}
		}
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(doc); err != nil {
		return body
	}
	return bytes.TrimRight(buf.Bytes(), "\n")
}

// drop deletes the keys of m whose scope the token lacks.
func drop(m map[string]any, keys map[string]string, scopes []string) {
	for k, scope := range keys {
		if _, ok := m[k]; ok && !intersects(scopes, []string{scope}) {
			delete(m, k)
		}
	}
}

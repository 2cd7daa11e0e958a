package sandbox

import (
	"regexp"
	"strings"
	"time"
)

// authKind says how a route authenticates its caller.
type authKind int

const (
	// authBearer: v3+ routes, the API token in Authorization: Bearer.
	authBearer authKind = iota
	// authAPIKey: legacy v2 routes, the API token in X-Api-Key.
	authAPIKey
	// authFranceConnect: /france_connect routes, a FranceConnect access
	// token in Authorization: Bearer (the sandbox cannot verify it and
	// accepts any non-empty one, as a rehearsal aid).
	authFranceConnect
)

// routeDef declares one data route: its official cases, how it
// authenticates, which scopes open it and how its parameters are checked.
type routeDef struct {
	path   string
	dir    string // folder under cases/; "" for routes without official cases
	auth   authKind
	scopes []string
	// fallback404 names the folder whose 404.yaml answers unmatched
	// requests when dir has none.
	fallback404 string
	validate    func(q map[string][]string, now time.Time) []apiError
	// status names a DSS benefit route without official cases, answered
	// from the synthetic population.
	status string
	// notFoundBody is the 404 of a route without official cases (default:
	// the DSS one).
	notFoundBody string
	// payload rewrites the official cases' 200 bodies for a route that
	// shares another version's cases (CNOUS v4 by INE: the v3 cases in the
	// v4 shape).
	payload func([]byte) []byte
}

// Scopes per endpoint, from the operator's authorizations table.
var (
	cnousScopes = []string{"cnous_statut_boursier", "cnous_echelon_bourse", "cnous_email", "cnous_periode_versement", "cnous_statut_bourse", "cnous_ville_etudes", "cnous_identite"}
	mesriScopes = []string{"mesri_identite", "mesri_admissions", "mesri_admission_inscrit", "mesri_admission_regime_formation", "mesri_admission_commune_etudes", "mesri_admission_etablissement_etudes"}
	ftStatut    = []string{"pole_emploi_identifiant", "pole_emploi_identite", "pole_emploi_adresse", "pole_emploi_contact", "pole_emploi_inscription"}
	ftPaiements = []string{"pole_emploi_paiements"}
	menScopes   = []string{"men_statut_identite", "men_statut_scolarite", "men_statut_etablissement", "men_statut_module_elementaire_formation",
		"men_statut_boursier", "men_echelon_bourse", "men_regime_pensionnat"}
)

// menNotFound is the MEN routes' 404.
const menNotFound = `{"errors":[{"code":"30003","title":"Entité non trouvée","detail":"Aucun élève n'a pu être trouvé avec les critères de recherche fournis.","meta":{"provider":"MEN"}}]}`

// routeTable lists every route the sandbox serves with official cases.
// The v1 QF route by numéro allocataire (cases api_particulier_v2_cnaf_*)
// is not here: it was removed on 31/10/2025 and answers 410.
var routeTable = []routeDef{
	{path: "/v3/dss/quotient_familial/identite", dir: "api_particulier_v3_cnav_quotient_familial_with_civility", scopes: QFScopes, validate: validateQF},
	{path: "/v3/dss/quotient_familial/france_connect", dir: "api_particulier_v3_cnav_quotient_familial_with_france_connect", auth: authFranceConnect, scopes: QFScopes, validate: validateRecipientOnly},
	{path: "/v3/cnous/etudiant_boursier/identite", dir: "api_particulier_v3_cnous_etudiant_boursier_with_civility", scopes: cnousScopes, validate: validateCNOUS},
	{path: "/v3/cnous/etudiant_boursier/ine", dir: "api_particulier_v3_cnous_etudiant_boursier_with_ine", scopes: cnousScopes, validate: validateINE},
	{path: "/v4/cnous/etudiant_boursier/identite", dir: "api_particulier_v4_cnous_etudiant_boursier_with_civility", scopes: cnousScopes, validate: validateCNOUS,
		fallback404: "api_particulier_v3_cnous_etudiant_boursier_with_civility"},
	{path: "/v4/cnous/etudiant_boursier/ine", dir: "api_particulier_v3_cnous_etudiant_boursier_with_ine", scopes: cnousScopes, validate: validateINEv4,
		payload: cnousV4},
	{path: "/v3/mesri/statut_etudiant/identite", dir: "api_particulier_v3_mesri_statut_etudiant_with_civility", scopes: mesriScopes, validate: validateMESRI},
	{path: "/v3/mesri/statut_etudiant/ine", dir: "api_particulier_v3_mesri_statut_etudiant_with_ine", scopes: mesriScopes, validate: validateINE},
	{path: "/v3/france_travail/statut/identifiant", dir: "api_particulier_v3_france_travail_statut_with_identifiant", scopes: ftStatut, validate: validateFT},
	{path: "/v3/france_travail/indemnites/identifiant", dir: "api_particulier_v3_france_travail_indemnites_with_identifiant", scopes: ftPaiements, validate: validateFT},
	{path: "/v3/dss/complementaire_sante_solidaire/identite", scopes: []string{"complementaire_sante_solidaire"}, validate: validateQF, status: "complementaire_sante_solidaire"},
	{path: "/v3/dss/revenu_solidarite_active/identite", scopes: []string{"revenu_solidarite_active", "revenu_solidarite_active_majoration"}, validate: validateQF, status: "revenu_solidarite_active"},
	{path: "/v3/dss/prime_activite/identite", scopes: []string{"prime_activite", "prime_activite_majoration"}, validate: validateQF, status: "prime_activite"},
	{path: "/v3/dss/allocation_adulte_handicape/identite", scopes: []string{"allocation_adulte_handicape"}, validate: validateQF, status: "allocation_adulte_handicape"},
	{path: "/v3/dss/allocation_soutien_familial/identite", scopes: []string{"allocation_soutien_familial"}, validate: validateQF, status: "allocation_soutien_familial"},
	// Allocation de rentrée scolaire (datagouv/apistration pull request
	// #164, 2026-06-02; scope in the staging token since #256).
	{path: "/v3/dss/allocation_rentree_scolaire/identite", dir: "api_particulier_v3_cnav_allocation_rentree_scolaire_with_civility",
		scopes: []string{"cnav_allocation_rentree_scolaire"}, validate: validateQF},
	{path: "/v3/men/scolarites/identite", scopes: menScopes, validate: validateMEN(3), notFoundBody: menNotFound},
	{path: "/v4/men/scolarites/identite", scopes: menScopes, validate: validateMEN(4), notFoundBody: menNotFound},
	{path: "/v5/men/scolarites/identite", scopes: menScopes, validate: validateMEN(5), notFoundBody: menNotFound},
	{path: "/api/v2/composition-familiale-v2", dir: "api_particulier_v2_cnav_quotient_familial_v2", auth: authAPIKey, scopes: QFScopes, validate: validateV2},
	{path: "/api/v2/etudiants-boursiers", dir: "api_particulier_v2_cnous_student_scholarship", auth: authAPIKey, scopes: cnousScopes, validate: validateV2},
	{path: "/api/v2/etudiants", dir: "api_particulier_v2_mesri_student_status", auth: authAPIKey, scopes: mesriScopes, validate: validateV2},
	{path: "/api/v2/situations-pole-emploi", dir: "api_particulier_v2_pole_emploi_statut", auth: authAPIKey, scopes: ftStatut, validate: validateV2},
}

// cnousV3Status is the v3 scholarship flag that v4 moved into statut_boursier.
var cnousV3Status = regexp.MustCompile(`"est_boursier": (true|false)`)

// cnousV4 turns a v3 CNOUS answer into the v4 shape: est_boursier becomes
// statut_boursier {est_boursier, est_radie, date_radiation}.
func cnousV4(body []byte) []byte {
	return cnousV3Status.ReplaceAll(body, []byte(`"statut_boursier": {
      "est_boursier": $1,
      "est_radie": false,
      "date_radiation": null
    }`))
}

// removedRoutes answer 410 with a plain-text body.
var removedRoutes = map[string]string{
	"/api/caf/famille":              "Cette API n'est plus disponible depuis le 31/10/2025. Utilisez /v3/dss/quotient_familial/identite.",
	"/api/v2/composition-familiale": "Cette API n'est plus disponible depuis le 31/10/2025. Utilisez /v3/dss/quotient_familial/identite.",
	"/api/impots/svair":             "Cette API n'est plus disponible depuis le 08/01/2024.",
	"/api/v2/avis-imposition":       "Cette API n'est plus disponible depuis le 08/01/2024.",
}

// AllScopes lists every scope the sandbox knows.
var AllScopes = func() []string {
	var all []string
	seen := map[string]bool{}
	for _, r := range routeTable {
		for _, s := range r.scopes {
			if !seen[s] {
				seen[s] = true
				all = append(all, s)
			}
		}
	}
	return all
}()

// isV2 reports whether a route speaks the legacy v2 error format.
func (r *route) isV2() bool { return strings.HasPrefix(r.path, "/api/v2/") }

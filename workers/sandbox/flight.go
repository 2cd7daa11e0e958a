package sandbox

import (
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// errInFlight answers an identical request already being served.
var errInFlight = apiError{Code: "00015", Title: "Requête en cours de traitement",
	Detail: "Une requête identique est déjà en cours de traitement pour ce jeton. Veuillez réessayer une fois celle-ci terminée.", Meta: map[string]any{}}

// flightCache tracks requests in flight and the response cache of DSS
// routes. Safe for concurrent use.
type flightCache struct {
	mu       sync.Mutex
	inFlight map[string]bool
	cache    map[string]time.Time // key → expiry
}

func newFlightCache() *flightCache {
	return &flightCache{inFlight: map[string]bool{}, cache: map[string]time.Time{}}
}

// enter marks key in flight; false if it already is.
func (f *flightCache) enter(key string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.inFlight[key] {
		return false
	}
	f.inFlight[key] = true
	return true
}

func (f *flightCache) leave(key string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.inFlight, key)
}

// cached reports whether key has a live cached answer and for how long.
func (f *flightCache) cached(key string, now time.Time) (time.Duration, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	exp, ok := f.cache[key]
	if !ok || !now.Before(exp) {
		delete(f.cache, key)
		return 0, false
	}
	return exp.Sub(now), true
}

func (f *flightCache) store(key string, exp time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.cache[key] = exp
}

// canonicalQuery encodes q with sorted keys and values, recipient included.
func canonicalQuery(q url.Values) string {
	keys := make([]string, 0, len(q))
	for k := range q {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var sb strings.Builder
	for _, k := range keys {
		for _, v := range q[k] {
			sb.WriteString(url.QueryEscape(k) + "=" + url.QueryEscape(v) + "&")
		}
	}
	return sb.String()
}

// cacheTTL is how long the API caches a route's successful answers: 24 h
// for the quotient familial, 1 h for the other DSS routes, none elsewhere.
func (r *route) cacheTTL() time.Duration {
	switch {
	case strings.HasPrefix(r.path, "/v3/dss/quotient_familial/"):
		return 24 * time.Hour
	case strings.HasPrefix(r.path, "/v3/dss/"):
		return time.Hour
	}
	return 0
}

// provider returns the provider name and the error-code prefix of the
// route, as the sandbox's own cases use them.
func (r *route) provider() (string, string) {
	switch {
	case strings.Contains(r.path, "/dss/"), strings.Contains(r.path, "composition-familiale"):
		return "CNAV", "37"
	case strings.Contains(r.path, "/men/"):
		return "MEN", "30"
	case strings.Contains(r.path, "cnous"), strings.Contains(r.path, "etudiants-boursiers"):
		return "CNOUS", "26"
	case strings.Contains(r.path, "mesri"), strings.Contains(r.path, "etudiants"):
		return "MESRI", "25"
	case strings.Contains(r.path, "france_travail"), strings.Contains(r.path, "pole-emploi"):
		return "France Travail", "24"
	}
	return "", "00"
}

// pingName is the /api/{name}/ping key of the route's provider, or "".
func (r *route) pingName() string {
	switch {
	case strings.Contains(r.path, "quotient_familial"), strings.Contains(r.path, "composition-familiale"):
		return "cnaf_msa_quotient_familial"
	case strings.Contains(r.path, "cnous/etudiant_boursier/ine"):
		return "cnous_etudiant_boursier_ine"
	case strings.Contains(r.path, "cnous/etudiant_boursier"):
		return "cnous_etudiant_boursier_identite"
	case strings.Contains(r.path, "mesri/statut_etudiant/ine"):
		return "mesri_statut_etudiant_ine"
	case strings.Contains(r.path, "mesri/statut_etudiant"):
		return "mesri_statut_etudiant_identite"
	case strings.Contains(r.path, "france_travail/statut"):
		return "pole_emploi_status"
	case strings.Contains(r.path, "france_travail/indemnites"):
		return "pole_emploi_indemnites"
	case strings.Contains(r.path, "/men/scolarites/"):
		return "men_scolarite"
	case strings.Contains(r.path, "/dss/complementaire_sante_solidaire/"):
		return "securite_sociale_complementaire_sante_solidaire"
	case strings.Contains(r.path, "/dss/"):
		// cnaf_msa_revenu_solidarite_active, cnaf_msa_prime_activite, …
		return "cnaf_msa_" + strings.Split(strings.TrimPrefix(r.path, "/v3/dss/"), "/")[0]
	}
	return ""
}

// menVersion is the API version of a MEN scolarités route, 0 for others.
func (r *route) menVersion() int {
	if !strings.Contains(r.path, "/men/scolarites/") {
		return 0
	}
	v, _ := strconv.Atoi(strings.TrimPrefix(strings.Split(r.path, "/")[1], "v"))
	return v
}

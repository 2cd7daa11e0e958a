package sandbox

import (
	"encoding/binary"
	"hash/maphash"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
)

// errInFlight answers an identical request already being served.
var errInFlight = apiError{Code: "00015", Title: "Requête en cours de traitement",
	Detail: "Une requête identique est déjà en cours de traitement pour ce jeton. Veuillez réessayer une fois celle-ci terminée.", Meta: map[string]any{}}

// requestSum identifies a data request whatever its token: its route and
// its parameters, recipient included, whatever their order in the URL. It
// is two seeded 64-bit sums over the route and the parameters (see
// paramSum), so that the response cache keeps 16 bytes per answer rather
// than its query (identities included), and that no string is built per
// request. Two different requests share a sum with a probability of about
// 2^-128.
type requestSum [2]uint64

// flightKey identifies a request in flight: who sends it, and what.
type flightKey struct {
	rateKey string
	sum     requestSum
}

// flightCache tracks requests in flight and the response cache of DSS
// routes. Safe for concurrent use.
type flightCache struct {
	seeds    [2]maphash.Seed
	mu       sync.Mutex
	inFlight map[flightKey]struct{}
	// cache maps a request to the expiry of its cached answer, as an
	// offset from base (the first answer's time): 8 bytes without pointer
	// rather than a time.Time. Offsets are measured as Time.Sub measures
	// (on the monotonic clock when there is one), so that base.Add gives
	// back the expiry as the comparisons need it.
	cache map[requestSum]time.Duration
	base  time.Time
	// sweepAt is the cache size at which store drops expired entries.
	sweepAt int
}

// minSweep is the smallest cache that store sweeps.
const minSweep = 1024

func newFlightCache() *flightCache {
	return &flightCache{seeds: [2]maphash.Seed{maphash.MakeSeed(), maphash.MakeSeed()},
		inFlight: map[flightKey]struct{}{}, cache: map[requestSum]time.Duration{}, sweepAt: minSweep}
}

// sum identifies the request for path with query q. The path counts as a
// parameter without values, which no parsed query has.
func (f *flightCache) sum(path string, q url.Values) requestSum {
	s := requestSum{paramSum(f.seeds[0], path, nil), paramSum(f.seeds[1], path, nil)}
	for name, vs := range q {
		s[0] += paramSum(f.seeds[0], name, vs)
		s[1] += paramSum(f.seeds[1], name, vs)
	}
	return s
}

// enter marks key in flight; false if it already is.
func (f *flightCache) enter(key flightKey) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.inFlight[key]; ok {
		return false
	}
	f.inFlight[key] = struct{}{}
	return true
}

func (f *flightCache) leave(key flightKey) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.inFlight, key)
}

// cached reports whether key has a live cached answer and for how long.
func (f *flightCache) cached(key requestSum, now time.Time) (time.Duration, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	offset, ok := f.cache[key]
	exp := f.base.Add(offset)
	if !ok || !now.Before(exp) {
		delete(f.cache, key)
		return 0, false
	}
	return exp.Sub(now), true
}

// store caches key's answer until exp. Each time the cache has doubled
// since the last sweep, it drops the entries expired at now, so that
// memory follows the live answers at an amortized constant cost.
func (f *flightCache) store(key requestSum, exp, now time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.cache) == 0 {
		f.base = now
	}
	f.cache[key] = exp.Sub(f.base)
	if len(f.cache) < f.sweepAt {
		return
	}
	for k, offset := range f.cache {
		if !now.Before(f.base.Add(offset)) {
			delete(f.cache, k)
		}
	}
	f.sweepAt = max(2*len(f.cache), minSweep)
}

// paramSum hashes one parameter with seed: its name, then its values in
// order. Summing it over the parameters of a set gives a sum that does not
// depend on the order of the parameters.
func paramSum(seed maphash.Seed, name string, values []string) uint64 {
	var buf [256]byte
	b := appendSized(buf[:0], name)
	for _, v := range values {
		b = appendSized(b, v)
	}
	return maphash.Bytes(seed, b)
}

// appendSized appends s after its length, so that a sequence of strings
// encodes without ambiguity.
func appendSized(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
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
	case strings.Contains(r.path, "/dss/allocation_rentree_scolaire/"):
		// Named as the AEEH's (cnav_allocation_enfant_handicape): the
		// operator's pings.yml for ARS was not among its stored sources.
		return "cnav_allocation_rentree_scolaire"
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

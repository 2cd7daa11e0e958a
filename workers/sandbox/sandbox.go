// Package sandbox is a faithful stand-in for API Particulier, served over
// HTTP, for tests, load measurements and rehearsals. It answers the official
// staging cases byte for byte with staging's matching rule (the request's
// parameter set, recipient excluded and string values lower-cased, must equal
// a case's parameters exactly; no match answers the route's 404 case), and it
// checks what production checks before that: the Bearer token (HS256 JWT with
// UUID uid/jti, exp, scopes), a per-token rate limit in fixed one-second
// windows with RateLimit-* headers and 429s, and the parameters, several
// errors accumulated in one 422 body.
package sandbox

import (
	"crypto/rand"
	"embed"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"hash/maphash"
	"io/fs"
	"net/http"
	"path"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
	"gopkg.in/yaml.v3"
)

// DefaultSecret signs the embedded sandbox's tokens. It protects nothing: it
// only makes sandbox tokens look and verify like real ones.
const DefaultSecret = "apbatch-sandbox-secret-not-for-production"

// QFScopes are the scopes of the quotient familial route.
var QFScopes = []string{"cnaf_quotient_familial", "cnaf_allocataires", "cnaf_enfants", "cnaf_adresse"}

//go:embed cases
var casesFS embed.FS

// Config configures a Server. Zero values mean defaults.
type Config struct {
	// Secret is the HS256 key of tokens. Default: []byte(DefaultSecret).
	Secret []byte
	// Limits are the throttles; zero fields take their defaults
	// (20 per second per token, 1000 per minute per IP, no ban).
	Limits Limits
	// MaskScopes drops data keys the token has no scope for, as
	// production does (staging does not). Default: false.
	MaskScopes bool
	// Population, when set, answers the QF route for its synthetic people
	// when no official case matches. Default: nil.
	Population *Population
	// Faults adds latency and provider failures to data answers.
	// Default: none.
	Faults Faults
	// Maintenance answers 503 XX020 (meta.retry_in) during the providers'
	// real maintenance windows, Europe/Paris: CNAF & MSA on Sundays
	// 23:00–23:45, MEN daily 01:10–02:30. Default: false (staging has none).
	Maintenance bool
	// Blacklist holds the jti of banned (leaked) tokens, refused with 401
	// 00105. Default: none.
	Blacklist []string
	// Now is the clock. Default: time.Now.
	Now func() time.Time
	// Log receives one line per request, without token, query or identity.
	Log zerolog.Logger
	// OnRequest, when set, is called for every authenticated data
	// request with who made it (RequestInfo: the token's id and the
	// recipient SIRET, never the token nor the identity), for tests that
	// check which credentials each call used. It must be safe for
	// concurrent use. Default: nil.
	OnRequest func(RequestInfo)
}

// RequestInfo names the caller of one data request.
type RequestInfo struct {
	// Path is the route.
	Path string
	// TokenID is the token's jti (Bearer and X-Api-Key routes), or a hash
	// of the token (FranceConnect routes).
	TokenID string
	// Recipient is the recipient parameter, a SIRET.
	Recipient string
}

// Validate reports the first invalid field.
func (c Config) Validate() error {
	if c.Limits.PerSecond < 0 || c.Limits.PerMinute < 0 || c.Limits.IPPerMinute < 0 || c.Limits.BanAfter < 0 {
		return fmt.Errorf("sandbox: Limits must not be negative")
	}
	if err := c.Faults.Validate(); err != nil {
		return err
	}
	return nil
}

// route is one data route with its loaded cases.
type route struct {
	routeDef
	// byParams indexes the official cases, in name order, by the sum of
	// their parameters (see paramsSum).
	byParams map[uint64][]apiCase
	seed     maphash.Seed
	ping     string // pingName, once for all
	notFound apiCase
}

// apiCase is one official case: parameters, status and body.
type apiCase struct {
	name   string
	params map[string][]string
	status int
	body   []byte
}

// Server serves the sandbox. It is safe for concurrent use.
type Server struct {
	cfg    Config
	routes map[string]*route
	calls  atomic.Int64

	lim    *limiter
	tokens tokenCache
	outMu  sync.Mutex
	outage map[string]time.Time // ping name → end of outage
	faults *faultSource
	state  *flightCache
	done   chan struct{}
	once   sync.Once
}

// Close releases the requests of banned clients, which otherwise wait for
// an answer that never comes. Call it before shutting the HTTP server down.
func (s *Server) Close() { s.once.Do(func() { close(s.done) }) }

// New loads the embedded cases. It starts no goroutine.
func New(cfg Config) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if len(cfg.Secret) == 0 {
		cfg.Secret = []byte(DefaultSecret)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	routes := make(map[string]*route, len(routeTable))
	for _, def := range routeTable {
		r, err := loadRoute(def)
		if err != nil {
			return nil, err
		}
		routes[def.path] = r
	}
	return &Server{cfg: cfg, routes: routes, lim: newLimiter(cfg), faults: newFaultSource(cfg.Faults),
		state: newFlightCache(), done: make(chan struct{})}, nil
}

// HTTPServer returns an http.Server for s with bounded reads: headers
// within 10 s, a whole request within 30 s (the API's requests are GETs),
// keep-alive connections closed after 2 idle minutes; an answer must be
// written within 2 minutes beyond the slowest one the faults draw.
func (s *Server) HTTPServer() *http.Server {
	slowest := s.cfg.Faults.ProviderTimeout
	if slowest <= 0 {
		slowest = 10 * time.Second
	}
	slowest += 10 * s.cfg.Faults.LatencyP99
	return &http.Server{Handler: s, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second,
		WriteTimeout: 2*time.Minute + slowest, IdleTimeout: 2 * time.Minute}
}

// Calls returns how many data requests were answered, whatever the status.
func (s *Server) Calls() int64 { return s.calls.Load() }

func loadRoute(def routeDef) (*route, error) {
	r := &route{routeDef: def, seed: maphash.MakeSeed()}
	r.ping = r.pingName()
	if def.dir == "" {
		body := def.notFoundBody
		if body == "" {
			body = dssNotFound
		}
		r.notFound = apiCase{name: "404.yaml", status: http.StatusNotFound, body: []byte(body)}
		return r, nil
	}
	cases, err := loadCases(def.dir)
	if err != nil {
		return nil, err
	}
	if def.payload != nil {
		for i := range cases {
			if cases[i].status == http.StatusOK {
				cases[i].body = def.payload(cases[i].body)
			}
		}
	}
	r.byParams = make(map[uint64][]apiCase, len(cases))
	for _, c := range cases {
		sum := r.paramsSum(c.params)
		r.byParams[sum] = append(r.byParams[sum], c)
	}
	notFoundDir := def.dir
	if def.fallback404 != "" {
		notFoundDir = def.fallback404
		if cases, err = loadCases(notFoundDir); err != nil {
			return nil, err
		}
	}
	for _, c := range cases {
		if c.name == "404.yaml" {
			r.notFound = c
		}
	}
	if r.notFound.status == 0 {
		return nil, fmt.Errorf("sandbox: %s has no 404.yaml case", notFoundDir)
	}
	return r, nil
}

// loadCases reads the official cases of one folder, in name order.
func loadCases(dir string) ([]apiCase, error) {
	var files []string
	for _, pat := range []string{"*.yaml", "*.yml"} {
		m, err := fs.Glob(casesFS, "cases/"+dir+"/"+pat)
		if err != nil {
			return nil, fmt.Errorf("sandbox: list cases of %s: %w", dir, err)
		}
		files = append(files, m...)
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("sandbox: no cases in %s", dir)
	}
	sort.Strings(files)
	var out []apiCase
	for _, f := range files {
		raw, err := casesFS.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("sandbox: read %s: %w", f, err)
		}
		var c struct {
			Params  map[string]any `yaml:"params"`
			Status  int            `yaml:"status"`
			Payload string         `yaml:"payload"`
		}
		if err := yaml.Unmarshal(raw, &c); err != nil {
			return nil, fmt.Errorf("sandbox: parse %s: %w", f, err)
		}
		out = append(out, apiCase{name: path.Base(f), params: normalizeCase(c.Params), status: c.Status, body: []byte(c.Payload)})
	}
	return out, nil
}

// normalizeCase turns a case's YAML params into lower-cased string lists.
func normalizeCase(p map[string]any) map[string][]string {
	out := make(map[string][]string, len(p))
	for k, v := range p {
		switch vv := v.(type) {
		case []any:
			for _, x := range vv {
				out[k] = append(out[k], strings.ToLower(fmt.Sprint(x)))
			}
		default:
			out[k] = []string{strings.ToLower(fmt.Sprint(vv))}
		}
	}
	return out
}

// requestParams is the provider-side parameter set of a request: every
// parameter but recipient, "prenoms[]" keyed "prenoms", values lower-cased.
// The values are cut from one lower-cased string and their lists from one
// array: a few allocations whatever the request.
func requestParams(q map[string][]string) map[string][]string {
	keys := make([]string, 0, 16) // in the order lowered holds their values
	ends := make([]int, 0, 32)    // where each value ends in lowered
	lowered := make([]byte, 0, 512)
	for k, vs := range q {
		if k == "recipient" || len(vs) == 0 {
			continue
		}
		keys = append(keys, k)
		for _, v := range vs {
			lowered = appendLower(lowered, v)
			ends = append(ends, len(lowered))
		}
	}
	text := string(lowered)
	values := make([]string, len(ends))
	from := 0
	for i, end := range ends {
		values[i], from = text[from:end], end
	}
	out := make(map[string][]string, len(keys))
	for _, k := range keys {
		n := len(q[k])
		// A full slice expression: appending "prenoms[]" to "prenoms"
		// copies rather than overwrite the next list.
		mine := values[:n:n]
		values = values[n:]
		k = strings.TrimSuffix(k, "[]")
		if prev, ok := out[k]; ok {
			out[k] = append(prev, mine...)
		} else {
			out[k] = mine
		}
	}
	return out
}

func sameParams(a, b map[string][]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, av := range a {
		bv, ok := b[k]
		if !ok || len(av) != len(bv) {
			return false
		}
		for i := range av {
			if av[i] != bv[i] {
				return false
			}
		}
	}
	return true
}

// paramsSum is the sum of paramSum over a parameter set: the same for the
// same parameters whatever their order, seldom the same for others.
func (r *route) paramsSum(params map[string][]string) uint64 {
	var sum uint64
	for k, vs := range params {
		sum += paramSum(r.seed, k, vs)
	}
	return sum
}

// match returns the first official case whose parameters are params, as
// staging matches them (exactly: the sum only finds the candidates), or
// the route's 404 case.
func (r *route) match(params map[string][]string) apiCase {
	for _, c := range r.byParams[r.paramsSum(params)] {
		if sameParams(params, c.params) {
			return c
		}
	}
	return r.notFound
}

// The response headers of data answers, as Header.Set canonicalizes their
// names (so, as they go on the wire): the hot path sets the map entries
// directly, which skips canonicalizing them again on every request.
const (
	hdrRequestID          = "X-Request-Id"
	hdrRateLimitLimit     = "Ratelimit-Limit"
	hdrRateLimitRemaining = "Ratelimit-Remaining"
	hdrRateLimitReset     = "Ratelimit-Reset"
	hdrRetryAfter         = "Retry-After"
	hdrResponseCached     = "X-Response-Cached"
	hdrCacheExpiresIn     = "X-Cache-Expires-In"
	hdrContentType        = "Content-Type"
)

// ServeHTTP answers one request.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	line := s.cfg.Log.Debug() // nil when debug lines are off
	var start time.Time
	if line != nil {
		start = s.cfg.Now()
	}
	reqID := newUUID()
	w.Header()[hdrRequestID] = []string{reqID}
	var key string
	status := s.serve(w, r, &key)
	if key != "" && status != 0 {
		s.lim.answered(key, clientIP(r), status)
	}
	if line != nil {
		// The path is logged, never the query (identities) or the token.
		line.Str("path", r.URL.Path).Int("status", status).Str("request_id", reqID).
			Dur("took", s.cfg.Now().Sub(start)).Msg("sandbox answer")
	}
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request, key *string) int {
	p := r.URL.Path
	switch {
	case p == "/_sandbox/stats":
		return writeJSON(w, http.StatusOK, s.lim.stats(s.cfg.Now()))
	case p == "/_sandbox/limits":
		return s.serveLimits(w, r)
	case p == "/_sandbox/people":
		return s.servePeople(w, r)
	case p == "/api/pings":
		return writeJSON(w, http.StatusOK, s.pings())
	case strings.HasPrefix(p, "/api/") && strings.HasSuffix(p, "/ping"):
		name := strings.TrimSuffix(strings.TrimPrefix(p, "/api/"), "/ping")
		if !knownPing(name) {
			return writeText(w, http.StatusNotFound, notFoundText)
		}
		if s.inOutage(name) {
			ping := s.ping()
			ping["status"] = "bad_gateway"
			return writeJSON(w, http.StatusBadGateway, ping)
		}
		return writeJSON(w, http.StatusOK, s.ping())
	case p == "/api/introspect":
		claims, aerr := s.authenticate(r.Header.Get("Authorization"), s.cfg.Now())
		if aerr != nil {
			return writeErrors(w, aerr.status, aerr.errs...)
		}
		return writeJSON(w, http.StatusOK, map[string]any{"_id": claims.JTI, "name": claims.Sub, "scopes": claims.Scopes})
	case removedRoutes[p] != "":
		return writeText(w, http.StatusGone, removedRoutes[p])
	}
	rt, ok := s.routes[p]
	if !ok || r.Method != http.MethodGet {
		return writeText(w, http.StatusNotFound, notFoundText)
	}
	s.calls.Add(1)
	now := s.cfg.Now()
	var rateKey, tokenID string
	var scopes []string
	switch rt.auth {
	case authFranceConnect:
		tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok || strings.TrimSpace(tok) == "" {
			return writeErrors(w, http.StatusUnauthorized, errTokenInvalid)
		}
		rateKey, scopes = s.tokens.fcRateKey(tok), rt.scopes
		tokenID = rateKey
	case authAPIKey:
		claims, aerr := s.authenticateToken(r.Header.Get("X-Api-Key"), now)
		if aerr != nil {
			return writeV2Error(w, http.StatusUnauthorized, "access_denied", aerr.errs[0].Detail)
		}
		if !intersects(claims.Scopes, rt.scopes) {
			return writeV2Error(w, http.StatusUnauthorized, "access_denied", errInsufficientScopes.Detail)
		}
		// v2 has its own 20/s bucket, keyed on the X-Api-Key value.
		rateKey, scopes, tokenID = "v2:"+claims.JTI, claims.Scopes, claims.JTI
	case authBearer:
		claims, aerr := s.authenticate(r.Header.Get("Authorization"), now)
		if aerr != nil {
			return writeErrors(w, aerr.status, aerr.errs...)
		}
		if !intersects(claims.Scopes, rt.scopes) {
			return writeErrors(w, http.StatusForbidden, errInsufficientScopes)
		}
		rateKey, scopes = claims.JTI, claims.Scopes
		if claims.Habilitation != "" {
			// Counted by habilitation, as the API does since it rate
			// limits by authorization request.
			rateKey = "habilitation:" + claims.Habilitation
		}
		tokenID = claims.JTI
	default:
		// A route declared with an unknown scheme is never served open.
		return writeText(w, http.StatusInternalServerError, "internal error")
	}
	*key = rateKey
	q := queryValues(r.URL.RawQuery)
	if s.cfg.OnRequest != nil {
		s.cfg.OnRequest(RequestInfo{Path: p, TokenID: tokenID, Recipient: q.Get("recipient")})
	}
	v := s.lim.take(rateKey, clientIP(r), now)
	if v.banned {
		// A banned IP gets no answer at all, as in production.
		select {
		case <-r.Context().Done():
		case <-s.done:
		}
		return 0
	}
	h := w.Header()
	// One array holds the three values, each header a slice of it.
	rl := []string{strconv.Itoa(v.limit), strconv.Itoa(v.remaining), strconv.FormatInt(v.reset, 10)}
	h[hdrRateLimitLimit], h[hdrRateLimitRemaining], h[hdrRateLimitReset] = rl[0:1:1], rl[1:2:2], rl[2:3:3]
	if !v.allowed {
		h[hdrRetryAfter] = []string{strconv.FormatInt(max(v.reset-now.Unix(), 0), 10)}
		if rt.isV2() {
			return writeJSON(w, http.StatusTooManyRequests, map[string]any{"errors": []string{errTooManyRequests.Detail}})
		}
		return writeErrors(w, http.StatusTooManyRequests, errTooManyRequests)
	}
	if errs := rt.validate(q, now); len(errs) > 0 {
		if rt.isV2() {
			return writeV2Error(w, http.StatusBadRequest, "bad_request", errs[0].Detail)
		}
		return writeErrors(w, http.StatusUnprocessableEntity, errs...)
	}
	// An identical request (token, route, parameters) still in flight gets
	// 409, as the API refuses to run one twice at once.
	reqKey := s.state.sum(rt.path, q)
	flight := flightKey{rateKey: rateKey, sum: reqKey}
	if !s.state.enter(flight) {
		return writeErrors(w, http.StatusConflict, errInFlight)
	}
	defer s.state.leave(flight)
	cachedFor, cached := s.state.cached(reqKey, now)
	if s.cfg.Maintenance {
		if left := maintenanceLeft(rt.path, now); left > 0 {
			return writeMaintenance(w, rt, left)
		}
	}
	if rt.ping != "" && s.inOutage(rt.ping) {
		provider, prefix := rt.provider()
		return writeErrors(w, http.StatusBadGateway, apiError{Code: prefix + "001", Title: "Fournisseur de données indisponible",
			Detail: "Le fournisseur de données est temporairement indisponible. Veuillez réessayer plus tard.", Meta: map[string]any{"provider": provider}})
	}
	if !cached || r.Header.Get("Cache-Control") == "no-cache" {
		cached = false
		if d := s.faults.latency(); d > 0 {
			t := time.NewTimer(d)
			select {
			case <-r.Context().Done():
				t.Stop()
				return 499
			case <-t.C:
			}
		}
		if st := s.injectFault(w, r, rt); st != 0 {
			return st
		}
	}
	params := requestParams(q)
	c := rt.match(params)
	body := c.body
	if c.name == rt.notFound.name && rt.path == "/v3/dss/quotient_familial/identite" {
		if per, ok := s.cfg.Population.Lookup(params); ok {
			c.status, body = per.answerQF(q, now)
		}
	}
	if rt.status != "" {
		if per, ok := s.cfg.Population.Lookup(params); ok {
			c.status, body = per.answerStatus(rt.status, now)
		}
	}
	if v := rt.menVersion(); v > 0 {
		if per, child, ok := s.cfg.Population.Pupil(params); ok {
			c.status, body = per.answerScolarite(child, v, q)
		}
	}
	if s.cfg.MaskScopes && c.status == http.StatusOK {
		body = maskData(rt.path, body, scopes)
	}
	if c.status == http.StatusTooManyRequests {
		h[hdrRetryAfter] = []string{"1"}
	}
	if ttl := rt.cacheTTL(); ttl > 0 {
		// DSS answers are cached by path and parameters, whatever the token.
		if cached {
			h[hdrResponseCached] = []string{"true"}
			h[hdrCacheExpiresIn] = []string{strconv.Itoa(int(cachedFor.Seconds()))}
		} else {
			h[hdrResponseCached] = []string{"false"}
			h[hdrCacheExpiresIn] = []string{""}
			if c.status == http.StatusOK {
				s.state.store(reqKey, now.Add(ttl), now)
			}
		}
	}
	h[hdrContentType] = []string{"application/json; charset=utf-8"}
	w.WriteHeader(c.status)
	w.Write(body)
	return c.status
}

func intersects(a, b []string) bool {
	for _, x := range a {
		for _, y := range b {
			if x == y {
				return true
			}
		}
	}
	return false
}

func (s *Server) ping() map[string]string {
	now := s.cfg.Now().UTC().Format(time.RFC3339)
	return map[string]string{"status": "ok", "last_update": now, "last_ok_status": now}
}

func (s *Server) pings() []map[string]string {
	var out []map[string]string
	for _, name := range pingNames {
		p := s.ping()
		p["name"] = name
		out = append(out, p)
	}
	return out
}

// pingNames are the provider keys of GET /api/{provider}/ping.
var pingNames = []string{"cnaf_msa_quotient_familial", "securite_sociale_complementaire_sante_solidaire",
	"cnaf_msa_revenu_solidarite_active", "cnaf_msa_allocation_soutien_familial", "cnaf_msa_allocation_adulte_handicape",
	"cnaf_msa_prime_activite", "cnaf_msa_participation_familiale_eaje", "cnav_allocation_enfant_handicape", "cnav_allocation_rentree_scolaire", "men_scolarite",
	"cnous_etudiant_boursier_ine", "cnous_etudiant_boursier_identite", "cnous_etudiant_boursier_france_connect",
	"mesri_statut_etudiant_ine", "mesri_statut_etudiant_identite", "pole_emploi_status", "pole_emploi_indemnites"}

func knownPing(name string) bool {
	for _, n := range pingNames {
		if n == name {
			return true
		}
	}
	return false
}

const notFoundText = "Cette URL n'existe pas sur Api particulier, veuillez vérifier votre URL."

func writeText(w http.ResponseWriter, status int, body string) int {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(status)
	w.Write([]byte(body))
	return status
}

func writeJSON(w http.ResponseWriter, status int, v any) int {
	b, err := json.Marshal(v)
	if err != nil {
		return writeText(w, http.StatusInternalServerError, "internal error")
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	w.Write(b)
	return status
}

// newUUID returns a random (version 4) UUID.
func newUUID() string {
	var b [16]byte
	rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	var out [36]byte
	hex.Encode(out[0:8], b[0:4])
	out[8] = '-'
	hex.Encode(out[9:13], b[4:6])
	out[13] = '-'
	hex.Encode(out[14:18], b[6:8])
	out[18] = '-'
	hex.Encode(out[19:23], b[8:10])
	out[23] = '-'
	hex.Encode(out[24:36], b[10:16])
	return string(out[:])
}

package sandbox

import (
	"fmt"
	"math"
	"math/rand/v2"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"
)

// Fault kinds, drawn independently for each data answer with their rate.
const (
	FaultProviderError   = "502"     // 502 XX000, provider internal error
	FaultProviderUnknown = "502-999" // 502 XX999, unknown provider answer
	FaultNetwork         = "00501"   // 502 00501, network error, meta.retry_in 10
	FaultTimeout         = "504"     // 504 XX002 after ProviderTimeout
	FaultMaintenance     = "503"     // 503 XX020, maintenance, meta.retry_in
	FaultGateway         = "gateway" // 502 from a gateway, HTML body
	FaultReset           = "reset"   // connection closed without an answer
)

var faultKinds = []string{FaultProviderError, FaultProviderUnknown, FaultNetwork, FaultTimeout, FaultMaintenance, FaultGateway, FaultReset}

// Faults describes the latency and the failures added to data answers.
type Faults struct {
	// LatencyP50 and LatencyP99 shape a log-normal answer latency; with
	// LatencyP99 zero the latency is LatencyP50 exactly. Default: 0.
	LatencyP50, LatencyP99 time.Duration
	// Rates maps a fault kind to the probability (0 to 1) that an answer
	// suffers it. Default: none.
	Rates map[string]float64
	// ProviderTimeout is how long a FaultTimeout answer takes, as the API
	// waits for the provider. Default: 10s.
	ProviderTimeout time.Duration
	// Seed makes the draws repeatable. Default: 1.
	Seed uint64
}

// Validate reports the first invalid field.
func (f Faults) Validate() error {
	if f.LatencyP50 < 0 || f.LatencyP99 < 0 || (f.LatencyP99 > 0 && f.LatencyP99 < f.LatencyP50) {
		return fmt.Errorf("sandbox: latency p50 %v, p99 %v: want 0 <= p50 <= p99", f.LatencyP50, f.LatencyP99)
	}
	sum := 0.0
	for k, r := range f.Rates {
		known := false
		for _, kk := range faultKinds {
			known = known || k == kk
		}
		if !known {
			return fmt.Errorf("sandbox: unknown fault kind %q (want one of %s)", k, strings.Join(faultKinds, ", "))
		}
		if r < 0 || r > 1 {
			return fmt.Errorf("sandbox: fault %s rate %v not in [0,1]", k, r)
		}
		sum += r
	}
	if sum > 1 {
		return fmt.Errorf("sandbox: fault rates add up to %v > 1", sum)
	}
	return nil
}

// ParseFaults parses "502=0.01,504=0.005" into rates.
func ParseFaults(s string) (map[string]float64, error) {
	out := map[string]float64{}
	if strings.TrimSpace(s) == "" {
		return out, nil
	}
	for _, kv := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(kv), "=")
		var r float64
		if _, err := fmt.Sscanf(v, "%g", &r); !ok || err != nil {
			return nil, fmt.Errorf("fault %q: want KIND=RATE, e.g. 502=0.01", kv)
		}
		out[k] = r
	}
	return out, Faults{Rates: out}.Validate()
}

// faultSource draws latencies and faults. Safe for concurrent use.
type faultSource struct {
	mu    sync.Mutex
	f     Faults
	rnd   *rand.Rand
	kinds []string
}

func newFaultSource(f Faults) *faultSource {
	if f.ProviderTimeout <= 0 {
		f.ProviderTimeout = 10 * time.Second
	}
	seed := f.Seed
	if seed == 0 {
		seed = 1
	}
	kinds := make([]string, 0, len(f.Rates))
	for k := range f.Rates {
		kinds = append(kinds, k)
	}
	sort.Strings(kinds)
	return &faultSource{f: f, rnd: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), kinds: kinds}
}

// latency draws one answer latency.
func (fs *faultSource) latency() time.Duration {
	if fs.f.LatencyP50 <= 0 {
		return 0
	}
	if fs.f.LatencyP99 <= fs.f.LatencyP50 {
		return fs.f.LatencyP50
	}
	fs.mu.Lock()
	z := fs.rnd.NormFloat64()
	fs.mu.Unlock()
	// 2.3263 is the standard normal's 99th percentile.
	sigma := math.Log(float64(fs.f.LatencyP99)/float64(fs.f.LatencyP50)) / 2.3263
	return time.Duration(float64(fs.f.LatencyP50) * math.Exp(sigma*z))
}

// draw returns the fault kind for one answer, or "".
func (fs *faultSource) draw() string {
	if len(fs.kinds) == 0 {
		return ""
	}
	fs.mu.Lock()
	u := fs.rnd.Float64()
	fs.mu.Unlock()
	for _, k := range fs.kinds {
		u -= fs.f.Rates[k]
		if u < 0 {
			return k
		}
	}
	return ""
}

// injectFault answers with a drawn fault and returns its status, or 0.
func (s *Server) injectFault(w http.ResponseWriter, r *http.Request, rt *route) int {
	kind := s.faults.draw()
	if kind == "" {
		return 0
	}
	provider, prefix := rt.provider()
	meta := map[string]any{"provider": provider}
	switch kind {
	case FaultReset:
		if hj, ok := w.(http.Hijacker); ok {
			if conn, _, err := hj.Hijack(); err == nil {
				conn.Close()
				return -1
			}
		}
		return writeText(w, http.StatusBadGateway, "")
	case FaultGateway:
		w.Header().Set("Content-Type", "text/html")
		w.WriteHeader(http.StatusBadGateway)
		w.Write([]byte("<html><head><title>502 Bad Gateway</title></head><body><center><h1>502 Bad Gateway</h1></center></body></html>\n"))
		return http.StatusBadGateway
	case FaultTimeout:
		t := time.NewTimer(s.faults.f.ProviderTimeout)
		select {
		case <-r.Context().Done():
			t.Stop()
			return 499
		case <-t.C:
		}
		return writeErrors(w, http.StatusGatewayTimeout, apiError{Code: prefix + "002", Title: "Délai d'attente du fournisseur de données dépassé",
			Detail: "Le fournisseur de données a mis trop de temps à répondre. Veuillez réessayer plus tard.", Meta: meta})
	case FaultMaintenance:
		return writeMaintenance(w, rt, time.Minute)
	case FaultNetwork:
		return writeErrors(w, http.StatusBadGateway, apiError{Code: "00501", Title: "Erreur réseau",
			Detail: "Une erreur réseau est survenue lors de l'appel au fournisseur de données.", Meta: map[string]any{"retry_in": 10}})
	case FaultProviderUnknown:
		return writeErrors(w, http.StatusBadGateway, apiError{Code: prefix + "999", Title: "Erreur inconnue du fournisseur de données",
			Detail: "La réponse retournée par le fournisseur de données est invalide et inconnue de notre service. L'équipe technique a été notifiée de cette erreur pour investigation.", Meta: meta})
	default:
		return writeErrors(w, http.StatusBadGateway, apiError{Code: prefix + "000", Title: "Erreur du fournisseur de données",
			Detail: "Le fournisseur de données a rencontré une erreur interne. Veuillez réessayer plus tard.", Meta: meta})
	}
}

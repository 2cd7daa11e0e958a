package sandbox

import (
	"encoding/json"
	"io"
	"net/http"
	"time"
)

// serveLimits answers GET /_sandbox/limits with the limits in force, and
// POST with a JSON Limits body replaces them (to rehearse a tightening, such
// as the announced 250 requests per minute per habilitation).
func (s *Server) serveLimits(w http.ResponseWriter, r *http.Request) int {
	switch r.Method {
	case http.MethodGet:
		return writeJSON(w, http.StatusOK, s.lim.stats(s.cfg.Now()).Limits)
	case http.MethodPost, http.MethodPut:
		var lim Limits
		if err := json.NewDecoder(io.LimitReader(r.Body, 1<<16)).Decode(&lim); err != nil {
			return writeText(w, http.StatusBadRequest, "body must be a JSON object: per_second, per_minute, ip_per_minute, sliding, ban_after, ban_for (nanoseconds)")
		}
		if lim.PerSecond < 0 || lim.PerMinute < 0 || lim.IPPerMinute < 0 || lim.BanAfter < 0 {
			return writeText(w, http.StatusBadRequest, "limits must not be negative")
		}
		return writeJSON(w, http.StatusOK, s.lim.setLimits(lim))
	}
	return writeText(w, http.StatusMethodNotAllowed, "GET or POST")
}

// servePeople applies POST /_sandbox/people: a JSON list of changes to
// the synthetic population, [{"index": 12, "qf": 450}, {"index": 40,
// "outcome": "404"}], to rehearse data that moved between two campaigns.
func (s *Server) servePeople(w http.ResponseWriter, r *http.Request) int {
	if r.Method != http.MethodPost {
		return writeText(w, http.StatusMethodNotAllowed, "POST")
	}
	if s.cfg.Population == nil {
		return writeText(w, http.StatusNotFound, "this sandbox serves no synthetic population")
	}
	var changes []struct {
		Index int `json:"index"`
		Change
	}
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&changes); err != nil {
		return writeText(w, http.StatusBadRequest, `body must be a JSON list: [{"index": 12, "qf": 450}, {"index": 40, "outcome": "404"}]`)
	}
	for _, c := range changes {
		if err := s.cfg.Population.Amend(c.Index, c.Change); err != nil {
			return writeText(w, http.StatusBadRequest, err.Error())
		}
	}
	return writeJSON(w, http.StatusOK, map[string]int{"changed": len(changes)})
}

// Stats returns what GET /_sandbox/stats reports.
func (s *Server) Stats() Stats { return s.lim.stats(s.cfg.Now()) }

// SetLimits replaces the limits while the server runs; zero fields take
// their defaults. It returns the limits in force.
func (s *Server) SetLimits(l Limits) Limits { return s.lim.setLimits(l) }

// SetOutage makes the provider behind ping name (e.g.
// "cnaf_msa_quotient_familial") unavailable until until: its data routes
// answer 502 XX001 and its ping answers 502 bad_gateway.
func (s *Server) SetOutage(name string, until time.Time) {
	s.outMu.Lock()
	defer s.outMu.Unlock()
	if s.outage == nil {
		s.outage = map[string]time.Time{}
	}
	s.outage[name] = until
}

func (s *Server) inOutage(name string) bool {
	s.outMu.Lock()
	defer s.outMu.Unlock()
	return s.cfg.Now().Before(s.outage[name])
}

// TokenCountsBetween returns, per token key (as in Stats), the requests that
// arrived in [from, to).
func (s *Server) TokenCountsBetween(from, to time.Time) map[string]int64 {
	return s.lim.tokenCountsBetween(from, to)
}

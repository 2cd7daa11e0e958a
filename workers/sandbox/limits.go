package sandbox

import (
	"net"
	"net/http"
	"sort"
	"strconv"
	"sync"
	"time"
)

// The API's documented limits, which Limits enforce when zero.
const (
	// DefaultPerSecond is the requests per second per token (or
	// habilitation).
	DefaultPerSecond = 20
	// DefaultIPPerMinute is the requests per minute per client IP.
	DefaultIPPerMinute = 1000
)

// Limits are the throttles the sandbox enforces; they can be changed while
// it runs (POST /_sandbox/limits) to rehearse a tightening.
type Limits struct {
	// PerSecond is the requests per second per token, or per
	// habilitation for tokens naming one (their authorization_request_id),
	// shared by all v3 routes (v2 has its own bucket, per token). Default:
	// DefaultPerSecond.
	PerSecond int `json:"per_second"`
	// PerMinute is an optional limit per minute, counted as PerSecond is
	// (the operator's proposed 250 a minute per habilitation); when set,
	// the RateLimit-* headers announce it. Default: 0 (none).
	PerMinute int `json:"per_minute"`
	// IPPerMinute is the requests per minute per client IP, all tokens
	// together. Default: DefaultIPPerMinute.
	IPPerMinute int `json:"ip_per_minute"`
	// Sliding counts the per-token limits over sliding windows instead of
	// fixed windows aligned on the epoch (production's Rack::Attack).
	Sliding bool `json:"sliding"`
	// BanAfter bans a client IP once it has sent this many requests while
	// told to wait (after a 429, before its reset). Default: 0 (never).
	BanAfter int `json:"ban_after"`
	// BanFor is how long a ban lasts; banned clients get no answer at all.
	// Default: 12h.
	BanFor time.Duration `json:"ban_for"`
}

func (l Limits) withDefaults() Limits {
	if l.PerSecond <= 0 {
		l.PerSecond = DefaultPerSecond
	}
	if l.IPPerMinute <= 0 {
		l.IPPerMinute = DefaultIPPerMinute
	}
	if l.BanFor <= 0 {
		l.BanFor = 12 * time.Hour
	}
	return l
}

// counter tracks one key (a token bucket or a client IP): the requests of
// the current windows, the recent arrival times (for the sliding maximum
// reported by stats) and outcomes.
type counter struct {
	recent     []time.Time // arrivals, oldest first: those of the last second from recentHead on
	recentHead int
	maxPerSec  int         // most arrivals seen in any sliding second
	minuteLog  []time.Time // arrivals in the last minute (sliding mode and IP)
	secStart   int64
	secCount   int
	minStart   int64
	minCount   int
	requests   int64
	byStatus   map[int]int64
	tooMany    int64
	waitUntil  time.Time // end of the last 429's wait
	ignored    int       // requests sent while told to wait
	bannedTill time.Time
	first      time.Time
	last       time.Time
	// arrivals are every arrival, up to maxArrivals, as offsets from
	// arrivalsBase (the first one): 8 bytes without pointer each rather
	// than a time.Time. Offsets are measured as Time.Sub measures (on the
	// monotonic clock when there is one), so that arrivalsBase.Add gives
	// back each arrival as the comparisons need it.
	arrivals     []time.Duration
	arrivalsBase time.Time
}

// maxArrivals bounds the arrival log of one counter.
const maxArrivals = 1 << 20

func newCounter() *counter { return &counter{byStatus: map[int]int64{}} }

// arrive records an arrival at now and updates the sliding maximum.
func (c *counter) arrive(now time.Time) {
	c.requests++
	if c.first.IsZero() {
		c.first = now
	}
	c.last = now
	if len(c.arrivals) == 0 {
		c.arrivalsBase = now
	}
	if len(c.arrivals) < maxArrivals {
		c.arrivals = append(c.arrivals, now.Sub(c.arrivalsBase))
	}
	cut := now.Add(-time.Second)
	for c.recentHead < len(c.recent) && !c.recent[c.recentHead].After(cut) {
		c.recentHead++
	}
	// The arrivals past the second go once they are half the slice:
	// moving the others down costs no more than the appends since, and
	// the slice keeps its array.
	if c.recentHead > 0 && c.recentHead >= len(c.recent)/2 {
		c.recent = c.recent[:copy(c.recent, c.recent[c.recentHead:])]
		c.recentHead = 0
	}
	c.recent = append(c.recent, now)
	c.maxPerSec = max(c.maxPerSec, len(c.recent)-c.recentHead)
}

// limiter holds every counter. Safe for concurrent use.
type limiter struct {
	mu     sync.Mutex
	limits Limits
	tokens map[string]*counter
	ips    map[string]*counter
}

func newLimiter(cfg Config) *limiter {
	return &limiter{limits: cfg.Limits.withDefaults(), tokens: map[string]*counter{}, ips: map[string]*counter{}}
}

func (l *limiter) get(m map[string]*counter, k string) *counter {
	c, ok := m[k]
	if !ok {
		c = newCounter()
		m[k] = c
	}
	return c
}

// verdict is the limiter's decision on one request.
type verdict struct {
	banned    bool
	allowed   bool
	limit     int
	remaining int
	reset     int64 // unix seconds
}

// take counts a request of token key from ip at now.
func (l *limiter) take(key, ip string, now time.Time) verdict {
	l.mu.Lock()
	defer l.mu.Unlock()
	lim := l.limits
	ipc := l.get(l.ips, ip)
	if now.Before(ipc.bannedTill) {
		return verdict{banned: true}
	}
	tc := l.get(l.tokens, key)
	tc.arrive(now)
	ipc.arrive(now)
	// A request sent while told to wait counts towards a ban.
	for _, c := range []*counter{tc, ipc} {
		if now.Before(c.waitUntil) {
			c.ignored++
			if lim.BanAfter > 0 && c.ignored >= lim.BanAfter {
				ipc.bannedTill = now.Add(lim.BanFor)
				return verdict{banned: true}
			}
		}
	}
	v := verdict{allowed: true}
	sec, minute := now.Unix(), now.Unix()/60
	if lim.Sliding {
		v = slidingCheck(tc, now, lim)
	} else {
		if tc.secStart != sec {
			tc.secStart, tc.secCount = sec, 0
		}
		if tc.minStart != minute {
			tc.minStart, tc.minCount = minute, 0
		}
		tc.secCount++
		tc.minCount++
		v.limit, v.remaining, v.reset = lim.PerSecond, max(lim.PerSecond-tc.secCount, 0), sec+1
		v.allowed = tc.secCount <= lim.PerSecond
		if lim.PerMinute > 0 {
			// The habilitation's own limit takes precedence in the headers.
			v.limit, v.remaining, v.reset = lim.PerMinute, max(lim.PerMinute-tc.minCount, 0), (minute+1)*60
			v.allowed = v.allowed && tc.minCount <= lim.PerMinute
		}
	}
	if ipc.minStart != minute {
		ipc.minStart, ipc.minCount = minute, 0
	}
	ipc.minCount++
	if ipc.minCount > lim.IPPerMinute {
		v.allowed = false
		v.reset = max(v.reset, (minute+1)*60)
	}
	if !v.allowed {
		wait := time.Unix(v.reset, 0)
		for _, c := range []*counter{tc, ipc} {
			c.tooMany++
			if wait.After(c.waitUntil) {
				c.waitUntil = wait
				c.ignored = 0
			}
		}
	}
	return v
}

// slidingCheck applies the per-token limits over sliding windows.
func slidingCheck(tc *counter, now time.Time, lim Limits) verdict {
	cut := now.Add(-time.Minute)
	i := 0
	for i < len(tc.minuteLog) && !tc.minuteLog[i].After(cut) {
		i++
	}
	tc.minuteLog = tc.minuteLog[i:]
	inSec := 0
	for _, t := range tc.minuteLog {
		if t.After(now.Add(-time.Second)) {
			inSec++
		}
	}
	v := verdict{limit: lim.PerSecond, allowed: inSec < lim.PerSecond}
	v.remaining = max(lim.PerSecond-inSec-1, 0)
	v.reset = now.Unix() + 1
	if lim.PerMinute > 0 {
		v.limit, v.remaining = lim.PerMinute, max(lim.PerMinute-len(tc.minuteLog)-1, 0)
		v.allowed = v.allowed && len(tc.minuteLog) < lim.PerMinute
		if len(tc.minuteLog) > 0 {
			v.reset = tc.minuteLog[0].Add(time.Minute).Unix() + 1
		}
	}
	if v.allowed {
		tc.minuteLog = append(tc.minuteLog, now)
	}
	return v
}

// answered records the status given to a request.
func (l *limiter) answered(key, ip string, status int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if key != "" {
		l.get(l.tokens, key).byStatus[status]++
	}
	l.get(l.ips, ip).byStatus[status]++
}

// setLimits replaces the limits; zero fields keep their defaults.
func (l *limiter) setLimits(lim Limits) Limits {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.limits = lim.withDefaults()
	return l.limits
}

// CounterStats is what /_sandbox/stats reports for one token or IP.
type CounterStats struct {
	Key       string           `json:"key"`
	Requests  int64            `json:"requests"`
	ByStatus  map[string]int64 `json:"by_status"`
	TooMany   int64            `json:"too_many_requests"`
	MaxPerSec int              `json:"max_in_any_second"`
	Ignored   int              `json:"requests_while_told_to_wait"`
	BannedTil *time.Time       `json:"banned_until,omitempty"`
	First     time.Time        `json:"first_request"`
	Last      time.Time        `json:"last_request"`
}

// Stats is the body of GET /_sandbox/stats.
type Stats struct {
	Limits Limits         `json:"limits"`
	Tokens []CounterStats `json:"tokens"`
	IPs    []CounterStats `json:"ips"`
}

func (l *limiter) stats(now time.Time) Stats {
	l.mu.Lock()
	defer l.mu.Unlock()
	conv := func(m map[string]*counter) []CounterStats {
		out := make([]CounterStats, 0, len(m))
		for k, c := range m {
			cs := CounterStats{Key: k, Requests: c.requests, ByStatus: map[string]int64{}, TooMany: c.tooMany, MaxPerSec: c.maxPerSec,
				Ignored: c.ignored, First: c.first, Last: c.last}
			for st, n := range c.byStatus {
				cs.ByStatus[strconv.Itoa(st)] = n
			}
			if now.Before(c.bannedTill) {
				t := c.bannedTill
				cs.BannedTil = &t
			}
			out = append(out, cs)
		}
		sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
		return out
	}
	return Stats{Limits: l.limits, Tokens: conv(l.tokens), IPs: conv(l.ips)}
}

// clientIP is the host part of the request's remote address.
func clientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// tokenCountsBetween returns, per token key, the requests that arrived in
// [from, to).
func (l *limiter) tokenCountsBetween(from, to time.Time) map[string]int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make(map[string]int64, len(l.tokens))
	for k, c := range l.tokens {
		for _, offset := range c.arrivals {
			t := c.arrivalsBase.Add(offset)
			if !t.Before(from) && t.Before(to) {
				out[k]++
			}
		}
	}
	return out
}

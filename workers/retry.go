package workers

import (
	"math/rand/v2"
	"time"

	"github.com/apbatch/apbatch/schemas"
)

// RetryPolicy decides whether and when to call again after an Outcome,
// following the operator's error catalogue: final answers (400, 401, 403,
// 404, 410, 422, 451) are never retried; 429, 409, 500, 502, 503, 504 and
// transport failures are retried with exponential backoff and full jitter,
// never sooner than what the API asked (Retry-After, RateLimit-Reset,
// meta.retry_in); an unknown provider answer (XX999) is retried once; the
// provider's own throttling (XX008) waits ProviderThrottleDelay or more.
//
// The zero value uses the defaults below.
type RetryPolicy struct {
	// MaxAttempts counts every attempt, the first included. Default: 5.
	MaxAttempts int
	// BaseDelay is the first backoff step. Default: 500ms.
	BaseDelay time.Duration
	// MaxDelay caps one backoff step (not a server-asked wait). Default: 30s.
	MaxDelay time.Duration
	// Rand returns a number in [0,1) for jitter. Default: math/rand/v2.
	Rand func() float64
	// ProviderThrottleDelay is the least wait after XX008 (the provider
	// itself throttles the API), longer than any backoff. Default: 5 min.
	ProviderThrottleDelay time.Duration
}

// Delay returns the wait before attempt n+1, n being the attempts made so
// far, and false when the outcome is final or the attempts are spent.
func (p RetryPolicy) Delay(n int, o Outcome) (time.Duration, bool) {
	maxAttempts := p.MaxAttempts
	if maxAttempts <= 0 {
		maxAttempts = 5
	}
	if !o.Retryable || n >= maxAttempts {
		return 0, false
	}
	if o.Kind == schemas.KindProviderUnknown && n >= 2 {
		return 0, false
	}
	base, ceiling := p.BaseDelay, p.MaxDelay
	if base <= 0 {
		base = 500 * time.Millisecond
	}
	if ceiling <= 0 {
		ceiling = 30 * time.Second
	}
	rnd := p.Rand
	if rnd == nil {
		rnd = rand.Float64
	}
	step := base << min(n-1, 20)
	if step > ceiling || step <= 0 {
		step = ceiling
	}
	d := time.Duration(rnd() * float64(step))
	if o.RetryAfter > d {
		d = o.RetryAfter
	}
	if o.Kind == schemas.KindProviderThrottled {
		long := p.ProviderThrottleDelay
		if long <= 0 {
			long = 5 * time.Minute
		}
		d = max(d, long+time.Duration(rnd()*float64(long)/10))
	}
	return d, true
}

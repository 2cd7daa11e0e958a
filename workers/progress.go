package workers

import (
	"sync"
	"time"
)

// meterSpan is how far back a tenant's answer rate is measured.
const meterSpan = 30 * time.Second

// progress counts, per batch, the lookups a pool has answered and, per
// tenant, how fast: the ETA of a tenant's batch is its remaining lookups
// at the tenant's recent rate, which already reflects its fair share of
// the IP budget and its token's limit. Safe for concurrent use.
type progress struct {
	mu      sync.Mutex
	batches map[string]int64                // batch id → lookups answered
	tenants map[string]*[meterBuckets]int64 // tenant → answers per second slot
	first   map[string]time.Time            // tenant → first answer
}

const meterBuckets = int(meterSpan / time.Second)

// done records one answered lookup of batch for tenant at now.
func (p *progress) done(tenant, batch string, now time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.batches == nil {
		p.batches, p.tenants, p.first = map[string]int64{}, map[string]*[meterBuckets]int64{}, map[string]time.Time{}
	}
	p.batches[batch]++
	b, ok := p.tenants[tenant]
	if !ok {
		b = new([meterBuckets]int64)
		p.tenants[tenant] = b
		p.first[tenant] = now
	}
	sec := now.Unix()
	slot := &b[sec%int64(meterBuckets)]
	// A slot holds its second's count in the low bits and the second in
	// the high bits, so that a stale slot is recognised and reset.
	if *slot>>32 != sec {
		*slot = sec << 32
	}
	*slot++
}

// rate is tenant's answers per second over the last meterSpan.
func (p *progress) rate(tenant string, now time.Time) float64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	b, ok := p.tenants[tenant]
	if !ok {
		return 0
	}
	sec := now.Unix()
	var n int64
	for _, slot := range b {
		if s := slot >> 32; s > sec-int64(meterBuckets) && s <= sec {
			n += slot & (1<<32 - 1)
		}
	}
	span := min(now.Sub(p.first[tenant]), meterSpan).Seconds()
	if span < 1 {
		span = 1
	}
	return float64(n) / span
}

// Answered returns how many lookups of batch the pool has answered.
func (p *Pool) Answered(batch string) int64 {
	p.progress.mu.Lock()
	defer p.progress.mu.Unlock()
	return p.progress.batches[batch]
}

// Rate returns the pool's answers per second over the last 30 s, all
// tenants together.
func (p *Pool) Rate() float64 {
	p.progress.mu.Lock()
	tenants := make([]string, 0, len(p.progress.tenants))
	for t := range p.progress.tenants {
		tenants = append(tenants, t)
	}
	p.progress.mu.Unlock()
	var r float64
	for _, t := range tenants {
		r += p.progress.rate(t, p.now())
	}
	return r
}

// ETAs returns when each tenant's left lookups will all be answered. The
// pool serves tenants round-robin, so a tenant with r lookups left is done
// once every tenant has had min(its own left, r) more answers: at the
// pool's recent rate, sum_j min(r_j, r) / rate. A tenant gets no ETA (0)
// before the pool has answered anything.
func (p *Pool) ETAs(left map[string]int64) map[string]time.Duration {
	rate := p.Rate()
	out := make(map[string]time.Duration, len(left))
	if rate <= 0 {
		return out
	}
	for t, r := range left {
		if r <= 0 {
			continue
		}
		var ahead int64
		for _, rj := range left {
			ahead += min(max(rj, 0), r)
		}
		out[t] = time.Duration(float64(ahead) / rate * float64(time.Second))
	}
	return out
}

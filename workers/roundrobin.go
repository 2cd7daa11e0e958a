package workers

// roundRobin holds fetched jobs in one FIFO queue per tenant and hands
// them out one tenant at a time. Not safe for concurrent use.
type roundRobin struct {
	queues map[string][]delivery
	order  []string // tenants with queued jobs, next first
	n      int
}

func newRoundRobin() *roundRobin { return &roundRobin{queues: make(map[string][]delivery)} }

func (r *roundRobin) len() int { return r.n }

func (r *roundRobin) push(tenant string, m delivery) {
	if len(r.queues[tenant]) == 0 {
		r.order = append(r.order, tenant)
	}
	r.queues[tenant] = append(r.queues[tenant], m)
	r.n++
}

// pop returns the next tenant's oldest job; r must not be empty.
func (r *roundRobin) pop() delivery {
	t := r.order[0]
	q := r.queues[t]
	m := q[0]
	r.queues[t] = q[1:]
	r.n--
	r.order = r.order[1:]
	if len(r.queues[t]) > 0 {
		r.order = append(r.order, t)
	} else {
		delete(r.queues, t)
	}
	return m
}

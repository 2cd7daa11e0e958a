package workers

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/rs/zerolog"
	kafkago "github.com/segmentio/kafka-go"

	"github.com/apbatch/apbatch/schemas"
)

// JobReader fetches and commits job messages; *kafka-go.Reader implements it.
type JobReader interface {
	FetchMessage(ctx context.Context) (kafkago.Message, error)
	CommitMessages(ctx context.Context, msgs ...kafkago.Message) error
}

// ResultWriter produces result messages; *kafka-go.Writer implements it.
type ResultWriter interface {
	WriteMessages(ctx context.Context, msgs ...kafkago.Message) error
}

// AuditLog keeps the audit trail of provider calls; *ledger.Store
// implements it.
type AuditLog interface {
	RecordCalls(ctx context.Context, calls []schemas.CallRecord) error
}

// TokenSource returns the API token of a tenant. Tokens are looked up where
// they are used and never leave the worker process.
type TokenSource func(tenant string) (string, error)

// ErrNoToken is returned (wrapped) by a TokenSource for an unknown tenant.
var ErrNoToken = errors.New("no API token for this tenant")

// IdentityOpener decrypts job.Sealed into job.Identity; *keys.Ring
// implements it. An error wrapping schemas.ErrUnsealable means the job can
// never be opened here; others are transient.
type IdentityOpener interface {
	Open(ctx context.Context, job *schemas.Job) error
}

// Budgets and concurrency of a Pool whose fields are zero.
const (
	// DefaultLimit is the per-token budget, requests per second: the
	// API's documented 20/s.
	DefaultLimit = 20
	// DefaultIPLimit is the per-egress-IP budget, requests per minute, all
	// tokens together: the API's documented 1000/min.
	DefaultIPLimit = 1000
	// DefaultMaxInFlight is how many jobs call the API at once.
	DefaultMaxInFlight = 32
)

// Pool consumes jobs, calls the provider under one Budget per token with up
// to MaxInFlight calls in flight, produces one result per row of each job,
// and commits a job's offset only when it and every job before it on its
// partition have their results produced.
type Pool struct {
	// Jobs is where the pool fetches jobs and commits their offsets, unless
	// ConsumerGroup is set.
	Jobs JobReader
	// ConsumerGroup, when set, replaces Jobs: the pool consumes the workers'
	// consumer group generation by generation, one loop per assigned
	// partition. When a generation ends (a rebalance), each loop stops
	// fetching, drops the jobs it fetched ahead (no call), lets its running
	// jobs finish or stop waiting (a call sent is answered and its results
	// produced), commits through the generation and returns within
	// DrainTimeout, before the group joins the next one.
	ConsumerGroup Generations
	// DrainTimeout bounds the wait for a revoked partition's running jobs;
	// keep it under the group's rebalance timeout. Default:
	// DefaultDrainTimeout.
	DrainTimeout time.Duration
	Results      ResultWriter
	Client       *Client
	Tokens       TokenSource
	Log          zerolog.Logger
	// Delegations maps a tenant to the delegation_id sent with its calls:
	// with an editor token, the delegation (a UUID) of the collectivité's
	// habilitation, needed when several delegations match its SIRET (the
	// API answers 422 00212 otherwise). Default: nil (none sent).
	Delegations map[string]string
	// Limit is the per-token budget in requests per second. Default:
	// DefaultLimit.
	Limit int
	// Share is the fraction of each budget (token and IP) the pool uses,
	// leaving the rest to the collectivité's own interactive use of the
	// token. Default: 1 (all of it).
	Share float64
	// IPLimit is the requests per minute allowed from this egress IP, all
	// tokens together (the API's documented 1000/min; exceeding it gets the
	// IP banned). Negative disables it (benchmarks only). Default:
	// DefaultIPLimit.
	IPLimit int
	// Lookahead is how many fetched jobs may wait in the per-tenant queues
	// (a job message is under a kilobyte). The round-robin between towns
	// only sees the towns whose jobs are in this window. Default: 2048, or
	// 4 × MaxInFlight if larger.
	Lookahead int
	// MaxInFlight is how many jobs call the API at once (a job gives its
	// call slot back once its calls are over, while its audit and results
	// are written). Default: DefaultMaxInFlight.
	MaxInFlight int
	// Retry is the retry policy. Default: the zero RetryPolicy's defaults.
	Retry RetryPolicy
	// Guard stops the pool before an IP ban. Default: a BanGuard with its
	// defaults.
	Guard *BanGuard
	// Schedule holds calls outside run windows and during the providers'
	// maintenance; they wait rather than fail. Default: nil (any time).
	Schedule *Schedule
	// Habilitations, when set, returns the habilitation
	// (authorization_request_id) a tenant's configuration names, or "":
	// the tenant's calls then spend the habilitation's budget, shared with
	// every token of the habilitation, as the API counts them. Without it,
	// or when it names none, the token's claims may name one; otherwise
	// the token has a budget of its own. Default: nil.
	Habilitations func(tenant string) string
	// KeyLimits are the per-minute limits configured per budget key (for
	// instance 250 a minute for every habilitation), on top of Limit per
	// second; the API's RateLimit-* headers lower them, and announce
	// those not configured. Default: none.
	KeyLimits KeyLimits
	// SharedKeys, when set, shares each budget key's per-minute limit
	// (configured or announced) between every worker process using the
	// same leaser (the ledger), through slots as SharedIP does: two
	// tokens of one habilitation used by two replicas then never exceed
	// the habilitation's limit together. Default: nil (each process
	// counts its own calls, and learns of the others' from the headers).
	SharedKeys SlotLeaser
	// SharedIP, when set, also takes each call's unit of the per-IP budget
	// from slots every worker process behind the same egress IP shares (a
	// PostgreSQL ledger), so that replicas never exceed the IP's limit
	// together. Default: nil (this process has the IP to itself).
	SharedIP *SharedLimit
	// BreakerThreshold is the provider failures in a row that open a
	// provider's circuit breaker. Default: 5. Keep it no higher than
	// Retry's attempts: then an outage opens the breaker before any row
	// spends its last attempt (a row's k-th failure is at least the k-th
	// in a row, as long as no call succeeds between).
	BreakerThreshold int
	// ProbeEvery is the pause between two pings of a provider whose
	// breaker is open. Default: 5s.
	ProbeEvery time.Duration
	// Cancelled, when set, tells whether a job's batch was cancelled
	// (*pipeline.Cancellations): its jobs then make no call and produce no
	// result. Asked before a job waits for its budget and again just
	// before each call. Default: nil (batches are never cancelled).
	Cancelled func(ctx context.Context, batchID string) bool
	// Activity, when set, is told every ActivityEvery (default 30s) which
	// batches the pool holds jobs of, calling or waiting for a budget, a
	// breaker or a run window: the watchdog's sign that they progress.
	// Default: nil.
	Activity      ActivityLog
	ActivityEvery time.Duration
	// Audit receives every call's record before the job's results are
	// produced. Default: nil (no audit trail).
	Audit AuditLog
	// AuditKey keys the identity hash of audit records. Required with Audit.
	AuditKey []byte
	// Now is the clock. Default: time.Now.
	Now func() time.Time
	// AnsweredLog, when set, records the jobs answered beyond the committed
	// offsets, so that the next owner of a partition (after a crash or a
	// rebalance) skips them instead of calling the provider again; Group
	// is the consumer group they are recorded under. Default: nil (such
	// jobs are called again).
	AnsweredLog AnsweredLog
	Group       string
	// Leases, when set, makes pools take turns with each token: a pool
	// calls with a token only while it holds the token's lease, so that
	// two pools never call with it at once, even when a rebalance leaves
	// jobs of one tenant with two of them. A pool taking a lease right
	// after another holder leaves it a second first; a token nobody used
	// needs no wait. Default: nil (each pool leaves a token's first second
	// to whoever used it before: a rebalance, a restart).
	Leases TokenLeases
	// OnCall, when set, is told of every provider call: its latency and
	// HTTP status (0 for a transport failure). It must be quick and safe for
	// concurrent use. Default: nil.
	OnCall func(check schemas.Check, latency time.Duration, status int)
	// Metrics, when set, counts the pool's calls and reads its budgets
	// when scraped. Default: nil (none).
	Metrics *Metrics
	// Identities opens the sealed identities of jobs (*keys.Ring); the
	// seal binds each identity to its job's fields, so a job forged or
	// altered without the sealing key does not open and is never called.
	// Default: nil (sealed jobs get CodeSeal results without a call).
	Identities IdentityOpener
	// AllowClearJobs makes the pool answer jobs whose identity travels in
	// clear (no Sealed: version 1, or version 2 unsealed). For tests only:
	// producers seal every identity, so such a job is forged (anyone able
	// to produce to the jobs topic could look up anybody under a tenant's
	// token) or comes from a producer without keys. Without it, a clear
	// job is dropped: logged, committed, no call, no result (its rows get
	// no result: a forged job must not write into a batch either).
	// Default: false.
	AllowClearJobs bool

	mu       sync.Mutex
	breakers map[string]*Breaker
	inFlight map[flightKey]chan struct{} // closed when done
	tokens   map[BudgetKey]*tokenState
	// tenantKeys holds the key of each tenant's token, its budget key and
	// header, and the token they are of, so that a job finds them without
	// hashing or decoding.
	tenantKeys map[string]tenantKey
	ipBudget   *Budget
	calls      int64
	progress   progress

	idHashOnce sync.Once
	idHash     *schemas.IdentityHasher
	holderOnce sync.Once
	holder     string
	// answered is Run's record of the jobs other workers answered (nil
	// without AnsweredLog); set before Run starts a job.
	answered *answeredSets
	// held counts the jobs in process per batch, for Activity.
	held heldBatches
	// claims are the partitions held in the current generation, with
	// ConsumerGroup.
	claims claims
}

// Calls returns how many provider calls the pool has made.
func (p *Pool) Calls() int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.calls
}

func (p *Pool) now() time.Time {
	if p.Now != nil {
		return p.Now()
	}
	return time.Now()
}

// tokenKey is a token's SHA-256. The pool keys what it keeps per token by
// it, so that the token itself is not kept as a map key.
type tokenKey [sha256.Size]byte

// keyOfToken returns token's key.
func keyOfToken(token string) tokenKey { return sha256.Sum256([]byte(token)) }

// tenantKey is what the pool keeps of a tenant's token.
type tenantKey struct {
	token string
	// configured is the habilitation the tenant's configuration named
	// when budget was chosen.
	configured string
	key        tokenKey
	budget     BudgetKey
	// auth is the token's Authorization header value, built once.
	auth authorization
}

// keyOf returns the key of tenant's token.
func (p *Pool) keyOf(tenant, token string) tokenKey { return p.tenantToken(tenant, token).key }

// tenantToken returns what the pool keeps of tenant's token, hashing and
// decoding the token only when it is not the one last seen for tenant (or
// the tenant's habilitation changed).
func (p *Pool) tenantToken(tenant, token string) tenantKey {
	var configured string
	if p.Habilitations != nil {
		configured = p.Habilitations(tenant)
	}
	p.mu.Lock()
	tk, ok := p.tenantKeys[tenant]
	p.mu.Unlock()
	if ok && tk.token == token && tk.configured == configured {
		return tk
	}
	claims, _ := DecodeToken(token) // unreadable claims name no habilitation
	tk = tenantKey{token: token, configured: configured, key: keyOfToken(token), auth: bearer(token)}
	tk.budget = ChooseBudgetKey(tk.key, claims, configured)
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.tenantKeys == nil {
		p.tenantKeys = make(map[string]tenantKey)
	}
	p.tenantKeys[tenant] = tk
	return tk
}

// tokenState is what the pool keeps per budget key: a token's, or a
// habilitation's, shared by its tokens.
type tokenState struct {
	budget *Budget
	// lease is the key's lease, with Leases.
	lease tokenLease
	// turn is held by the job of this key asking its budgets (grant).
	turn chan struct{}
	// minute is the key's per-minute limit shared through SharedKeys,
	// made when the budget first has a per-minute window; only the job
	// holding turn uses it.
	minute *SharedLimit
}

// errCancelled is call's error for a job whose batch was cancelled.
var errCancelled = errors.New("work: batch cancelled")

// errRevoked is call's error for a job stopped without an answer because a
// rebalance revoked its partition.
var errRevoked = errors.New("work: partition revoked")

// errAnsweredElsewhere is call's error for a job another worker answered.
var errAnsweredElsewhere = errors.New("work: job answered by another worker")

// answeredElsewhere tells whether another worker answered m, the job's
// message, which this pool may have fetched before it took the token's
// lease at since: the job waits (parked) for since, when the previous
// holder's calls are over, then reads what it answered. The error is ctx's.
func (p *Pool) answeredElsewhere(ctx context.Context, log jobLog, js *jobSlots, m *kafkago.Message, since time.Time) (bool, error) {
	if m == nil || p.answered == nil {
		return false, nil
	}
	if p.now().Before(since) {
		if err := js.park(ctx, func() error { return sleepUntil(ctx, p.now(), since) }); err != nil {
			return false, err
		}
		if err := ctx.Err(); err != nil {
			return false, err
		}
	}
	return p.answered.answeredElsewhere(ctx, log, m, since, p.now()), nil
}

// grant waits until the key's budget and the egress IP's (ip, nil: none;
// SharedIP when set) let a request of ts go, and takes it from each, and
// from the key's per-minute slots shared with other processes (SharedKeys).
// The key's and the IP's budgets grant it together, at the instant the
// request leaves: a grant followed by another wait would send the request
// later than its budget counted it (waiting for the shared budget's next
// slot after the token's grant let the slot's start release one token's
// requests in a burst: 33 in one second). One job of a key at a time asks,
// so the IP's units go round the keys, and a shared unit is taken only when
// the key's budget can spend it before its slot ends. The error is ctx's,
// ErrGateClosed (renew the lease first) or a shared budget's.
func (p *Pool) grant(ctx context.Context, ts *tokenState, ip *Budget) error {
	select {
	case ts.turn <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-ts.turn }()
	minute := p.minuteSlots(ts)
	if p.SharedIP == nil && minute == nil {
		return ts.budget.WaitWith(ctx, ip, time.Time{})
	}
	for {
		if err := ts.budget.WaitReady(ctx, ip); err != nil {
			return err
		}
		var until time.Time
		for _, s := range []*SharedLimit{minute, p.SharedIP} {
			if s == nil {
				continue
			}
			u, err := s.Wait(ctx)
			if err != nil {
				return err
			}
			if until.IsZero() || u.Before(until) {
				until = u
			}
		}
		if err := ts.budget.WaitWith(ctx, ip, until); !errors.Is(err, ErrDeadline) {
			return err
		}
		// A unit's slot ended before the budgets allowed the call (a
		// pause came, or waiting for the IP's unit took the key's slot):
		// it is lost; take one in a later slot.
	}
}

// minuteSlots returns ts's per-minute limit shared through SharedKeys, set
// to the budget's current per-minute limit, or nil when there is none (no
// SharedKeys, or no per-minute limit configured or announced yet). The
// caller holds ts.turn.
func (p *Pool) minuteSlots(ts *tokenState) *SharedLimit {
	if p.SharedKeys == nil || ts.minute == nil {
		return nil
	}
	limit := ts.budget.Limits()[time.Minute]
	if limit <= 0 {
		return nil
	}
	ts.minute.Limit = limit
	return ts.minute
}

// tokenState returns the state of budget key key, made at its first use.
// tenant, whose job asks, labels its budget's metrics.
func (p *Pool) tokenState(key BudgetKey, tenant string) *tokenState {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.tokens == nil {
		p.tokens = make(map[BudgetKey]*tokenState)
	}
	ts, ok := p.tokens[key]
	if !ok {
		b := NewBudget(p.share(p.Limit, DefaultLimit), time.Second, p.Now)
		if perMinute := p.KeyLimits.PerMinute(key); perMinute > 0 {
			b.AddLimit(p.share(perMinute, perMinute), time.Minute)
		}
		if p.Leases == nil {
			// The key may have been used at full rate until now by the
			// replica that ran its jobs before a rebalance, or by this
			// process before a restart: its first second is left to them.
			// (With leases, the last holder's end says whether it is.)
			b.PauseUntil(p.now().Add(time.Second + time.Second/100))
		} else {
			b.SetGate(time.Time{}, 0) // no grant before the lease is taken
		}
		ts = &tokenState{budget: b, turn: make(chan struct{}, 1)}
		ts.lease.key = key.String()
		if p.SharedKeys != nil {
			ts.minute = &SharedLimit{Leaser: p.SharedKeys, Scope: "minute:" + key.String(), Per: time.Minute, Now: p.Now}
		}
		p.tokens[key] = ts
		p.Metrics.watchBudget(key.Kind(), tenant, b)
	}
	return ts
}

// identityHMAC returns the audit trail's hash of id (keyed by AuditKey).
func (p *Pool) identityHMAC(id schemas.Identity) string {
	p.idHashOnce.Do(func() { p.idHash = schemas.NewIdentityHasher(p.AuditKey) })
	return p.idHash.Sum(id)
}

// jobLog is a job's logger: the pool's, whose entries are tagged with the
// job's batch, tenant and check as a child logger's would be (the same
// bytes), but only when something is logged, which most jobs do not.
type jobLog struct {
	log                  *zerolog.Logger
	batch, tenant, check string
}

func newJobLog(log *zerolog.Logger, job *schemas.Job) jobLog {
	return jobLog{log: log, batch: job.BatchID, tenant: job.Tenant, check: string(job.Check)}
}

// tag adds the job's fields to e (nil when its level is off).
func (l jobLog) tag(e *zerolog.Event) *zerolog.Event {
	return e.Str("batch_id", l.batch).Str("tenant", l.tenant).Str("check", l.check)
}

func (l jobLog) Error() *zerolog.Event { return l.tag(l.log.Error()) }
func (l jobLog) Info() *zerolog.Event  { return l.tag(l.log.Info()) }
func (l jobLog) Debug() *zerolog.Event { return l.tag(l.log.Debug()) }
func (l jobLog) Warn() *zerolog.Event  { return l.tag(l.log.Warn()) }

// share applies Share to limit (def when limit is 0); at least 1.
func (p *Pool) share(limit, def int) int {
	if limit <= 0 {
		limit = def
	}
	if p.Share > 0 && p.Share < 1 {
		limit = max(int(float64(limit)*p.Share), 1)
	}
	return limit
}

// egress returns the per-IP budget of this process, or nil when disabled
// or when the IP's budget is SharedIP: every process's calls count there,
// and with one job per token asking for its units (grant), they go round
// the tokens of every process alike. (A budget per process on top split
// the IP between processes instead: the town alone on its replica got
// half the IP, three towns on the other the rest.)
func (p *Pool) egress() *Budget {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.IPLimit < 0 || p.SharedIP != nil {
		return nil
	}
	if p.ipBudget == nil {
		p.ipBudget = NewBudget(p.share(p.IPLimit, DefaultIPLimit), time.Minute, p.Now)
		p.Metrics.watchBudget(budgetIP, "", p.ipBudget)
	}
	return p.ipBudget
}

// Run processes jobs until ctx ends, then waits for in-flight jobs to finish
// or be abandoned (their offsets stay uncommitted and they are redelivered).
// It returns nil on cancellation.
func (p *Pool) Run(ctx context.Context) error {
	log := p.Log.With().Str("component", "work").Logger()
	inFlight := p.MaxInFlight
	if inFlight <= 0 {
		inFlight = DefaultMaxInFlight
	}
	p.answered = nil
	if p.AnsweredLog != nil {
		p.answered = &answeredSets{log: p.AnsweredLog, group: p.Group}
	}
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	r := &poolRun{p: p, log: log, ctx: runCtx, cancel: cancel, acks: newAckTracker(), errc: make(chan error, 1),
		call: make(chan struct{}, inFlight),
		// Jobs whose calls are over wait for the audit's group commit
		// (which lingers to gather records) and for their results'
		// write; their slots bound memory, not calls, and must outnumber
		// what arrives during one commit, or the call slots would wait
		// for them. 2048 jobs cover 200 ms at 10,000 jobs/s.
		post: make(chan struct{}, max(2048, 4*inFlight)),
		// Jobs waiting out an open breaker or a maintenance window give
		// their call slot back (other providers' jobs go on) and wait
		// parked.
		parked: make(chan struct{}, max(2048, 4*inFlight)),
	}
	commitDone := make(chan struct{})
	go func() {
		defer close(commitDone)
		p.commitLoop(runCtx, log, r.acks, r.errc)
	}()
	go p.heartbeat(runCtx, log)
	fetched := make(chan delivery)
	fetchErr := make(chan error, 1)
	fetchDone := make(chan struct{})
	go func() {
		defer close(fetchDone)
		var ferr error
		if p.ConsumerGroup != nil {
			ferr = p.consumeGroup(runCtx, log, r.acks, fetched)
		} else {
			ferr = p.fetch(runCtx, fetched)
		}
		if ferr != nil && runCtx.Err() == nil {
			fetchErr <- ferr
		}
	}()
	lookahead := p.Lookahead
	if lookahead <= 0 {
		lookahead = max(2048, 4*inFlight)
	}
	err := r.dispatch(fetched, fetchErr, lookahead)
	r.jobs.Wait()
	cancel()
	<-fetchDone
	<-commitDone
	return r.finish(ctx, err)
}

// poolRun is what one Run of the pool shares with its jobs.
type poolRun struct {
	p      *Pool
	log    zerolog.Logger
	ctx    context.Context // the run's; cancel ends it
	cancel context.CancelFunc
	acks   *ackTracker
	errc   chan error // the first job error that stops the run

	call, post, parked chan struct{} // the jobs' slots (jobSlots)
	jobs               sync.WaitGroup
}

// dispatch fetches jobs ahead, up to lookahead, into one queue per tenant
// (the message key) and starts them round-robin as call slots free up, so
// that a small town's batch is not stuck behind a big town's on a shared
// partition (offsets are still committed in partition order), until the
// run ends or a fetch fails (its error).
func (r *poolRun) dispatch(fetched <-chan delivery, fetchErr <-chan error, lookahead int) error {
	rr := newRoundRobin()
	for {
		var slot chan struct{}
		if rr.len() > 0 {
			slot = r.call // dispatch only when a job waits
		}
		more := fetched
		if rr.len() >= lookahead {
			more = nil // the window is full
		}
		select {
		case <-r.ctx.Done():
			return nil
		case err := <-fetchErr:
			return err
		case d := <-more:
			switch {
			case !r.acks.fetched(d.m):
				// Fetched again after a rebalance: already being processed.
			case r.p.answered.skip(r.ctx, r.log, d.m):
				r.acks.done(d.m)
			default:
				rr.push(string(d.m.Key), d)
			}
		case slot <- struct{}{}:
			d := rr.pop()
			if d.claim.isRevoked() {
				<-r.call // fetched ahead for a revoked partition: dropped, no call
				continue
			}
			r.jobs.Add(1)
			go r.run(d)
		}
	}
}

// run processes one job holding a call slot, and marks it done once its
// results are produced; an error stops the run, unless the job's partition
// was revoked (its next owner runs it).
func (r *poolRun) run(d delivery) {
	defer r.jobs.Done()
	js := &jobSlots{call: r.call, parked: r.parked, post: r.post, held: true}
	defer js.releaseAll()
	if !d.claim.start() {
		return // its partition was revoked: the job's next owner runs it
	}
	defer d.claim.finish()
	jctx := r.ctx
	if d.claim != nil {
		jctx = d.claim.ctx
	}
	if err := r.p.process(r.ctx, jctx, r.log, d.m, js); err != nil {
		if r.ctx.Err() == nil && !d.claim.isRevoked() {
			select {
			case r.errc <- err:
			default:
			}
			r.cancel()
		}
		return
	}
	r.acks.done(d.m)
}

// finish commits what the jobs finished before the stop, saves the jobs
// answered beyond it, releases the leases and leaves the group, with a
// fresh deadline; it returns err, else the first error of these or of a
// job.
func (r *poolRun) finish(ctx context.Context, err error) error {
	p := r.p
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if cerr := p.commit(cctx, r.acks); cerr != nil && err == nil {
		err = cerr
	}
	if serr := p.saveAnswered(cctx, r.acks); serr != nil && err == nil {
		err = serr
	}
	if lerr := p.releaseLeases(cctx); lerr != nil && err == nil {
		err = lerr
	}
	if p.ConsumerGroup != nil {
		if gerr := p.ConsumerGroup.Close(); gerr != nil && err == nil {
			err = fmt.Errorf("work: leave the consumer group: %w", gerr)
		}
	}
	select {
	case jerr := <-r.errc:
		if err == nil {
			err = jerr
		}
	default:
	}
	return err
}

// commitSpacing is the least time between two offset commits: a job done is
// committed within about that (plus the broker's round trip), which bounds
// the jobs a killed worker leaves answered but uncommitted, and so the
// calls its successor repeats, while commits stay few under load.
const commitSpacing = 5 * time.Millisecond

// commitLoop commits done offsets as soon as jobs finish, at most once per
// commitSpacing; it sleeps while nothing finishes.
func (p *Pool) commitLoop(ctx context.Context, log zerolog.Logger, acks *ackTracker, errc chan error) {
	t := time.NewTimer(0)
	defer t.Stop()
	var saved time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-acks.ready:
		}
		if err := p.commit(ctx, acks); err != nil && ctx.Err() == nil {
			log.Warn().Err(err).Msg("commit failed; will retry")
			acks.signal()
		}
		if p.AnsweredLog != nil {
			if now := time.Now(); now.Sub(saved) >= answeredEvery {
				saved = now
				if err := p.saveAnswered(ctx, acks); err != nil && ctx.Err() == nil {
					log.Warn().Err(err).Msg("saving answered jobs failed; will retry")
				}
			} else if acks.dirty() {
				acks.signal() // come back to save them
			}
		}
		t.Reset(commitSpacing)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (p *Pool) commit(ctx context.Context, acks *ackTracker) error {
	msgs := acks.committable()
	if len(msgs) == 0 {
		return nil
	}
	if p.ConsumerGroup != nil {
		done, err := p.commitOffsets(msgs)
		acks.committed(done)
		if err != nil {
			return fmt.Errorf("work: commit job offsets: %w", err)
		}
		return nil
	}
	if err := p.Jobs.CommitMessages(ctx, msgs...); err != nil {
		return fmt.Errorf("work: commit job offsets: %w", err)
	}
	acks.committed(msgs)
	return nil
}

// fetch hands Jobs' messages to out until ctx ends or a fetch fails.
func (p *Pool) fetch(ctx context.Context, out chan<- delivery) error {
	for {
		m, err := p.Jobs.FetchMessage(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("work: fetch job: %w", err)
		}
		select {
		case out <- delivery{m: m}:
		case <-ctx.Done():
			return nil
		}
	}
}

// saveAnswered records the jobs done beyond the committed offsets, for the
// partitions where they changed (a failed save is retried with the next).
func (p *Pool) saveAnswered(ctx context.Context, acks *ackTracker) error {
	if p.AnsweredLog == nil {
		return nil
	}
	for _, ap := range acks.answered() {
		if err := p.AnsweredLog.SaveAnswered(ctx, p.Group, ap.topic, ap.partition, ap.base, encodeOffsets(ap.offsets)); err != nil {
			acks.markDirty(ap.topic, ap.partition)
			return fmt.Errorf("work: %w", err)
		}
	}
	return nil
}

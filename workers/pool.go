package workers

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
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

// Pool consumes jobs, calls the provider under one Budget per token with up
// to MaxInFlight calls in flight, produces one result per row of each job,
// and commits a job's offset only when it and every job before it on its
// partition have their results produced.
type Pool struct {
	Jobs    JobReader
	Results ResultWriter
	Client  *Client
	Tokens  TokenSource
	Log     zerolog.Logger
	// Limit is the per-token budget in requests per second. Default: 20.
	Limit int
	// Share is the fraction of each budget (token and IP) the pool uses,
	// leaving the rest to the collectivité's own interactive use of the
	// token. Default: 1 (all of it).
	Share float64
	// IPLimit is the requests per minute allowed from this egress IP, all
	// tokens together (the API's documented 1000/min; exceeding it gets the
	// IP banned). Negative disables it (benchmarks only). Default: 1000.
	IPLimit int
	// Lookahead is how many fetched jobs may wait in the per-tenant queues
	// (a job message is under a kilobyte). The round-robin between towns
	// only sees the towns whose jobs are in this window. Default: 2048, or
	// 4 × MaxInFlight if larger.
	Lookahead int
	// MaxInFlight is how many jobs are processed at once. Default: 32.
	MaxInFlight int
	// Retry is the retry policy. Default: the zero RetryPolicy's defaults.
	Retry RetryPolicy
	// Guard stops the pool before an IP ban. Default: a BanGuard with its
	// defaults.
	Guard *BanGuard
	// Schedule holds calls outside run windows and during the providers'
	// maintenance; they wait rather than fail. Default: nil (any time).
	Schedule *Schedule
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
	// Identities opens the sealed identities of jobs (*keys.Ring).
	// Default: nil (only jobs in clear are answered; sealed ones get
	// CodeSeal results).
	Identities IdentityOpener

	mu       sync.Mutex
	breakers map[string]*Breaker
	inFlight map[flightKey]chan struct{} // closed when done
	tokens   map[tokenKey]*tokenState
	// tenantKeys holds the key of each tenant's token, and the token it
	// is the key of, so that a job finds it without hashing.
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

// keyOfToken returns token's key. It hashes the token through a small
// buffer rather than converting it whole to bytes: a token is a kilobyte
// or two, and every job hashes one.
func keyOfToken(token string) tokenKey {
	h := sha256.New()
	var chunk [128]byte
	for token != "" {
		n := copy(chunk[:], token)
		h.Write(chunk[:n])
		token = token[n:]
	}
	var k tokenKey
	h.Sum(k[:0])
	return k
}

// tenantKey is the key of a tenant's token.
type tenantKey struct {
	token string
	key   tokenKey
}

// keyOf returns the key of tenant's token, hashing the token only when it
// is not the one last hashed for tenant.
func (p *Pool) keyOf(tenant, token string) tokenKey {
	p.mu.Lock()
	tk, ok := p.tenantKeys[tenant]
	p.mu.Unlock()
	if ok && tk.token == token {
		return tk.key
	}
	tk = tenantKey{token: token, key: keyOfToken(token)}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.tenantKeys == nil {
		p.tenantKeys = make(map[string]tenantKey)
	}
	p.tenantKeys[tenant] = tk
	return tk.key
}

// tokenState is what the pool keeps per token.
type tokenState struct {
	budget *Budget
	// auth is the token's Authorization header value, built once.
	auth authorization
	// lease is the token's lease, with Leases.
	lease tokenLease
	// turn is held by the job of this token asking its budgets (grant).
	turn chan struct{}
}

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

// grant waits until the token's budget and the egress IP's (ip, nil: none;
// SharedIP when set) let a request of ts go, and takes it from each. The
// token's and the IP's budgets grant it together, at the instant the
// request leaves: a grant followed by another wait would send the request
// later than its budget counted it (waiting for the shared budget's next
// slot after the token's grant let the slot's start release one token's
// requests in a burst: 33 in one second). One job of a token at a time
// asks, so the IP's units go round the tokens, and a shared unit is taken
// only when the token can spend it before its slot ends. The error is
// ctx's, ErrGateClosed (renew the lease first) or the shared budget's.
func (p *Pool) grant(ctx context.Context, ts *tokenState, ip *Budget) error {
	select {
	case ts.turn <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-ts.turn }()
	if p.SharedIP == nil {
		return ts.budget.WaitWith(ctx, ip, time.Time{})
	}
	for {
		if err := ts.budget.WaitReady(ctx, nil); err != nil {
			return err
		}
		until, err := p.SharedIP.Wait(ctx)
		if err != nil {
			return err
		}
		if err := ts.budget.WaitWith(ctx, nil, until); !errors.Is(err, ErrDeadline) {
			return err
		}
		// The unit's slot ended before the budgets allowed the call (a
		// pause came): it is lost; take one in a later slot.
	}
}

// tokenState returns the state of token, whose key is key, made at its
// first use. tenant, whose job asks, labels its budget's metrics.
func (p *Pool) tokenState(key tokenKey, token, tenant string) *tokenState {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.tokens == nil {
		p.tokens = make(map[tokenKey]*tokenState)
	}
	ts, ok := p.tokens[key]
	if !ok {
		b := NewBudget(p.share(p.Limit, 20), time.Second, p.Now)
		if p.Leases == nil {
			// The token may have been used at full rate until now by the
			// replica that ran its jobs before a rebalance, or by this
			// process before a restart: its first second is left to them.
			// (With leases, the last holder's end says whether it is.)
			b.PauseUntil(p.now().Add(time.Second + time.Second/100))
		} else {
			b.SetGate(time.Time{}, 0) // no grant before the lease is taken
		}
		ts = &tokenState{budget: b, auth: bearer(token), turn: make(chan struct{}, 1)}
		ts.lease.key = hex.EncodeToString(key[:])
		p.tokens[key] = ts
		p.Metrics.watchBudget(budgetToken, tenant, b)
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
		p.ipBudget = NewBudget(p.share(p.IPLimit, 1000), time.Minute, p.Now)
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
		inFlight = 32
	}
	acks := newAckTracker()
	var answered *answeredSets
	if p.AnsweredLog != nil {
		answered = &answeredSets{log: p.AnsweredLog, group: p.Group}
	}
	p.answered = answered
	sem := make(chan struct{}, inFlight)
	post := make(chan struct{}, 4*inFlight)
	// Jobs waiting out an open breaker or a maintenance window give their
	// call slot back (other providers' jobs go on) and wait parked.
	parked := make(chan struct{}, max(2048, 4*inFlight))
	var wg sync.WaitGroup
	errc := make(chan error, 1)
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()

	commitDone := make(chan struct{})
	go func() {
		defer close(commitDone)
		p.commitLoop(runCtx, log, acks, errc)
	}()

	// Jobs are fetched ahead into one queue per tenant (the message key)
	// and dispatched round-robin, so that a small town's batch is not
	// stuck behind a big town's on a shared partition. Offsets are still
	// committed in partition order.
	lookahead := p.Lookahead
	if lookahead <= 0 {
		lookahead = max(2048, 4*inFlight)
	}
	fetched := make(chan kafkago.Message)
	fetchErr := make(chan error, 1)
	fetchMore := make(chan struct{}, 1)
	fetchMore <- struct{}{}
	fetchDone := make(chan struct{})
	go func() {
		defer close(fetchDone)
		for {
			select {
			case <-runCtx.Done():
				return
			case <-fetchMore:
			}
			m, ferr := p.Jobs.FetchMessage(runCtx)
			if ferr != nil {
				if runCtx.Err() == nil {
					fetchErr <- fmt.Errorf("work: fetch job: %w", ferr)
				}
				return
			}
			select {
			case fetched <- m:
			case <-runCtx.Done():
				return
			}
		}
	}()
	// A job runs on a goroutine kept for the next jobs once it is done
	// (at most inFlight of them wait idle): starting one per job, and
	// growing its stack each time, cost more than the handover.
	idle := make(chan kafkago.Message)
	var idlers atomic.Int32
	runJob := func(m kafkago.Message) {
		defer wg.Done()
		js := &jobSlots{call: sem, parked: parked, post: post, held: true}
		defer js.releaseAll()
		if perr := p.process(runCtx, log, m, js); perr != nil {
			if runCtx.Err() == nil {
				select {
				case errc <- perr:
				default:
				}
				cancel()
			}
			return
		}
		acks.done(m)
	}
	runJobs := func(m kafkago.Message) {
		for {
			runJob(m)
			if idlers.Add(1) > int32(inFlight) {
				idlers.Add(-1)
				return
			}
			select {
			case m = <-idle:
				idlers.Add(-1)
			case <-runCtx.Done():
				idlers.Add(-1)
				return
			}
		}
	}
	rr := newRoundRobin()
	var err error
	waitingFetch := true
loop:
	for {
		var slot chan struct{}
		if rr.len() > 0 {
			slot = sem // dispatch only when a job waits
		}
		select {
		case <-runCtx.Done():
			break loop
		case ferr := <-fetchErr:
			err = ferr
			break loop
		case m := <-fetched:
			waitingFetch = false
			switch {
			case !acks.fetched(m):
				// Fetched again after a rebalance: already being processed.
			case answered.skip(runCtx, log, m):
				acks.done(m)
			default:
				rr.push(string(m.Key), m)
			}
		case slot <- struct{}{}:
			m := rr.pop()
			wg.Add(1)
			select {
			case idle <- m:
			default:
				go runJobs(m)
			}
		}
		if !waitingFetch && rr.len() < lookahead {
			waitingFetch = true
			fetchMore <- struct{}{}
		}
	}
	wg.Wait()
	cancel()
	<-fetchDone
	<-commitDone
	// Commit what finished before the stop, with a fresh deadline.
	cctx, ccancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer ccancel()
	if cerr := p.commit(cctx, acks); cerr != nil && err == nil {
		err = cerr
	}
	if serr := p.saveAnswered(cctx, acks); serr != nil && err == nil {
		err = serr
	}
	if lerr := p.releaseLeases(cctx); lerr != nil && err == nil {
		err = lerr
	}
	select {
	case perr := <-errc:
		if err == nil {
			err = perr
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
	if err := p.Jobs.CommitMessages(ctx, msgs...); err != nil {
		return fmt.Errorf("work: commit job offsets: %w", err)
	}
	acks.committed(msgs)
	return nil
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

// process handles one job message; an error is returned only when results
// could not be produced (the job is then redelivered after a restart).
// js holds the job's slots: a call slot until the provider calls are over,
// then a post slot while the audit and results are written.
func (p *Pool) process(ctx context.Context, log zerolog.Logger, m kafkago.Message, js *jobSlots) error {
	job, err := schemas.DecodeJob(m.Value)
	if err != nil {
		// No rows can be answered for an undecodable job; it is skipped
		// loudly rather than blocking the partition forever.
		log.Error().Err(err).Int("partition", m.Partition).Int64("offset", m.Offset).Msg("job message dropped")
		return nil
	}
	jlog := newJobLog(&log, &job)
	var (
		res   schemas.Result
		calls []schemas.CallRecord
	)
	unsealable, err := p.open(ctx, jlog, &job)
	switch {
	case err != nil:
		return err // transient: the job is redelivered after a restart
	case unsealable != nil:
		res = *unsealable
	default:
		res, calls, err = p.call(ctx, jlog, job, js, &m)
	}
	if errors.Is(err, errAnsweredElsewhere) {
		// Its results were produced by the worker that answered it.
		jlog.Debug().Msg("job answered by the token's previous holder: skipped")
		return nil
	}
	js.afterCalls(ctx)
	// The audit of the calls made and the results are written at the same
	// time; the job is done (its offset committable) once both are.
	var audited chan error
	if p.Audit != nil && len(calls) > 0 {
		audited = make(chan error, 1)
		go func() {
			// Calls made are recorded even when the job stops here.
			actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
			defer cancel()
			audited <- p.Audit.RecordCalls(actx, calls)
		}()
	}
	waitAudit := func() error {
		if audited == nil {
			return nil
		}
		if aerr := <-audited; aerr != nil {
			return fmt.Errorf("work: audit: %w", aerr)
		}
		return nil
	}
	if err == nil {
		err = ctx.Err()
	}
	if err != nil {
		if aerr := waitAudit(); aerr != nil {
			return aerr
		}
		return err
	}
	msgs := make([]kafkago.Message, 0, len(job.Rows))
	key := []byte(job.BatchID) // the messages share it: the writer only reads keys
	for i, row := range job.Rows {
		r := res
		r.RowNumber = row.Number
		r.Reference = row.Reference
		r.Primary = i == 0
		v, err := schemas.EncodeResult(&r)
		if err != nil {
			return fmt.Errorf("work: encode result: %w", err)
		}
		msgs = append(msgs, kafkago.Message{Key: key, Value: v})
	}
	if err := p.Results.WriteMessages(ctx, msgs...); err != nil {
		if aerr := waitAudit(); aerr != nil {
			return aerr
		}
		return fmt.Errorf("work: produce %d results of batch %s: %w", len(msgs), job.BatchID, err)
	}
	if err := waitAudit(); err != nil {
		return err
	}
	p.progress.done(job.Tenant, job.BatchID, p.now())
	return nil
}

// open opens the job's sealed identity in place. A job that can never be
// opened (no keyring, a key not in it, an altered message) is answered
// without a call: the returned result template says why, so that its rows
// are not lost. The error is transient (a KMS out of reach).
func (p *Pool) open(ctx context.Context, log jobLog, job *schemas.Job) (*schemas.Result, error) {
	if job.Sealed == nil {
		return nil, nil
	}
	kid := job.Sealed.KeyID
	if len(kid) > 80 { // the message's: bounded before it is logged and published
		kid = strings.ToValidUTF8(kid[:80], "") + "…"
	}
	err := fmt.Errorf("work: no keyring to open identities: %w", schemas.ErrUnsealable)
	if p.Identities != nil {
		err = p.Identities.Open(ctx, job)
	}
	if err == nil {
		return nil, nil
	}
	if !errors.Is(err, schemas.ErrUnsealable) {
		return nil, fmt.Errorf("work: open identity of a job of batch %s: %w", job.BatchID, err)
	}
	// The error names keys, never the person.
	log.Error().Err(err).Str("key_id", kid).Int("rows", len(job.Rows)).Msg("job identity cannot be opened; its rows are answered " + schemas.CodeSeal)
	return &schemas.Result{
		Version: schemas.ResultVersion, BatchID: job.BatchID, Tenant: job.Tenant, Campaign: job.Campaign, Check: job.Check,
		Status: schemas.StatusProviderError, ErrorCode: schemas.CodeSeal, CheckedAt: p.now().UTC(),
		ErrorMessage: "identité chiffrée illisible par ce worker (clé « " + kid + " » absente de son trousseau, ou message altéré) ; " +
			"vérifiez APBATCH_KEK, APBATCH_KEK_PREVIOUS ou APBATCH_KMS_KEY_ID des workers puis vérifiez le fichier à nouveau",
	}, nil
}

// call runs the job's lookup with retries and returns the result template
// (row fields unset) and the record of every call made. The error is the
// ban guard's or the schedule's.
func (p *Pool) call(ctx context.Context, log jobLog, job schemas.Job, js *jobSlots, m *kafkago.Message) (res schemas.Result, calls []schemas.CallRecord, err error) {
	res = schemas.Result{
		Version: schemas.ResultVersion, BatchID: job.BatchID, Tenant: job.Tenant, Campaign: job.Campaign,
		Check: job.Check,
	}
	token, err := p.Tokens(job.Tenant)
	if err != nil {
		log.Error().Err(err).Msg("no token for tenant")
		res.Status = schemas.StatusUnauthorized
		res.ErrorCode = schemas.CodeNoToken
		res.ErrorMessage = "aucun jeton API Particulier n'est configuré pour cette collectivité ; ajoutez-le (fichier ou variable d'environnement) puis relancez le lot"
		res.CheckedAt = p.now().UTC()
		return res, calls, nil
	}
	// The API refuses an identical request while one is running (409
	// 00015): identical lookups of one token wait for each other.
	key := p.keyOf(job.Tenant, token)
	release, err := p.acquire(ctx, key, job.LookupID)
	if err != nil {
		return res, calls, nil
	}
	defer release()
	a, ok := adapterFor(job.Check)
	if !ok {
		res.Status = schemas.StatusInvalidInput
		res.ErrorCode = schemas.CodeInvalidRow
		res.ErrorMessage = "vérification « " + string(job.Check) + " » inconnue de ce worker ; mettez apbatch à jour"
		res.CheckedAt = p.now().UTC()
		return res, calls, nil
	}
	ts := p.tokenState(key, token, job.Tenant)
	budget, ip, breaker := ts.budget, p.egress(), p.breaker(a.ping(job))
	var (
		out      Outcome
		attempts int32
		tries    int    // attempts that count against the retry policy
		idHMAC   string // the identity's audit hash, computed once
	)
	for {
		if breaker.Open() {
			// Wait for the provider without holding a call slot, so that
			// the other providers' jobs are not held back by an outage.
			err = js.park(ctx, func() error { return breaker.Wait(ctx) })
		} else {
			err = breaker.Wait(ctx)
		}
		if err != nil {
			if errors.Is(err, ErrBanRisk) {
				return res, calls, err
			}
			return res, calls, nil
		}
		if err := p.guard().Tripped(); err != nil {
			return res, calls, err
		}
		// Outside the run window or in the provider's maintenance, the job
		// waits parked; otherwise it keeps its slot.
		next, err := p.nextAllowed(a)
		if err != nil {
			return res, calls, err
		}
		if !next.IsZero() {
			log.Info().Time("until", next).Msg("outside the run window or in a provider maintenance: waiting")
			js.park(ctx, func() error { return sleepUntil(ctx, p.now(), next) })
		}
		if ctx.Err() != nil {
			return res, calls, nil
		}
		if p.Leases != nil {
			if err := p.holdLease(ctx, log, ts, js); err != nil {
				if ctx.Err() != nil {
					return res, calls, nil
				}
				return res, calls, err
			}
		}
		if attempts == 0 && p.Leases != nil {
			if since := ts.lease.lastTakeover(); !since.IsZero() {
				skip, err := p.answeredElsewhere(ctx, log, js, m, since)
				if err != nil {
					return res, calls, nil
				}
				if skip {
					return res, calls, errAnsweredElsewhere
				}
			}
		}
		if err := p.grant(ctx, ts, ip); err != nil {
			if errors.Is(err, ErrGateClosed) {
				continue // renew the lease first
			}
			if ctx.Err() != nil {
				return res, calls, nil
			}
			return res, calls, err
		}
		if p.Leases != nil && !ts.lease.holds(p.now()) {
			// Granted just before the lease's end (the budget's gate),
			// which has passed since: another worker may have the token
			// now. Take the lease again first.
			continue
		}
		attempts++
		p.mu.Lock()
		p.calls++
		p.mu.Unlock()
		var cerr error
		sent := p.now()
		out, cerr = p.Client.call(ctx, ts.auth, job)
		latency := p.now().Sub(sent)
		if p.OnCall != nil {
			p.OnCall(job.Check, latency, out.HTTPStatus)
		}
		if out.HTTPStatus != 0 || ctx.Err() == nil {
			// A call cut short by our own stop is no transport failure.
			p.Metrics.observeCall(job.Check, out.Route, out.HTTPStatus, latency)
		}
		if p.Audit != nil && ctx.Err() == nil {
			if idHMAC == "" {
				idHMAC = p.identityHMAC(job.Identity)
			}
			calls = append(calls, schemas.CallRecord{At: sent, Tenant: job.Tenant, BatchID: job.BatchID,
				RowNumber: job.Rows[0].Number, Rows: len(job.Rows), Check: string(job.Check), Route: out.Route,
				HTTPStatus: out.HTTPStatus, ErrorCode: out.Code, RequestID: out.RequestID, LatencyMS: latency.Milliseconds(),
				Attempt: int(attempts), IdentityHMAC: idHMAC})
		}
		if ctx.Err() != nil {
			return res, calls, nil
		}
		if gerr := p.guard().Record(out.HTTPStatus, p.now()); gerr != nil {
			log.Error().Err(gerr).Msg("ban guard tripped")
			return res, calls, gerr
		}
		if cerr != nil {
			out = Outcome{Status: schemas.StatusProviderError, Code: schemas.CodeTransport, Message: cerr.Error(), Retryable: true}
		} else {
			budget.Observe(out.HTTPStatus, out.Header, sent)
		}
		if breaker.Record(out.HTTPStatus) && out.Retryable {
			// The provider is down: wait for the breaker's probe rather
			// than spend a retry (no retry storm, no row failed by an outage).
			log.Debug().Int("http_status", out.HTTPStatus).Msg("provider breaker open; waiting for its ping")
			continue
		}
		tries++
		delay, again := p.Retry.Delay(tries, out)
		if !again {
			break
		}
		log.Debug().Int("http_status", out.HTTPStatus).Str("code", out.Code).Dur("delay", delay).Msg("retrying")
		now := p.now()
		sleep := func() error { return sleepUntil(ctx, now, now.Add(delay)) }
		if delay >= parkAfter {
			// A long wait (a provider's own rate limit, 5 minutes and
			// more; a maintenance's retry_in) is spent parked: the
			// partition's other jobs keep the call slot.
			js.park(ctx, sleep)
		} else {
			sleep()
		}
		if ctx.Err() != nil {
			return res, calls, nil
		}
	}
	res.Attempts = attempts
	res.RequestID = out.RequestID
	res.Provider = out.Provider
	res.CheckedAt = p.now().UTC()
	if out.Retryable {
		// Retries exhausted on a retryable answer.
		res.Status = schemas.StatusProviderError
		res.ErrorCode = out.Code
		if res.ErrorCode == "" {
			res.ErrorCode = schemas.CodeRetriesExhausted
		}
		res.ErrorMessage = strings.TrimSpace(fmt.Sprintf("échec après %d tentatives (HTTP %d) : %s", attempts, out.HTTPStatus, out.Message))
		return res, calls, nil
	}
	res.Status = out.Status
	res.ErrorCode = out.Code
	res.ErrorMessage = out.Message
	res.Facts = out.Facts
	if out.Status == schemas.StatusOK && out.QF != nil {
		qf := out.QF
		res.QFValue = qf.Valeur
		res.QFYear, res.QFMonth = qf.Annee, qf.Mois
		res.QFCalcYear, res.QFCalcMonth = qf.AnneeCalcul, qf.MoisCalcul
		n := qf.Enfants
		res.ChildrenCount = &n
		res.NeedsReview = qf.Valeur == nil || *qf.Valeur == 0
		if res.Provider == "" {
			res.Provider = qf.Fournisseur
		}
	}
	return res, calls, nil
}

// flightKey is a lookup of one token.
type flightKey struct {
	token  tokenKey
	lookup string
}

// acquire waits until no identical lookup of the token whose key is token
// is in flight, then marks this one; release unmarks it. The error is
// ctx's.
func (p *Pool) acquire(ctx context.Context, token tokenKey, lookup string) (func(), error) {
	key := flightKey{token, lookup}
	for {
		p.mu.Lock()
		if p.inFlight == nil {
			p.inFlight = make(map[flightKey]chan struct{})
		}
		busy, ok := p.inFlight[key]
		if !ok {
			done := make(chan struct{})
			p.inFlight[key] = done
			p.mu.Unlock()
			return func() {
				p.mu.Lock()
				delete(p.inFlight, key)
				p.mu.Unlock()
				close(done)
			}, nil
		}
		p.mu.Unlock()
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-busy:
		}
	}
}

// ErrNeverOpen is returned when the schedule allows no call within 8 days.
var ErrNeverOpen = errors.New("the run window and maintenance windows leave no time to call")

// nextAllowed returns when the schedule next allows a call of adapter a,
// or the zero time when it allows one now.
func (p *Pool) nextAllowed(a adapter) (time.Time, error) {
	if p.Schedule == nil {
		return time.Time{}, nil
	}
	s := *p.Schedule
	if s.Maintenance && len(a.maintenance) > 0 {
		s.Blackout = append(slices.Clone(s.Blackout), a.maintenance...)
	}
	now := p.now()
	next := s.Next(now)
	switch {
	case next.IsZero():
		return next, fmt.Errorf("work: %w", ErrNeverOpen)
	case !next.After(now):
		return time.Time{}, nil
	}
	return next, nil
}

// sleepUntil waits until t or until ctx ends (the caller checks ctx).
func sleepUntil(ctx context.Context, now, t time.Time) error {
	timer := time.NewTimer(t.Sub(now))
	defer timer.Stop()
	select {
	case <-ctx.Done():
	case <-timer.C:
	}
	return nil
}

// breaker returns the circuit breaker of the provider behind ping name.
func (p *Pool) breaker(name string) *Breaker {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.breakers == nil {
		p.breakers = make(map[string]*Breaker)
	}
	b, ok := p.breakers[name]
	if !ok {
		b = &Breaker{Threshold: p.BreakerThreshold, ProbeEvery: p.ProbeEvery,
			Ping: func(ctx context.Context) (bool, error) {
				up, err := p.Client.Ping(ctx, name)
				if err != nil {
					// An unanswered ping counts like an unanswered call:
					// during a ban, nothing answers.
					if gerr := p.guard().Record(0, p.now()); gerr != nil {
						return false, gerr
					}
				}
				return up, err
			}}
		p.breakers[name] = b
	}
	return b
}

// guard returns the pool's ban guard.
func (p *Pool) guard() *BanGuard {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.Guard == nil {
		p.Guard = &BanGuard{}
	}
	return p.Guard
}

// roundRobin holds fetched jobs in one FIFO queue per tenant and hands
// them out one tenant at a time. Not safe for concurrent use.
type roundRobin struct {
	queues map[string][]kafkago.Message
	order  []string // tenants with queued jobs, next first
	n      int
}

func newRoundRobin() *roundRobin { return &roundRobin{queues: make(map[string][]kafkago.Message)} }

func (r *roundRobin) len() int { return r.n }

func (r *roundRobin) push(tenant string, m kafkago.Message) {
	if len(r.queues[tenant]) == 0 {
		r.order = append(r.order, tenant)
	}
	r.queues[tenant] = append(r.queues[tenant], m)
	r.n++
}

// pop returns the next tenant's oldest job; r must not be empty.
func (r *roundRobin) pop() kafkago.Message {
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

// ackTracker remembers, per partition, which fetched offsets are done, so
// that only the highest offset below which everything is done is committed.
type ackTracker struct {
	mu    sync.Mutex
	parts map[topicPartition]*partAcks
	ready chan struct{} // signalled when a job is done
}

type partAcks struct {
	topic     string
	partition int
	pending   []int64        // fetched offsets in order, not yet committed
	done      map[int64]bool // pending offsets: true once done
	next      int64          // the offset after the last committed
	dirty     bool           // done changed since the answered jobs were saved
}

func newAckTracker() *ackTracker {
	return &ackTracker{parts: make(map[topicPartition]*partAcks), ready: make(chan struct{}, 1)}
}

// signal wakes the commit loop without blocking.
func (a *ackTracker) signal() {
	select {
	case a.ready <- struct{}{}:
	default:
	}
}

// topicPartition is a partition's key in the maps that track one.
type topicPartition struct {
	topic     string
	partition int
}

func partKey(topic string, partition int) topicPartition {
	return topicPartition{topic: topic, partition: partition}
}

// fetched tracks a fetched message; it returns false when its offset is
// already pending (fetched again after a rebalance while being processed
// or done here), then it must not be processed twice.
func (a *ackTracker) fetched(m kafkago.Message) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	k := partKey(m.Topic, m.Partition)
	pa, ok := a.parts[k]
	if !ok {
		pa = &partAcks{topic: m.Topic, partition: m.Partition, done: make(map[int64]bool)}
		a.parts[k] = pa
	}
	if _, seen := pa.done[m.Offset]; seen {
		return false
	}
	pa.done[m.Offset] = false
	pa.pending = append(pa.pending, m.Offset)
	return true
}

func (a *ackTracker) done(m kafkago.Message) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if pa, ok := a.parts[partKey(m.Topic, m.Partition)]; ok {
		pa.done[m.Offset] = true
		pa.dirty = true
	}
	a.signal()
}

// answeredPart is one partition's jobs done beyond its first uncommitted
// offset, base.
type answeredPart struct {
	topic     string
	partition int
	base      int64
	offsets   []int64
}

// answered returns the partitions whose done jobs changed since the last
// call, with those jobs.
func (a *ackTracker) answered() []answeredPart {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []answeredPart
	for _, pa := range a.parts {
		if !pa.dirty {
			continue
		}
		pa.dirty = false
		ap := answeredPart{topic: pa.topic, partition: pa.partition, base: pa.next}
		if len(pa.pending) > 0 {
			ap.base = pa.pending[0]
		}
		for _, off := range pa.pending {
			if pa.done[off] {
				ap.offsets = append(ap.offsets, off)
			}
		}
		out = append(out, ap)
	}
	return out
}

// markDirty has a partition's done jobs saved again.
func (a *ackTracker) markDirty(topic string, partition int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if pa, ok := a.parts[partKey(topic, partition)]; ok {
		pa.dirty = true
	}
}

// dirty tells whether some partition has done jobs not yet saved.
func (a *ackTracker) dirty() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, pa := range a.parts {
		if pa.dirty {
			return true
		}
	}
	return false
}

// committable returns, per partition, the message to commit: the last of the
// leading run of done offsets.
func (a *ackTracker) committable() []kafkago.Message {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []kafkago.Message
	for _, pa := range a.parts {
		last := int64(-1)
		for _, off := range pa.pending {
			if !pa.done[off] {
				break
			}
			last = off
		}
		if last >= 0 {
			out = append(out, kafkago.Message{Topic: pa.topic, Partition: pa.partition, Offset: last})
		}
	}
	return out
}

// committed forgets offsets up to those just committed.
func (a *ackTracker) committed(msgs []kafkago.Message) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, m := range msgs {
		pa := a.parts[partKey(m.Topic, m.Partition)]
		i := 0
		for i < len(pa.pending) && pa.pending[i] <= m.Offset {
			delete(pa.done, pa.pending[i])
			i++
		}
		pa.pending = pa.pending[i:]
		pa.next = m.Offset + 1
	}
}

// parkAfter is the retry wait from which a job waits parked rather than
// holding its call slot.
const parkAfter = 2 * time.Second

// jobSlots are the slots one job holds: a call slot (bounding calls in
// flight) while it calls, a parked slot instead while it waits for a
// provider, and a post slot while its audit and results are written. The
// zero value (no channels) holds nothing and parks nothing.
type jobSlots struct {
	call, parked, post chan struct{}
	held, posted       bool
}

// park gives the call slot back while wait runs, waiting in a parked slot
// (bounded: when every one is taken, the call slot is kept), then takes a
// call slot again, unless ctx ends. wait's error is returned.
func (s *jobSlots) park(ctx context.Context, wait func() error) error {
	if s == nil || !s.held {
		return wait()
	}
	select {
	case s.parked <- struct{}{}:
	default:
		return wait()
	}
	<-s.call
	s.held = false
	err := wait()
	<-s.parked
	select {
	case s.call <- struct{}{}:
		s.held = true
	case <-ctx.Done(): // the caller sees ctx end
	}
	return err
}

// afterCalls trades the call slot for a post slot.
func (s *jobSlots) afterCalls(ctx context.Context) {
	if s == nil {
		return
	}
	if s.post != nil {
		select {
		case s.post <- struct{}{}:
			s.posted = true
		case <-ctx.Done():
		}
	}
	if s.held {
		<-s.call
		s.held = false
	}
}

// releaseAll frees what the job still holds.
func (s *jobSlots) releaseAll() {
	if s.held {
		<-s.call
		s.held = false
	}
	if s.posted {
		<-s.post
		s.posted = false
	}
}

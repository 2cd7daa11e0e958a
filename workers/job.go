package workers

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/rs/zerolog"
	kafkago "github.com/segmentio/kafka-go"

	"github.com/apbatch/apbatch/schemas"
)

// process handles one job message; an error is returned only when results
// could not be produced (the job is then redelivered after a restart, or
// run by its partition's next owner). run is the pool's context, ctx the
// job's (run, or its partition's claim, which ends when a rebalance
// revokes the partition: the job then stops waiting and makes no new call,
// but a call sent is answered and its results produced). js holds the
// job's slots: a call slot until the provider calls are over, then a post
// slot while the audit and results are written.
func (p *Pool) process(run, ctx context.Context, log zerolog.Logger, m kafkago.Message, js *jobSlots) error {
	job, err := schemas.DecodeJob(m.Value)
	if err != nil {
		// No rows can be answered for an undecodable job; it is skipped
		// loudly rather than blocking the partition forever.
		log.Error().Err(err).Int("partition", m.Partition).Int64("offset", m.Offset).Msg("job message dropped")
		return nil
	}
	p.held.add(job.BatchID)
	defer p.held.done(job.BatchID)
	jlog := newJobLog(&log, &job)
	if job.Sealed == nil && !p.AllowClearJobs {
		// Never called, never answered: whoever produced it has no
		// sealing key (see AllowClearJobs). The log names the job, never
		// its identity.
		jlog.Error().Int("version", job.Version).Int("rows", len(job.Rows)).Int("partition", m.Partition).Int64("offset", m.Offset).
			Msg("job carries its identity in clear (not sealed): dropped without a call nor a result")
		return nil
	}
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
		res, calls, err = p.call(run, ctx, jlog, job, js, &m)
	}
	if errors.Is(err, errAnsweredElsewhere) {
		// Its results were produced by the worker that answered it.
		jlog.Debug().Msg("job answered by the token's previous holder: skipped")
		return nil
	}
	cancelled := errors.Is(err, errCancelled)
	if cancelled {
		err = nil
	}
	js.afterCalls(run)
	// The calls made are audited before their results are produced, so that
	// a result implies its calls' records in the trail (a batch complete is
	// a batch audited), and the job is done (its offset committable) as soon
	// as its results are. Calls are recorded even when the job stops here.
	if p.Audit != nil && len(calls) > 0 {
		actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		aerr := p.Audit.RecordCalls(actx, calls)
		cancel()
		if aerr != nil {
			return fmt.Errorf("work: audit: %w", aerr)
		}
	}
	if err == nil {
		err = run.Err()
	}
	if err != nil {
		return err
	}
	if cancelled {
		// Its batch is published without it: no result, no more call.
		jlog.Debug().Msg("batch cancelled: job skipped")
		return nil
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
	if err := p.Results.WriteMessages(run, msgs...); err != nil {
		return fmt.Errorf("work: produce %d results of batch %s: %w", len(msgs), job.BatchID, err)
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
// ban guard's or the schedule's, errRevoked when the job's claim ended
// before an answer (ctx), errCancelled or errAnsweredElsewhere. run is the
// pool's context, ctx the job's (see process).
func (p *Pool) call(run, ctx context.Context, log jobLog, job schemas.Job, js *jobSlots, m *kafkago.Message) (res schemas.Result, calls []schemas.CallRecord, err error) {
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
		return res, nil, nil
	}
	l := &lookup{p: p, run: run, ctx: ctx, log: log, job: job, js: js, m: m}
	// The API refuses an identical request while one is running (409
	// 00015): identical lookups of one token wait for each other.
	l.tk = p.tenantToken(job.Tenant, token)
	release, err := p.acquire(ctx, l.tk.key, job.LookupID)
	if err != nil {
		return res, nil, l.stopped()
	}
	defer release()
	a, ok := adapterFor(job.Check)
	if !ok {
		res.Status = schemas.StatusInvalidInput
		res.ErrorCode = schemas.CodeInvalidRow
		res.ErrorMessage = "vérification « " + string(job.Check) + " » inconnue de ce worker ; mettez apbatch à jour"
		res.CheckedAt = p.now().UTC()
		return res, nil, nil
	}
	l.a, l.ts, l.ip, l.breaker = a, p.tokenState(l.tk.budget, job.Tenant), p.egress(), p.breaker(a.ping(job))
	for {
		if err := l.gate(); err != nil {
			if errors.Is(err, errAgain) {
				continue
			}
			return res, l.calls, err
		}
		cerr := l.do()
		if run.Err() != nil {
			return res, l.calls, nil
		}
		delay, again, err := l.decide(cerr)
		if err != nil {
			return res, l.calls, err
		}
		if !again {
			break
		}
		if delay > 0 {
			if err := l.wait(delay); err != nil {
				return res, l.calls, err
			}
		}
	}
	l.fill(&res)
	return res, l.calls, nil
}

// errAgain is gate's error when the job must go through its gates again
// (a lease to renew) before a call.
var errAgain = errors.New("work: through the gates again")

// lookup is one job's calls: its budgets, breaker and what its attempts
// gave so far.
type lookup struct {
	p        *Pool
	run, ctx context.Context
	log      jobLog
	job      schemas.Job
	js       *jobSlots
	m        *kafkago.Message

	tk      tenantKey
	ts      *tokenState
	a       adapter
	ip      *Budget
	breaker *Breaker

	out      Outcome
	attempts int32
	tries    int    // attempts that count against the retry policy
	idHMAC   string // the identity's audit hash, computed once
	calls    []schemas.CallRecord
}

// stopped is the error of a job stopped without an answer because ctx
// ended: errRevoked when only its claim ended (no result; the partition's
// next owner runs it), nil when the pool stops (process sees run's end).
func (l *lookup) stopped() error {
	if l.run.Err() == nil && l.ctx.Err() != nil {
		return errRevoked
	}
	return nil
}

// gate waits until the job may call: its provider's breaker closed, the
// ban guard quiet, within the run window and out of maintenance (parked
// meanwhile), the token's lease held, not answered by the lease's previous
// holder, its batch not cancelled, and its budgets granting the call.
func (l *lookup) gate() error {
	p, ctx, js := l.p, l.ctx, l.js
	var err error
	if l.breaker.Open() {
		// Wait for the provider without holding a call slot, so that the
		// other providers' jobs are not held back by an outage.
		err = js.park(ctx, func() error { return l.breaker.Wait(ctx) })
	} else {
		err = l.breaker.Wait(ctx)
	}
	if err != nil {
		if errors.Is(err, ErrBanRisk) {
			return err
		}
		return l.stopped()
	}
	if err := p.guard().Tripped(); err != nil {
		return err
	}
	// Outside the run window or in the provider's maintenance, the job
	// waits parked; otherwise it keeps its slot.
	next, err := p.nextAllowed(l.a)
	if err != nil {
		return err
	}
	if !next.IsZero() {
		l.log.Info().Time("until", next).Msg("outside the run window or in a provider maintenance: waiting")
		js.park(ctx, func() error { return sleepUntil(ctx, p.now(), next) })
	}
	if ctx.Err() != nil {
		return l.stopped()
	}
	if p.Leases != nil {
		if err := p.holdLease(ctx, l.log, l.ts, js); err != nil {
			if ctx.Err() != nil {
				return l.stopped()
			}
			return err
		}
		if since := l.ts.lease.lastTakeover(); l.attempts == 0 && !since.IsZero() {
			skip, err := p.answeredElsewhere(ctx, l.log, js, l.m, since)
			if err != nil {
				return l.stopped()
			}
			if skip {
				return errAnsweredElsewhere
			}
		}
	}
	if p.cancelled(ctx, l.job.BatchID) {
		return errCancelled
	}
	if err := p.grant(ctx, l.ts, l.ip); err != nil {
		if errors.Is(err, ErrGateClosed) {
			return errAgain // renew the lease first
		}
		if ctx.Err() != nil {
			return l.stopped()
		}
		return err
	}
	if p.Leases != nil && !l.ts.lease.holds(p.now()) {
		// Granted just before the lease's end (the budget's gate), which
		// has passed since: another worker may have the token now. Take
		// the lease again first.
		return errAgain
	}
	if p.cancelled(ctx, l.job.BatchID) {
		return errCancelled
	}
	if ctx.Err() != nil {
		return l.stopped() // revoked while granted: no call
	}
	return nil
}

// do makes one call, answered even if the job's ctx ends meanwhile (only
// the pool's stop cuts it), and records it; the error is the transport's.
func (l *lookup) do() error {
	p, job := l.p, l.job
	l.attempts++
	p.mu.Lock()
	p.calls++
	p.mu.Unlock()
	sent := p.now()
	out, cerr := p.Client.call(l.run, l.tk.auth, job, p.Delegations[job.Tenant])
	latency := p.now().Sub(sent)
	l.out = out
	if p.OnCall != nil {
		p.OnCall(job.Check, latency, out.HTTPStatus)
	}
	if out.HTTPStatus != 0 || l.run.Err() == nil {
		// A call cut short by our own stop is no transport failure.
		p.Metrics.observeCall(job.Check, out.Route, out.HTTPStatus, latency)
	}
	if p.Audit != nil && l.run.Err() == nil {
		if l.idHMAC == "" {
			l.idHMAC = p.identityHMAC(job.Identity)
		}
		l.calls = append(l.calls, schemas.CallRecord{At: sent, Tenant: job.Tenant, BatchID: job.BatchID,
			RowNumber: job.Rows[0].Number, Rows: len(job.Rows), Check: string(job.Check), Route: out.Route,
			HTTPStatus: out.HTTPStatus, ErrorCode: out.Code, RequestID: out.RequestID, LatencyMS: latency.Milliseconds(),
			Attempt: int(l.attempts), IdentityHMAC: l.idHMAC})
	}
	if cerr == nil {
		l.ts.budget.Observe(out.HTTPStatus, out.Header, sent)
	}
	return cerr
}

// decide reads the last answer (cerr: the transport's error): whether to
// call again, after delay (0: at once, when the breaker opened and its
// probe says when), or to stop with this answer. The error is the ban
// guard's.
func (l *lookup) decide(cerr error) (delay time.Duration, again bool, err error) {
	p, log := l.p, l.log
	if gerr := p.guard().Record(l.out.HTTPStatus, p.now()); gerr != nil {
		log.Error().Err(gerr).Msg("ban guard tripped")
		return 0, false, gerr
	}
	if cerr != nil {
		l.out = Outcome{Status: schemas.StatusProviderError, Code: schemas.CodeTransport, Message: cerr.Error(), Retryable: true}
	} else if l.out.UnknownCode {
		p.Metrics.observeUnknownCode(l.job.Check, l.out.HTTPStatus, l.out.Code)
		log.Debug().Int("http_status", l.out.HTTPStatus).Str("code", l.out.Code).
			Msg("error code unknown to the error catalogue: classified by its HTTP status")
	}
	if l.breaker.Record(l.out.HTTPStatus) && l.out.Retryable {
		// The provider is down: wait for the breaker's probe rather than
		// spend a retry (no retry storm, no row failed by an outage).
		log.Debug().Int("http_status", l.out.HTTPStatus).Msg("provider breaker open; waiting for its ping")
		return 0, true, nil
	}
	l.tries++
	delay, again = p.Retry.Delay(l.tries, l.out)
	if again {
		log.Debug().Int("http_status", l.out.HTTPStatus).Str("code", l.out.Code).Dur("delay", delay).Msg("retrying")
	}
	return delay, again, nil
}

// wait sleeps delay before a retry; a long wait (a provider's own rate
// limit, 5 minutes and more; a maintenance's retry_in) is spent parked, the
// partition's other jobs keeping the call slot.
func (l *lookup) wait(delay time.Duration) error {
	now := l.p.now()
	sleep := func() error { return sleepUntil(l.ctx, now, now.Add(delay)) }
	if delay >= parkAfter {
		l.js.park(l.ctx, sleep)
	} else {
		sleep()
	}
	if l.ctx.Err() != nil {
		return l.stopped()
	}
	return nil
}

// fill writes the lookup's last answer into res.
func (l *lookup) fill(res *schemas.Result) {
	out := l.out
	res.Attempts = l.attempts
	res.RequestID = out.RequestID
	res.Provider = out.Provider
	res.CheckedAt = l.p.now().UTC()
	if out.Retryable {
		// Retries exhausted on a retryable answer.
		res.Status = schemas.StatusProviderError
		res.ErrorCode = out.Code
		if res.ErrorCode == "" {
			res.ErrorCode = schemas.CodeRetriesExhausted
		}
		res.ErrorMessage = strings.TrimSpace(fmt.Sprintf("échec après %d tentatives (HTTP %d) : %s", l.attempts, out.HTTPStatus, out.Message))
		return
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
		if res.NeedsReview && res.ErrorMessage == "" {
			res.ErrorMessage = schemas.ReviewReason(qf.Valeur)
		}
		if res.Provider == "" {
			res.Provider = qf.Fournisseur
		}
	}
}

// cancelled reports whether the batch of a job was cancelled.
func (p *Pool) cancelled(ctx context.Context, batchID string) bool {
	return p.Cancelled != nil && p.Cancelled(ctx, batchID)
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

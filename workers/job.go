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
// ban guard's or the schedule's.
func (p *Pool) call(run, ctx context.Context, log jobLog, job schemas.Job, js *jobSlots, m *kafkago.Message) (res schemas.Result, calls []schemas.CallRecord, err error) {
	// stopped is the error of a job stopped without an answer: ctx ended.
	// Only its claim ended: errRevoked (no result; the partition's next
	// owner runs it). The pool stops: nil (process sees run's end).
	stopped := func() error {
		if run.Err() == nil && ctx.Err() != nil {
			return errRevoked
		}
		return nil
	}
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
	tk := p.tenantToken(job.Tenant, token)
	release, err := p.acquire(ctx, tk.key, job.LookupID)
	if err != nil {
		return res, calls, stopped()
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
	ts := p.tokenState(tk.budget, job.Tenant)
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
			return res, calls, stopped()
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
			return res, calls, stopped()
		}
		if p.Leases != nil {
			if err := p.holdLease(ctx, log, ts, js); err != nil {
				if ctx.Err() != nil {
					return res, calls, stopped()
				}
				return res, calls, err
			}
		}
		if attempts == 0 && p.Leases != nil {
			if since := ts.lease.lastTakeover(); !since.IsZero() {
				skip, err := p.answeredElsewhere(ctx, log, js, m, since)
				if err != nil {
					return res, calls, stopped()
				}
				if skip {
					return res, calls, errAnsweredElsewhere
				}
			}
		}
		if p.cancelled(ctx, job.BatchID) {
			return res, calls, errCancelled
		}
		if err := p.grant(ctx, ts, ip); err != nil {
			if errors.Is(err, ErrGateClosed) {
				continue // renew the lease first
			}
			if ctx.Err() != nil {
				return res, calls, stopped()
			}
			return res, calls, err
		}
		if p.Leases != nil && !ts.lease.holds(p.now()) {
			// Granted just before the lease's end (the budget's gate),
			// which has passed since: another worker may have the token
			// now. Take the lease again first.
			continue
		}
		if p.cancelled(ctx, job.BatchID) {
			return res, calls, errCancelled
		}
		if ctx.Err() != nil {
			return res, calls, stopped() // revoked while granted: no call
		}
		attempts++
		p.mu.Lock()
		p.calls++
		p.mu.Unlock()
		var cerr error
		sent := p.now()
		out, cerr = p.Client.call(run, tk.auth, job, p.Delegations[job.Tenant]) // answered even if ctx ends now
		latency := p.now().Sub(sent)
		if p.OnCall != nil {
			p.OnCall(job.Check, latency, out.HTTPStatus)
		}
		if out.HTTPStatus != 0 || run.Err() == nil {
			// A call cut short by our own stop is no transport failure.
			p.Metrics.observeCall(job.Check, out.Route, out.HTTPStatus, latency)
		}
		if p.Audit != nil && run.Err() == nil {
			if idHMAC == "" {
				idHMAC = p.identityHMAC(job.Identity)
			}
			calls = append(calls, schemas.CallRecord{At: sent, Tenant: job.Tenant, BatchID: job.BatchID,
				RowNumber: job.Rows[0].Number, Rows: len(job.Rows), Check: string(job.Check), Route: out.Route,
				HTTPStatus: out.HTTPStatus, ErrorCode: out.Code, RequestID: out.RequestID, LatencyMS: latency.Milliseconds(),
				Attempt: int(attempts), IdentityHMAC: idHMAC})
		}
		if run.Err() != nil {
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
			if out.UnknownCode {
				p.Metrics.observeUnknownCode(job.Check, out.HTTPStatus, out.Code)
				log.Debug().Int("http_status", out.HTTPStatus).Str("code", out.Code).
					Msg("error code unknown to the error catalogue: classified by its HTTP status")
			}
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
			return res, calls, stopped()
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
		if res.NeedsReview && res.ErrorMessage == "" {
			res.ErrorMessage = schemas.ReviewReason(qf.Valeur)
		}
		if res.Provider == "" {
			res.Provider = qf.Fournisseur
		}
	}
	return res, calls, nil
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

package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"sort"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/rs/zerolog"

	"github.com/apbatch/apbatch/pipeline"
	"github.com/apbatch/apbatch/schemas"
	"github.com/apbatch/apbatch/workers"
	"github.com/apbatch/apbatch/workers/sandbox"
)

// benchCommand is "apbatch bench": named scenarios run through the whole
// pipeline against the sandbox, with figures read from the sandbox's own
// counters (what the API would see) and from the workers.
type benchCommand struct {
	env
	fs *flag.FlagSet

	scenarios, logLevel    string
	memoryLimit            string
	cpuProfile, memProfile string
	duration               time.Duration
	rawRows                int
	keep                   bool
}

// scenario is one named benchmark.
type scenario struct {
	name, about string
	limits      sandbox.Limits
	faults      sandbox.Faults
	// rate and inFlight configure the workers; rows is the roster size
	// (0: rate × duration).
	rate, inFlight, rows int
	// ipLimit is the workers' per-IP budget per minute (-1: none).
	ipLimit int
	// tighten, when set, replaces the sandbox's limits halfway through.
	tighten *sandbox.Limits
	// outage, when set, takes the QF provider down for that long, a third
	// of the way through.
	outage time.Duration
	// tenants is how many towns, each with its own token, share the IP
	// (default 1).
	tenants int
	// replicas is how many worker pools share the consumer group, each
	// with its own budgets as separate processes would (default 1).
	replicas int
	// checks are the batch's checks (default: the QF alone).
	checks []schemas.Check
	// sharedIP makes the replicas share the per-IP budget through the
	// ledger, as worker processes behind one egress IP do.
	sharedIP bool
	// habilitation, when set, is the habilitation every town's token
	// belongs to (its authorization_request_id claim): the sandbox counts
	// their calls together, and the workers share one budget, limited to
	// perMinute calls a minute (--per-minute habilitation=N).
	habilitation string
	perMinute    int
}

func (c *benchCommand) scenarioList() []scenario {
	latency := sandbox.Faults{LatencyP50: 200 * time.Millisecond, LatencyP99: 400 * time.Millisecond}
	return []scenario{
		{name: "one-token", about: "one token, 20/s fixed windows, latency 200 ms (p99 400 ms), no per-IP cap",
			limits: sandbox.Limits{PerSecond: sandbox.DefaultPerSecond, IPPerMinute: 1 << 30}, faults: latency, rate: workers.DefaultLimit, ipLimit: -1, inFlight: workers.DefaultMaxInFlight},
		{name: "sliding", about: "as one-token against a sliding-window server",
			limits: sandbox.Limits{PerSecond: sandbox.DefaultPerSecond, Sliding: true, IPPerMinute: 1 << 30}, faults: latency, rate: workers.DefaultLimit, ipLimit: -1, inFlight: workers.DefaultMaxInFlight},
		{name: "ip-cap", about: "one token at 20/s behind the API's 1000/min per-IP cap (budget: 1000/min)",
			limits: sandbox.Limits{PerSecond: sandbox.DefaultPerSecond}, faults: latency, rate: workers.DefaultLimit, ipLimit: workers.DefaultIPLimit, inFlight: workers.DefaultMaxInFlight},
		{name: "tightening", about: "20/s, then 250/min per token announced halfway (the operator's planned cap)",
			limits: sandbox.Limits{PerSecond: sandbox.DefaultPerSecond, IPPerMinute: 1 << 30}, faults: latency, rate: workers.DefaultLimit, ipLimit: -1, inFlight: workers.DefaultMaxInFlight,
			tighten: &sandbox.Limits{PerSecond: sandbox.DefaultPerSecond, PerMinute: 250, IPPerMinute: 1 << 30}},
		{name: "two-replicas", about: "as one-token with two worker replicas in one consumer group",
			limits: sandbox.Limits{PerSecond: sandbox.DefaultPerSecond, IPPerMinute: 1 << 30}, faults: latency, rate: workers.DefaultLimit, ipLimit: -1, inFlight: workers.DefaultMaxInFlight, replicas: 2},
		{name: "many-tokens", about: "10 towns with their own tokens behind one IP capped at 1000/min",
			limits: sandbox.Limits{PerSecond: sandbox.DefaultPerSecond}, faults: latency, rate: workers.DefaultLimit, ipLimit: workers.DefaultIPLimit, inFlight: workers.DefaultMaxInFlight, tenants: 10},
		{name: "shared-ip", about: "4 towns, two worker replicas behind one IP capped at 1000/min, sharing its budget through the ledger",
			limits: sandbox.Limits{PerSecond: sandbox.DefaultPerSecond}, faults: latency, rate: workers.DefaultLimit, ipLimit: workers.DefaultIPLimit, inFlight: workers.DefaultMaxInFlight, tenants: 4, replicas: 2, sharedIP: true},
		{name: "habilitation", about: "two towns' tokens of one habilitation limited to 250/min (the operator's proposed cap), two worker replicas sharing its budget through the ledger",
			limits: sandbox.Limits{PerSecond: sandbox.DefaultPerSecond, PerMinute: 250}, faults: latency, rate: workers.DefaultLimit, ipLimit: workers.DefaultIPLimit, inFlight: workers.DefaultMaxInFlight, tenants: 2, replicas: 2,
			habilitation: "51234", perMinute: 250},
		{name: "outage", about: "as one-token with the QF and RSA checks, the CNAF & MSA QF provider down 60 s a third of the way through",
			limits: sandbox.Limits{PerSecond: sandbox.DefaultPerSecond, IPPerMinute: 1 << 30}, faults: latency, rate: workers.DefaultLimit, ipLimit: -1, inFlight: workers.DefaultMaxInFlight,
			outage: time.Minute, checks: []schemas.Check{schemas.CheckQuotientFamilial, schemas.CheckRSA}},
		// The workers' budget is at its maximum, far above what the
		// machine reaches: it grants without pacing, but its bookkeeping
		// is still paid on every call.
		{name: "raw", about: "no limit (workers' budget at its maximum), no latency: pipeline overhead only",
			limits: sandbox.Limits{PerSecond: 1 << 30, IPPerMinute: 1 << 30}, rate: workers.MaxLimit, ipLimit: -1, inFlight: workers.DefaultMaxInFlight, rows: c.rawRows},
	}
}

func (c *benchCommand) flags() *flag.FlagSet {
	if c.fs != nil {
		return c.fs
	}
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(c.stderr)
	fs.StringVar(&c.scenarios, "scenario", "one-token,sliding,ip-cap,two-replicas,many-tokens,shared-ip,habilitation,tightening,outage,raw", "comma-separated scenarios to run")
	fs.DurationVar(&c.duration, "duration", 3*time.Minute, "length of rate-limited scenarios (their roster holds rate × duration rows)")
	fs.IntVar(&c.rawRows, "raw-rows", 100000, "rows of the raw scenario")
	fs.BoolVar(&c.keep, "keep", false, "keep each scenario's data folder (printed)")
	fs.StringVar(&c.cpuProfile, "cpuprofile", "", "write a CPU profile of the scenarios to this file (go tool pprof; the sandbox's goroutines are labelled service=sandbox, the embedded broker's and S3's service=embedded: -tags shows the shares; -tagignore 'service=sandbox|embedded' leaves apbatch's own)")
	fs.StringVar(&c.memProfile, "memprofile", "", "write a heap profile to this file when each scenario's batches complete (go tool pprof)")
	fs.StringVar(&c.logLevel, "log-level", "error", "log level: debug, info, warn, error")
	memoryLimitFlag(fs, c.getenv, &c.memoryLimit)
	c.fs = fs
	return fs
}

// Usage prints the command's help.
func (c *benchCommand) Usage() {
	fs := c.flags()
	fmt.Fprint(c.stdout, `Usage: apbatch bench [flags]

Runs named scenarios through the whole pipeline (embedded Kafka, S3 and
ledger) against an in-process sandbox, and prints per scenario: rows, wall
time, rows/s end to end, calls/s the API saw, the share of the budget used,
the most requests the API saw in any sliding second, 429s, p50/p99 call
latency, peak memory, and the CPU time used per row (steadier than rows/s
on a machine whose speed varies; the in-process sandbox and broker count).

Scenarios:
`)
	for _, s := range c.scenarioList() {
		fmt.Fprintf(c.stdout, "  %-10s %s\n", s.name, s.about)
	}
	printUsage(c.stdout, c.stderr, fs, "\nFlags:\n")
}

// benchResult is one scenario's figures.
type benchResult struct {
	name                  string
	budgetPerSec          float64
	tooManyAfter          int64
	failedRows            int64
	shareMin, shareMax    float64
	fair                  float64
	maxTokenSecond        int
	extraCalls            int64
	rows                  int
	wall                  time.Duration
	cpu                   time.Duration // the process's, sandbox and broker included
	callsPerSec, budget   float64
	limit, maxInSecond    int
	tooMany               int64
	p50, p99              time.Duration
	peakRSS               int64
	requests, transportKO int64
	// During an outage: calls of the check whose provider is down, of the
	// others, and of the first after it.
	// etaErrMax is the largest gap, over the towns, between the ETA given
	// a third of the way through and the actual finish, relative to the
	// time that was left.
	etaErrMax  float64
	etaChecked int
	outage     time.Duration
	// perMinute is the habilitation's limit its tokens shared (0: none).
	perMinute                                  int
	downCalls, otherCalls, qfAfter, otherAfter int64
}

// Run runs the command.
func (c *benchCommand) Run(ctx context.Context, args []string) error {
	fs := c.flags()
	fs.Usage = c.Usage
	if err := parseArgs(fs, args); err != nil {
		return err
	}
	byName := map[string]scenario{}
	for _, s := range c.scenarioList() {
		byName[s.name] = s
	}
	var todo []scenario
	for _, n := range strings.Split(c.scenarios, ",") {
		s, ok := byName[strings.TrimSpace(n)]
		if !ok {
			return fmt.Errorf("--scenario: unknown %q (try apbatch help bench)", n)
		}
		todo = append(todo, s)
	}
	log, err := newLogger(c.stderr, c.logLevel, false)
	if err != nil {
		return err
	}
	if _, err := applyMemoryLimit(c.memoryLimit, c.getenv); err != nil {
		return err
	}
	if c.cpuProfile != "" {
		f, err := os.Create(c.cpuProfile)
		if err != nil {
			return fmt.Errorf("--cpuprofile: %w", err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return fmt.Errorf("--cpuprofile: %w", err)
		}
		defer pprof.StopCPUProfile()
	}
	var results []benchResult
	for _, s := range todo {
		fmt.Fprintf(c.stderr, "bench: %s: %s\n", s.name, s.about)
		r, err := c.runScenario(ctx, log, s)
		if err != nil {
			return fmt.Errorf("scenario %s: %w", s.name, err)
		}
		results = append(results, r)
	}
	tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SCENARIO\tROWS\tWALL\tROWS/S\tCALLS/S\tBUDGET\tMAX IN 1S\t429\tP50\tP99\tPEAK RSS")
	for _, r := range results {
		budget, maxIn := "-", strconv.Itoa(r.maxInSecond)
		if r.limit < 1<<20 {
			budget = fmt.Sprintf("%.1f%%", r.budget*100)
			maxIn += "/" + strconv.Itoa(r.limit)
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%.0f\t%.2f\t%s\t%s\t%d\t%s\t%s\t%d MB\n", r.name, r.rows, r.wall.Round(time.Millisecond),
			float64(r.rows)/r.wall.Seconds(), r.callsPerSec, budget, maxIn, r.tooMany, r.p50.Round(time.Millisecond),
			r.p99.Round(time.Millisecond), r.peakRSS>>20)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, r := range results {
		fmt.Fprintf(c.stdout, "%s: %d calls beyond one per row and check, %d results in provider_error", r.name, r.extraCalls, r.failedRows)
		if r.cpu > 0 && r.rows > 0 {
			// Steadier than rows/s on a machine whose speed varies: the
			// sandbox and the broker run in the process and count too.
			fmt.Fprintf(c.stdout, "; CPU %.1f s (%.0f µs per row, sandbox and broker included)", r.cpu.Seconds(), float64(r.cpu.Microseconds())/float64(r.rows))
		}
		if r.outage > 0 {
			fmt.Fprintf(c.stdout, "; during the %s QF outage: %d QF calls (probes aside), %d RSA calls; after it: %d QF calls, %d RSA calls",
				r.outage, r.downCalls, r.otherCalls, r.qfAfter, r.otherAfter)
		}
		if r.perMinute > 0 {
			verdict := "no 429"
			if r.tooMany > 0 {
				verdict = fmt.Sprintf("%d × 429", r.tooMany)
			}
			fmt.Fprintf(c.stdout, "; one habilitation's tokens on two replicas: %.2f calls/s of %.2f (%d/min shared), %s", r.callsPerSec, float64(r.perMinute)/60, r.perMinute, verdict)
		}
		if r.shareMax > 0 {
			fmt.Fprintf(c.stdout, "; while all towns were active each got %.1f%%-%.1f%% of the calls (fair: %.1f%%)",
				r.shareMin*100, r.shareMax*100, r.fair*100)
			if r.etaChecked > 0 {
				fmt.Fprintf(c.stdout, "; each town's ETA a third of the way through was within %.1f%% of its actual finish (%d towns)",
					r.etaErrMax*100, r.etaChecked)
			}
		}
		fmt.Fprintln(c.stdout)
	}
	return nil
}

func (c *benchCommand) runScenario(ctx context.Context, log zerolog.Logger, s scenario) (benchResult, error) {
	res := benchResult{name: s.name, limit: s.limits.PerSecond, budgetPerSec: float64(s.limits.PerSecond)}
	if s.ipLimit > 0 {
		res.budgetPerSec = min(res.budgetPerSec, float64(s.ipLimit)/60)
	}
	dir, err := os.MkdirTemp("", "apbatch-bench-"+s.name+"-")
	if err != nil {
		return res, fmt.Errorf("temp folder: %w", err)
	}
	if c.keep {
		fmt.Fprintf(c.stderr, "bench: %s: data in %s\n", s.name, dir)
	} else {
		defer os.RemoveAll(dir)
	}
	rows := s.rows
	if rows == 0 {
		rows = int(float64(s.rate) * c.duration.Seconds())
	}
	checks := s.checks
	if len(checks) == 0 {
		checks = []schemas.Check{schemas.CheckQuotientFamilial}
	}
	if s.outage > 0 {
		if c.duration <= s.outage {
			return res, fmt.Errorf("--duration %s: the scenario takes its provider down for %s; give a longer duration", c.duration, s.outage)
		}
		rows = int(float64(s.rate)*(c.duration-s.outage).Seconds()) / len(checks)
	}
	tenants := max(s.tenants, 1)
	if tenants > 1 {
		rows = int(float64(s.ipLimit) / 60 * c.duration.Seconds())
	}
	if s.habilitation != "" {
		res.perMinute = s.perMinute
		res.budgetPerSec = float64(s.perMinute) / 60
		rows = int(res.budgetPerSec * c.duration.Seconds())
	}
	if s.tighten != nil {
		// Half the time at the first limit, half at the new one.
		half := c.duration.Seconds() / 2
		rows = int(float64(s.rate)*half + float64(s.tighten.PerMinute)/60*half)
	}
	res.rows = rows
	pop := sandbox.NewPopulation(rows, 1)
	// One roster per town, equal parts of the population.
	rosters := make([]string, tenants)
	for k := range rosters {
		rosters[k] = filepath.Join(dir, fmt.Sprintf("roster-%02d.csv", k))
		f, err := os.Create(rosters[k])
		if err != nil {
			return res, fmt.Errorf("roster: %w", err)
		}
		err = pop.WriteCSVRange(f, k*rows/tenants, (k+1)*rows/tenants)
		f.Close()
		if err != nil {
			return res, err
		}
	}

	sb, err := sandbox.New(sandbox.Config{Limits: s.limits, Faults: s.faults, Population: pop, Log: zerolog.Nop()})
	if err != nil {
		return res, err
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", "127.0.0.1:0")
	if err != nil {
		return res, fmt.Errorf("sandbox: listen: %w", err)
	}
	srv := sb.HTTPServer()
	// The sandbox's goroutines carry a profile label, so that a CPU profile
	// tells the API's share from apbatch's (go tool pprof -tagignore
	// service=sandbox).
	go pprof.Do(ctx, pprof.Labels("service", "sandbox"), func(context.Context) { srv.Serve(ln) })
	defer func() {
		sb.Close()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
	}()
	tokens := map[string]string{}
	for k := 0; k < tenants; k++ {
		tok, err := sandbox.HabilitationToken([]byte(sandbox.DefaultSecret), sandbox.AllScopes, time.Now().Add(24*time.Hour), s.habilitation)
		if err != nil {
			return res, err
		}
		tokens[fmt.Sprintf("town%02d", k)] = tok
	}

	resetPeakRSS()
	emb := &pipeline.Embedded{DataDir: filepath.Join(dir, "data")}
	pprof.Do(ctx, pprof.Labels("service", "embedded"), func(ctx context.Context) { err = emb.Open(ctx) })
	if err != nil {
		return res, err
	}
	defer emb.Close(context.WithoutCancel(ctx))
	// Identities sealed as in production: their cost is part of the figures.
	ring, err := keyRing(ctx, func(string) string { return "" }, emb.DataDir)
	if err != nil {
		return res, err
	}
	cfg := pipeline.RunnerConfig{
		Kafka: emb.Kafka(), S3: emb.S3(), LedgerURL: emb.LedgerURL(), Log: log,
		ProviderURL: "http://" + ln.Addr().String(), Tokens: func(tenant string) (string, error) {
			if tok, ok := tokens[tenant]; ok {
				return tok, nil
			}
			return "", workers.ErrNoToken
		},
		Rate: s.rate, IPLimit: s.ipLimit, InFlight: s.inFlight, AuditKey: []byte("bench-audit-key-not-secret"), Recipient: dinumSIRET, FlushInterval: 5 * time.Second,
		Checks: checks,
		// Metrics on, as in production: their cost is part of the figures.
		Registry: newRegistry(),
		Keys:     ring,
	}
	if s.sharedIP {
		cfg.SharedIP = "bench"
	}
	if s.perMinute > 0 {
		cfg.KeyLimits = workers.KeyLimits{"habilitation": s.perMinute}
	}
	st, err := pipeline.OpenRunner(ctx, cfg)
	if err != nil {
		return res, err
	}
	defer st.Close()
	if err := st.AddWorkers(cfg, s.replicas-1); err != nil {
		return res, err
	}
	var (
		mu                   sync.Mutex
		lat                  []time.Duration
		outageFrom, outageTo time.Time
	)
	onCall := func(check schemas.Check, d time.Duration, status int) {
		mu.Lock()
		defer mu.Unlock()
		lat = append(lat, d)
		if status == 0 {
			res.transportKO++
		}
		if outageFrom.IsZero() {
			return
		}
		switch now := time.Now(); {
		case now.After(outageFrom) && now.Before(outageTo) && check == schemas.CheckQuotientFamilial:
			res.downCalls++
		case now.After(outageFrom) && now.Before(outageTo):
			res.otherCalls++
		case now.After(outageTo) && check == schemas.CheckQuotientFamilial:
			res.qfAfter++
		case now.After(outageTo):
			res.otherAfter++
		}
	}
	st.Pool.OnCall = onCall
	for _, p := range st.Extra {
		p.OnCall = onCall
	}
	runCtx, cancel := context.WithCancel(ctx)
	roleErr := st.Start(runCtx)
	defer func() {
		cancel()
		st.Wait()
	}()
	start, cpuStart := time.Now(), cpuTime()
	var (
		changedAt, settledAt time.Time
		atChange, atSettle   sandbox.CounterStats
	)
	if s.tighten != nil {
		tightenCtx, stopTighten := context.WithCancel(ctx)
		defer stopTighten()
		changed := make(chan struct{})
		go func() {
			defer close(changed)
			select {
			case <-tightenCtx.Done():
			case <-time.After(c.duration / 2):
				if st := sb.Stats(); len(st.Tokens) == 1 {
					atChange = st.Tokens[0]
				}
				changedAt = time.Now()
				sb.SetLimits(*s.tighten)
			}
			// The minute the change falls in is already spent: utilisation
			// is measured from the next one.
			next := changedAt.Truncate(time.Minute).Add(time.Minute)
			select {
			case <-tightenCtx.Done():
			case <-time.After(time.Until(next)):
				if st := sb.Stats(); len(st.Tokens) == 1 {
					atSettle = st.Tokens[0]
				}
				settledAt = time.Now()
			}
		}()
		defer func() { stopTighten(); <-changed }()
	}
	if s.outage > 0 {
		res.outage = s.outage
		timer := time.AfterFunc(c.duration/3, func() {
			mu.Lock()
			outageFrom, outageTo = time.Now(), time.Now().Add(s.outage)
			mu.Unlock()
			sb.SetOutage(workers.QuotientFamilialPing, outageTo)
		})
		defer timer.Stop()
	}
	var subs []pipeline.Submitted
	for k, roster := range rosters {
		sub, err := st.SubmitFiles(ctx, fmt.Sprintf("town%02d", k), "bench", []string{roster}, 0, false)
		if err != nil {
			return res, err
		}
		subs = append(subs, sub...)
	}
	// Each town's ETA a third of the way through, against when its
	// lookups were actually all answered.
	var (
		etaAt     time.Time
		predicted = map[string]time.Time{}
		finished  = map[string]time.Time{}
	)
	watch := func(pr pipeline.Progress) {
		now := time.Now()
		for tenant, left := range pr.Left {
			if _, ok := finished[tenant]; !ok && left == 0 && !predicted[tenant].IsZero() {
				finished[tenant] = now
			}
		}
		// One pool's ETAs cover only the towns it serves: measured with
		// one replica.
		if etaAt.IsZero() && s.replicas <= 1 && now.Sub(start) >= c.duration/3 && len(pr.Left) == tenants {
			etaAt = now
			for tenant, d := range pr.ETA {
				predicted[tenant] = now.Add(d)
			}
		}
	}
	final, err := st.WaitBatches(ctx, subs, roleErr, watch)
	if err != nil {
		return res, err
	}
	res.wall = time.Since(start)
	res.cpu = cpuTime() - cpuStart
	for _, b := range final {
		if b.State != "complete" {
			return res, fmt.Errorf("batch %s did not complete: %s", b.ID, b.Error)
		}
	}
	if len(final) != tenants {
		return res, fmt.Errorf("%d batches completed, want %d", len(final), tenants)
	}
	res.peakRSS = peakRSS()
	if c.memProfile != "" {
		if err := writeHeapProfile(c.memProfile); err != nil {
			return res, err
		}
	}
	for _, b := range final {
		counts, err := st.Ledger.Counts(ctx, b.ID)
		if err != nil {
			return res, err
		}
		res.failedRows += counts.ByStatus["provider_error"]
	}

	stats := sb.Stats()
	keys := tenants // the sandbox counts by token, or by habilitation
	if s.habilitation != "" {
		keys = 1
	}
	if len(stats.Tokens) != keys || len(stats.IPs) != 1 {
		return res, fmt.Errorf("sandbox saw %d tokens and %d IPs, want %d and 1", len(stats.Tokens), len(stats.IPs), keys)
	}
	tk := stats.IPs[0] // all tokens together
	if s.habilitation != "" {
		res.maxTokenSecond = stats.Tokens[0].MaxPerSec
	} else if tenants > 1 {
		// Each town's share of the calls made while every town was active.
		from, to := stats.Tokens[0].First, stats.Tokens[0].Last
		for _, t := range stats.Tokens {
			from, to = maxTime(from, t.First), minTime(to, t.Last)
		}
		counts := sb.TokenCountsBetween(from, to)
		var total int64
		for _, n := range counts {
			total += n
		}
		res.shareMin, res.shareMax = 1, 0
		for _, n := range counts {
			share := float64(n) / float64(max(total, 1))
			res.shareMin, res.shareMax = min(res.shareMin, share), max(res.shareMax, share)
		}
		res.fair = 1 / float64(tenants)
		for id, p := range predicted {
			if f, ok := finished[id]; ok {
				off := math.Abs(p.Sub(f).Seconds()) / f.Sub(etaAt).Seconds()
				res.etaErrMax = max(res.etaErrMax, off)
				res.etaChecked++
			}
		}
		for _, t := range stats.Tokens {
			res.maxTokenSecond = max(res.maxTokenSecond, t.MaxPerSec)
		}
	}
	res.requests, res.tooMany, res.maxInSecond = tk.Requests, tk.TooMany, tk.MaxPerSec
	if tenants > 1 {
		res.maxInSecond = res.maxTokenSecond // the per-token limit is what the column compares with
	}
	res.extraCalls = tk.Requests - int64(rows*len(checks))
	if span := tk.Last.Sub(tk.First).Seconds(); span > 0 {
		// n requests span n-1 intervals.
		res.callsPerSec = float64(tk.Requests-1) / span
	}
	if s.tighten != nil && !settledAt.IsZero() {
		// Figures from the first full minute after the change, against the
		// new budget; 429s since the change.
		res.budgetPerSec = float64(s.tighten.PerMinute) / 60
		res.tooManyAfter = tk.TooMany - atChange.TooMany
		if span := tk.Last.Sub(settledAt).Seconds(); span > 0 {
			res.callsPerSec = float64(tk.Requests-atSettle.Requests) / span
		}
	}
	if res.budgetPerSec > 0 {
		res.budget = res.callsPerSec / res.budgetPerSec
	}
	mu.Lock()
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	if len(lat) > 0 {
		res.p50, res.p99 = lat[len(lat)/2], lat[len(lat)*99/100]
	}
	mu.Unlock()
	return res, nil
}

// resetPeakRSS resets the kernel's peak resident size of this process
// (Linux); peakRSS then reads the peak since.
func resetPeakRSS() { os.WriteFile("/proc/self/clear_refs", []byte("5"), 0) }

// peakRSS returns the process's peak resident size in bytes (Linux), or 0.
func peakRSS() int64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0
	}
	defer f.Close()
	b, _ := io.ReadAll(f)
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// writeHeapProfile writes the live heap (after a GC) to path.
func writeHeapProfile(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("--memprofile: %w", err)
	}
	defer f.Close()
	runtime.GC()
	if err := pprof.WriteHeapProfile(f); err != nil {
		return fmt.Errorf("--memprofile: %w", err)
	}
	return nil
}

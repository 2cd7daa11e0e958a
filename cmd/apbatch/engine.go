package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/mattn/go-isatty"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/apbatch/apbatch/pipeline"
	"github.com/apbatch/apbatch/pipeline/csv"
	"github.com/apbatch/apbatch/workers"
)

// engineFlags are the flags of the commands that run the whole pipeline in
// this process on the embedded services (run, refresh): the data folder,
// the provider and its budgets, the output.
type engineFlags struct {
	dataDir, providerURL, tokenFile     string
	tokensDir, metricsAddr              string
	out, summaryJSON, logLevel          string
	memoryLimit                         string
	rate, inFlight, population, ipLimit int
	seed                                uint64
	share                               float64
	runWindow, sharedIP, encoding       string
	perMinute                           string
	sheet, notifyURL                    string
	noMaintenance                       bool
	flushInterval, stallAfter           time.Duration
}

// register declares the flags on fs; getenv gives the defaults some
// flags take from APBATCH_* variables.
func (c *engineFlags) register(fs *flag.FlagSet, getenv func(string) string) {
	fs.StringVar(&c.dataDir, "data-dir", "./apbatch-data", "folder for the embedded broker, S3 server and SQLite ledger")
	fs.StringVar(&c.encoding, "encoding", "", "input files' encoding: "+strings.Join(csv.Encodings, ", ")+" (default: detected: a BOM, else UTF-8 when valid, else windows-1252)")
	fs.StringVar(&c.sheet, "sheet", "", "sheet to read in .xlsx files (default: the first one)")
	fs.StringVar(&c.providerURL, "provider-url", "", "API Particulier base URL, e.g. https://particulier.api.gouv.fr (default: the embedded sandbox)")
	fs.StringVar(&c.tokenFile, "token-file", "", "file holding the API token (or set APBATCH_TOKEN); never pass a token as a flag")
	fs.StringVar(&c.tokensDir, "tokens-dir", getenv("APBATCH_TOKENS_DIR"), "folder of one token per tenant, files <tenant> or <tenant>.token, as a mounted Kubernetes Secret lays them out (APBATCH_TOKENS_DIR); a tenant's token may also be in APBATCH_TOKEN_<TENANT>; both win over --token-file")
	fs.IntVar(&c.population, "sandbox-population", 10000, "embedded sandbox: synthetic people it answers for (see apbatch sandbox gen)")
	fs.Uint64Var(&c.seed, "sandbox-seed", 1, "embedded sandbox: seed of its synthetic population")
	fs.IntVar(&c.rate, "rate", 20, "requests per second per token (the API allows 20)")
	fs.IntVar(&c.ipLimit, "ip-limit", 1000, "requests per minute from this machine's IP, all tokens together (the API allows 1000)")
	fs.StringVar(&c.sharedIP, "shared-ip-budget", "", "share the --ip-limit budget through the ledger with every worker process given the same NAME (replicas behind one egress IP)")
	fs.StringVar(&c.perMinute, "per-minute", getenv("APBATCH_PER_MINUTE"), perMinuteHelp)
	fs.Float64Var(&c.share, "budget-share", 1, "fraction of the token's and the IP's budgets to use, e.g. 0.8 leaves 20% for the town's own interactive use")
	fs.StringVar(&c.runWindow, "run-window", "", "call only within this daily window, Europe/Paris time, e.g. 20:00-07:00 for night-only batches")
	fs.BoolVar(&c.noMaintenance, "no-maintenance-skip", false, "with --provider-url, call even during the providers' maintenance (CNAF & MSA Sunday 23:00-23:45, MSA 03:00-03:30, MEN 01:10-02:30)")
	fs.IntVar(&c.inFlight, "in-flight", 32, "provider calls in flight at most")
	fs.DurationVar(&c.flushInterval, "flush-interval", 10*time.Second, "longest time a result waits before its Parquet part is written")
	stallAfterFlag(fs, getenv, &c.stallAfter)
	fs.StringVar(&c.out, "out", "", "copy the result files, diff and manifest into this folder")
	fs.StringVar(&c.summaryJSON, "summary-json", "", "write a machine-readable summary to this file")
	fs.StringVar(&c.logLevel, "log-level", "warn", "log level: debug, info, warn, error")
	fs.StringVar(&c.metricsAddr, "metrics-addr", strings.TrimSpace(getenv("APBATCH_METRICS_ADDR")), metricsAddrHelp)
	memoryLimitFlag(fs, getenv, &c.memoryLimit)
	fs.StringVar(&c.notifyURL, "notify-url", "", notifyURLHelp+"; refresh with --kafka: the roles notify, set it on them")
}

// notifyURLHelp is the help of --notify-url.
const notifyURLHelp = "webhook POSTed a JSON event (batch id, tenant, campaign, state, counts by status; no file name, no personal data) when a batch completes, is refused or is cancelled, for alerting; 5 s timeout, 2 retries, a failure is logged and changes nothing else (default: APBATCH_NOTIFY_URL, which keeps a URL holding a token out of process listings)"

// notifyURL returns the webhook of --notify-url, else APBATCH_NOTIFY_URL.
func notifyURL(flagValue string, getenv func(string) string) string {
	if v := strings.TrimSpace(flagValue); v != "" {
		return v
	}
	return strings.TrimSpace(getenv("APBATCH_NOTIFY_URL"))
}

// validate checks the budgets.
func (c *engineFlags) validate() error {
	if c.share <= 0 || c.share > 1 {
		return fmt.Errorf("--budget-share %v: want a fraction in (0, 1], e.g. 0.8", c.share)
	}
	if _, err := workers.ParseKeyLimits(c.perMinute); err != nil {
		return fmt.Errorf("--per-minute: %w", err)
	}
	if c.rate <= 0 || c.inFlight <= 0 || c.ipLimit <= 0 {
		return errors.New("--rate, --ip-limit and --in-flight must be positive")
	}
	_, err := parseMemoryLimit(c.memoryLimit)
	return err
}

// engine is the embedded services and every role, running in this
// process.
type engine struct {
	st *stack
	// emb is the embedded services the roles use.
	emb     *pipeline.Embedded
	log     zerolog.Logger
	console bool
	// providerURL is the API's base URL (the embedded sandbox's unless
	// --provider-url); tokens finds each tenant's token.
	providerURL string
	tokens      tokenLookup
	// roleErr receives the error of the first role that stops on its own.
	roleErr <-chan error
	closers []func()
}

// start opens the embedded services under --data-dir and the provider (the
// embedded sandbox unless --provider-url), then starts every role; tune
// sets what the command decides (new batches' checks, period, recipient);
// before, when set, runs once the services are open and before any role
// starts (an error stops there). Close stops it all.
func (c *engineFlags) start(ctx context.Context, e env, tune func(*stackConfig), before func(*engine) error) (_ *engine, err error) {
	if err := c.validate(); err != nil {
		return nil, err
	}
	// Refused before any service starts (openStack checks it too).
	if u := notifyURL(c.notifyURL, e.getenv); u != "" {
		if err := (&pipeline.Notifier{URL: u}).Validate(); err != nil {
			return nil, fmt.Errorf("--notify-url (APBATCH_NOTIFY_URL): %w", err)
		}
	}
	schedule, err := c.schedule()
	if err != nil {
		return nil, err
	}
	en := &engine{console: isatty.IsTerminal(os.Stderr.Fd())}
	if en.log, err = newLogger(e.stderr, c.logLevel, en.console); err != nil {
		return nil, err
	}
	if _, err := applyMemoryLimit(c.memoryLimit, e.getenv); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			en.Close()
		}
	}()
	var (
		reg *prometheus.Registry
		ms  *metricsServer
	)
	if c.metricsAddr != "" {
		reg = newRegistry()
		if ms, err = startMetrics(ctx, c.metricsAddr, reg, en.log); err != nil {
			return nil, err
		}
		en.closers = append(en.closers, func() {
			sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer cancel()
			ms.Close(sctx)
		})
	}
	emb := &pipeline.Embedded{DataDir: c.dataDir}
	if err := emb.Open(ctx); err != nil {
		return nil, err
	}
	en.emb = emb
	en.closers = append(en.closers, func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		if err := emb.Close(cctx); err != nil {
			en.log.Warn().Err(err).Msg("embedded services did not stop cleanly")
		}
	})
	// A process killed while reading a workbook left its unpacked sheets.
	if n, size, err := pipeline.ClearTmp(pipeline.TmpDir(emb.DataDir), time.Now(), false); err != nil {
		return nil, err
	} else if n > 0 {
		en.log.Info().Int("files", n).Int64("bytes", size).Msg("removed the temporary files of an earlier run")
	}
	tmpDir, err := pipeline.MakeTmpDir(emb.DataDir)
	if err != nil {
		return nil, err
	}
	providerURL, tokens, stopSandbox, err := c.provider(ctx, en.log, e.getenv)
	if err != nil {
		return nil, err
	}
	en.providerURL, en.tokens = providerURL, tokens
	en.closers = append(en.closers, stopSandbox)
	key, err := auditKey(e.getenv, emb.DataDir)
	if err != nil {
		return nil, err
	}
	ring, err := keyRing(ctx, e.getenv, emb.DataDir)
	if err != nil {
		return nil, err
	}
	keyLimits, err := workers.ParseKeyLimits(c.perMinute)
	if err != nil {
		return nil, fmt.Errorf("--per-minute: %w", err)
	}
	var environ []string
	if e.environ != nil {
		environ = e.environ()
	}
	habilitations, err := tenantHabilitations(environ)
	if err != nil {
		return nil, err
	}
	cfg := stackConfig{
		KeyLimits: keyLimits, Habilitations: habilitations,
		Kafka: emb.Kafka(), S3: emb.S3(), LedgerURL: emb.LedgerURL(), Log: en.log,
		ProviderURL: providerURL, Tokens: func(tenant string) (string, error) { t, _, err := tokens(tenant); return t, err },
		Rate: c.rate, IPLimit: c.ipLimit, Share: c.share, InFlight: c.inFlight, Schedule: schedule,
		SharedIP: c.sharedIP, Encoding: c.encoding, Sheet: c.sheet, FlushInterval: c.flushInterval, StallAfter: c.stallAfter, AuditKey: key,
		Registry: reg, Keys: ring, NotifyURL: notifyURL(c.notifyURL, e.getenv),
	}
	cfg.TmpDir = tmpDir
	if tune != nil {
		tune(&cfg)
	}
	st, err := openStack(ctx, cfg)
	if err != nil {
		return nil, err
	}
	en.st = st
	en.closers = append(en.closers, func() { st.Close() })
	if before != nil {
		if err := before(en); err != nil {
			return nil, err
		}
	}
	runCtx, cancel := context.WithCancel(ctx)
	en.roleErr = st.Start(runCtx)
	ms.SetReady(st.Ready)
	en.closers = append(en.closers, func() {
		ms.SetReady(nil)
		cancel()
		st.Wait()
	})
	return en, nil
}

// Close stops the roles, then the provider and the services, in the
// reverse order of start. Idempotent.
func (en *engine) Close() {
	for i := len(en.closers) - 1; i >= 0; i-- {
		en.closers[i]()
	}
	en.closers = nil
}

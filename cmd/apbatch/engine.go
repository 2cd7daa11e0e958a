package main

import (
	"context"
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
// this process on the embedded services (run, refresh, web): the
// settings (the data folder, the provider and its budgets, the logs), and
// what one invocation reads and writes.
type engineFlags struct {
	config configFlags
	// cfg is the configuration, once loaded (load).
	cfg    pipeline.Config
	loaded bool

	out, summaryJSON string
	population       int
	seed             uint64
	encoding, sheet  string
}

// register declares the flags on fs, on the defaults of the commands
// running everything in one process (pipeline.LocalConfig).
func (c *engineFlags) register(fs *flag.FlagSet) {
	c.config.init(fs, pipeline.LocalConfig())
	s := c.config.setting
	s("data-dir", "folder for the embedded broker, S3 server and SQLite ledger")
	fs.StringVar(&c.encoding, "encoding", "", "input files' encoding: "+strings.Join(csv.Encodings, ", ")+" (default: detected: a BOM, else UTF-8 when valid, else windows-1252)")
	fs.StringVar(&c.sheet, "sheet", "", "sheet to read in .xlsx files (default: the first one)")
	s("provider-url", "API Particulier base URL, e.g. https://particulier.api.gouv.fr (default: the embedded sandbox)")
	s("token-file", "file holding the API token (or set APBATCH_TOKEN); never pass a token as a flag")
	s("tokens-dir", "folder of one token per tenant, files <tenant> or <tenant>.token, as a mounted Kubernetes Secret lays them out (APBATCH_TOKENS_DIR); a tenant's token may also be in APBATCH_TOKEN_<TENANT>; both win over --token-file")
	fs.IntVar(&c.population, "sandbox-population", 10000, "embedded sandbox: synthetic people it answers for (see apbatch sandbox gen)")
	fs.Uint64Var(&c.seed, "sandbox-seed", 1, "embedded sandbox: seed of its synthetic population")
	s("rate", "requests per second per token (the API allows 20)")
	s("ip-limit", "requests per minute from this machine's IP, all tokens together (the API allows 1000)")
	s("shared-ip-budget", "share the --ip-limit budget through the ledger with every worker process given the same NAME (replicas behind one egress IP)")
	s("per-minute", perMinuteHelp)
	s("budget-share", "fraction of the token's and the IP's budgets to use, e.g. 0.8 leaves 20% for the town's own interactive use")
	s("run-window", "call only within this daily window, Europe/Paris time, e.g. 20:00-07:00 for night-only batches")
	s("no-maintenance-skip", "with --provider-url, call even during the providers' maintenance (CNAF & MSA Sunday 23:00-23:45, MSA 03:00-03:30, MEN 01:10-02:30)")
	s("in-flight", "provider calls in flight at most")
	s("flush-interval", "longest time a result waits before its Parquet part is written (serve's write role: "+pipeline.DefaultFlushInterval.String()+")")
	s("stall-after", stallAfterHelp)
	fs.StringVar(&c.out, "out", "", "copy the result files, diff and manifest into this folder")
	fs.StringVar(&c.summaryJSON, "summary-json", "", "write a machine-readable summary to this file")
	s("log-level", "log level: debug, info, warn, error (serve's roles: "+pipeline.DefaultLogLevel+")")
	s("metrics-addr", metricsAddrHelp)
	s("memory-limit", memoryLimitHelp)
	s("notify-url", notifyURLHelp+"; refresh with --kafka: the roles notify, set it on them")
}

// load reads the configuration of the parsed flags, once.
func (c *engineFlags) load(getenv func(string) string) error {
	if c.loaded {
		return nil
	}
	cfg, err := c.config.load(getenv)
	if err != nil {
		return err
	}
	if _, err := parseMemoryLimit(cfg.MemoryLimit); err != nil {
		return err
	}
	c.cfg, c.loaded = cfg, true
	return nil
}

// notifyURLHelp is the help of --notify-url.
const notifyURLHelp = "webhook POSTed a JSON event (batch id, tenant, campaign, state, counts by status; no file name, no personal data) when a batch completes, is refused or is cancelled, for alerting; 5 s timeout, 2 retries, a failure is logged and changes nothing else (APBATCH_NOTIFY_URL keeps a URL holding a token out of process listings)"

// engine is the embedded services and every role, running in this
// process.
type engine struct {
	st *pipeline.Runner
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
func (c *engineFlags) start(ctx context.Context, e env, tune func(*pipeline.RunnerConfig), before func(*engine) error) (_ *engine, err error) {
	if err := c.load(e.getenv); err != nil {
		return nil, err
	}
	// Refused before any service starts (openStack checks it too).
	if u := c.cfg.NotifyURL; u != "" {
		if err := (&pipeline.Notifier{URL: u}).Validate(); err != nil {
			return nil, fmt.Errorf("--notify-url (APBATCH_NOTIFY_URL): %w", err)
		}
	}
	schedule, err := c.schedule()
	if err != nil {
		return nil, err
	}
	en := &engine{console: isatty.IsTerminal(os.Stderr.Fd())}
	if en.log, err = newLogger(e.stderr, c.cfg.LogLevel, en.console); err != nil {
		return nil, err
	}
	if _, err := applyMemoryLimit(c.cfg.MemoryLimit, e.getenv); err != nil {
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
	if c.cfg.MetricsAddr != "" {
		reg = newRegistry()
		if ms, err = startMetrics(ctx, c.cfg.MetricsAddr, reg, en.log); err != nil {
			return nil, err
		}
		en.closers = append(en.closers, func() {
			sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer cancel()
			ms.Close(sctx)
		})
	}
	emb := &pipeline.Embedded{DataDir: c.cfg.DataDir}
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
	keyLimits, err := workers.ParseKeyLimits(c.cfg.PerMinute)
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
	cfg := pipeline.RunnerConfig{
		KeyLimits: keyLimits, Habilitations: habilitations,
		Kafka: emb.Kafka(), S3: emb.S3(), LedgerURL: emb.LedgerURL(), Log: en.log,
		ProviderURL: providerURL, Tokens: func(tenant string) (string, error) { t, _, err := tokens(tenant); return t, err },
		Rate: c.cfg.Rate, IPLimit: c.cfg.IPLimit, Share: c.cfg.BudgetShare, InFlight: c.cfg.InFlight, Schedule: schedule,
		SharedIP: c.cfg.SharedIPBudget, Encoding: c.encoding, Sheet: c.sheet, FlushInterval: c.cfg.FlushInterval, StallAfter: c.cfg.StallAfter, AuditKey: key,
		Registry: reg, Keys: ring, NotifyURL: c.cfg.NotifyURL,
	}
	cfg.TmpDir = tmpDir
	if tune != nil {
		tune(&cfg)
	}
	st, err := pipeline.OpenRunner(ctx, cfg)
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

package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/mattn/go-isatty"
	"github.com/rs/zerolog"

	"github.com/apbatch/apbatch/pipeline"
	"github.com/apbatch/apbatch/pipeline/kafka"
	"github.com/apbatch/apbatch/pipeline/portal"
	"github.com/apbatch/apbatch/pipeline/s3"
	"github.com/apbatch/apbatch/schemas"
	"github.com/apbatch/apbatch/workers"
)

// Roles a serving process runs by default.
var allRoles = []string{"ingest", "work", "write"}

// servableRoles are the roles "serve --roles" accepts: the pipeline's and
// the agents' portal.
var servableRoles = append(slices.Clone(allRoles), "web")

// serveCommand is "apbatch serve" (and "apbatch ingest|work|write"): pipeline
// roles as long-running processes on real Kafka, S3 and a ledger, configured
// by flags and APBATCH_* environment variables (secrets by environment or
// files only).
type serveCommand struct {
	env
	fs *flag.FlagSet

	name   string // "serve", or the role it stands for
	config configFlags
	// cfg is the configuration, once loaded.
	cfg pipeline.Config
}

func (c *serveCommand) flags() *flag.FlagSet {
	if c.fs != nil {
		return c.fs
	}
	fs := flag.NewFlagSet(c.name, flag.ContinueOnError)
	fs.SetOutput(c.stderr)
	c.config.init(fs, pipeline.DefaultConfig())
	s := c.config.setting
	if c.name == "serve" {
		s("roles", "roles to run in this process: "+strings.Join(allRoles, ", ")+", and web, the agents' portal")
		s("web-addr", "web role: address of the portal, behind the HTTPS reverse proxy (APBATCH_WEB_ADDR); cookies are signed with APBATCH_WEB_SESSION_KEY, the same on every replica")
		webSettings(&c.config)
	}
	s("kafka", "Kafka brokers, host:port,...")
	s("s3-endpoint", "S3 endpoint URL; empty for AWS (APBATCH_S3_ENDPOINT; keys in APBATCH_S3_ACCESS_KEY and APBATCH_S3_SECRET_KEY)")
	s("s3-bucket", "bucket of incoming files and results")
	s("db", "ledger: postgres://... or sqlite://PATH")
	s("provider-url", "API Particulier base URL")
	s("token-file", "file holding the default API token (APBATCH_TOKEN_FILE), or the token in APBATCH_TOKEN")
	s("tokens-dir", "folder of one API token per tenant, files <tenant> or <tenant>.token: a mounted Kubernetes Secret (APBATCH_TOKENS_DIR); a tenant's token may also be in APBATCH_TOKEN_<TENANT>; both win over the default token; read at each use")
	s("tenant-tokens-only", "work role: never use the default token for a tenant; each tenant's rows go out under its own token or not at all (APBATCH_TENANT_TOKENS_ONLY=1)")
	s("recipient", "ingest role: SIRET of the collectivité sent with the calls of tenants without their own APBATCH_RECIPIENT_<TENANT> (APBATCH_RECIPIENT); empty: their uploads are refused")
	s("events-topic", "ingest role: Kafka topic the bucket's S3 event notifications reach")
	s("watch-interval", "ingest role: also list incoming/ this often (e.g. 1m) and start uploads no notification announced, for S3 services without notifications; 0 = off")
	s("tmp-dir", "ingest role: folder of this process alone for the unpacked sheets of large workbooks, emptied on start (APBATCH_TMP_DIR; default: the system's temporary folder)")
	s("checks", "checks new batches run: "+schemas.CheckNames())
	s("shared-ip-budget", "share --ip-limit through the ledger with the worker processes of the same NAME")
	s("audit-key-dir", "folder of audit.key when APBATCH_AUDIT_KEY is not set")
	s("rate", "requests per second per token (the API allows 20)")
	s("ip-limit", "requests per minute from this machine's IP, all tokens together (the API allows 1000)")
	s("in-flight", "provider calls in flight at most")
	s("budget-share", "fraction of the budgets to use")
	s("per-minute", perMinuteHelp)
	s("no-maintenance-skip", "work role: call even during the providers' maintenance windows")
	s("flush-interval", "write role: longest time a result waits before its part is written (run: "+pipeline.LocalFlushInterval.String()+")")
	s("stall-after", stallAfterHelp)
	s("log-level", "log level: debug, info, warn, error")
	s("metrics-addr", metricsAddrHelp)
	s("memory-limit", memoryLimitHelp)
	s("notify-url", "ingest and write roles: "+notifyURLHelp)
	c.fs = fs
	return fs
}

// Usage prints the command's help.
func (c *serveCommand) Usage() {
	head := `Usage: apbatch serve [flags]

Runs pipeline roles as a long-running process on Kafka, S3 and a ledger
(PostgreSQL to share it between machines): ingest (the bucket's S3 event
notifications, or listings of incoming/ with --watch-interval, become
batches split into jobs), work (calls under budgets) and write (Parquet
parts, manifests). "apbatch ingest", "apbatch work" and "apbatch write" run one
role each. Settings come from flags, else APBATCH_* variables (each flag names
its own), else the YAML file of --config (or APBATCH_CONFIG), else defaults;
secrets (S3 keys, API token, audit key) come from the environment or files
only. Stops cleanly on SIGTERM.
With --metrics-addr (e.g. :9464 in a container), serves Prometheus metrics on
/metrics, liveness on /healthz and readiness (Kafka, S3 and the ledger
answer) on /readyz.

` + keysHelp + `
Flags:
`
	if c.name != "serve" {
		head = strings.ReplaceAll(head, "apbatch serve [flags]", "apbatch "+c.name+" [flags]")
	}
	printUsage(c.stdout, c.stderr, c.flags(), head)
}

// Run runs the command.
func (c *serveCommand) Run(ctx context.Context, args []string) error {
	fs := c.flags()
	fs.Usage = c.Usage
	if err := parseArgs(fs, args); err != nil {
		return err
	}
	var err error
	if c.cfg, err = c.config.load(c.getenv); err != nil {
		return err
	}
	roles, err := c.roles()
	if err != nil {
		return err
	}
	switch {
	case c.cfg.Kafka == "":
		return errors.New("no Kafka brokers: give --kafka or APBATCH_KAFKA_BROKERS (apbatch broker runs one for development)")
	case c.cfg.DB == "":
		return errors.New("no ledger: give --db or APBATCH_DB (postgres://... or sqlite://PATH)")
	}
	if _, err := applyMemoryLimit(c.cfg.MemoryLimit, c.getenv); err != nil {
		return err
	}
	checks, err := schemas.ParseChecks(c.cfg.Checks)
	if err != nil {
		return fmt.Errorf("--checks: %w", err)
	}
	log, err := newLogger(c.stderr, c.cfg.LogLevel, isatty.IsTerminal(2))
	if err != nil {
		return err
	}
	if c.cfg.TmpDir != "" {
		// What a killed process of this folder left behind.
		if _, _, err := pipeline.ClearTmp(c.cfg.TmpDir, time.Now(), false); err != nil {
			return fmt.Errorf("--tmp-dir: %w", err)
		}
		if err := os.MkdirAll(c.cfg.TmpDir, 0o700); err != nil {
			return fmt.Errorf("--tmp-dir: %w", err)
		}
	}
	cfg, err := c.runnerConfig(ctx, roles, checks, log)
	if err != nil {
		return err
	}
	webKey, err := c.webKey(roles)
	if err != nil {
		return err
	}
	var ms *metricsServer
	if c.cfg.MetricsAddr != "" {
		// Up before the services are reached: /healthz answers and /readyz
		// says what is awaited while they connect.
		cfg.Registry = newRegistry()
		if ms, err = startMetrics(ctx, c.cfg.MetricsAddr, cfg.Registry, cfg.Log); err != nil {
			return err
		}
		defer func() {
			sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer cancel()
			ms.Close(sctx)
		}()
	}
	st, err := pipeline.OpenRunner(ctx, cfg)
	if err != nil {
		return err
	}
	defer st.Close()
	if slices.Contains(roles, "web") {
		ws, err := c.startWeb(ctx, cfg, st, webKey)
		if err != nil {
			return err
		}
		defer ws.stop()
	}
	cfg.Log.Info().Strs("roles", roles).Msg("serving")
	errc := st.Start(ctx, roles...)
	ms.SetReady(st.Ready)
	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	ms.SetReady(nil)
	st.Wait()
	cfg.Log.Info().Msg("stopped")
	return err
}

// roles returns the roles this process runs: its command's, or serve's
// --roles.
func (c *serveCommand) roles() ([]string, error) {
	roles := []string{c.name}
	if c.name == "serve" {
		roles = nil
		for _, r := range strings.Split(c.cfg.Roles, ",") {
			r = strings.TrimSpace(r)
			if r == "split" {
				r = "ingest" // the ingest role splits the batches it starts
			}
			if !slices.Contains(servableRoles, r) {
				return nil, fmt.Errorf("--roles: unknown role %q (roles: %s)", r, strings.Join(servableRoles, ", "))
			}
			roles = append(roles, r)
		}
	}
	return roles, nil
}

// runnerConfig is the roles' configuration: the services, and what the
// work and ingest roles need (tokens, keys, limits, SIRETs), checked.
func (c *serveCommand) runnerConfig(ctx context.Context, roles []string, checks []schemas.Check, log zerolog.Logger) (pipeline.RunnerConfig, error) {
	klog := log.With().Str("process", strings.Join(roles, "+")).Logger()
	var err error
	cfg := pipeline.RunnerConfig{
		Kafka: kafka.Config{Brokers: strings.Split(c.cfg.Kafka, ","), Log: &klog},
		S3: s3.Config{Endpoint: c.cfg.S3Endpoint, Bucket: c.cfg.S3Bucket, AccessKey: c.getenv("APBATCH_S3_ACCESS_KEY"),
			SecretKey: c.getenv("APBATCH_S3_SECRET_KEY")},
		LedgerURL: c.cfg.DB, Log: log.With().Str("process", strings.Join(roles, "+")).Logger(),
		ProviderURL: strings.TrimRight(c.cfg.ProviderURL, "/"), Rate: c.cfg.Rate, IPLimit: c.cfg.IPLimit, Share: c.cfg.BudgetShare,
		InFlight: c.cfg.InFlight, Recipient: c.cfg.Recipient, Checks: checks, SharedIP: c.cfg.SharedIPBudget, FlushInterval: c.cfg.FlushInterval, StallAfter: c.cfg.StallAfter,
		Roles: roles, EventsTopic: c.cfg.EventsTopic, WatchInterval: c.cfg.WatchInterval, NotifyURL: c.cfg.NotifyURL,
	}
	cfg.TmpDir = c.cfg.TmpDir
	if slices.Contains(roles, "work") {
		// The providers' maintenance windows are waited out, in
		// Europe/Paris time.
		paris, err := time.LoadLocation("Europe/Paris")
		if err != nil {
			return cfg, fmt.Errorf("load Europe/Paris time zone: %w", err)
		}
		cfg.Schedule = &workers.Schedule{Location: paris, Maintenance: !c.cfg.NoMaintenanceSkip}
		tokens := tokenSources{file: c.cfg.TokenFile, dir: c.cfg.TokensDir, tenantOnly: c.cfg.TenantTokensOnly, getenv: c.getenv}
		var environ []string
		if c.environ != nil {
			environ = c.environ()
		}
		if !tokens.configured(environ) {
			return cfg, errors.New("no API token: give --token-file (APBATCH_TOKEN_FILE) or APBATCH_TOKEN for every tenant, " +
				"and/or --tokens-dir (APBATCH_TOKENS_DIR) or APBATCH_TOKEN_<TENANT> per tenant")
		}
		if c.cfg.TokenFile != "" || c.getenv("APBATCH_TOKEN") != "" {
			if _, _, err := tokens.lookup(""); err != nil {
				return cfg, err
			}
		}
		cfg.Tokens = tokens.source()
		if cfg.AuditKey, err = auditKey(c.getenv, filepath.Clean(c.cfg.AuditKeyDir)); err != nil {
			return cfg, err
		}
	}
	if slices.Contains(roles, "ingest") || slices.Contains(roles, "work") {
		if cfg.Keys, err = keyRing(ctx, c.getenv, ""); err != nil {
			return cfg, err
		}
		cfg.Log.Info().Strs("key_ids", cfg.Keys.KeyIDs()).Msg("job identities sealed in Kafka")
	}
	var environ []string
	if c.environ != nil {
		environ = c.environ()
	}
	if slices.Contains(roles, "work") {
		if cfg.KeyLimits, err = workers.ParseKeyLimits(c.cfg.PerMinute); err != nil {
			return cfg, fmt.Errorf("--per-minute: %w", err)
		}
		if cfg.Habilitations, err = tenantHabilitations(environ); err != nil {
			return cfg, err
		}
		if cfg.Delegations, err = tenantDelegations(environ); err != nil {
			return cfg, err
		}
	}
	if slices.Contains(roles, "ingest") {
		if cfg.Recipients, err = tenantRecipients(environ); err != nil {
			return cfg, err
		}
		switch {
		case c.cfg.Recipient == "" && len(cfg.Recipients) == 0:
			return cfg, errors.New("--recipient: give the collectivité's SIRET (14 digits), or APBATCH_RECIPIENT, or one per tenant in APBATCH_RECIPIENT_<TENANT>")
		case c.cfg.Recipient != "" && !siretPattern.MatchString(c.cfg.Recipient):
			return cfg, errors.New("--recipient: give the collectivité's SIRET (14 digits), or APBATCH_RECIPIENT")
		}
	}
	return cfg, nil
}

// webKey returns the portal's session key with the web role (nil
// without), once its sign-in is configured.
func (c *serveCommand) webKey(roles []string) ([]byte, error) {
	if !slices.Contains(roles, "web") {
		return nil, nil
	}
	if !oidcConfigured(c.cfg) && c.getenv("APBATCH_WEB_KEY_SIGN_IN") == "" {
		return nil, errors.New("web role: agents sign in through OpenID Connect; give APBATCH_OIDC_ISSUER, APBATCH_OIDC_CLIENT_ID, APBATCH_OIDC_CLIENT_SECRET, APBATCH_OIDC_REDIRECT_URL and APBATCH_OIDC_TENANTS (or their flags); " +
			"for a rehearsal without a provider, APBATCH_WEB_KEY_SIGN_IN=1 lets agents sign in with their tenant's API key")
	}
	key, err := portal.SessionKey(c.getenv("APBATCH_WEB_SESSION_KEY"), "")
	if err != nil {
		return nil, fmt.Errorf("web role: %w", err)
	}
	return key, nil
}

// startWeb serves the portal of the web role on --web-addr.
func (c *serveCommand) startWeb(ctx context.Context, cfg pipeline.RunnerConfig, st *pipeline.Runner, key []byte) (*webServer, error) {
	p, err := newPortal(ctx, c.env, c.cfg, st, cfg.Log, key)
	if err != nil {
		return nil, fmt.Errorf("web role: %w", err)
	}
	if p.OIDC == nil {
		// APBATCH_WEB_KEY_SIGN_IN: the API key signs in, no link.
		p.Local = &portal.LocalSignIn{}
	}
	p.Checks, p.TmpDir = cfg.Checks, cfg.TmpDir
	p.Exporter.TmpDir = cfg.TmpDir
	if cfg.Tokens != nil {
		// The work role runs here: its tokens' claims are shown.
		p.Tokens = func(_ context.Context, tenant string) portal.TokenStatus {
			return portal.TokenStatusOf(cfg.Tokens, tenant, time.Now())
		}
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", c.cfg.WebAddr)
	if err != nil {
		return nil, fmt.Errorf("--web-addr: %w", err)
	}
	ws, err := serveWeb(ctx, ln, p, cfg.Log)
	if err != nil {
		ln.Close()
		return nil, err
	}
	return ws, nil
}

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

	name                                    string // "serve", or the role it stands for
	roles, brokers, s3Endpoint, s3Bucket    string
	db, providerURL, tokenFile, recipient   string
	tokensDir                               string
	checks, sharedIP, logLevel, auditKeyDir string
	perMinute                               string
	eventsTopic, watchInterval, metricsAddr string
	memoryLimit, tmpDir, notifyURL          string
	rate, ipLimit, inFlight                 int
	share                                   float64
	flushInterval, stallAfter               time.Duration
	tenantTokensOnly                        bool
	webAddr                                 string
	web                                     webFlags
}

func (c *serveCommand) flags() *flag.FlagSet {
	if c.fs != nil {
		return c.fs
	}
	fs := flag.NewFlagSet(c.name, flag.ContinueOnError)
	fs.SetOutput(c.stderr)
	if c.name == "serve" {
		fs.StringVar(&c.roles, "roles", c.envOr("APBATCH_ROLES", strings.Join(allRoles, ",")), "roles to run in this process: "+strings.Join(allRoles, ", ")+", and web, the agents' portal (APBATCH_ROLES)")
		fs.StringVar(&c.webAddr, "web-addr", c.envOr("APBATCH_WEB_ADDR", ":8080"), "web role: address of the portal, behind the HTTPS reverse proxy (APBATCH_WEB_ADDR); cookies are signed with APBATCH_WEB_SESSION_KEY, the same on every replica")
		c.web.register(fs, c.env)
	}
	fs.StringVar(&c.brokers, "kafka", c.envOr("APBATCH_KAFKA_BROKERS", ""), "Kafka brokers, host:port,... (APBATCH_KAFKA_BROKERS)")
	fs.StringVar(&c.s3Endpoint, "s3-endpoint", c.envOr("APBATCH_S3_ENDPOINT", ""), "S3 endpoint URL; empty for AWS (APBATCH_S3_ENDPOINT; keys in APBATCH_S3_ACCESS_KEY and APBATCH_S3_SECRET_KEY)")
	fs.StringVar(&c.s3Bucket, "s3-bucket", c.envOr("APBATCH_S3_BUCKET", "apbatch"), "bucket of incoming files and results (APBATCH_S3_BUCKET)")
	fs.StringVar(&c.db, "db", c.envOr("APBATCH_DB", ""), "ledger: postgres://... or sqlite://PATH (APBATCH_DB)")
	fs.StringVar(&c.providerURL, "provider-url", c.envOr("APBATCH_PROVIDER_URL", workers.ProductionURL), "API Particulier base URL (APBATCH_PROVIDER_URL)")
	fs.StringVar(&c.tokenFile, "token-file", c.envOr("APBATCH_TOKEN_FILE", ""), "file holding the default API token (APBATCH_TOKEN_FILE), or the token in APBATCH_TOKEN")
	fs.StringVar(&c.tokensDir, "tokens-dir", c.envOr("APBATCH_TOKENS_DIR", ""), "folder of one API token per tenant, files <tenant> or <tenant>.token: a mounted Kubernetes Secret (APBATCH_TOKENS_DIR); a tenant's token may also be in APBATCH_TOKEN_<TENANT>; both win over the default token; read at each use")
	fs.BoolVar(&c.tenantTokensOnly, "tenant-tokens-only", c.envOr("APBATCH_TENANT_TOKENS_ONLY", "") != "", "work role: never use the default token for a tenant; each tenant's rows go out under its own token or not at all (APBATCH_TENANT_TOKENS_ONLY=1)")
	fs.StringVar(&c.recipient, "recipient", c.envOr("APBATCH_RECIPIENT", ""), "ingest role: SIRET of the collectivité sent with the calls of tenants without their own APBATCH_RECIPIENT_<TENANT> (APBATCH_RECIPIENT); empty: their uploads are refused")
	fs.StringVar(&c.eventsTopic, "events-topic", c.envOr("APBATCH_EVENTS_TOPIC", schemas.TopicUploads), "ingest role: Kafka topic the bucket's S3 event notifications reach (APBATCH_EVENTS_TOPIC)")
	fs.StringVar(&c.watchInterval, "watch-interval", c.envOr("APBATCH_WATCH_INTERVAL", "0"), "ingest role: also list incoming/ this often (e.g. 1m) and start uploads no notification announced, for S3 services without notifications; 0 = off (APBATCH_WATCH_INTERVAL)")
	fs.StringVar(&c.tmpDir, "tmp-dir", c.envOr("APBATCH_TMP_DIR", ""), "ingest role: folder of this process alone for the unpacked sheets of large workbooks, emptied on start (APBATCH_TMP_DIR; default: the system's temporary folder)")
	fs.StringVar(&c.checks, "checks", c.envOr("APBATCH_CHECKS", "qf"), "checks new batches run (APBATCH_CHECKS)")
	fs.StringVar(&c.sharedIP, "shared-ip-budget", c.envOr("APBATCH_SHARED_IP_BUDGET", ""), "share --ip-limit through the ledger with the worker processes of the same NAME (APBATCH_SHARED_IP_BUDGET)")
	fs.StringVar(&c.auditKeyDir, "audit-key-dir", c.envOr("APBATCH_AUDIT_KEY_DIR", "."), "folder of audit.key when APBATCH_AUDIT_KEY is not set")
	fs.IntVar(&c.rate, "rate", 20, "requests per second per token")
	fs.IntVar(&c.ipLimit, "ip-limit", 1000, "requests per minute from this machine's IP")
	fs.IntVar(&c.inFlight, "in-flight", 32, "provider calls in flight at most")
	fs.Float64Var(&c.share, "budget-share", 1, "fraction of the budgets to use")
	fs.StringVar(&c.perMinute, "per-minute", c.envOr("APBATCH_PER_MINUTE", ""), perMinuteHelp+" (APBATCH_PER_MINUTE)")
	fs.DurationVar(&c.flushInterval, "flush-interval", 30*time.Second, "write role: longest time a result waits before its part is written")
	stallAfterFlag(fs, c.getenv, &c.stallAfter)
	fs.StringVar(&c.logLevel, "log-level", c.envOr("APBATCH_LOG_LEVEL", "info"), "log level (APBATCH_LOG_LEVEL)")
	fs.StringVar(&c.metricsAddr, "metrics-addr", c.envOr("APBATCH_METRICS_ADDR", ""), metricsAddrHelp)
	memoryLimitFlag(fs, c.getenv, &c.memoryLimit)
	fs.StringVar(&c.notifyURL, "notify-url", "", "ingest and write roles: "+notifyURLHelp)
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
role each. Every flag has an APBATCH_* variable; secrets (S3 keys, API token,
audit key) come from the environment or files only. Stops cleanly on SIGTERM.
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
	roles := []string{c.name}
	if c.name == "serve" {
		roles = nil
		for _, r := range strings.Split(c.roles, ",") {
			r = strings.TrimSpace(r)
			if r == "split" {
				r = "ingest" // the ingest role splits the batches it starts
			}
			if !slices.Contains(servableRoles, r) {
				return fmt.Errorf("--roles: unknown role %q (roles: %s)", r, strings.Join(servableRoles, ", "))
			}
			roles = append(roles, r)
		}
	}
	switch {
	case c.brokers == "":
		return errors.New("no Kafka brokers: give --kafka or APBATCH_KAFKA_BROKERS (apbatch broker runs one for development)")
	case c.db == "":
		return errors.New("no ledger: give --db or APBATCH_DB (postgres://... or sqlite://PATH)")
	}
	watch, err := time.ParseDuration(c.watchInterval)
	if err != nil || watch < 0 {
		return fmt.Errorf("--watch-interval: want a duration such as 30s or 5m, or 0 for off (got %q)", c.watchInterval)
	}
	if strings.TrimSpace(c.eventsTopic) == "" {
		return errors.New("--events-topic: give a topic name")
	}
	if _, err := applyMemoryLimit(c.memoryLimit, c.getenv); err != nil {
		return err
	}
	checks, err := schemas.ParseChecks(c.checks)
	if err != nil {
		return fmt.Errorf("--checks: %w", err)
	}
	log, err := newLogger(c.stderr, c.logLevel, isatty.IsTerminal(2))
	if err != nil {
		return err
	}
	klog := log.With().Str("process", strings.Join(roles, "+")).Logger()
	if c.tmpDir != "" {
		// What a killed process of this folder left behind.
		if _, _, err := pipeline.ClearTmp(c.tmpDir, time.Now(), false); err != nil {
			return fmt.Errorf("--tmp-dir: %w", err)
		}
		if err := os.MkdirAll(c.tmpDir, 0o700); err != nil {
			return fmt.Errorf("--tmp-dir: %w", err)
		}
	}
	cfg := stackConfig{
		Kafka: kafka.Config{Brokers: strings.Split(c.brokers, ","), Log: &klog},
		S3: s3.Config{Endpoint: c.s3Endpoint, Bucket: c.s3Bucket, AccessKey: c.getenv("APBATCH_S3_ACCESS_KEY"),
			SecretKey: c.getenv("APBATCH_S3_SECRET_KEY")},
		LedgerURL: c.db, Log: log.With().Str("process", strings.Join(roles, "+")).Logger(),
		ProviderURL: strings.TrimRight(c.providerURL, "/"), Rate: c.rate, IPLimit: c.ipLimit, Share: c.share,
		InFlight: c.inFlight, Recipient: c.recipient, Checks: checks, SharedIP: c.sharedIP, FlushInterval: c.flushInterval, StallAfter: c.stallAfter,
		Roles: roles, EventsTopic: strings.TrimSpace(c.eventsTopic), WatchInterval: watch, NotifyURL: notifyURL(c.notifyURL, c.getenv),
	}
	cfg.TmpDir = c.tmpDir
	if slices.Contains(roles, "work") {
		// The providers' maintenance windows are waited out, in
		// Europe/Paris time.
		paris, err := time.LoadLocation("Europe/Paris")
		if err != nil {
			return fmt.Errorf("load Europe/Paris time zone: %w", err)
		}
		cfg.Schedule = &workers.Schedule{Location: paris, Maintenance: c.getenv("APBATCH_NO_MAINTENANCE_SKIP") == ""}
		tokens := tokenSources{file: c.tokenFile, dir: c.tokensDir, tenantOnly: c.tenantTokensOnly, getenv: c.getenv}
		var environ []string
		if c.environ != nil {
			environ = c.environ()
		}
		if !tokens.configured(environ) {
			return errors.New("no API token: give --token-file (APBATCH_TOKEN_FILE) or APBATCH_TOKEN for every tenant, " +
				"and/or --tokens-dir (APBATCH_TOKENS_DIR) or APBATCH_TOKEN_<TENANT> per tenant")
		}
		if c.tokenFile != "" || c.getenv("APBATCH_TOKEN") != "" {
			if _, _, err := tokens.lookup(""); err != nil {
				return err
			}
		}
		cfg.Tokens = tokens.source()
		if cfg.AuditKey, err = auditKey(c.getenv, filepath.Clean(c.auditKeyDir)); err != nil {
			return err
		}
	}
	if slices.Contains(roles, "ingest") || slices.Contains(roles, "work") {
		if cfg.Keys, err = keyRing(ctx, c.getenv, ""); err != nil {
			return err
		}
		cfg.Log.Info().Strs("key_ids", cfg.Keys.KeyIDs()).Msg("job identities sealed in Kafka")
	}
	var environ []string
	if c.environ != nil {
		environ = c.environ()
	}
	if slices.Contains(roles, "work") {
		if cfg.KeyLimits, err = workers.ParseKeyLimits(c.perMinute); err != nil {
			return fmt.Errorf("--per-minute: %w", err)
		}
		if cfg.Habilitations, err = tenantHabilitations(environ); err != nil {
			return err
		}
		if cfg.Delegations, err = tenantDelegations(environ); err != nil {
			return err
		}
	}
	if slices.Contains(roles, "ingest") {
		if cfg.Recipients, err = tenantRecipients(environ); err != nil {
			return err
		}
		switch {
		case c.recipient == "" && len(cfg.Recipients) == 0:
			return errors.New("--recipient: give the collectivité's SIRET (14 digits), or APBATCH_RECIPIENT, or one per tenant in APBATCH_RECIPIENT_<TENANT>")
		case c.recipient != "" && !siretPattern.MatchString(c.recipient):
			return errors.New("--recipient: give the collectivité's SIRET (14 digits), or APBATCH_RECIPIENT")
		}
	}
	var webKey []byte
	if slices.Contains(roles, "web") {
		if !c.web.oidcConfigured() && c.getenv("APBATCH_WEB_KEY_SIGN_IN") == "" {
			return errors.New("web role: agents sign in through OpenID Connect; give APBATCH_OIDC_ISSUER, APBATCH_OIDC_CLIENT_ID, APBATCH_OIDC_CLIENT_SECRET, APBATCH_OIDC_REDIRECT_URL and APBATCH_OIDC_TENANTS (or their flags); " +
				"for a rehearsal without a provider, APBATCH_WEB_KEY_SIGN_IN=1 lets agents sign in with their tenant's API key")
		}
		if webKey, err = portal.SessionKey(c.getenv("APBATCH_WEB_SESSION_KEY"), ""); err != nil {
			return fmt.Errorf("web role: %w", err)
		}
	}
	var ms *metricsServer
	if c.metricsAddr != "" {
		// Up before the services are reached: /healthz answers and /readyz
		// says what is awaited while they connect.
		cfg.Registry = newRegistry()
		if ms, err = startMetrics(ctx, c.metricsAddr, cfg.Registry, cfg.Log); err != nil {
			return err
		}
		defer func() {
			sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer cancel()
			ms.Close(sctx)
		}()
	}
	st, err := openStack(ctx, cfg)
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

// startWeb serves the portal of the web role on --web-addr.
func (c *serveCommand) startWeb(ctx context.Context, cfg stackConfig, st *stack, key []byte) (*webServer, error) {
	p, err := c.web.portal(ctx, c.env, st, cfg.Log, key)
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
	ln, err := lc.Listen(ctx, "tcp", c.webAddr)
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

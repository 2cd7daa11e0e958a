package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/mattn/go-isatty"

	"github.com/apbatch/apbatch/pipeline/kafka"
	"github.com/apbatch/apbatch/pipeline/s3"
	"github.com/apbatch/apbatch/schemas"
	"github.com/apbatch/apbatch/workers"
)

// Roles a serving process can run.
var allRoles = []string{"ingest", "work", "write"}

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
	checks, sharedIP, logLevel, auditKeyDir string
	rate, ipLimit, inFlight                 int
	share                                   float64
	flushInterval                           time.Duration
}

func (c *serveCommand) flags() *flag.FlagSet {
	if c.fs != nil {
		return c.fs
	}
	fs := flag.NewFlagSet(c.name, flag.ContinueOnError)
	fs.SetOutput(c.stderr)
	if c.name == "serve" {
		fs.StringVar(&c.roles, "roles", c.envOr("APBATCH_ROLES", strings.Join(allRoles, ",")), "roles to run in this process: "+strings.Join(allRoles, ", ")+" (APBATCH_ROLES)")
	}
	fs.StringVar(&c.brokers, "kafka", c.envOr("APBATCH_KAFKA_BROKERS", ""), "Kafka brokers, host:port,... (APBATCH_KAFKA_BROKERS)")
	fs.StringVar(&c.s3Endpoint, "s3-endpoint", c.envOr("APBATCH_S3_ENDPOINT", ""), "S3 endpoint URL; empty for AWS (APBATCH_S3_ENDPOINT; keys in APBATCH_S3_ACCESS_KEY and APBATCH_S3_SECRET_KEY)")
	fs.StringVar(&c.s3Bucket, "s3-bucket", c.envOr("APBATCH_S3_BUCKET", "apbatch"), "bucket of incoming files and results (APBATCH_S3_BUCKET)")
	fs.StringVar(&c.db, "db", c.envOr("APBATCH_DB", ""), "ledger: postgres://... or sqlite://PATH (APBATCH_DB)")
	fs.StringVar(&c.providerURL, "provider-url", c.envOr("APBATCH_PROVIDER_URL", workers.ProductionURL), "API Particulier base URL (APBATCH_PROVIDER_URL)")
	fs.StringVar(&c.tokenFile, "token-file", c.envOr("APBATCH_TOKEN_FILE", ""), "file holding the API token (APBATCH_TOKEN_FILE), or the token in APBATCH_TOKEN")
	fs.StringVar(&c.recipient, "recipient", c.envOr("APBATCH_RECIPIENT", ""), "SIRET of the collectivité sent with every call (APBATCH_RECIPIENT)")
	fs.StringVar(&c.checks, "checks", c.envOr("APBATCH_CHECKS", "qf"), "checks new batches run (APBATCH_CHECKS)")
	fs.StringVar(&c.sharedIP, "shared-ip-budget", c.envOr("APBATCH_SHARED_IP_BUDGET", ""), "share --ip-limit through the ledger with the worker processes of the same NAME (APBATCH_SHARED_IP_BUDGET)")
	fs.StringVar(&c.auditKeyDir, "audit-key-dir", c.envOr("APBATCH_AUDIT_KEY_DIR", "."), "folder of audit.key when APBATCH_AUDIT_KEY is not set")
	fs.IntVar(&c.rate, "rate", 20, "requests per second per token")
	fs.IntVar(&c.ipLimit, "ip-limit", 1000, "requests per minute from this machine's IP")
	fs.IntVar(&c.inFlight, "in-flight", 32, "provider calls in flight at most")
	fs.Float64Var(&c.share, "budget-share", 1, "fraction of the budgets to use")
	fs.DurationVar(&c.flushInterval, "flush-interval", 30*time.Second, "write role: longest time a result waits before its part is written")
	fs.StringVar(&c.logLevel, "log-level", c.envOr("APBATCH_LOG_LEVEL", "info"), "log level (APBATCH_LOG_LEVEL)")
	c.fs = fs
	return fs
}

// Usage prints the command's help.
func (c *serveCommand) Usage() {
	head := `Usage: apbatch serve [flags]

Runs pipeline roles as a long-running process on Kafka, S3 and a ledger
(PostgreSQL to share it between machines): ingest (S3 upload events → batches,
split into jobs), work (calls under budgets) and write (Parquet parts,
manifests). "apbatch ingest", "apbatch work" and "apbatch write" run one
role each. Every flag has an APBATCH_* variable; secrets (S3 keys, API token,
audit key) come from the environment or files only. Stops cleanly on SIGTERM.

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
	if err := fs.Parse(args); err != nil {
		return errUsage
	}
	roles := []string{c.name}
	if c.name == "serve" {
		roles = nil
		for _, r := range strings.Split(c.roles, ",") {
			r = strings.TrimSpace(r)
			if r == "split" {
				r = "ingest" // the ingest role splits the batches it starts
			}
			if !slices.Contains(allRoles, r) {
				return fmt.Errorf("--roles: unknown role %q (roles: %s)", r, strings.Join(allRoles, ", "))
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
	checks, err := schemas.ParseChecks(c.checks)
	if err != nil {
		return fmt.Errorf("--checks: %w", err)
	}
	log, err := newLogger(c.stderr, c.logLevel, isatty.IsTerminal(2))
	if err != nil {
		return err
	}
	cfg := stackConfig{
		Kafka: kafka.Config{Brokers: strings.Split(c.brokers, ",")},
		S3: s3.Config{Endpoint: c.s3Endpoint, Bucket: c.s3Bucket, AccessKey: c.getenv("APBATCH_S3_ACCESS_KEY"),
			SecretKey: c.getenv("APBATCH_S3_SECRET_KEY")},
		LedgerURL: c.db, Log: log.With().Str("process", strings.Join(roles, "+")).Logger(),
		ProviderURL: strings.TrimRight(c.providerURL, "/"), Rate: c.rate, IPLimit: c.ipLimit, Share: c.share,
		InFlight: c.inFlight, Recipient: c.recipient, Checks: checks, SharedIP: c.sharedIP, FlushInterval: c.flushInterval,
		Roles: roles,
	}
	if slices.Contains(roles, "work") {
		// The providers' maintenance windows are waited out, in
		// Europe/Paris time.
		paris, err := time.LoadLocation("Europe/Paris")
		if err != nil {
			return fmt.Errorf("load Europe/Paris time zone: %w", err)
		}
		cfg.Schedule = &workers.Schedule{Location: paris, Maintenance: c.getenv("APBATCH_NO_MAINTENANCE_SKIP") == ""}
		token, err := readToken(c.tokenFile, c.getenv)
		if err != nil {
			return err
		}
		cfg.Tokens = func(string) (string, error) { return token, nil }
		if cfg.AuditKey, err = auditKey(c.getenv, filepath.Clean(c.auditKeyDir)); err != nil {
			return err
		}
	}
	if slices.Contains(roles, "ingest") && !siretPattern.MatchString(c.recipient) {
		return errors.New("--recipient: give the collectivité's SIRET (14 digits), or APBATCH_RECIPIENT")
	}
	st, err := openStack(ctx, cfg)
	if err != nil {
		return err
	}
	defer st.Close()
	log.Info().Strs("roles", roles).Msg("serving")
	errc := st.Start(ctx, roles...)
	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	st.Wait()
	log.Info().Msg("stopped")
	return err
}

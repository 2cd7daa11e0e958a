package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/mattn/go-isatty"

	"github.com/apbatch/apbatch/pipeline"
	"github.com/apbatch/apbatch/pipeline/kafka"
	"github.com/apbatch/apbatch/pipeline/ledger"
	"github.com/apbatch/apbatch/pipeline/s3"
	"github.com/apbatch/apbatch/schemas"
)

// refreshCommand is "apbatch refresh": each tenant's latest accepted
// roster verified again as a batch of a new campaign.
type refreshCommand struct {
	env
	engineFlags
	fs *flag.FlagSet

	campaign, tenants, period string
	wait                      bool
	waitTimeout, waitInterval time.Duration
}

func (c *refreshCommand) flags() *flag.FlagSet {
	if c.fs != nil {
		return c.fs
	}
	fs := flag.NewFlagSet("refresh", flag.ContinueOnError)
	fs.SetOutput(c.stderr)
	c.engineFlags.register(fs)
	fs.StringVar(&c.campaign, "campaign", "", "campaign of the new batches, e.g. 2027-09, or auto: the school year of today in Paris (2027-09 from 2027-09-01 to 2028-08-31) (required); firing the same campaign again starts nothing new")
	fs.StringVar(&c.tenants, "tenant", "", "collectivités to refresh, comma-separated (default: every tenant with a finished batch)")
	fs.StringVar(&c.period, "period", "", "QF month the new batches ask for, YYYY-MM (default: the API's current month); warns when the sources' data is not out yet")
	c.config.setting("kafka", "role processes: Kafka brokers, host:port,... (APBATCH_KAFKA_BROKERS); when set, the batches are only submitted, to the running roles")
	c.config.setting("s3-endpoint", "role processes: S3 endpoint URL; empty for AWS (APBATCH_S3_ENDPOINT; keys in APBATCH_S3_ACCESS_KEY and APBATCH_S3_SECRET_KEY)")
	c.config.setting("s3-bucket", "role processes: bucket of incoming files and results (APBATCH_S3_BUCKET)")
	c.config.setting("db", "role processes: the ledger, postgres://... or sqlite://PATH (APBATCH_DB)")
	fs.BoolVar(&c.wait, "wait", false, "role processes: follow the campaign's batches in the ledger until they end, printing their progress; exit status 3 if one is refused, cancelled or still running at --wait-timeout (the embedded services always wait)")
	fs.DurationVar(&c.waitTimeout, "wait-timeout", 0, "role processes, with --wait: give up waiting after this long, e.g. 11h (default: no limit); the batches go on in the roles")
	fs.DurationVar(&c.waitInterval, "wait-interval", 10*time.Second, "role processes, with --wait: time between two reads of the ledger")
	c.fs = fs
	return fs
}

// Usage prints the command's help.
func (c *refreshCommand) Usage() {
	printUsage(c.stdout, c.stderr, c.flags(), `Usage: apbatch refresh --campaign CAMPAIGN|auto [flags]

Verifies each tenant's latest accepted roster (the file of its last finished
batch, whatever its campaign) again, as a batch of CAMPAIGN: the September
refresh of every town's canteen roster, say. The file is copied in the
bucket to incoming/<tenant>/<CAMPAIGN>/<file> and its upload event
published; the new batch runs the checks of the batch it copies, for the
same recipient, priced with the tenant's tariff grid, within --run-window
and the budgets. The refresh is recorded in the ledger per tenant and
campaign: firing it again starts nothing new. Each tenant gets one line:
new batch, already refreshed for this campaign, or no roster. With
--campaign auto, CAMPAIGN is the school year of the day in Europe/Paris
time, YYYY-09 (2027-09 from 2027-09-01 to 2028-08-31): what a scheduler
gives, so that nothing is bumped by hand each summer.

When a refreshed batch is published, it also gets
diffs/<tenant>/<campaign>/<batch>/diff.parquet: every result whose status, QF bracket (tranche) or price
changed since the batch it copies, with the old and new values, and rows
found in one batch only; its manifest counts the changes by kind.

With the embedded services (--data-dir, the default), the new batches run
here to completion, with progress, as "apbatch run" does, and take its
provider flags. With --kafka and --db (or APBATCH_KAFKA_BROKERS and
APBATCH_DB), the batches are only submitted to the role processes
("apbatch serve") and their ids printed; follow them with apbatch status,
or give --wait: the command then follows the campaign's batches (those it
submits, and those an earlier run of it submitted) in the ledger until
they end, and exits with status 3, saying what to do, if one was refused,
cancelled, or still runs after --wait-timeout. A scheduler's success then
means the batches are done, not just submitted.

Flags:
`)
}

// Run runs the command.
func (c *refreshCommand) Run(ctx context.Context, args []string) error {
	fs := c.flags()
	fs.Usage = c.Usage
	if err := parseArgs(fs, args); err != nil {
		return err
	}
	if err := c.load(c.getenv); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(c.stderr, "apbatch refresh: unexpected argument %q (the rosters come from the ledger)\n", fs.Arg(0))
		return errUsage
	}
	if c.campaign == "" {
		fmt.Fprintln(c.stderr, "apbatch refresh: give the campaign of the new batches with --campaign, e.g. --campaign 2027-09 or --campaign auto")
		return errUsage
	}
	paris, err := time.LoadLocation("Europe/Paris")
	if err != nil {
		return fmt.Errorf("load Europe/Paris time zone: %w", err)
	}
	if c.campaign == pipeline.CampaignAuto {
		c.campaign = pipeline.SchoolYearCampaign(time.Now().In(paris))
		fmt.Fprintf(c.stdout, "campaign %s (the school year of today)\n", c.campaign)
	}
	var tenants []string
	for _, t := range strings.Split(c.tenants, ",") {
		if t = strings.TrimSpace(t); t != "" {
			tenants = append(tenants, t)
		}
	}
	for _, t := range append([]string{"x"}, tenants...) {
		if _, err := pipeline.ParseIncomingKey(pipeline.IncomingKey{Tenant: t, Campaign: c.campaign, File: "x.csv"}.String()); err != nil {
			return fmt.Errorf("--tenant/--campaign: use letters, digits, '.', '_' or '-' (got %q, %q)", t, c.campaign)
		}
	}
	if _, err := pipeline.ParsePeriod(c.period); err != nil {
		return fmt.Errorf("--period: %w", err)
	}
	if c.cfg.Kafka != "" {
		return c.submitOnly(ctx, tenants)
	}
	if _, err := ledgerURL("", c.cfg.DataDir); err != nil {
		return err
	}
	en, err := c.engineFlags.start(ctx, c.env, func(cfg *pipeline.RunnerConfig) {
		// Refreshed batches take their source's; these apply to uploads.
		cfg.Recipient, cfg.Checks = dinumSIRET, []schemas.Check{schemas.CheckQuotientFamilial}
	}, nil)
	if err != nil {
		return err
	}
	defer en.Close()
	st := en.st
	results, err := c.refresh(ctx, &pipeline.Refresher{S3: st.S3, Ledger: st.Ledger, Uploads: st.Uploads, Log: en.log}, tenants)
	if err != nil {
		return err
	}
	var subs []pipeline.Submitted
	var names []string
	for _, r := range results {
		if r.BatchID != "" {
			subs = append(subs, pipeline.Submitted{Key: r.Source.ObjectKey, BatchID: r.BatchID})
			names = append(names, r.Tenant)
		}
	}
	if len(subs) == 0 {
		return nil
	}
	final, err := st.WaitBatches(ctx, subs, en.roleErr, c.progressPrinter(c.stderr, en.console, names))
	if err != nil {
		return err
	}
	fmt.Fprintln(c.stdout)
	return c.report(ctx, c.stdout, st, final, "")
}

// submitOnly submits the refreshes to role processes on real services.
func (c *refreshCommand) submitOnly(ctx context.Context, tenants []string) error {
	if c.cfg.DB == "" {
		return errors.New("--kafka needs the ledger the roles use: give --db or APBATCH_DB")
	}
	log, err := newLogger(c.stderr, c.cfg.LogLevel, isatty.IsTerminal(2))
	if err != nil {
		return err
	}
	kcfg := kafka.Config{Brokers: strings.Split(c.cfg.Kafka, ",")}
	if err := kafka.EnsureTopics(ctx, kcfg, schemas.TopicUploads); err != nil {
		return err
	}
	client, err := s3.NewClient(ctx, s3.Config{Endpoint: c.cfg.S3Endpoint, Bucket: c.cfg.S3Bucket,
		AccessKey: c.getenv("APBATCH_S3_ACCESS_KEY"), SecretKey: c.getenv("APBATCH_S3_SECRET_KEY")})
	if err != nil {
		return err
	}
	store, err := ledger.Open(ctx, c.cfg.DB)
	if err != nil {
		return err
	}
	defer store.Close()
	w := kafka.NewWriter(kcfg, schemas.TopicUploads)
	defer w.Close()
	results, err := c.refresh(ctx, &pipeline.Refresher{S3: client, Ledger: store, Uploads: w, Log: log}, tenants)
	if err != nil {
		return err
	}
	var ids []string
	for _, r := range results {
		if r.Outcome == pipeline.RefreshStarted || c.wait && r.Outcome == pipeline.RefreshAlready {
			ids = append(ids, r.BatchID)
		}
	}
	switch {
	case len(ids) == 0:
		return nil
	case !c.wait:
		fmt.Fprintln(c.stdout, "\nSubmitted to the running roles; follow the batches with: apbatch status --db ...")
		return nil
	}
	return c.follow(ctx, store, ids)
}

// follow waits for batches ids to end (refresh --wait), printing their
// progress in French; a batch that did not complete is exit status 3.
func (c *refreshCommand) follow(ctx context.Context, store *ledger.Store, ids []string) error {
	fmt.Fprintf(c.stdout, "\nSuivi de %d lot(s) jusqu'à leur fin (--wait)\n", len(ids))
	f := &pipeline.Follower{Ledger: store, Interval: c.waitInterval, Timeout: c.waitTimeout,
		Progress: func(v pipeline.BatchView) { fmt.Fprintln(c.stderr, pipeline.FormatProgress(v)) }}
	_, err := f.Follow(ctx, ids)
	var fe *pipeline.FollowError
	switch {
	case errors.As(err, &fe):
		for _, line := range fe.Advice("apbatch status --db ...") {
			fmt.Fprintln(c.stderr, line)
		}
		return &exitError{code: 3, err: fe}
	case ctx.Err() != nil:
		return fmt.Errorf("suivi interrompu ; les lots continuent dans les rôles : relancez la même commande pour reprendre le suivi (elle ne relance rien), ou apbatch status --db ... : %w", ctx.Err())
	case err != nil:
		return err
	}
	fmt.Fprintf(c.stdout, "%d lot(s) terminé(s) ; leurs résultats : apbatch results BATCH\n", len(ids))
	return nil
}

// refresh refreshes each tenant (every tenant with a finished batch when
// none is named), printing one line per tenant and the freshness warnings
// of the checks it starts.
func (c *refreshCommand) refresh(ctx context.Context, rf *pipeline.Refresher, tenants []string) ([]pipeline.RefreshResult, error) {
	if len(tenants) == 0 {
		var err error
		if tenants, err = rf.Ledger.TenantsWithResults(ctx); err != nil {
			return nil, err
		}
		if len(tenants) == 0 {
			fmt.Fprintln(c.stdout, "no tenant has a finished batch: nothing to refresh")
			return nil, nil
		}
	}
	var out []pipeline.RefreshResult
	var checks []schemas.Check
	for _, t := range tenants {
		r, err := rf.Refresh(ctx, t, c.campaign, c.period)
		if err != nil {
			return out, fmt.Errorf("%s: %w", t, err)
		}
		printRefresh(c.stdout, c.campaign, r)
		if r.Outcome == pipeline.RefreshStarted {
			for _, ck := range r.Checks {
				if !slices.Contains(checks, ck) {
					checks = append(checks, ck)
				}
			}
		}
		out = append(out, r)
	}
	paris, err := time.LoadLocation("Europe/Paris")
	if err != nil {
		return out, fmt.Errorf("load Europe/Paris time zone: %w", err)
	}
	for _, w := range pipeline.FreshnessWarnings(checks, c.period, time.Now().In(paris)) {
		fmt.Fprintf(c.stderr, "apbatch refresh: warning: %s\n", w)
	}
	return out, nil
}

// printRefresh writes the line of one tenant's refresh.
func printRefresh(w io.Writer, campaign string, r pipeline.RefreshResult) {
	from := ""
	if r.Source.ID != "" {
		from = fmt.Sprintf("%s of campaign %s (batch %s)", path.Base(r.Source.ObjectKey), r.Source.Campaign, r.Source.ID)
	}
	switch r.Outcome {
	case pipeline.RefreshStarted:
		fmt.Fprintf(w, "%s: new batch %s for campaign %s: %s, checks %s\n", r.Tenant, r.BatchID, campaign, from, schemas.JoinChecks(r.Checks))
	case pipeline.RefreshAlready:
		fmt.Fprintf(w, "%s: already refreshed for campaign %s: batch %s, from %s\n", r.Tenant, campaign, r.BatchID, from)
	case pipeline.RefreshHasBatch:
		fmt.Fprintf(w, "%s: already has batch %s in campaign %s (uploaded); not refreshed\n", r.Tenant, r.BatchID, campaign)
	case pipeline.RefreshNoRoster:
		fmt.Fprintf(w, "%s: no roster: no finished batch to refresh\n", r.Tenant)
	case pipeline.RefreshRosterGone:
		fmt.Fprintf(w, "%s: no roster: the file of %s is no longer in the bucket as verified; upload it again (apbatch run)\n", r.Tenant, from)
	}
}

package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/apbatch/apbatch/pipeline"
	"github.com/apbatch/apbatch/pipeline/ledger"
	"github.com/apbatch/apbatch/pipeline/s3"
)

// purgeCommand is "apbatch purge": tenants' retention policies applied to
// the bucket and the ledger.
type purgeCommand struct {
	env
	fs *flag.FlagSet

	dataDir, db, s3Endpoint, s3Bucket string
	tenant, now, logLevel             string
	dryRun, asJSON                    bool
}

// envOr returns the value of an APBATCH_* variable, or def.
func (c *purgeCommand) envOr(name, def string) string {
	if v := strings.TrimSpace(c.getenv(name)); v != "" {
		return v
	}
	return def
}

func (c *purgeCommand) flags() *flag.FlagSet {
	if c.fs != nil {
		return c.fs
	}
	fs := flag.NewFlagSet("purge", flag.ContinueOnError)
	fs.SetOutput(c.stderr)
	fs.StringVar(&c.dataDir, "data-dir", "./apbatch-data", "folder of the embedded S3 server and ledger (used when --db is not given)")
	fs.StringVar(&c.db, "db", c.envOr("APBATCH_DB", ""), "ledger: postgres://... or sqlite://PATH; with it, the bucket is reached with --s3-endpoint (APBATCH_DB)")
	fs.StringVar(&c.s3Endpoint, "s3-endpoint", c.envOr("APBATCH_S3_ENDPOINT", ""), "S3 endpoint URL; empty for AWS (APBATCH_S3_ENDPOINT; keys in APBATCH_S3_ACCESS_KEY and APBATCH_S3_SECRET_KEY)")
	fs.StringVar(&c.s3Bucket, "s3-bucket", c.envOr("APBATCH_S3_BUCKET", "apbatch"), "bucket of incoming files and results (APBATCH_S3_BUCKET)")
	fs.StringVar(&c.tenant, "tenant", "", "purge this tenant only (default: every tenant found in the bucket or the ledger, and uploads no tenant owns)")
	fs.BoolVar(&c.dryRun, "dry-run", false, "report what would be removed, remove nothing")
	fs.BoolVar(&c.asJSON, "json", false, "print the report as JSON, one object per tenant in an array")
	fs.StringVar(&c.now, "now", "", "purge as of this instant, RFC 3339 (tests and rehearsals; default: now)")
	fs.StringVar(&c.logLevel, "log-level", c.envOr("APBATCH_LOG_LEVEL", "warn"), "log level (APBATCH_LOG_LEVEL)")
	c.fs = fs
	return fs
}

// Usage prints the command's help.
func (c *purgeCommand) Usage() {
	printUsage(c.stdout, c.stderr, c.flags(), `Usage: apbatch purge [flags]

Applies each tenant's retention policy and reports, per tenant, what it
removed: objects and bytes by kind, ledger rows. The policy is YAML in
config/<tenant>/retention.yaml, over config/retention.yaml for every
tenant, over the defaults:

  inputs:
    after_publish: keep-latest  # delete | quarantine | keep-latest | keep
    days: 30                    # quarantine, keep: days after publication
    unprocessed_days: 30        # refused or never-ingested uploads
  results:
    months: 36                  # part files, manifests; batches in the ledger
  audit:
    months: 36                  # provider calls; less than 36 is refused

Once a batch is published, its roster (incoming/<tenant>/...) is deleted
(delete), moved to quarantine/<tenant>/<campaign>/<batch>/ and deleted
"days" later (quarantine), kept "days" (keep), or kept while it is the
campaign's latest published roster, which "apbatch refresh" re-reads
(keep-latest, the default). Whatever the mode, a roster goes with its
results once they expire. Uploads whose batch still runs are kept.

Without --db it also removes the temporary files of workbooks that a
stopped process left in --data-dir/tmp (unpacked sheets, in clear), once
an hour old.

A batch's age is its end in the ledger (completed_at); objects the ledger
does not know age from their S3 LastModified. Running it again removes
nothing more. Schedule it daily (a Kubernetes CronJob). Exit status 1 when
a tenant's policy is invalid: that tenant is left untouched, the others
are purged.

Flags:
`)
}

// Run runs the command.
func (c *purgeCommand) Run(ctx context.Context, args []string) error {
	fs := c.flags()
	fs.Usage = c.Usage
	if err := parseArgs(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(c.stderr, "apbatch purge: unexpected argument %q\n", fs.Arg(0))
		return errUsage
	}
	now := time.Now
	if c.now != "" {
		at, err := time.Parse(time.RFC3339, c.now)
		if err != nil {
			return fmt.Errorf("--now: want an RFC 3339 instant such as 2029-01-31T00:00:00Z (got %q)", c.now)
		}
		now = func() time.Time { return at }
	}
	if c.tenant != "" && !pipeline.ValidTenant(c.tenant) {
		return fmt.Errorf("--tenant: %q cannot name a tenant (lower-case letters, digits, '-')", c.tenant)
	}
	log, err := newLogger(c.stderr, c.logLevel, false)
	if err != nil {
		return err
	}
	s3cfg := s3.Config{Endpoint: c.s3Endpoint, Bucket: c.s3Bucket, AccessKey: c.getenv("APBATCH_S3_ACCESS_KEY"), SecretKey: c.getenv("APBATCH_S3_SECRET_KEY")}
	dbURL, client, closeS3, err := dataServices(ctx, s3cfg, c.db, c.dataDir)
	if err != nil {
		return err
	}
	defer closeS3()
	var tmpNote string
	if c.db == "" {
		// An hour ago, whatever --now: no read of a workbook in progress
		// lasts that long.
		n, size, err := pipeline.ClearTmp(pipeline.TmpDir(c.dataDir), time.Now().Add(-time.Hour), c.dryRun)
		if err != nil {
			return err
		}
		if n > 0 {
			tmpNote = fmt.Sprintf("temporary workbook files in %s: %d (%s)", pipeline.TmpDir(c.dataDir), n, bytesText(size))
		}
	}
	store, err := ledger.Open(ctx, dbURL)
	if err != nil {
		return err
	}
	defer store.Close()
	p := &pipeline.Purger{S3: client, Ledger: store, Log: log, Now: now, DryRun: c.dryRun}
	tenants := []string{c.tenant}
	if c.tenant == "" {
		if tenants, err = p.Tenants(ctx); err != nil {
			return err
		}
	}
	var reports []pipeline.PurgeReport
	var failed []error
	for _, t := range tenants {
		rep, err := p.Purge(ctx, t)
		if err != nil {
			if ctx.Err() != nil {
				return err
			}
			failed = append(failed, fmt.Errorf("tenant %s: %w", t, err))
			continue
		}
		reports = append(reports, rep)
	}
	if c.tenant == "" {
		rep, err := p.PurgeStray(ctx)
		if err != nil {
			failed = append(failed, err)
		} else if rep.Inputs.Objects > 0 || rep.InputsKept > 0 {
			reports = append(reports, rep)
		}
	}
	if c.asJSON {
		if reports == nil {
			reports = []pipeline.PurgeReport{}
		}
		enc := json.NewEncoder(c.stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(reports); err != nil {
			return err
		}
	} else {
		printPurge(c.stdout, reports, c.dryRun)
		if tmpNote != "" {
			fmt.Fprintln(c.stdout, tmpNote)
		}
	}
	if tmpNote != "" {
		log.Info().Str("component", "purge").Msg(tmpNote)
	}
	if len(failed) > 0 {
		return errors.Join(failed...)
	}
	return nil
}

// printPurge writes the reports as a table, one line per tenant.
func printPurge(w io.Writer, reports []pipeline.PurgeReport, dry bool) {
	if dry {
		fmt.Fprintln(w, "dry run: nothing removed; what a purge would remove:")
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "tenant\tinputs\tquarantined\tquarantine\tresults\tinputs kept\tbatches\tresult rows\tcalls\t")
	size := func(r pipeline.Removed) string { return fmt.Sprintf("%d (%s)", r.Objects, bytesText(r.Bytes)) }
	for _, r := range reports {
		name := r.Tenant
		if name == "" {
			name = "(no tenant)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%d\t%d\t%d\t\n", name, size(r.Inputs), size(r.Quarantined), size(r.Quarantine),
			size(r.Results), r.InputsKept, r.Ledger.Batches, r.Ledger.ResultRows, r.Ledger.Calls)
	}
	tw.Flush()
}

// bytesText writes n bytes for people: 0 B, 12 KiB, 3.4 MiB.
func bytesText(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/apbatch/apbatch/pipeline"
	"github.com/apbatch/apbatch/pipeline/ledger"
	"github.com/apbatch/apbatch/pipeline/s3"
	"github.com/apbatch/apbatch/schemas"
	"github.com/apbatch/apbatch/workers"
	"github.com/apbatch/apbatch/workers/sandbox"
)

// dinumSIRET is the SIRET used in the operator's examples; the embedded
// sandbox accepts it. Real runs must give the collectivité's own SIRET.
const dinumSIRET = "13002526500013"

// runCommand is "apbatch run": the all-in-one mode.
type runCommand struct {
	env
	engineFlags
	fs *flag.FlagSet

	tenant, campaign, period string
	tariff, columns          string
	workbook                 string
	force                    bool
	headerRow                int
}

func (c *runCommand) flags() *flag.FlagSet {
	if c.fs != nil {
		return c.fs
	}
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	fs.SetOutput(c.stderr)
	c.engineFlags.register(fs)
	fs.StringVar(&c.tenant, "tenant", "demo", "collectivité the files belong to (letters, digits, . _ -)")
	fs.StringVar(&c.campaign, "campaign", time.Now().Format("2006-01"), "campaign the batch belongs to, e.g. 2026-09")
	c.config.setting("checks", "verifications to run, comma-separated, or all; each row gets one result per check: "+schemas.CheckNames())
	fs.StringVar(&c.tariff, "tariff", "", "tariff grid (YAML) of the tenant: prices each QF result with its bracket (tranche) and price per meal (tarif); see deploy/samples/tarifs-cantine.yaml")
	fs.StringVar(&c.columns, "columns", "", "the tenant's column mapping (YAML, apbatch column: the header its files use), for headers no alias recognises")
	fs.IntVar(&c.headerRow, "header-row", 0, "line of each FILE (row of the sheet, as the spreadsheet numbers it) that names the columns (default: found, the first of the first 10 rows naming two known columns)")
	fs.BoolVar(&c.force, "force", false, "verify the files again as new batches even if the same content was verified in this campaign")
	fs.StringVar(&c.period, "period", "", "QF month to ask for, YYYY-MM (default: the API's current month)")
	fs.StringVar(&c.workbook, "workbook", "", "the results workbook to write, a .xlsx (default: resultats.xlsx in --out, or in the current folder; a --out ending in .xlsx is the workbook itself)")
	c.config.setting("recipient", "SIRET of the collectivité, sent with every call (default with the embedded sandbox: "+dinumSIRET+")")
	c.fs = fs
	return fs
}

// Usage prints the command's help.
func (c *runCommand) Usage() {
	fs := c.flags()
	printUsage(c.stdout, c.stderr, fs, `Usage: apbatch run [flags] FILE...
       apbatch run [flags]          (resumes the unfinished batches of --data-dir)

Verifies every row of each FILE (an Excel workbook, .xlsx, or a CSV as
exported by Excel or a family-management software: UTF-8, UTF-16 or
Windows-1252; ';', ',', tab or '|'; French headers such as « NOM DE
NAISSANCE » or « Prénom(s) »; the header found below titles, or on
--header-row) through API
Particulier (the quotient familial by default; --checks for the others) and
writes one result row per input row and check as Parquet. Without flags
everything runs in this process: a Kafka-protocol broker, an S3 server on a
local folder, a SQLite ledger and the API sandbox, all under --data-dir.
Each FILE is uploaded to s3://apbatch/incoming/<tenant>/<campaign>/<file>,
and its upload event starts the batch. Results land in
s3://apbatch/results/<tenant>/<campaign>/<batch>/ once the batch is
published (staging/<tenant>/… until then). Running again with the
same file reuses the finished batch; with a new --tariff grid, its stored
results are re-priced without any call, as a new batch. A line the file
breaks (wrong separator, stray quote) is a row to correct, never a stop;
"apbatch cancel BATCH" stops a batch, "apbatch status" shows the stalled
ones (--stall-after). Identities cross the embedded broker
sealed under a key kept in --data-dir/kek.key (made on first use) unless
APBATCH_KEK_FILE, APBATCH_KEK or APBATCH_KMS_KEY_ID names one. The embedded
S3 server and broker serve only clients holding the credentials of
--data-dir/services.key (made on first use, mode 0600).

Flags:
`)
}

var siretPattern = regexp.MustCompile(`^[0-9]{14}$`)

// Run runs the command.
func (c *runCommand) Run(ctx context.Context, args []string) error {
	fs := c.flags()
	fs.Usage = c.Usage
	if err := parseArgs(fs, args); err != nil {
		return err
	}
	if err := c.load(c.getenv); err != nil {
		return err
	}
	files := fs.Args()
	if len(files) == 0 {
		if _, err := os.Stat(filepath.Join(c.cfg.DataDir, "ledger.db")); err != nil {
			fmt.Fprintln(c.stderr, pipeline.MsgNoFile)
			return errUsage
		}
		// No file: resume the unfinished batches of --data-dir.
	}
	for _, f := range files {
		if st, err := os.Stat(f); err != nil || st.IsDir() {
			return fmt.Errorf(pipeline.ErrFmtCannotRead, f)
		}
	}
	checks, err := c.validate()
	if err != nil {
		return err
	}
	parquetDir, workbook, err := c.outputs()
	if err != nil {
		return err
	}
	// The tenant's editor delegation, if its configuration names one
	// (APBATCH_DELEGATION_<TENANT>).
	var env []string
	if name := tenantEnv(c.tenant); name != "" {
		name = tenantDelegationPrefix + strings.TrimPrefix(name, tenantTokenPrefix)
		if v := c.getenv(name); v != "" {
			env = append(env, name+"="+v)
		}
	}
	delegations, err := tenantDelegations(env)
	if err != nil {
		return err
	}
	var unfinished []ledger.Batch
	en, err := c.engineFlags.start(ctx, c.env, func(cfg *pipeline.RunnerConfig) {
		cfg.Period, cfg.Recipient, cfg.Checks, cfg.Delegations = c.period, c.cfg.Recipient, checks, delegations
	}, func(en *engine) error {
		if len(files) == 0 {
			var err error
			if unfinished, err = en.st.Ledger.Batches(ctx, ledger.StateCreated, ledger.StateSplit); err != nil {
				return err
			}
			if len(unfinished) == 0 {
				fmt.Fprintf(c.stderr, pipeline.MsgNothingToResume+"\n", c.cfg.DataDir)
				return errUsage
			}
		}
		// Before any call: the token must serve the checks until the end.
		return c.checkTokens(ctx, en.log, en.st.Ledger, en.providerURL, en.tokens, checks, files, unfinished)
	})
	if err != nil {
		return err
	}
	defer en.Close()
	st := en.st

	started := time.Now()
	mappingChanged, err := c.storeTenantConfig(ctx, st)
	if err != nil {
		return err
	}
	var batches []pipeline.Submitted
	if len(files) == 0 {
		for _, b := range unfinished {
			batches = append(batches, pipeline.Submitted{Key: b.ObjectKey, BatchID: b.ID, Resumed: true})
		}
		fmt.Fprintf(c.stderr, pipeline.MsgResuming+"\n", len(batches))
	} else if batches, err = st.SubmitFiles(ctx, c.tenant, c.campaign, files, c.headerRow, c.force); err != nil {
		return err
	}
	final, err := st.WaitBatches(ctx, batches, en.roleErr, c.progressPrinter(c.stderr, en.console, []string{c.tenant}))
	if err != nil {
		return err
	}
	for _, b := range final {
		if len(files) > 0 && b.Checks != schemas.JoinChecks(checks) {
			return fmt.Errorf(pipeline.ErrFmtOtherChecks, filepath.Base(b.ObjectKey), b.Campaign, b.Checks, b.ID)
		}
		if len(files) > 0 && mappingChanged && b.CreatedAt.Before(started) {
			return fmt.Errorf(pipeline.ErrFmtOtherMapping, filepath.Base(b.ObjectKey), b.Campaign, b.ID)
		}
	}
	if final, err = c.reprice(ctx, st, final); err != nil {
		return err
	}
	c.out = parquetDir
	return c.report(ctx, c.stdout, st, final, workbook)
}

// validate checks the flags that need no service and returns the checks.
func (c *runCommand) validate() ([]schemas.Check, error) {
	if c.headerRow < 0 {
		return nil, fmt.Errorf("--header-row %d: give the line that names the columns, from 1 (0: found)", c.headerRow)
	}
	if _, err := pipeline.ParseIncomingKey(pipeline.IncomingKey{Tenant: c.tenant, Campaign: c.campaign, File: "x.csv"}.String()); err != nil {
		return nil, fmt.Errorf(pipeline.ErrFmtTenantCampaign, c.tenant, c.campaign)
	}
	if _, err := pipeline.ParsePeriod(c.period); err != nil {
		return nil, fmt.Errorf("--period : %w", err)
	}
	if c.cfg.Recipient == "" {
		if c.cfg.ProviderURL != "" {
			return nil, errors.New(pipeline.ErrFmtNoRecipient)
		}
		c.cfg.Recipient = dinumSIRET
	}
	if !siretPattern.MatchString(c.cfg.Recipient) {
		return nil, fmt.Errorf(pipeline.ErrFmtBadRecipient, c.cfg.Recipient)
	}
	checks, err := schemas.ParseChecks(c.cfg.Checks)
	if err != nil {
		return nil, fmt.Errorf("--checks : %w", err)
	}
	return checks, nil
}

// storeTenantConfig stores the tenant's --tariff and --columns in the
// bucket, where the roles read them, and tells whether the column mapping
// changed (a file verified before with another is not reused silently).
func (c *runCommand) storeTenantConfig(ctx context.Context, st *pipeline.Runner) (bool, error) {
	parseTariff := func(b []byte) error { _, err := schemas.ParseTariffGrid(b); return err }
	parseColumns := func(b []byte) error { _, err := pipeline.ParseColumns(b); return err }
	if err := uploadConfig(ctx, st, "--tariff", c.tariff, pipeline.TariffKey(c.tenant), parseTariff); err != nil {
		return false, err
	}
	// A new column mapping changes what is read of a file verified before:
	// its batch is not reused silently.
	mappingChanged := false
	if c.columns != "" {
		prev, err := pipeline.ReadConfig(ctx, st.S3, pipeline.ColumnsKey(c.tenant))
		if err != nil {
			return false, err
		}
		cur, err := os.ReadFile(c.columns)
		if err != nil {
			return false, fmt.Errorf("--columns: %w", err)
		}
		mappingChanged = !bytes.Equal(prev, cur)
	}
	if err := uploadConfig(ctx, st, "--columns", c.columns, pipeline.ColumnsKey(c.tenant), parseColumns); err != nil {
		return false, err
	}
	return mappingChanged, nil
}

// outputs returns where run writes: the folder of the Parquet copies
// ("" for none) and the results workbook. A --out ending in .xlsx is the
// workbook; another extension of a results file is refused, rather than
// made a folder.
func (c *runCommand) outputs() (parquetDir, workbook string, err error) {
	out, workbook := c.out, c.workbook
	if workbook != "" && !strings.EqualFold(filepath.Ext(workbook), ".xlsx") {
		return "", "", fmt.Errorf("--workbook : "+pipeline.ErrFmtFormat, filepath.Ext(workbook))
	}
	switch ext := strings.ToLower(filepath.Ext(out)); ext {
	case "":
	case ".xlsx":
		if workbook == "" {
			return "", out, nil
		}
		return "", "", fmt.Errorf(pipeline.ErrFmtOutIsFile, out)
	case ".csv", ".parquet", ".ods", ".xls", ".json":
		return "", "", fmt.Errorf(pipeline.ErrFmtOutIsFile, out)
	}
	if out != "" {
		if st, err := os.Stat(out); err == nil && !st.IsDir() {
			return "", "", fmt.Errorf(pipeline.ErrFmtOutIsFile, out)
		}
	}
	if workbook == "" {
		workbook = filepath.Join(out, "resultats.xlsx")
	}
	return out, workbook, nil
}

// reprice gives the batches verified before with another grid the prices
// of --tariff, from their stored results (no call), and says so.
func (c *runCommand) reprice(ctx context.Context, st *pipeline.Runner, final []ledger.Batch) ([]ledger.Batch, error) {
	if c.tariff == "" {
		return final, nil
	}
	raw, err := os.ReadFile(c.tariff)
	if err != nil {
		return nil, fmt.Errorf("--tariff: %w", err)
	}
	grid, err := schemas.ParseTariffGrid(raw)
	if err != nil {
		return nil, fmt.Errorf("--tariff: %w", err)
	}
	out := make([]ledger.Batch, len(final))
	for i, b := range final {
		out[i] = b
		if b.State != ledger.StateComplete || !slices.Contains(b.CheckList(), schemas.CheckQuotientFamilial) {
			continue
		}
		nb, changed, err := pipeline.Reprice(ctx, st.S3, st.Ledger, b, grid, time.Now())
		if err != nil {
			return nil, err
		}
		if changed {
			fmt.Fprintf(c.stderr, pipeline.MsgRepriced+"\n", filepath.Base(b.ObjectKey), b.ID, grid.Version, nb.ID)
			out[i] = nb
		}
	}
	return out, nil
}

// provider returns the API base URL and where each tenant's token is: the
// embedded sandbox and its own token unless --provider-url is given, then
// the token sources (per tenant, then the default token).
func (c *engineFlags) provider(ctx context.Context, log zerolog.Logger, getenv func(string) string) (string, tokenLookup, func(), error) {
	if c.cfg.ProviderURL != "" {
		return strings.TrimRight(c.cfg.ProviderURL, "/"), tokenSources{file: c.cfg.TokenFile, dir: c.cfg.TokensDir, getenv: getenv}.lookup, func() {}, nil
	}
	base, stop, err := startSandbox(ctx, sandbox.Config{Log: log.With().Str("component", "sandbox").Logger(),
		Population: sandbox.NewPopulation(c.population, c.seed)})
	if err != nil {
		return "", nil, nil, err
	}
	// Like staging's tokens, the embedded sandbox's lasts ten years.
	token, err := sandbox.Token([]byte(sandbox.DefaultSecret), sandbox.AllScopes, time.Now().AddDate(10, 0, 0))
	if err != nil {
		stop()
		return "", nil, nil, err
	}
	lookup := func(string) (string, string, error) { return token, pipeline.TokenEmbedded, nil }
	return base, lookup, stop, nil
}

// tokenLookup returns a tenant's token and where it was found.
type tokenLookup func(tenant string) (token, from string, err error)

// startSandbox serves a sandbox with cfg on a free local port until stop.
func startSandbox(ctx context.Context, cfg sandbox.Config) (base string, stop func(), err error) {
	sb, err := sandbox.New(cfg)
	if err != nil {
		return "", nil, err
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, fmt.Errorf("sandbox: listen: %w", err)
	}
	srv := sb.HTTPServer()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		srv.Serve(ln)
	}()
	stop = func() {
		sb.Close()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
		wg.Wait()
	}
	return "http://" + ln.Addr().String(), stop, nil
}

// schedule builds the calls' schedule from --run-window and the providers'
// maintenance windows, in Europe/Paris time. The embedded sandbox has no
// maintenance, so the windows apply only with --provider-url.
func (c *engineFlags) schedule() (*workers.Schedule, error) {
	paris, err := time.LoadLocation("Europe/Paris")
	if err != nil {
		return nil, fmt.Errorf("load Europe/Paris time zone: %w", err)
	}
	s := &workers.Schedule{Location: paris}
	if !c.cfg.NoMaintenanceSkip && c.cfg.ProviderURL != "" {
		s.Maintenance = true
	}
	if c.cfg.RunWindow != "" {
		w, err := workers.ParseWindow(c.cfg.RunWindow)
		if err != nil {
			return nil, fmt.Errorf("--run-window: %w", err)
		}
		s.Run = []workers.Window{w}
	}
	return s, nil
}

// readToken reads the API token from a file or APBATCH_TOKEN.
func readToken(file string, getenv func(string) string) (string, error) {
	if file != "" {
		b, err := os.ReadFile(file)
		if err != nil {
			return "", fmt.Errorf("--token-file: %w", err)
		}
		if t := strings.TrimSpace(string(b)); t != "" {
			return t, nil
		}
		return "", fmt.Errorf("--token-file %s is empty", file)
	}
	if t := strings.TrimSpace(getenv("APBATCH_TOKEN")); t != "" {
		return t, nil
	}
	return "", errors.New("no API token: put it in a file given with --token-file, or in APBATCH_TOKEN")
}

// uploadConfig checks the file given with flag (if any) and stores it in
// the bucket under key, where the roles read the tenant's configuration.
func uploadConfig(ctx context.Context, st *pipeline.Runner, flag, path, key string, check func([]byte) error) error {
	if path == "" {
		return nil
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("%s: %w", flag, err)
	}
	if err := check(raw); err != nil {
		return fmt.Errorf("%s %s: %w", flag, path, err)
	}
	if _, err := st.S3.Put(ctx, key, bytes.NewReader(raw), int64(len(raw)), "application/yaml"); err != nil {
		return fmt.Errorf("%s: %w", flag, err)
	}
	return nil
}

// progressPrinter shows progress and an ETA on w: one updated line on a
// terminal, a line every 5 s otherwise. The ETA is the latest of the
// tenants'.
func (c *engineFlags) progressPrinter(w io.Writer, console bool, tenants []string) func(pipeline.Progress) {
	start := time.Now()
	var lastLine time.Time
	return func(pr pipeline.Progress) {
		if pr.Done && !console {
			return
		}
		eta := pipeline.MsgETAUnknown
		if pr.Lookups > 0 {
			// At the measured rate once answers come (it reflects the
			// shares of the budgets), at the configured one before.
			var d time.Duration
			for _, t := range tenants {
				td, ok := pr.ETA[t]
				if !ok {
					td = time.Duration(float64(pr.Left[t]) / (float64(c.cfg.Rate) * c.cfg.BudgetShare) * float64(time.Second))
				}
				d = max(d, td)
			}
			if e := pipeline.FormatETA(d + c.cfg.FlushInterval/2); e != "" {
				eta = e
			}
		}
		line := fmt.Sprintf(pipeline.MsgProgress, min(pr.Calls, pr.Lookups), pr.Lookups, pr.Published, pr.Rows, pipeline.FormatDuration(time.Since(start)))
		if !pr.Done {
			line += fmt.Sprintf(pipeline.MsgProgressETA, eta)
		}
		switch {
		case pr.Done:
			// The last state, then the line is left as it is.
			fmt.Fprintf(w, "\r%-100s\n", line)
		case pr.Rows == 0 && time.Since(start) < 2*time.Second:
			// Nothing known yet: the batch is being split.
		case console:
			// Rewritten five times a second at most.
			if time.Since(lastLine) >= 200*time.Millisecond {
				fmt.Fprintf(w, "\r%-100s", line)
				lastLine = time.Now()
			}
		case time.Since(lastLine) >= 5*time.Second:
			fmt.Fprintln(w, line)
			lastLine = time.Now()
		}
	}
}

// summary is the machine-readable summary of a run.
type summary struct {
	BatchID       string                   `json:"batch_id,omitempty"`
	RowsTotal     int64                    `json:"rows_total"`
	RowsByStatus  map[schemas.Status]int64 `json:"rows_by_status"`
	ProviderCalls int64                    `json:"provider_calls"`
	ResultFiles   []string                 `json:"result_files"`
	Batches       []batchSummary           `json:"batches"`
}

type batchSummary struct {
	BatchID      string                   `json:"batch_id"`
	Tenant       string                   `json:"tenant"`
	Campaign     string                   `json:"campaign"`
	Source       string                   `json:"source"`
	State        string                   `json:"state"`
	Error        string                   `json:"error,omitempty"`
	Checks       []schemas.Check          `json:"checks"`
	RowsTotal    int64                    `json:"rows_total"`
	RowsByStatus map[schemas.Status]int64 `json:"rows_by_status"`
	// ResultsByCheck counts results by check and status; RowsByStatus
	// sums them over the checks.
	ResultsByCheck map[schemas.Check]map[schemas.Status]int64 `json:"results_by_check"`
	ProviderCalls  int64                                      `json:"provider_calls"`
	CallsSaved     int64                                      `json:"calls_saved"`
	ResultFiles    []string                                   `json:"result_files"`
	Manifest       string                                     `json:"manifest,omitempty"`
	// Changes summarises the batch's diff.parquet, when it has one.
	Changes *schemas.ManifestChanges `json:"changes,omitempty"`
	// Corrections counts the lines to correct (invalid input).
	Corrections int `json:"corrections"`
	// Workbook is the path of the results workbook written, if any.
	Workbook string `json:"workbook,omitempty"`
}

// maxCorrections is how many lines to correct the summary lists.
const maxCorrections = 20

// report prints the summary, copies results, writes the results workbook
// of each published batch (workbook, "" for none; with several batches,
// one a roster beside it) and the JSON summary; it fails when a batch
// failed.
func (c *engineFlags) report(ctx context.Context, w io.Writer, st *pipeline.Runner, batches []ledger.Batch, workbook string) error {
	sum := summary{RowsByStatus: map[schemas.Status]int64{}, ResultFiles: []string{}}
	var failed []string
	exporter := &pipeline.Exporter{S3: st.S3, Ledger: st.Ledger, Encoding: c.encoding, Sheet: c.sheet, TmpDir: pipeline.TmpDir(c.cfg.DataDir)}
	corrections := map[string][]pipeline.Correction{}
	for _, b := range batches {
		counts, err := st.Ledger.Counts(ctx, b.ID)
		if err != nil {
			return err
		}
		parts, err := st.Ledger.Parts(ctx, b.ID)
		if err != nil {
			return err
		}
		// Published parts only: those still staged belong to no manifest.
		parts = pipeline.PublishedParts(parts)
		bs := batchSummary{BatchID: b.ID, Tenant: b.Tenant, Campaign: b.Campaign, Source: b.ObjectKey, State: b.State,
			Error: b.Error, Checks: b.CheckList(), RowsByStatus: counts.ByStatus, ResultsByCheck: counts.ByCheck,
			ProviderCalls: counts.ProviderCalls, CallsSaved: b.CallsSaved, ResultFiles: []string{}, Manifest: b.ManifestKey}
		if b.RowsTotal != nil {
			bs.RowsTotal = *b.RowsTotal
		}
		for _, p := range parts {
			bs.ResultFiles = append(bs.ResultFiles, "s3://"+st.S3.Bucket()+"/"+p.ObjectKey)
		}
		if b.State == ledger.StateFailed {
			failed = append(failed, fmt.Sprintf("%s : %s", filepath.Base(b.ObjectKey), b.Error))
		}
		var extra []string
		if b.ManifestKey != "" {
			m, err := pipeline.ReadManifest(ctx, st.S3, b.ManifestKey)
			if err != nil {
				return err
			}
			if bs.Changes = m.Changes; m.Changes != nil {
				extra = append(extra, m.Changes.Key)
			}
		}
		if b.Published() {
			if c.out != "" {
				if err := copyResults(ctx, st.S3, b, parts, extra, c.out); err != nil {
					return err
				}
			}
			if workbook != "" {
				path := workbook
				if len(batches) > 1 {
					path = strings.TrimSuffix(workbook, filepath.Ext(workbook)) + "-" + filepath.Base(b.ObjectKey) + ".xlsx"
				}
				if err := exportWorkbook(ctx, exporter, b.ID, path); err != nil {
					return err
				}
				if abs, err := filepath.Abs(path); err == nil {
					path = abs
				}
				bs.Workbook = path
			}
			cs, n, err := pipeline.Corrections(ctx, exporter, b.ID, maxCorrections)
			if err != nil {
				return err
			}
			corrections[b.ID], bs.Corrections = cs, n
		}
		sum.Batches = append(sum.Batches, bs)
		sum.RowsTotal += bs.RowsTotal
		sum.ProviderCalls += bs.ProviderCalls
		sum.ResultFiles = append(sum.ResultFiles, bs.ResultFiles...)
		for s, n := range bs.RowsByStatus {
			sum.RowsByStatus[s] += n
		}
	}
	if len(batches) == 1 {
		sum.BatchID = batches[0].ID
	}
	printSummary(w, sum, corrections, c.out)
	if c.summaryJSON != "" {
		body, err := json.MarshalIndent(sum, "", "  ")
		if err != nil {
			return fmt.Errorf("encode summary: %w", err)
		}
		if err := os.WriteFile(c.summaryJSON, append(body, '\n'), 0o640); err != nil {
			return fmt.Errorf("--summary-json : %w", err)
		}
	}
	if len(failed) > 0 {
		return fmt.Errorf(pipeline.ErrFmtRefusedFiles, len(failed), strings.Join(failed, "\n  "))
	}
	return nil
}

// exportWorkbook exports batch id as a workbook at path, through a
// temporary file beside it: a failed export leaves no half workbook.
func exportWorkbook(ctx context.Context, e *pipeline.Exporter, id, path string) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return fmt.Errorf(pipeline.ErrFmtWorkbook, path, err)
	}
	f, err := os.CreateTemp(dir, ".resultats-*.xlsx")
	if err != nil {
		return fmt.Errorf(pipeline.ErrFmtWorkbook, path, err)
	}
	_, err = e.Export(ctx, id, pipeline.FormatXLSX, f)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		os.Remove(f.Name())
		return fmt.Errorf(pipeline.ErrFmtWorkbook, path, err)
	}
	return nil
}

// printSummary writes, for each batch, its state, rows by status, calls,
// changes and lines to correct; then where the results are, the
// workbooks last.
func printSummary(w io.Writer, sum summary, corrections map[string][]pipeline.Correction, parquetDir string) {
	for i, b := range sum.Batches {
		if i > 0 {
			fmt.Fprintln(w)
		}
		fmt.Fprintf(w, pipeline.MsgSummaryFile+"\n", filepath.Base(b.Source), b.BatchID, pipeline.StateLabel(b.State))
		if b.Error != "" && b.State == ledger.StateFailed {
			fmt.Fprintf(w, pipeline.MsgSummaryRefused+"\n", b.Error)
			continue
		}
		if len(b.Checks) < 2 {
			fmt.Fprintf(w, pipeline.MsgSummaryRows+"\n", b.RowsTotal, pipeline.StatusCounts(b.RowsByStatus))
		} else {
			fmt.Fprintf(w, pipeline.MsgSummaryRowsByCheck+"\n", b.RowsTotal)
			for _, c := range b.Checks {
				fmt.Fprintf(w, pipeline.MsgSummaryByCheck+"\n", c.Label(), pipeline.StatusCounts(b.ResultsByCheck[c]))
			}
		}
		fmt.Fprintf(w, pipeline.MsgSummaryCalls+"\n", b.ProviderCalls, b.CallsSaved)
		if ch := b.Changes; ch != nil {
			fmt.Fprintf(w, pipeline.MsgSummaryChanges+"\n", ch.Total, ch.PreviousCampaign, pipeline.ChangeKindsLabel(ch.ByKind))
		}
		if cs := corrections[b.BatchID]; len(cs) > 0 {
			fmt.Fprintln(w, pipeline.MsgSummaryCorrections)
			for _, c := range cs {
				col := ""
				if c.Column != "" {
					col = fmt.Sprintf(pipeline.MsgSummaryColumn, c.Column)
				}
				fmt.Fprintf(w, pipeline.MsgSummaryCorrection+"\n", c.Line, col, c.Action)
			}
			if more := b.Corrections - len(cs); more > 0 {
				name := "resultats.xlsx"
				if b.Workbook != "" {
					name = filepath.Base(b.Workbook)
				}
				fmt.Fprintf(w, pipeline.MsgSummaryMore+"\n", more, name)
			}
		}
	}
	fmt.Fprintln(w)
	if parquetDir != "" {
		fmt.Fprintf(w, pipeline.MsgSummaryParquet+"\n", parquetDir)
	}
	for _, b := range sum.Batches {
		if b.Workbook != "" {
			fmt.Fprintf(w, pipeline.MsgSummaryWorkbook+"\n", b.Workbook)
		}
	}
}

// copyResults downloads a batch's parts, manifest and the extra keys (its
// diff) into dir/<batch_id>/.
func copyResults(ctx context.Context, client *s3.Client, b ledger.Batch, parts []ledger.Part, extra []string, dir string) error {
	dest := filepath.Join(dir, b.ID)
	if err := os.MkdirAll(dest, 0o750); err != nil {
		return fmt.Errorf("--out : %w", err)
	}
	keys := append([]string{b.ManifestKey}, extra...)
	for _, p := range parts {
		keys = append(keys, p.ObjectKey)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if err := download(ctx, client, k, filepath.Join(dest, filepath.Base(k))); err != nil {
			return err
		}
	}
	return nil
}

func download(ctx context.Context, client *s3.Client, key, path string) error {
	body, _, err := client.Open(ctx, key)
	if err != nil {
		return err
	}
	defer body.Close()
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("--out : %w", err)
	}
	if _, err := io.Copy(f, body); err != nil {
		f.Close()
		return fmt.Errorf("--out : écriture de %s : %w", path, err)
	}
	return f.Close()
}

package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/apbatch/apbatch/pipeline"
	"github.com/apbatch/apbatch/pipeline/ledger"
	"github.com/apbatch/apbatch/schemas"
	"github.com/apbatch/apbatch/workers"
)

// statusCommand is "apbatch status": where batches are, from the ledger.
type statusCommand struct {
	env
	fs *flag.FlagSet

	dataDir, dbURL    string
	watch, stallAfter time.Duration
	rate              int
}

func (c *statusCommand) flags() *flag.FlagSet {
	if c.fs != nil {
		return c.fs
	}
	fs := flag.NewFlagSet("status", flag.ContinueOnError)
	fs.SetOutput(c.stderr)
	fs.StringVar(&c.dataDir, "data-dir", "./apbatch-data", "folder of the embedded ledger (used when --db is not given)")
	fs.StringVar(&c.dbURL, "db", strings.TrimSpace(c.getenv("APBATCH_DB")), "ledger URL: postgres://... or sqlite://PATH (APBATCH_DB; default: the SQLite ledger in --data-dir)")
	fs.DurationVar(&c.watch, "watch", 0, "refresh every this long (e.g. 2s) until every batch shown is finished")
	fs.IntVar(&c.rate, "rate", workers.DefaultLimit, "the token's budget, calls per second, for the ETA before calls are measured")
	stallAfterFlag(fs, c.getenv, &c.stallAfter)
	c.fs = fs
	return fs
}

// Usage prints the command's help.
func (c *statusCommand) Usage() {
	printUsage(c.stdout, c.stderr, c.flags(), `Usage: apbatch status [flags] [BATCH...]

Shows, per batch (all of them by default), its state, results published
out of expected by status, the provider calls of the last minute against
the budget, and an ETA from the calls left at the measured rate. A batch
without progress for --stall-after (no split, part written, nor job held
by a worker, which includes waiting for a budget, a breaker or a run
window) is shown "bloqué", with the reason and what to do (apbatch cancel
BATCH stops it). It reads the ledger only, so it works from any machine
that reaches it.

Flags:
`)
}

// Run runs the command.
func (c *statusCommand) Run(ctx context.Context, args []string) error {
	fs := c.flags()
	fs.Usage = c.Usage
	if err := parseArgs(fs, args); err != nil {
		return err
	}
	store, err := openLedger(ctx, c.dbURL, c.dataDir)
	if err != nil {
		return err
	}
	defer store.Close()
	for {
		pending, err := c.print(ctx, c.stdout, store, fs.Args())
		if err != nil {
			return err
		}
		if c.watch <= 0 || !pending {
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(c.watch):
		}
		fmt.Fprintln(c.stdout)
	}
}

// print writes one table and reports whether a batch shown is unfinished.
func (c *statusCommand) print(ctx context.Context, w io.Writer, store *ledger.Store, ids []string) (bool, error) {
	var batches []ledger.Batch
	if len(ids) == 0 {
		all, err := store.Batches(ctx)
		if err != nil {
			return false, err
		}
		batches = all
	}
	for _, id := range ids {
		b, err := store.Batch(ctx, id)
		if errors.Is(err, ledger.ErrNotFound) {
			return false, fmt.Errorf(pipeline.ErrFmtNoBatch, id)
		}
		if err != nil {
			return false, err
		}
		batches = append(batches, b)
	}
	if len(batches) == 0 {
		fmt.Fprintln(w, pipeline.MsgStatusNone)
		return false, nil
	}
	now := time.Now()
	stalled, err := pipeline.Stalled(ctx, store, now, c.stallAfter)
	if err != nil {
		return false, err
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, pipeline.MsgStatusHeader)
	pending := false
	for _, b := range batches {
		counts, err := store.Counts(ctx, b.ID)
		if err != nil {
			return false, err
		}
		expected := "?"
		eta := "-"
		rate := "-"
		if b.RowsTotal != nil {
			total := *b.RowsTotal * int64(len(b.CheckList()))
			expected = fmt.Sprint(total)
			if b.State == ledger.StateSplit && b.LookupsTotal != nil && total > 0 {
				recent, err := store.CallsSince(ctx, b.ID, now.Add(-time.Minute))
				if err != nil {
					return false, err
				}
				r := float64(recent) / 60
				rate = fmt.Sprintf("%.1f/%d", r, c.rate)
				if r <= 0 {
					r = float64(c.rate)
				}
				left := float64(*b.LookupsTotal) * float64(total-counts.Rows) / float64(total)
				if eta = pipeline.FormatETA(time.Duration(left/r) * time.Second); eta == "" {
					eta = "-"
				}
			}
		}
		if b.State == ledger.StateCreated || b.State == ledger.StateSplit {
			pending = true
		}
		errs := counts.ByStatus[schemas.StatusProviderError] + counts.ByStatus[schemas.StatusUnauthorized]
		state := pipeline.StateLabel(b.State)
		if _, ok := stalled[b.ID]; ok {
			state = pipeline.MsgStatusStalled
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d/%s\t%d\t%d\t%d\t%d\t%s\t%s\n", b.ID, b.Tenant, filepath.Base(b.ObjectKey), state,
			counts.Rows, expected, counts.ByStatus[schemas.StatusOK],
			counts.ByStatus[schemas.StatusNotFound]+counts.ByStatus[schemas.StatusIdentityUnresolved],
			counts.ByStatus[schemas.StatusInvalidInput], errs, rate, eta)
	}
	if err := tw.Flush(); err != nil {
		return false, err
	}
	for _, b := range batches {
		switch reason, ok := stalled[b.ID]; {
		case ok:
			fmt.Fprintf(w, "\n"+pipeline.MsgStatusDetail+"\n", b.ID, filepath.Base(b.ObjectKey), pipeline.MsgStatusStalled, reason)
		case b.Error != "":
			fmt.Fprintf(w, "\n"+pipeline.MsgStatusDetail+"\n", b.ID, filepath.Base(b.ObjectKey), pipeline.StateLabel(b.State), b.Error)
		}
	}
	return pending, nil
}

// stallAfterHelp documents --stall-after, the watchdog's delay.
const stallAfterHelp = "report a batch stalled (bloqué) after this long without progress: no split, call, result, nor job held by a worker, " +
	"waits for a budget, a breaker or a run window included (APBATCH_STALL_AFTER)"

// stallAfterFlag registers --stall-after, the watchdog's delay, on the
// default of APBATCH_STALL_AFTER.
func stallAfterFlag(fs *flag.FlagSet, getenv func(string) string, d *time.Duration) {
	def := pipeline.DefaultStallAfter
	if v, err := time.ParseDuration(strings.TrimSpace(getenv("APBATCH_STALL_AFTER"))); err == nil && v > 0 {
		def = v
	}
	fs.DurationVar(d, "stall-after", def, stallAfterHelp)
}

// openLedger opens the ledger at db, or the SQLite ledger of dataDir when db
// is "" (see ledgerURL).
func openLedger(ctx context.Context, db, dataDir string) (*ledger.Store, error) {
	url, err := ledgerURL(db, dataDir)
	if err != nil {
		return nil, err
	}
	return ledger.Open(ctx, url)
}

// ledgerURL is --db, or the SQLite ledger of --data-dir, which must exist
// (commands that read the ledger should not create an empty one).
func ledgerURL(db, dataDir string) (string, error) {
	if db != "" {
		return db, nil
	}
	path := filepath.Join(dataDir, "ledger.db")
	if _, err := os.Stat(path); err != nil {
		return "", fmt.Errorf(pipeline.ErrFmtNoLedger, dataDir)
	}
	return "sqlite://" + path, nil
}

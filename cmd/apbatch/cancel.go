package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/apbatch/apbatch/pipeline"
	"github.com/apbatch/apbatch/pipeline/ledger"
	"github.com/apbatch/apbatch/pipeline/s3"
)

// cancelCommand is "apbatch cancel": stops a batch for good.
type cancelCommand struct {
	env
	fs *flag.FlagSet

	dataDir, db, s3Endpoint, s3Bucket string
	wait                              time.Duration
}

func (c *cancelCommand) flags() *flag.FlagSet {
	if c.fs != nil {
		return c.fs
	}
	fs := flag.NewFlagSet("cancel", flag.ContinueOnError)
	fs.SetOutput(c.stderr)
	fs.StringVar(&c.dataDir, "data-dir", "./apbatch-data", "folder of the embedded services (used when --db is not given)")
	fs.StringVar(&c.db, "db", strings.TrimSpace(c.getenv("APBATCH_DB")), "ledger URL of the role processes (APBATCH_DB; default: the SQLite ledger in --data-dir)")
	fs.StringVar(&c.s3Endpoint, "s3-endpoint", c.envOr("APBATCH_S3_ENDPOINT", ""), "with --db: S3 endpoint URL; empty for AWS (APBATCH_S3_ENDPOINT; keys in APBATCH_S3_ACCESS_KEY and APBATCH_S3_SECRET_KEY)")
	fs.StringVar(&c.s3Bucket, "s3-bucket", c.envOr("APBATCH_S3_BUCKET", "apbatch"), "with --db: the bucket (APBATCH_S3_BUCKET)")
	fs.DurationVar(&c.wait, "wait", 5*time.Second, "how long to let a running write role publish the batch before publishing it from here")
	c.fs = fs
	return fs
}

// Usage prints the command's help.
func (c *cancelCommand) Usage() {
	printUsage(c.stdout, c.stderr, c.flags(), `Usage: apbatch cancel [flags] BATCH

Cancels a batch that has not ended (see apbatch status): the workers make
no call for it any more (within a second; a call already sent ends), and
its results so far are published with a manifest whose state is
"cancelled": the rows checked before are in the results, the others have
none. A running write role publishes it; if none does within --wait, this
command publishes the parts already written. "apbatch run" without a file
never resumes a cancelled batch; upload the file again (run --force) to
verify it anew.

Flags:
`)
}

// Run runs the command.
func (c *cancelCommand) Run(ctx context.Context, args []string) error {
	fs := c.flags()
	fs.Usage = c.Usage
	if err := parseArgs(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		fmt.Fprintln(c.stderr, pipeline.MsgCancelUsage)
		return errUsage
	}
	id := fs.Arg(0)
	s3cfg := s3.Config{Endpoint: c.s3Endpoint, Bucket: c.s3Bucket, AccessKey: c.getenv("APBATCH_S3_ACCESS_KEY"), SecretKey: c.getenv("APBATCH_S3_SECRET_KEY")}
	dbURL, client, closeS3, err := dataServices(ctx, s3cfg, c.db, c.dataDir)
	if err != nil {
		return err
	}
	defer closeS3()
	store, err := ledger.Open(ctx, dbURL)
	if err != nil {
		return err
	}
	defer store.Close()
	b, err := pipeline.CancelBatch(ctx, client, store, id, c.wait)
	switch {
	case errors.Is(err, ledger.ErrNotFound):
		return fmt.Errorf(pipeline.ErrFmtNoBatch, id)
	case errors.Is(err, pipeline.ErrNotCancellable):
		return fmt.Errorf(pipeline.ErrFmtNotCancellable, id, pipeline.StateLabel(b.State))
	case err != nil:
		return err
	}
	counts, err := store.Counts(ctx, id)
	if err != nil {
		return err
	}
	expected := "?"
	if b.RowsTotal != nil {
		expected = fmt.Sprint(*b.RowsTotal * int64(len(b.CheckList())))
	}
	fmt.Fprintf(c.stdout, pipeline.MsgCancelled+"\n", id, filepath.Base(b.ObjectKey), counts.Rows, expected)
	if c.db == "" {
		fmt.Fprintf(c.stdout, pipeline.MsgCancelledResults+"\n", id)
	}
	return nil
}

// dataServices gives a command that is not a role the ledger's URL and a
// client of the bucket: with db, those of the role processes (s3cfg);
// without, the SQLite ledger and the S3 server of dataDir, started here
// with its credentials until the returned func is called.
func dataServices(ctx context.Context, s3cfg s3.Config, db, dataDir string) (string, *s3.Client, func(), error) {
	closeS3 := func() {}
	if db == "" {
		var err error
		if db, err = ledgerURL("", dataDir); err != nil {
			return "", nil, nil, err
		}
		creds, err := pipeline.LoadCredentials(dataDir)
		if err != nil {
			return "", nil, nil, err
		}
		srv := creds.S3Server(dataDir)
		if err := srv.Open(ctx); err != nil {
			return "", nil, nil, err
		}
		closeS3 = func() {
			cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
			defer cancel()
			srv.Close(cctx)
		}
		s3cfg = creds.S3Config(srv.URL())
	}
	client, err := s3.NewClient(ctx, s3cfg)
	if err != nil {
		closeS3()
		return "", nil, nil, err
	}
	return db, client, closeS3, nil
}

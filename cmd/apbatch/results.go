package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"sort"
	"time"

	"github.com/apbatch/apbatch/pipeline"
	"github.com/apbatch/apbatch/pipeline/ledger"
	"github.com/apbatch/apbatch/pipeline/s3"
)

// resultsCommand is "apbatch results": a batch's results for agents.
type resultsCommand struct {
	env
	fs *flag.FlagSet

	dataDir, format, out string
}

func (c *resultsCommand) flags() *flag.FlagSet {
	if c.fs != nil {
		return c.fs
	}
	fs := flag.NewFlagSet("results", flag.ContinueOnError)
	fs.SetOutput(c.stderr)
	fs.StringVar(&c.dataDir, "data-dir", "./apbatch-data", "folder of the embedded S3 server and ledger")
	fs.StringVar(&c.format, "format", "", "csv, xlsx or parquet (default: from -o's extension; another extension is refused)")
	fs.StringVar(&c.out, "o", "", "file to write (required)")
	c.fs = fs
	return fs
}

// Usage prints the command's help.
func (c *resultsCommand) Usage() {
	printUsage(c.stdout, c.stderr, c.flags(), `Usage: apbatch results [flags] -o FILE [BATCH]

Writes a finished batch's results for the agents who use them: every input
row with its original columns, then its results (status, quotient familial,
bracket and price, message for the rows to correct), as CSV (';', UTF-8 with
a BOM: Excel opens it as is) or as an Excel workbook; or the published
results alone as one Parquet file. BATCH defaults to the latest finished
batch.

Flags:
`)
}

// Run runs the command.
func (c *resultsCommand) Run(ctx context.Context, args []string) error {
	fs := c.flags()
	fs.Usage = c.Usage
	if err := parseArgs(fs, args); err != nil {
		return err
	}
	if c.out == "" {
		fmt.Fprintln(c.stderr, pipeline.MsgResultsUsage)
		return errUsage
	}
	format := c.format
	if format == "" {
		var err error
		if format, err = pipeline.FormatOf(c.out); err != nil {
			return err
		}
	}
	switch format {
	case pipeline.FormatCSV, pipeline.FormatXLSX, pipeline.FormatParquet:
	default:
		return fmt.Errorf(pipeline.ErrFmtFormat, format)
	}
	emb := &pipeline.Embedded{DataDir: c.dataDir}
	if _, err := ledgerURL("", c.dataDir); err != nil {
		return err
	}
	if err := emb.Open(ctx); err != nil {
		return err
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		emb.Close(cctx)
	}()
	store, err := ledger.Open(ctx, emb.LedgerURL())
	if err != nil {
		return err
	}
	defer store.Close()
	client, err := s3.NewClient(ctx, emb.S3())
	if err != nil {
		return err
	}
	id := fs.Arg(0)
	if id == "" {
		done, err := store.Batches(ctx, ledger.StateComplete)
		if err != nil {
			return err
		}
		if len(done) == 0 {
			return fmt.Errorf(pipeline.ErrFmtNoFinishedBatch, c.dataDir)
		}
		sort.Slice(done, func(i, j int) bool { return done[i].CompletedAt.Before(*done[j].CompletedAt) })
		id = done[len(done)-1].ID
	}
	f, err := os.Create(c.out)
	if err != nil {
		return fmt.Errorf("-o : %w", err)
	}
	tmpDir, err := pipeline.MakeTmpDir(c.dataDir)
	if err != nil {
		return err
	}
	n, err := (&pipeline.Exporter{S3: client, Ledger: store, TmpDir: tmpDir}).Export(ctx, id, format, f)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(c.out)
		return err
	}
	fmt.Fprintf(c.stdout, pipeline.MsgResultsWritten+"\n", n, id, c.out, format)
	return nil
}

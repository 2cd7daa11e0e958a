package main

import (
	"context"
	"flag"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/apbatch/apbatch/pipeline/ledger"
	"github.com/apbatch/apbatch/schemas"
)

// auditCommand is "apbatch audit": the audit trail of provider calls.
type auditCommand struct {
	env
	fs *flag.FlagSet

	dataDir, dbURL string
	months         int
}

func (c *auditCommand) flags() *flag.FlagSet {
	if c.fs != nil {
		return c.fs
	}
	fs := flag.NewFlagSet("audit", flag.ContinueOnError)
	fs.SetOutput(c.stderr)
	fs.StringVar(&c.dataDir, "data-dir", "./apbatch-data", "folder of the embedded ledger (used when --db is not given)")
	fs.StringVar(&c.dbURL, "db", strings.TrimSpace(c.getenv("APBATCH_DB")), "ledger URL: postgres://... or sqlite://PATH (APBATCH_DB; default: the SQLite ledger in --data-dir)")
	fs.IntVar(&c.months, "older-than-months", schemas.MinAuditMonths, "purge: delete call records older than this many months, every tenant alike (at least 36, the terms of use's traceability; \"apbatch purge\" applies each tenant's own policy)")
	c.fs = fs
	return fs
}

// Usage prints the command's help.
func (c *auditCommand) Usage() {
	printUsage(c.stdout, c.stderr, c.flags(), `Usage: apbatch audit purge [flags]

Every provider call is recorded in the ledger: time, tenant, batch, row,
check, route, HTTP status, error code, X-Request-ID, latency, attempt and a
keyed hash of the identity (never the identity). "purge" deletes records
older than the retention period and says how many it removed.

Flags:
`)
}

// Run runs the command.
func (c *auditCommand) Run(ctx context.Context, args []string) error {
	if len(args) == 0 || args[0] != "purge" {
		c.Usage()
		return errUsage
	}
	fs := c.flags()
	fs.Usage = c.Usage
	if err := fs.Parse(args[1:]); err != nil {
		return errUsage
	}
	if c.months < schemas.MinAuditMonths {
		return fmt.Errorf("--older-than-months %d: the terms of use of API Particulier require %d months of traceability; the trail holds no identity, keep it",
			c.months, schemas.MinAuditMonths)
	}
	url := c.dbURL
	if url == "" {
		url = "sqlite://" + filepath.Join(c.dataDir, "ledger.db")
	}
	store, err := ledger.Open(ctx, url)
	if err != nil {
		return err
	}
	defer store.Close()
	before := time.Now().AddDate(0, -c.months, 0)
	n, err := store.PurgeCalls(ctx, before)
	if err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "removed %d call records older than %s\n", n, before.UTC().Format("2006-01-02"))
	return nil
}

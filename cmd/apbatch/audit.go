package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/apbatch/apbatch/pipeline/csv"
	"github.com/apbatch/apbatch/pipeline/ledger"
	"github.com/apbatch/apbatch/schemas"
)

// auditCommand is "apbatch audit": the audit trail of provider calls.
type auditCommand struct {
	env
	fs *flag.FlagSet

	dataDir, dbURL, keyDir, checks string
	months, headerRow              int
	jsonOut                        bool
}

func (c *auditCommand) flags() *flag.FlagSet {
	if c.fs != nil {
		return c.fs
	}
	fs := flag.NewFlagSet("audit", flag.ContinueOnError)
	fs.SetOutput(c.stderr)
	fs.StringVar(&c.dataDir, "data-dir", "./apbatch-data", "folder of the embedded ledger (used when --db is not given)")
	fs.StringVar(&c.dbURL, "db", strings.TrimSpace(c.getenv("APBATCH_DB")), "ledger URL: postgres://... or sqlite://PATH (APBATCH_DB; default: the SQLite ledger in --data-dir)")
	fs.StringVar(&c.keyDir, "audit-key-dir", strings.TrimSpace(c.getenv("APBATCH_AUDIT_KEY_DIR")), "lookup: folder of audit.key, the key of the identity hashes (APBATCH_AUDIT_KEY_DIR; or the key in APBATCH_AUDIT_KEY; default: --data-dir)")
	fs.StringVar(&c.checks, "checks", "all", "lookup: the checks whose calls to look for, comma-separated, or all")
	fs.BoolVar(&c.jsonOut, "json", false, "lookup: print the calls as JSON lines")
	fs.IntVar(&c.headerRow, "header-row", 0, "lookup: line of FILE (row of the sheet) that names the columns (default: found, as apbatch run finds it)")
	fs.IntVar(&c.months, "older-than-months", schemas.MinAuditMonths, "purge: delete call records older than this many months, every tenant alike (at least 36, the terms of use's traceability; \"apbatch purge\" applies each tenant's own policy)")
	c.fs = fs
	return fs
}

// Usage prints the command's help.
func (c *auditCommand) Usage() {
	printUsage(c.stdout, c.stderr, c.flags(), `Usage: apbatch audit purge [flags]
       apbatch audit lookup [flags] FILE

Every provider call is recorded in the ledger: time, tenant, batch, row,
check, route, HTTP status, error code, X-Request-ID, latency, attempt and a
keyed hash of the identity (never the identity). "purge" deletes records
older than the retention period and says how many it removed.

"lookup" answers a citizen's access request (was this person looked up, by
whom, when): FILE holds the person(s), one row each, with the columns of a
roster (CSV or .xlsx, as apbatch run reads them). Each row's identity is
hashed with the audit key, as the workers did, for each check, and the calls
recorded under that hash are printed: time, tenant, batch, row, check,
route, HTTP status, error code and request id. The identity itself is never
printed. The audit key must be the one the workers used.

Flags:
`)
}

// Run runs the command.
func (c *auditCommand) Run(ctx context.Context, args []string) error {
	if len(args) > 0 && isHelp(args[0]) {
		c.Usage()
		return flag.ErrHelp
	}
	if len(args) == 0 || (args[0] != "purge" && args[0] != "lookup") {
		c.Usage()
		return errUsage
	}
	fs := c.flags()
	fs.Usage = c.Usage
	if err := parseArgs(fs, args[1:]); err != nil {
		return err
	}
	if args[0] == "lookup" {
		return c.lookup(ctx, fs.Args())
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

// lookup prints the audit trail of each person of the file.
func (c *auditCommand) lookup(ctx context.Context, files []string) error {
	if len(files) != 1 {
		fmt.Fprintln(c.stderr, "apbatch audit lookup: give one FILE holding the person(s) to look for")
		return errUsage
	}
	checks, err := schemas.ParseChecks(c.checks)
	if err != nil {
		return fmt.Errorf("--checks: %w", err)
	}
	key, err := readAuditKey(c.getenv, cmp.Or(c.keyDir, c.dataDir))
	if err != nil {
		return err
	}
	store, err := openLedger(ctx, c.dbURL, c.dataDir)
	if err != nil {
		return err
	}
	defer store.Close()
	f, err := os.Open(files[0])
	if err != nil {
		return fmt.Errorf("open %s: %w", files[0], err)
	}
	defer f.Close()
	r, err := csv.OpenFile(ctx, f, filepath.Base(files[0]), csv.Options{Now: time.Now(), Checks: checks, HeaderRow: c.headerRow})
	if err != nil {
		return err
	}
	enc := json.NewEncoder(c.stdout)
	for {
		row, err := r.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		for i, in := range row.Checks {
			if problems := row.Invalid(i); len(problems) > 0 {
				fmt.Fprintf(c.stderr, "row %d, %s: not looked for: %s\n", row.Number, in.Check, strings.Join(problems, " ; "))
				continue
			}
			all, err := store.CallsOf(ctx, schemas.IdentityHMAC(key, in.Identity))
			if err != nil {
				return err
			}
			calls := slices.DeleteFunc(all, func(call schemas.CallRecord) bool { return call.Check != string(in.Check) })
			if !c.jsonOut {
				fmt.Fprintf(c.stdout, "row %d (line %d), %s: %d call(s)\n", row.Number, row.Line, in.Check, len(calls))
			}
			for _, call := range calls {
				if c.jsonOut {
					call.IdentityHMAC = ""
					if err := enc.Encode(struct {
						Row int64 `json:"file_row"`
						schemas.CallRecord
					}{row.Number, call}); err != nil {
						return err
					}
					continue
				}
				fmt.Fprintf(c.stdout, "  %s  tenant %s  batch %s  row %d  %s  HTTP %d %s  request %s\n",
					call.At.UTC().Format(time.RFC3339), call.Tenant, call.BatchID, call.RowNumber, call.Route,
					call.HTTPStatus, call.ErrorCode, call.RequestID)
			}
		}
	}
}

// readAuditKey reads the audit key from APBATCH_AUDIT_KEY or dir/audit.key,
// never making one: a new key would find nothing.
func readAuditKey(getenv func(string) string, dir string) ([]byte, error) {
	if strings.TrimSpace(getenv("APBATCH_AUDIT_KEY")) == "" {
		if _, err := os.Stat(filepath.Join(dir, "audit.key")); err != nil {
			return nil, fmt.Errorf("no audit key in %s: give the workers' key in APBATCH_AUDIT_KEY or --audit-key-dir", dir)
		}
	}
	return auditKey(getenv, dir)
}

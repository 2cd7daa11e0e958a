package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/apbatch/apbatch/pipeline"
	"github.com/apbatch/apbatch/pipeline/ledger"
	"github.com/apbatch/apbatch/pipeline/s3"
	"github.com/apbatch/apbatch/schemas"
	"github.com/apbatch/apbatch/workers/sandbox"
)

// Markers around the README's data-team queries.
const (
	queriesStart = "<!-- data-team-queries"
	queriesEnd   = "<!-- /data-team-queries -->"
)

// readmeQueries returns the fenced sql blocks of the README between the
// data-team markers, in order.
func readmeQueries(t *testing.T, readme string) []string {
	t.Helper()
	raw, err := os.ReadFile(readme)
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(raw), queriesStart)
	if !ok {
		t.Fatalf("%s has no %q marker", readme, queriesStart)
	}
	section, _, ok = strings.Cut(section, queriesEnd)
	if !ok {
		t.Fatalf("%s has no %q marker", readme, queriesEnd)
	}
	var blocks []string
	for {
		_, rest, ok := strings.Cut(section, "```sql\n")
		if !ok {
			return blocks
		}
		q, next, ok := strings.Cut(rest, "\n```")
		if !ok {
			t.Fatalf("unterminated sql block in %s: %s", readme, rest)
		}
		blocks = append(blocks, q)
		section = next
	}
}

// duckDBQueries runs blocks with DuckDB from folder dir, in one session,
// and returns the rows of each block's last statement.
func duckDBQueries(t *testing.T, dir string, blocks []string) [][]map[string]any {
	t.Helper()
	in, err := json.Marshal(blocks)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("node", duckDBScript, dir)
	cmd.Stdin = bytes.NewReader(in)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("duckdb: %v\n%s", err, stderr.String())
	}
	var got [][]map[string]any
	if err := json.Unmarshal(out, &got); err != nil || len(got) != len(blocks) {
		t.Fatalf("duckdb answered %d results (%v):\n%s", len(got), err, out)
	}
	return got
}

var duckDBScript, _ = filepath.Abs("../../pipeline/parquet/testdata/duckdb/query.mjs")

// mirrorBucket copies every object of the bucket of data dir into dir,
// keys as paths, as "aws s3 sync" does.
func mirrorBucket(t *testing.T, ctx context.Context, data, dir string) {
	t.Helper()
	emb := &pipeline.Embedded{DataDir: data}
	if err := emb.Open(ctx); err != nil {
		t.Fatal(err)
	}
	defer emb.Close(context.WithoutCancel(ctx))
	client, err := s3.NewClient(ctx, emb.S3())
	if err != nil {
		t.Fatal(err)
	}
	objs, err := client.List(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range objs {
		body, _, err := client.Open(ctx, o.Key)
		if err != nil {
			t.Fatal(err)
		}
		raw, err := io.ReadAll(body)
		body.Close()
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, filepath.FromSlash(o.Key))
		if err := os.MkdirAll(filepath.Dir(p), 0o750); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, raw, 0o640); err != nil {
			t.Fatal(err)
		}
	}
}

// TestDataTeamQueries runs the README's DuckDB queries, exactly as written
// there, over a copy of a bucket holding a tenant's batch of campaign
// 2026-09, its refresh for 2027-09 (with changes, so a diff), a re-run of
// the same roster in 2027-09 (--force) and an unfinished batch (stopped
// mid-way, its parts staged): they read published rows only, each once per
// batch; the latest view keeps the re-run, not the refresh it follows; the
// diff is the latest batch's.
func TestDataTeamQueries(t *testing.T) {
	if _, err := exec.LookPath("node"); err != nil {
		t.Skip("node not installed: DuckDB queries skipped")
	}
	if _, err := os.Stat("../../pipeline/parquet/testdata/duckdb/node_modules/@duckdb/node-api"); err != nil {
		t.Skip("DuckDB checker not installed: run npm ci --prefix pipeline/parquet/testdata/duckdb")
	}
	blocks := readmeQueries(t, "../../README.md")
	if len(blocks) != 4 {
		t.Fatalf("README has %d data-team queries, want 4 (all results, the latest views, latest per campaign, the diff)", len(blocks))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	const tenant, rows = "ville-de-lyon", 40
	dir := t.TempDir()
	pop := sandbox.NewPopulation(rows, 11)
	api, tok := fastSandbox(t, pop)
	tokenFile := filepath.Join(dir, "token")
	if err := os.WriteFile(tokenFile, []byte(tok), 0o600); err != nil {
		t.Fatal(err)
	}
	var csv bytes.Buffer
	if err := pop.WriteCSV(&csv); err != nil {
		t.Fatal(err)
	}
	roster, other := filepath.Join(dir, "cantine.csv"), filepath.Join(dir, "centre-loisirs.csv")
	for _, p := range []string{roster, other} {
		if err := os.WriteFile(p, csv.Bytes(), 0o640); err != nil {
			t.Fatal(err)
		}
	}
	data := filepath.Join(dir, "data")
	provider := []string{"--data-dir", data, "--provider-url", api.URL, "--token-file", tokenFile,
		"--no-maintenance-skip", "--flush-interval", "300ms"}
	batchOf := func(args ...string) string {
		t.Helper()
		sumPath := filepath.Join(dir, "summary.json")
		args = append(append([]string{args[0], "--summary-json", sumPath}, provider...), args[1:]...)
		if code, out, errs := runApbatch(t, ctx, args...); code != 0 {
			t.Fatalf("%v: %d\n%s\n%s", args, code, out, errs)
		}
		sum := readSummary(t, sumPath)
		if len(sum.Batches) != 1 || sum.Batches[0].State != ledger.StateComplete {
			t.Fatalf("%v: %+v", args, sum)
		}
		return sum.Batches[0].BatchID
	}
	run := []string{"run", "--tenant", tenant, "--recipient", "13002526500013", "--tariff", "../../deploy/samples/tarifs-cantine.yaml"}
	first := batchOf(append(run, "--campaign", "2026-09", roster)...)

	// Three CNAF families cross a bracket before the refresh.
	changed := 0
	for i := 0; i < pop.Len() && changed < 3; i++ {
		per := pop.Person(i)
		if per.Outcome != sandbox.OutcomeCNAF {
			continue
		}
		qf := 1200
		if per.QF > 700 {
			qf = 300
		}
		if err := pop.Amend(i, sandbox.Change{QF: &qf}); err != nil {
			t.Fatal(err)
		}
		changed++
	}
	refreshed := batchOf("refresh", "--campaign", "2027-09")
	rerun := batchOf(append(run, "--campaign", "2027-09", "--force", roster)...)

	// Another roster, stopped once some of its results are written.
	store, err := ledger.Open(ctx, "sqlite://"+filepath.Join(data, "ledger.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	stopped, stop := context.WithCancel(ctx)
	unfinished := ""
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		defer stop()
		for stopped.Err() == nil {
			time.Sleep(100 * time.Millisecond)
			bs, err := store.TenantBatches(ctx, tenant, "2027-09")
			if err != nil {
				continue
			}
			for _, b := range bs {
				if path.Base(b.ObjectKey) != "centre-loisirs.csv" {
					continue
				}
				if c, err := store.Counts(ctx, b.ID); err == nil && c.Rows > 0 {
					unfinished = b.ID
					return
				}
			}
		}
	}()
	slow := append(append([]string{}, run...), "--campaign", "2027-09", "--rate", "1")
	code, _, stderr := runApbatch(t, stopped, append(append(slow, provider...), other)...)
	stop()
	<-watched
	if code == 0 || unfinished == "" {
		t.Fatalf("the unfinished batch: exit %d, batch %q\n%s", code, unfinished, stderr)
	}
	if b, err := store.Batch(ctx, unfinished); err != nil || b.Published() {
		t.Fatalf("unfinished batch %+v: %v", b, err)
	}

	bucket := filepath.Join(dir, "bucket")
	mirrorBucket(t, ctx, data, bucket)
	staged, _ := filepath.Glob(filepath.Join(bucket, "staging", tenant, "2027-09", unfinished, "part-*.parquet"))
	if len(staged) == 0 {
		t.Fatal("the unfinished batch has no staged part")
	}
	if _, err := os.Stat(filepath.Join(bucket, "results", tenant, "2027-09", unfinished)); !os.IsNotExist(err) {
		t.Fatalf("the unfinished batch has a results folder: %v", err)
	}
	if _, err := os.Stat(filepath.Join(bucket, filepath.FromSlash(pipeline.DiffKey(tenant, "2027-09", refreshed)))); err != nil {
		t.Fatalf("the refreshed batch has no diff: %v", err)
	}
	published := map[string]string{first: "2026-09", refreshed: "2027-09", rerun: "2027-09"}

	got := duckDBQueries(t, bucket, blocks)

	// All published results of the tenant: each batch's rows, once each.
	seen := map[string]bool{}
	perBatch := map[string]int{}
	for _, r := range got[0] {
		id := fmt.Sprint(r["batch_id"])
		if published[id] == "" || r["campaign"] != published[id] {
			t.Fatalf("row of batch %s (campaign %v), not published", id, r["campaign"])
		}
		k := fmt.Sprint(id, r["row_number"], r["check_name"])
		if seen[k] {
			t.Errorf("result %s read twice", k)
		}
		seen[k] = true
		perBatch[id]++
	}
	for id := range published {
		if perBatch[id] != rows {
			t.Errorf("batch %s: %d results read, want %d", id, perBatch[id], rows)
		}
	}

	// The latest batch per campaign: the re-run in 2027-09, with the
	// ledger's counts.
	counts := map[string]map[string]int64{}
	for _, r := range got[2] {
		id, campaign := fmt.Sprint(r["batch_id"]), fmt.Sprint(r["campaign"])
		if want := map[string]string{"2026-09": first, "2027-09": rerun}[campaign]; id != want {
			t.Fatalf("latest batch of %s: %s, want %s (first %s, refreshed %s, re-run %s)", campaign, id, want, first, refreshed, rerun)
		}
		if r["check_name"] != string(schemas.CheckQuotientFamilial) {
			t.Errorf("latest: check %v", r["check_name"])
		}
		n, err := strconv.ParseInt(fmt.Sprint(r["results"]), 10, 64)
		if err != nil {
			t.Fatal(err)
		}
		if counts[id] == nil {
			counts[id] = map[string]int64{}
		}
		counts[id][fmt.Sprint(r["status"])] = n
	}
	for _, id := range []string{first, rerun} {
		want, err := store.Counts(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if len(counts[id]) != len(want.ByStatus) {
			t.Errorf("latest %s: by status %v, ledger %v", id, counts[id], want.ByStatus)
		}
		for s, n := range want.ByStatus {
			if counts[id][string(s)] != n {
				t.Errorf("latest %s: %d %s, ledger %d", id, counts[id][string(s)], s, n)
			}
		}
	}

	// The diff: the re-run's against the first campaign, not the
	// refreshed batch's.
	if len(got[3]) != changed {
		t.Fatalf("diff: %d rows, want %d: %v", len(got[3]), changed, got[3])
	}
	for _, r := range got[3] {
		if r["batch_id"] != rerun || r["previous_batch_id"] != first || r["previous_campaign"] != "2026-09" ||
			r["change"] != schemas.ChangeTranche || r["old_tranche"] == r["new_tranche"] {
			t.Errorf("diff row %v", r)
		}
	}
}

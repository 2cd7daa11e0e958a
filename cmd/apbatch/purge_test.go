package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/apbatch/apbatch/pipeline"
	"github.com/apbatch/apbatch/pipeline/ledger"
	"github.com/apbatch/apbatch/pipeline/s3"
	"github.com/apbatch/apbatch/schemas"
)

// purgeFixture is a bucket and a ledger holding two tenants' data of
// various ages, each object and row marked with whether the policy keeps it
// at purgeNow.
type purgeFixture struct {
	t      *testing.T
	ctx    context.Context
	s3dir  string
	client *s3.Client
	store  *ledger.Store
	raw    *sqlx.DB
	// keep says, for every object key, whether it must survive the purge.
	keep map[string]bool
	// keepBatch says, for every batch id, whether it must stay in the ledger.
	keepBatch map[string]bool
}

var purgeNow = time.Date(2030, 6, 15, 0, 0, 0, 0, time.UTC)

func day(y int, m time.Month, d int) time.Time { return time.Date(y, m, d, 12, 0, 0, 0, time.UTC) }

// put stores an object whose LastModified is at.
func (f *purgeFixture) put(key string, at time.Time, keep bool, body string) s3.ObjectInfo {
	f.t.Helper()
	if _, err := f.client.Put(f.ctx, key, strings.NewReader(body), int64(len(body)), ""); err != nil {
		f.t.Fatal(err)
	}
	if err := os.Chtimes(filepath.Join(f.s3dir, "buckets", "apbatch", filepath.FromSlash(key)), at, at); err != nil {
		f.t.Fatal(err)
	}
	// The folder backend recomputes the ETag of an object whose time
	// changed (from the wrong file, but once): read the one it keeps.
	obj, err := f.client.Head(f.ctx, key)
	if err != nil {
		f.t.Fatal(err)
	}
	f.keep[key] = keep
	return obj
}

// batch records a batch of the roster at key (uploaded at end), in state,
// ended at end, with results of rows rows when complete, and its input
// object when input is set.
func (f *purgeFixture) batch(tenant, campaign, file, state string, end time.Time, keepBatch, keepInput, keepResults, input bool) ledger.Batch {
	f.t.Helper()
	key := pipeline.IncomingKey{Tenant: tenant, Campaign: campaign, File: file}.String()
	version := "gone-" + file
	if input {
		version = f.put(key, end, keepInput, "roster of "+file).ETag
	}
	b, _, err := f.store.CreateBatch(f.ctx, ledger.Batch{Tenant: tenant, Campaign: campaign, Checks: "quotient_familial",
		Bucket: "apbatch", ObjectKey: key, ObjectVersion: version, Recipient: "13002526500013"})
	if err != nil {
		f.t.Fatal(err)
	}
	switch state {
	case ledger.StateComplete:
		if err := f.store.SetSplit(f.ctx, b.ID, 2, 2, 0); err != nil {
			f.t.Fatal(err)
		}
		part := pipeline.PartKey(tenant, campaign, b.ID, 1)
		f.put(part, end, keepResults, "parquet")
		err := f.store.RecordPart(f.ctx, ledger.Part{BatchID: b.ID, PartNo: 1, ObjectKey: part, Rows: 2, Size: 7}, []ledger.RowStatus{
			{RowNumber: 1, Check: schemas.CheckQuotientFamilial, Status: schemas.StatusOK},
			{RowNumber: 2, Check: schemas.CheckQuotientFamilial, Status: schemas.StatusNotFound}})
		if err != nil {
			f.t.Fatal(err)
		}
		manifest := pipeline.ResultFolder(tenant, campaign, b.ID) + pipeline.ManifestName
		f.put(manifest, end, keepResults, "{}")
		if err := f.store.Complete(f.ctx, b.ID, manifest); err != nil {
			f.t.Fatal(err)
		}
	case ledger.StateSplit:
		if err := f.store.SetSplit(f.ctx, b.ID, 2, 2, 0); err != nil {
			f.t.Fatal(err)
		}
	case ledger.StateFailed:
		if err := f.store.Fail(f.ctx, b.ID, "fichier illisible"); err != nil {
			f.t.Fatal(err)
		}
	}
	// The ledger stamps batches with its own clock: move them in time.
	var completed *time.Time
	if state == ledger.StateComplete || state == ledger.StateFailed {
		completed = &end
	}
	if _, err := f.raw.Exec(f.raw.Rebind(`UPDATE batches SET created_at = ?, completed_at = ? WHERE id = ?`), end.Add(-time.Hour), completed, b.ID); err != nil {
		f.t.Fatal(err)
	}
	f.keepBatch[b.ID] = keepBatch
	return b
}

// purgeReports runs apbatch purge and decodes its JSON report by tenant.
func purgeReports(t *testing.T, ctx context.Context, environ map[string]string, args ...string) map[string]pipeline.PurgeReport {
	t.Helper()
	args = append([]string{"purge", "--json", "--now", purgeNow.Format(time.RFC3339)}, args...)
	code, stdout, stderr := runApbatchEnv(t, ctx, environ, args...)
	if code != 0 {
		t.Fatalf("%v: exit %d\n%s%s", args, code, stdout, stderr)
	}
	var reps []pipeline.PurgeReport
	if err := json.Unmarshal([]byte(stdout), &reps); err != nil {
		t.Fatalf("report: %v\n%s", err, stdout)
	}
	out := map[string]pipeline.PurgeReport{}
	for _, r := range reps {
		out[r.Tenant] = r
	}
	return out
}

// TestPurge: two tenants with different policies, objects and ledger rows
// of every age; after "apbatch purge" nothing older than a policy is left,
// nothing younger is gone, the report counts what went, and a second purge
// removes nothing. On SQLite, and on a fresh PostgreSQL database when
// APBATCH_TEST_POSTGRES_URL is set.
func TestPurge(t *testing.T) {
	for name, dbURL := range chaosLedgers(t, t.TempDir()) {
		t.Run(name, func(t *testing.T) { testPurge(t, dbURL) })
	}
}

func testPurge(t *testing.T, dbURL string) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	dir := t.TempDir()
	srv := &s3.Server{Dir: filepath.Join(dir, "s3")}
	if err := srv.Open(ctx); err != nil {
		t.Fatal(err)
	}
	defer srv.Close(context.Background())
	client, err := s3.NewClient(ctx, pipeline.EmbeddedS3(srv.URL()))
	if err != nil {
		t.Fatal(err)
	}
	if err := client.EnsureBucket(ctx); err != nil {
		t.Fatal(err)
	}
	store, err := ledger.Open(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	driver, dsn := "pgx", dbURL
	if path, ok := strings.CutPrefix(dbURL, "sqlite://"); ok {
		driver, dsn = "sqlite", "file:"+path+"?_time_format=sqlite&_pragma=busy_timeout(5000)"
	}
	raw, err := sqlx.Open(driver, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	f := &purgeFixture{t: t, ctx: ctx, s3dir: srv.Dir, client: client, store: store, raw: raw, keep: map[string]bool{}, keepBatch: map[string]bool{}}

	// Every tenant: unprocessed uploads 20 days. ville-a: the defaults
	// otherwise (keep-latest, results and audit 36 months: cutoff
	// 2027-06-15; unprocessed: 2030-05-26). ville-b: quarantine 10 days
	// (2030-06-05), results 12 months (2029-06-15), audit 48 months
	// (2026-06-15), unprocessed 5 days (2030-06-10). ville-ab keeps
	// unprocessed uploads a year: a purge of ville-a that strayed into
	// its prefix would remove them.
	f.put(pipeline.DefaultRetentionKey, day(2020, 1, 1), true, "inputs: {unprocessed_days: 20}\n")
	f.put(pipeline.RetentionKey("ville-b"), day(2020, 1, 1), true,
		"inputs: {after_publish: quarantine, days: 10, unprocessed_days: 5}\nresults: {months: 12}\naudit: {months: 48}\n")
	f.put(pipeline.RetentionKey("ville-ab"), day(2020, 1, 1), true, "inputs: {unprocessed_days: 365}\n")

	//         tenant     campaign file           state                  end               batch  input  results  input?
	f.batch("ville-a", "c1", "expired.csv", ledger.StateComplete, day(2027, 1, 1), false, false, false, true)
	f.batch("ville-a", "c1", "older.csv", ledger.StateComplete, day(2029, 1, 1), true, false, true, true)
	f.batch("ville-a", "c1", "latest.csv", ledger.StateComplete, day(2030, 1, 1), true, true, true, true)
	f.batch("ville-a", "c2", "latest.csv", ledger.StateComplete, day(2028, 1, 1), true, true, true, true)
	running := f.batch("ville-a", "c3", "running.csv", ledger.StateSplit, day(2030, 1, 2), true, true, true, true)
	f.batch("ville-a", "c3", "refused-old.csv", ledger.StateFailed, day(2030, 5, 1), true, false, true, true)
	f.batch("ville-a", "c3", "refused-new.csv", ledger.StateFailed, day(2030, 6, 10), true, true, true, true)
	f.batch("ville-a", "c3", "ancient-running.csv", ledger.StateCreated, day(2026, 1, 1), false, false, true, true)
	f.batch("ville-a", "c1", "no-input.csv", ledger.StateComplete, day(2027, 2, 1), false, false, false, false)
	f.put("incoming/ville-a/c4/never-ingested.csv", day(2030, 5, 1), false, "x")
	f.put("incoming/ville-a/c4/just-dropped.csv", day(2030, 6, 14), true, "x")
	f.put("incoming/ville-a/c4/sub/too-deep.csv", day(2030, 1, 1), false, "x")
	f.put("results/ville-a/c1/bunknown/part-00001.parquet", day(2026, 1, 1), false, "orphan")
	f.put("results/ville-a/c1/bunknown2/part-00001.parquet", day(2029, 1, 1), true, "orphan")

	b1 := f.batch("ville-b", "c", "expired.csv", ledger.StateComplete, day(2029, 1, 1), false, false, false, true)
	b2 := f.batch("ville-b", "c", "recent.csv", ledger.StateComplete, day(2030, 6, 10), true, false, true, true)
	f.batch("ville-b", "c", "past-days.csv", ledger.StateComplete, day(2030, 5, 1), true, false, true, true)
	b4 := f.batch("ville-b", "c", "quarantined-old.csv", ledger.StateComplete, day(2030, 5, 20), true, false, true, false)
	b5 := f.batch("ville-b", "c", "quarantined-new.csv", ledger.StateComplete, day(2030, 6, 12), true, false, true, false)
	f.put(pipeline.QuarantineKey(pipeline.IncomingKey{Tenant: "ville-b", Campaign: "c", File: "quarantined-old.csv"}, b4.ID), day(2030, 5, 21), false, "x")
	f.put(pipeline.QuarantineKey(pipeline.IncomingKey{Tenant: "ville-b", Campaign: "c", File: "quarantined-new.csv"}, b5.ID), day(2030, 6, 12), true, "x")
	f.put("quarantine/ville-b/c/bunknown/x.csv", day(2030, 6, 1), false, "x")
	// Diffs go with their batch; under staging/, a running batch's parts
	// stay, what a published or failed batch left there goes, and so do
	// staged parts the ledger does not know once a day old.
	f.put(pipeline.DiffKey("ville-b", "c", b1.ID), day(2029, 1, 1), false, "d1")
	f.put(pipeline.DiffKey("ville-b", "c", b2.ID), day(2030, 6, 10), true, "d2")
	f.put(pipeline.StagingPartKey("ville-a", "c3", running.ID, 1), day(2030, 1, 2), true, "staged")
	f.put(pipeline.StagingPartKey("ville-b", "c", b2.ID, 2), day(2030, 6, 10), false, "left")
	f.put(pipeline.StagingPartKey("ville-b", "c", "bunknown", 1), day(2030, 6, 10), false, "old")
	f.put(pipeline.StagingPartKey("ville-b", "c", "bunknown2", 1), purgeNow.Add(-time.Hour), true, "new")
	f.put("incoming/ville-b/c/never-ingested.csv", day(2030, 6, 8), false, "x")

	f.put("incoming/ville-ab/c/never-ingested.csv", day(2030, 1, 1), true, "x")
	f.put("incoming/Ville-C/c/refused-tenant.csv", day(2029, 1, 1), false, "x")
	f.put("incoming/loose.csv", day(2030, 6, 14), true, "x")

	calls := []schemas.CallRecord{
		{At: day(2027, 1, 1), Tenant: "ville-a"}, {At: day(2028, 1, 1), Tenant: "ville-a"},
		{At: day(2026, 1, 1), Tenant: "ville-b"}, {At: day(2027, 1, 1), Tenant: "ville-b"}, {At: day(2026, 1, 1), Tenant: "ville-b"},
	}
	if err := store.RecordCalls(ctx, calls); err != nil {
		t.Fatal(err)
	}
	// The quarantine move: recent.csv goes there; the rest of the list is
	// what survives besides.
	f.keep[pipeline.QuarantineKey(pipeline.IncomingKey{Tenant: "ville-b", Campaign: "c", File: "recent.csv"}, b2.ID)] = true

	environ := map[string]string{"APBATCH_DB": dbURL, "APBATCH_S3_ENDPOINT": srv.URL(), "APBATCH_S3_ACCESS_KEY": "k", "APBATCH_S3_SECRET_KEY": "s"}
	before := f.objects()

	// A dry run, and a purge of ville-a alone, touch nothing of the others.
	dry := purgeReports(t, ctx, environ, "--dry-run")
	if got := f.objects(); !equalSets(got, before) {
		t.Fatalf("dry run changed the bucket: %v → %v", before, got)
	}
	only := purgeReports(t, ctx, environ, "--tenant", "ville-a")
	if len(only) != 1 || only["ville-a"].Results != dry["ville-a"].Results || only["ville-a"].Ledger != dry["ville-a"].Ledger {
		t.Fatalf("--tenant ville-a reported %+v; the dry run said %+v", only, dry["ville-a"])
	}
	afterA := f.objects()
	for key, keep := range f.keep {
		if !strings.Contains(key, "/ville-a/") && !keep && !contains(afterA, key) {
			t.Fatalf("--tenant ville-a removed %s", key)
		}
	}
	reps := purgeReports(t, ctx, environ)

	// What is left is exactly what the policies keep.
	got := f.objects()
	for key, keep := range f.keep {
		if keep != contains(got, key) {
			t.Errorf("%s: kept %v, want %v", key, contains(got, key), keep)
		}
	}
	for _, key := range got {
		if _, known := f.keep[key]; !known {
			t.Errorf("unexpected object %s", key)
		}
	}
	for id, keep := range f.keepBatch {
		_, err := store.Batch(ctx, id)
		if kept := err == nil; kept != keep {
			t.Errorf("batch %s: kept %v, want %v (%v)", id, kept, keep, err)
		}
	}
	var left []schemas.CallRecord
	if err := raw.Select(&left, `SELECT tenant, at FROM calls ORDER BY tenant, at`); err != nil {
		t.Fatal(err)
	}
	if len(left) != 2 || !left[0].At.Equal(day(2028, 1, 1)) || !left[1].At.Equal(day(2027, 1, 1)) {
		t.Errorf("calls left: %+v", left)
	}

	// The report counts what went (ville-a's results and ledger rows went
	// in the --tenant run; the dry run counted them).
	a, b := dry["ville-a"], reps["ville-b"]
	want := map[string][2]int64{
		"ville-a results":       {a.Results.Objects, 5},
		"ville-a inputs":        {reps["ville-a"].Inputs.Objects + only["ville-a"].Inputs.Objects, 6},
		"ville-a batches":       {a.Ledger.Batches, 3},
		"ville-a result rows":   {a.Ledger.ResultRows, 4},
		"ville-a calls":         {a.Ledger.Calls, 1},
		"ville-b results":       {b.Results.Objects, 5},
		"ville-b results bytes": {b.Results.Bytes, 9 + 2 + 4 + 3},
		"ville-b inputs":        {b.Inputs.Objects, 3},
		"ville-b quarantined":   {b.Quarantined.Objects, 1},
		"ville-b quarantine":    {b.Quarantine.Objects, 2},
		"ville-b batches":       {b.Ledger.Batches, 1},
		"ville-b calls":         {b.Ledger.Calls, 2},
		"ville-ab inputs":       {reps["ville-ab"].Inputs.Objects, 0},
		"stray inputs":          {reps[""].Inputs.Objects, 1},
	}
	for what, c := range want {
		if c[0] != c[1] {
			t.Errorf("%s: reported %d, want %d", what, c[0], c[1])
		}
	}
	if reps["ville-b"].Policy.Audit.Months != 48 || reps["ville-a"].Policy.Inputs.UnprocessedDays != 20 {
		t.Errorf("policies: %+v %+v", reps["ville-a"].Policy, reps["ville-b"].Policy)
	}

	// Again: nothing more goes.
	for tenant, r := range purgeReports(t, ctx, environ) {
		if r.Inputs.Objects+r.Quarantined.Objects+r.Quarantine.Objects+r.Results.Objects != 0 || r.Ledger != (ledger.PurgeCounts{}) {
			t.Errorf("second purge of %q removed %+v", tenant, r)
		}
	}
	if again := f.objects(); !equalSets(again, got) {
		t.Errorf("second purge changed the bucket: %v → %v", got, again)
	}
}

// objects lists the bucket's keys, sorted.
func (f *purgeFixture) objects() []string {
	f.t.Helper()
	objs, err := f.client.List(f.ctx, "")
	if err != nil {
		f.t.Fatal(err)
	}
	keys := make([]string, 0, len(objs))
	for _, o := range objs {
		keys = append(keys, o.Key)
	}
	sort.Strings(keys)
	return keys
}

func contains(keys []string, k string) bool {
	i := sort.SearchStrings(keys, k)
	return i < len(keys) && keys[i] == k
}

func equalSets(a, b []string) bool {
	return bytes.Equal([]byte(strings.Join(a, "\n")), []byte(strings.Join(b, "\n")))
}

func TestPurge_Refusals(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"purge", "--data-dir", dir, "--tenant", "../x"}, "--tenant"},
		{[]string{"purge", "--data-dir", dir, "--now", "demain"}, "--now"},
		{[]string{"purge", "--data-dir", dir}, "aucun registre"},
		{[]string{"audit", "purge", "--data-dir", dir, "--older-than-months", "12"}, "36 months"},
	} {
		code, stdout, stderr := runApbatch(t, ctx, tc.args...)
		if code == 0 || !strings.Contains(stderr, tc.want) {
			t.Errorf("%v: exit %d, want a refusal mentioning %q\n%s%s", tc.args, code, tc.want, stdout, stderr)
		}
	}
}

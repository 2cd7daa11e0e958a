package main

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode"

	_ "github.com/jackc/pgx/v5/stdlib" // registers driver "pgx"
	kafkago "github.com/segmentio/kafka-go"

	"github.com/apbatch/apbatch/pipeline"
	"github.com/apbatch/apbatch/pipeline/kafka"
	"github.com/apbatch/apbatch/pipeline/ledger"
	pq "github.com/apbatch/apbatch/pipeline/parquet"
	"github.com/apbatch/apbatch/pipeline/s3"
	"github.com/apbatch/apbatch/schemas"
	"github.com/apbatch/apbatch/workers/sandbox"
)

// submit drops a file in the bucket and publishes its upload event, as an
// S3 notification bridge does; it retries while the roles are still
// creating the bucket and topics. It returns the batch id.
func submit(t *testing.T, ctx context.Context, kafkaAddr, s3Addr, key string, body []byte) string {
	t.Helper()
	client, err := s3.NewClient(ctx, s3.Config{Endpoint: "http://" + s3Addr, Bucket: "apbatch", AccessKey: "k", SecretKey: "s"})
	if err != nil {
		t.Fatal(err)
	}
	var obj s3.ObjectInfo
	for {
		if obj, err = client.Put(ctx, key, bytes.NewReader(body), int64(len(body)), "text/csv"); err == nil {
			break
		}
		if ctx.Err() != nil {
			t.Fatal(err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	ev, _ := json.Marshal(schemas.S3Event{Records: []schemas.S3EventRecord{{EventName: "ObjectCreated:Put",
		S3: schemas.S3Entity{Bucket: schemas.S3Bucket{Name: "apbatch"}, Object: schemas.S3Object{Key: key, ETag: obj.ETag}}}}})
	w := kafka.NewWriter(kafka.Config{Brokers: []string{kafkaAddr}}, schemas.TopicUploads)
	defer w.Close()
	for {
		if err = w.WriteMessages(ctx, kafkago.Message{Key: []byte("apbatch"), Value: ev}); err == nil {
			break
		}
		if ctx.Err() != nil {
			t.Fatal(err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	return ledger.BatchID("apbatch", key, pipeline.ObjectVersion(obj.VersionID, obj.ETag, ""))
}

// waitComplete polls the ledger until the batch is complete.
func waitComplete(t *testing.T, ctx context.Context, store *ledger.Store, id string) ledger.Batch {
	t.Helper()
	for {
		b, err := store.Batch(ctx, id)
		if err == nil && b.State == ledger.StateComplete {
			return b
		}
		if ctx.Err() != nil {
			t.Fatalf("batch %s not complete: %+v %v", id, b, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// buildApbatch builds the command into dir, for tests running it as OS
// processes.
func buildApbatch(t *testing.T, ctx context.Context, dir string) string {
	t.Helper()
	bin := filepath.Join(dir, "apbatch")
	if out, err := exec.CommandContext(ctx, "go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	return bin
}

// chaosLedgers returns the ledgers the chaos test runs on: SQLite in dir,
// and a fresh PostgreSQL database when APBATCH_TEST_POSTGRES_URL is set.
func chaosLedgers(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{"sqlite": "sqlite://" + filepath.Join(dir, "ledger.db")}
	admin := os.Getenv("APBATCH_TEST_POSTGRES_URL")
	if admin == "" {
		t.Log("APBATCH_TEST_POSTGRES_URL unset: chaos on PostgreSQL not run")
		return out
	}
	db, err := sql.Open("pgx", admin)
	if err != nil {
		t.Fatal(err)
	}
	name := fmt.Sprintf("apbatch_chaos_%d", rand.Uint32())
	if _, err := db.Exec("CREATE DATABASE " + name); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		db.Exec("DROP DATABASE IF EXISTS " + name + " WITH (FORCE)")
		db.Close()
	})
	u, err := url.Parse(admin)
	if err != nil {
		t.Fatal(err)
	}
	u.Path = "/" + name
	out["postgres"] = u.String()
	return out
}

// processes starts and kills the OS processes of a test.
type processes struct {
	t       *testing.T
	bin     string
	environ []string
	logs    *syncBuffer
	mu      sync.Mutex
	procs   map[string]*exec.Cmd
}

func newProcesses(t *testing.T, bin string, environ []string) *processes {
	ps := &processes{t: t, bin: bin, environ: environ, logs: &syncBuffer{}, procs: map[string]*exec.Cmd{}}
	t.Cleanup(func() {
		ps.mu.Lock()
		defer ps.mu.Unlock()
		for _, p := range ps.procs {
			p.Process.Kill()
			p.Wait()
		}
		if t.Failed() {
			t.Logf("processes' logs:\n%s", ps.logs.String())
		}
	})
	return ps
}

// start runs the command as the process called name.
func (ps *processes) start(name string, args ...string) *exec.Cmd {
	cmd := exec.Command(ps.bin, args...)
	cmd.Env = ps.environ
	cmd.Stdout, cmd.Stderr = io.Discard, ps.logs
	if err := cmd.Start(); err != nil {
		ps.t.Fatalf("start %s: %v", name, err)
	}
	ps.mu.Lock()
	ps.procs[name] = cmd
	ps.mu.Unlock()
	return cmd
}

// kill sends SIGKILL to the process called name and waits for its end.
func (ps *processes) kill(name string) {
	ps.mu.Lock()
	p := ps.procs[name]
	ps.mu.Unlock()
	p.Process.Kill()
	p.Wait()
}

// chaosSandbox starts the sandbox of rows people as a process; it returns
// its address, a token for it and the population.
func chaosSandbox(t *testing.T, ctx context.Context, ps *processes, rows int) (string, string, *sandbox.Population) {
	t.Helper()
	apiAddr := freeAddr(t)
	ps.start("sandbox", "sandbox", "--addr", apiAddr, "--population", fmt.Sprint(rows), "--seed", "11", "--rate", "100000",
		"--ip-limit", "100000000", "--log-level", "error")
	waitListening(t, ctx, apiAddr)
	tok, _ := sandbox.Token([]byte(sandbox.DefaultSecret), sandbox.AllScopes, time.Now().Add(time.Hour))
	return apiAddr, tok, sandbox.NewPopulation(rows, 11)
}

// checkExactlyOnce checks that each row of pop was published once (seen
// maps row numbers to statuses; dup is the first row seen twice, or 0) with
// the status the population gives, and logs the provider calls made twice.
func checkExactlyOnce(t *testing.T, pop *sandbox.Population, rows int, seen map[int64]string, dup int64, apiAddr, what string) {
	t.Helper()
	if dup != 0 {
		t.Fatalf("row %d published twice", dup)
	}
	if len(seen) != rows {
		t.Fatalf("%d rows published, want %d", len(seen), rows)
	}
	for i := 0; i < rows; i++ {
		want := string(schemas.StatusOK)
		switch pop.Person(i).Outcome {
		case sandbox.OutcomeNoFile:
			want = string(schemas.StatusNotFound)
		case sandbox.OutcomeUnknown:
			want = string(schemas.StatusIdentityUnresolved)
		}
		// row_number is the file's line: the header is line 1.
		if got := seen[int64(i+2)]; got != want {
			t.Fatalf("row %d: %s, want %s", i+2, got, want)
		}
	}
	resp, err := http.Get("http://" + apiAddr + "/_sandbox/stats")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var stats sandbox.Stats
	if err := json.NewDecoder(resp.Body).Decode(&stats); err != nil {
		t.Fatal(err)
	}
	var calls int64
	for _, tk := range stats.Tokens {
		calls += tk.Requests
	}
	t.Logf("%d rows, %s, %d provider calls: %.2f %% made twice", rows, what, calls, float64(calls-int64(rows))*100/float64(rows))
}

// personalDataIn returns what the logs hold of a secret or of an identity
// of the population's first rows people: family names, first names (3
// letters or more) or birth dates as YYYY-MM-DD, DD/MM/YYYY or YYYYMMDD,
// compared word by word.
func personalDataIn(logs string, pop *sandbox.Population, rows int, secrets ...string) []string {
	var found []string
	for _, s := range secrets {
		if s != "" && strings.Contains(logs, s) {
			found = append(found, "a secret")
		}
	}
	personal := map[string]string{}
	for i := 0; i < rows; i++ {
		p := pop.Person(i)
		words := strings.Fields(p.NomNaissance)
		for _, pr := range p.Prenoms {
			words = append(words, strings.Fields(pr)...)
		}
		for _, w := range words {
			if len(w) >= 3 {
				personal[w] = "a name"
			}
		}
		for _, layout := range []string{"2006-01-02", "02/01/2006", "20060102"} {
			personal[p.Birth.Format(layout)] = "a birth date"
		}
	}
	isWord := func(r rune) bool { return unicode.IsLetter(r) || unicode.IsDigit(r) || r == '/' || r == '-' }
	for _, w := range strings.FieldsFunc(logs, func(r rune) bool { return !isWord(r) }) {
		if kind, ok := personal[w]; ok {
			found = append(found, kind)
		}
	}
	return found
}

// assertNoPersonalData fails when the logs hold a secret or an identity
// value (see personalDataIn).
func assertNoPersonalData(t *testing.T, logs string, pop *sandbox.Population, rows int, secrets ...string) {
	t.Helper()
	if found := personalDataIn(logs, pop, rows, secrets...); len(found) > 0 {
		t.Errorf("the logs (%d bytes) hold %d personal values or secrets, first %s", len(logs), len(found), found[0])
	}
}

func TestPersonalDataIn(t *testing.T) {
	pop := sandbox.NewPopulation(10, 3)
	p := pop.Person(4)
	for _, tc := range []struct {
		logs string
		want int
	}{
		{`{"level":"info","batch_id":"b1","rows":10,"time":"2026-12-02T00:00:00Z"}`, 0},
		{`{"msg":"lookup of ` + p.NomNaissance + `"}`, 1},
		{`{"birth":"` + p.Birth.Format("02/01/2006") + `"}`, 1},
		{`{"birth":` + p.Birth.Format("20060102") + `}`, 1},
		{`token=s3cr3t`, 1},
	} {
		if got := personalDataIn(tc.logs, pop, 10, "s3cr3t"); len(got) != tc.want {
			t.Errorf("%s: found %v, want %d", tc.logs, got, tc.want)
		}
	}
}

// TestChaos runs the roles as separate OS processes on the standalone
// broker and S3 server, kills a random role with SIGKILL every 1 to 3 s for
// 30 s (restarting it), then checks that every one of 20,000 rows is
// published exactly once with the status the sandbox's population gives,
// and reports the provider calls made twice. It runs on SQLite, and on
// PostgreSQL when APBATCH_TEST_POSTGRES_URL is set.
func TestChaos(t *testing.T) {
	if testing.Short() {
		t.Skip("chaos test: several processes for a minute or two")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	dir := t.TempDir()
	bin := buildApbatch(t, ctx, dir)
	for name, db := range chaosLedgers(t, dir) {
		t.Run(name, func(t *testing.T) { chaosRoles(t, ctx, bin, db) })
	}
}

func chaosRoles(t *testing.T, ctx context.Context, bin, db string) {
	const rows = 20000
	ctx, cancel := context.WithTimeout(ctx, 7*time.Minute)
	defer cancel()
	dir := t.TempDir()
	kafkaAddr, s3Addr := freeAddr(t), freeAddr(t)
	ps := newProcesses(t, bin, nil)
	apiAddr, tok, pop := chaosSandbox(t, ctx, ps, rows)
	ps.environ = append(os.Environ(), "APBATCH_KAFKA_BROKERS="+kafkaAddr, "APBATCH_S3_ENDPOINT=http://"+s3Addr,
		"APBATCH_S3_ACCESS_KEY=k", "APBATCH_S3_SECRET_KEY=s", "APBATCH_DB="+db,
		"APBATCH_PROVIDER_URL=http://"+apiAddr, "APBATCH_TOKEN="+tok, "APBATCH_RECIPIENT=13002526500013",
		"APBATCH_AUDIT_KEY="+strings.Repeat("cd", 32), "APBATCH_KEK="+strings.Repeat("5a", 32), "APBATCH_NO_MAINTENANCE_SKIP=1", "APBATCH_LOG_LEVEL=warn")
	ps.start("broker", "broker", "--data-dir", filepath.Join(dir, "kafka"), "--addr", kafkaAddr)
	ps.start("s3", "s3", "--dir", filepath.Join(dir, "s3"), "--addr", s3Addr)
	waitListening(t, ctx, kafkaAddr, s3Addr)
	roles := map[string][]string{
		"ingest": {"ingest"},
		"work":   {"work", "--rate", "2000", "--ip-limit", "100000000", "--in-flight", "64"},
		"write":  {"write", "--flush-interval", "1s"},
	}
	for name, args := range roles {
		ps.start(name, args...)
	}
	var roster bytes.Buffer
	if err := pop.WriteCSV(&roster); err != nil {
		t.Fatal(err)
	}
	id := submit(t, ctx, kafkaAddr, s3Addr, "incoming/ville/2026-09/chaos.csv", roster.Bytes())

	// Chaos: SIGKILL a random role every 1 to 3 s for 30 s, restart it.
	names := []string{"ingest", "work", "write"}
	kills := map[string]int{}
	end := time.Now().Add(30 * time.Second)
	for time.Now().Before(end) {
		time.Sleep(time.Second + time.Duration(rand.IntN(2000))*time.Millisecond)
		name := names[rand.IntN(len(names))]
		ps.kill(name)
		kills[name]++
		ps.start(name, roles[name]...)
	}
	store, err := ledger.Open(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	b := waitComplete(t, ctx, store, id)

	// Every row once, in the published parts, with its status.
	client, err := s3.NewClient(ctx, s3.Config{Endpoint: "http://" + s3Addr, Bucket: "apbatch", AccessKey: "k", SecretKey: "s"})
	if err != nil {
		t.Fatal(err)
	}
	mb, _, err := client.Open(ctx, b.ManifestKey)
	if err != nil {
		t.Fatal(err)
	}
	var m schemas.Manifest
	err = json.NewDecoder(mb).Decode(&m)
	mb.Close()
	if err != nil {
		t.Fatal(err)
	}
	seen := make(map[int64]string, rows)
	var dup int64
	for _, f := range m.Files {
		body, _, err := client.Open(ctx, f.Key)
		if err != nil {
			t.Fatal(err)
		}
		raw, _ := io.ReadAll(body)
		body.Close()
		got, err := pq.Decode(raw)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range got {
			if _, ok := seen[r.RowNumber]; ok && dup == 0 {
				dup = r.RowNumber
			}
			seen[r.RowNumber] = r.Status
		}
	}
	checkExactlyOnce(t, pop, rows, seen, dup, apiAddr, fmt.Sprintf("kills %v", kills))
	// Published: the manifest's parts are all results/ holds of the batch,
	// and nothing is left under staging/, whatever the kills interrupted.
	objs, err := client.List(ctx, pipeline.ResultFolder(b.Tenant, b.Campaign, b.ID))
	if err != nil {
		t.Fatal(err)
	}
	if len(objs) != len(m.Files)+1 {
		t.Errorf("results/ holds %d objects of the batch, the manifest lists %d parts", len(objs), len(m.Files))
	}
	if left, err := client.List(ctx, pipeline.StagingPrefix); err != nil || len(left) != 0 {
		t.Errorf("left under staging/: %d objects (%v)", len(left), err)
	}
	assertNoPersonalData(t, ps.logs.String(), pop, rows, tok, strings.Repeat("cd", 32))
	if strings.Contains(ps.logs.String(), "panic") {
		t.Errorf("a role panicked:\n%s", ps.logs.String())
	}
}

// TestChaos_KillRun kills "apbatch run" itself (everything in one process:
// broker, S3, ledger, roles) with SIGKILL twice mid-batch, resumes it each
// time with "apbatch run --data-dir" and no file, and checks the same: every
// row published once with its status, and few calls made twice.
func TestChaos_KillRun(t *testing.T) {
	if testing.Short() {
		t.Skip("chaos test: several processes for a minute")
	}
	const rows = 20000
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	dir := t.TempDir()
	bin := buildApbatch(t, ctx, dir)
	ps := newProcesses(t, bin, nil)
	apiAddr, tok, pop := chaosSandbox(t, ctx, ps, rows)
	ps.environ = append(os.Environ(), "APBATCH_TOKEN="+tok)
	roster := filepath.Join(dir, "roster.csv")
	f, err := os.Create(roster)
	if err != nil {
		t.Fatal(err)
	}
	if err := pop.WriteCSV(f); err != nil {
		t.Fatal(err)
	}
	f.Close()
	data, out := filepath.Join(dir, "data"), filepath.Join(dir, "out")
	args := []string{"run", "--data-dir", data, "--provider-url", "http://" + apiAddr, "--recipient", "13002526500013",
		"--no-maintenance-skip", "--rate", "2000", "--ip-limit", "100000000", "--in-flight", "64", "--flush-interval", "1s",
		"--log-level", "debug"}
	args = append(args, "--campaign", "2026-09")
	// Killed 2 to 5 s into a run, twice; each restart is the same command,
	// which resumes the batch of the same file.
	for kill := 0; kill < 2; kill++ {
		ps.start("run", append(args, roster)...)
		time.Sleep(2*time.Second + time.Duration(rand.IntN(3000))*time.Millisecond)
		ps.kill("run")
	}
	last := exec.CommandContext(ctx, bin, append(args, "--out", out, roster)...)
	last.Env = ps.environ
	lastLogs, err := last.CombinedOutput()
	if err != nil {
		t.Fatalf("last run: %v\n%s", err, lastLogs)
	}
	seen := make(map[int64]string, rows)
	var dup int64
	err = filepath.WalkDir(out, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !strings.HasSuffix(p, ".parquet") {
			return err
		}
		raw, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		got, err := pq.Decode(raw)
		for _, r := range got {
			if _, ok := seen[r.RowNumber]; ok && dup == 0 {
				dup = r.RowNumber
			}
			seen[r.RowNumber] = r.Status
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	checkExactlyOnce(t, pop, rows, seen, dup, apiAddr, "run killed twice")
	assertNoPersonalData(t, ps.logs.String()+string(lastLogs), pop, rows, tok)
}

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

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

// TestChaos runs the roles as separate OS processes on the standalone
// broker and S3 server, kills a random role with SIGKILL every 1 to 3 s for
// 30 s (restarting it), then checks that every one of 20,000 rows is
// published exactly once with the status the sandbox's population gives,
// and reports the provider calls made twice.
func TestChaos(t *testing.T) {
	if testing.Short() {
		t.Skip("chaos test: several processes for a minute or two")
	}
	const rows = 20000
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	dir := t.TempDir()
	bin := filepath.Join(dir, "apbatch")
	if out, err := exec.CommandContext(ctx, "go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	kafkaAddr, s3Addr, apiAddr := freeAddr(t), freeAddr(t), freeAddr(t)
	tok, _ := sandbox.Token([]byte(sandbox.DefaultSecret), sandbox.AllScopes, time.Now().Add(time.Hour))
	environ := append(os.Environ(), "APBATCH_KAFKA_BROKERS="+kafkaAddr, "APBATCH_S3_ENDPOINT=http://"+s3Addr,
		"APBATCH_S3_ACCESS_KEY=k", "APBATCH_S3_SECRET_KEY=s", "APBATCH_DB=sqlite://"+filepath.Join(dir, "ledger.db"),
		"APBATCH_PROVIDER_URL=http://"+apiAddr, "APBATCH_TOKEN="+tok, "APBATCH_RECIPIENT=13002526500013",
		"APBATCH_AUDIT_KEY="+strings.Repeat("cd", 32), "APBATCH_NO_MAINTENANCE_SKIP=1", "APBATCH_LOG_LEVEL=error")
	var mu sync.Mutex
	procs := map[string]*exec.Cmd{}
	logs := &syncBuffer{}
	start := func(name string, args ...string) {
		cmd := exec.Command(bin, args...)
		cmd.Env = environ
		cmd.Stdout, cmd.Stderr = io.Discard, logs
		if err := cmd.Start(); err != nil {
			t.Fatalf("start %s: %v", name, err)
		}
		mu.Lock()
		procs[name] = cmd
		mu.Unlock()
	}
	defer func() {
		mu.Lock()
		defer mu.Unlock()
		for _, p := range procs {
			p.Process.Kill()
			p.Wait()
		}
	}()
	start("sandbox", "sandbox", "--addr", apiAddr, "--population", fmt.Sprint(rows), "--seed", "11", "--rate", "100000",
		"--ip-limit", "100000000", "--log-level", "error")
	start("broker", "broker", "--data-dir", filepath.Join(dir, "kafka"), "--addr", kafkaAddr)
	start("s3", "s3", "--dir", filepath.Join(dir, "s3"), "--addr", s3Addr)
	waitListening(t, ctx, apiAddr, kafkaAddr, s3Addr)
	roles := map[string][]string{
		"ingest": {"ingest"},
		"work":   {"work", "--rate", "2000", "--ip-limit", "100000000", "--in-flight", "64"},
		"write":  {"write", "--flush-interval", "1s"},
	}
	for name, args := range roles {
		start(name, args...)
	}

	pop := sandbox.NewPopulation(rows, 11)
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
		mu.Lock()
		p := procs[name]
		mu.Unlock()
		p.Process.Kill()
		p.Wait()
		kills[name]++
		start(name, roles[name]...)
	}
	store, err := ledger.Open(ctx, "sqlite://"+filepath.Join(dir, "ledger.db"))
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
			if _, dup := seen[r.RowNumber]; dup {
				t.Fatalf("row %d published twice", r.RowNumber)
			}
			seen[r.RowNumber] = r.Status
		}
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
		if got := seen[int64(i+1)]; got != want {
			t.Fatalf("row %d: %s, want %s", i+1, got, want)
		}
	}
	// Calls made twice: the calls in flight when a worker was killed.
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
	t.Logf("%d rows, kills %v, %d provider calls: %.2f %% made twice", rows, kills, calls, float64(calls-rows)*100/rows)
	if strings.Contains(logs.String(), "panic") {
		t.Errorf("a role panicked:\n%s", logs.String())
	}
}

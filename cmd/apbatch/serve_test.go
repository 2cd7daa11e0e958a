package main

import (
	"bytes"
	"context"
	"net"
	"net/http/httptest"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/apbatch/apbatch/pipeline"
	"github.com/apbatch/apbatch/pipeline/kafka"
	"github.com/apbatch/apbatch/pipeline/ledger"
	"github.com/apbatch/apbatch/pipeline/s3"
	"github.com/apbatch/apbatch/workers/sandbox"
)

// freeAddr returns a local address nothing listens on.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// waitListening waits until something accepts connections on each addr.
func waitListening(t *testing.T, ctx context.Context, addrs ...string) {
	t.Helper()
	for _, addr := range addrs {
		for {
			c, err := net.Dial("tcp", addr)
			if err == nil {
				c.Close()
				break
			}
			if ctx.Err() != nil {
				t.Fatalf("nothing listens on %s", addr)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

// TestServe_RolesAsProcesses runs the broker, the S3 server and the three
// roles as separate commands configured by APBATCH_* variables, as they
// run as separate processes, and verifies a file dropped in the bucket.
func TestServe_RolesAsProcesses(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dir := t.TempDir()
	kafkaAddr, s3Addr := freeAddr(t), freeAddr(t)
	pop := sandbox.NewPopulation(60, 4)
	api, tok := fastSandbox(t, pop)
	environ := rolesEnviron(dir, kafkaAddr, s3Addr, api.URL, tok)
	var wg sync.WaitGroup
	logs := map[string]*syncBuffer{}
	start := func(args ...string) {
		wg.Add(1)
		errb := &syncBuffer{}
		logs[args[0]] = errb
		go func() {
			defer wg.Done()
			var out syncBuffer
			e := env{stdout: &out, stderr: errb, getenv: func(k string) string { return environ[k] }}
			if code := runMain(ctx, e, args); code != 0 && ctx.Err() == nil {
				t.Errorf("%v: exit %d\n%s%s", args, code, out.String(), errb.String())
			}
		}()
	}
	defer func() { cancel(); wg.Wait() }()
	start("broker", "--data-dir", filepath.Join(dir, "kafka"), "--addr", kafkaAddr)
	start("s3", "--dir", filepath.Join(dir, "s3"), "--addr", s3Addr)
	waitListening(t, ctx, kafkaAddr, s3Addr)
	start("ingest")
	start("work", "--in-flight", "8")
	start("write", "--flush-interval", "500ms")

	// A town drops its roster in the bucket; the notification reaches the
	// uploads topic (what MinIO or an S3 → Kafka bridge does).
	var roster bytes.Buffer
	if err := pop.WriteCSV(&roster); err != nil {
		t.Fatal(err)
	}
	id := submit(t, ctx, kafkaAddr, s3Addr, pipeline.IncomingKey{Tenant: "ville", Campaign: "2026-09", File: "cantine.csv"}.String(), roster.Bytes())
	store, err := ledger.Open(ctx, environ["APBATCH_DB"])
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	b := waitComplete(t, ctx, store, id)
	if counts, _ := store.Counts(ctx, id); counts.Rows != 60 || b.ManifestKey == "" {
		for name, l := range logs {
			t.Logf("%s:\n%s", name, l.String())
		}
		t.Fatalf("batch complete with %d results, manifest %q", counts.Rows, b.ManifestKey)
	}

	// The September refresh submits the roster again to the running
	// roles, once.
	refresh := func() string {
		var out, errb syncBuffer
		e := env{stdout: &out, stderr: &errb, getenv: func(k string) string { return environ[k] }}
		if code := runMain(ctx, e, []string{"refresh", "--campaign", "2027-09"}); code != 0 {
			t.Fatalf("refresh: exit %d\n%s%s", code, out.String(), errb.String())
		}
		return out.String()
	}
	out := refresh()
	m := regexp.MustCompile(`ville: new batch (b[0-9a-f]+) for campaign 2027-09`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("refresh output:\n%s", out)
	}
	nb := waitComplete(t, ctx, store, m[1])
	if counts, _ := store.Counts(ctx, nb.ID); counts.Rows != 60 || nb.Checks != b.Checks || nb.Recipient != b.Recipient {
		t.Fatalf("refreshed batch %+v: %d results", nb, counts.Rows)
	}
	if out := refresh(); !strings.Contains(out, "ville: already refreshed for campaign 2027-09: batch "+nb.ID) {
		t.Fatalf("second refresh output:\n%s", out)
	}
	if bs, _ := store.TenantBatches(ctx, "ville", "2027-09"); len(bs) != 1 {
		t.Fatalf("%d batches in 2027-09", len(bs))
	}
}

// embeddedServices opens a Kafka-protocol broker and an S3 server on
// dir/s3 for a test; both stop when it ends.
func embeddedServices(t *testing.T, ctx context.Context, dir string) (*kafka.Broker, *s3.Server) {
	t.Helper()
	broker := &kafka.Broker{}
	if err := broker.Open(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { broker.Close() })
	srv := &s3.Server{Dir: filepath.Join(dir, "s3")}
	if err := srv.Open(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close(context.Background()) })
	return broker, srv
}

// rolesEnviron is the APBATCH_* environment of role processes on the
// broker at kafkaAddr, the S3 server at s3Addr, a SQLite ledger in dir and
// the sandbox at apiURL with its token tok.
func rolesEnviron(dir, kafkaAddr, s3Addr, apiURL, tok string) map[string]string {
	return map[string]string{
		"APBATCH_KAFKA_BROKERS": kafkaAddr, "APBATCH_S3_ENDPOINT": "http://" + s3Addr, "APBATCH_S3_ACCESS_KEY": "k",
		"APBATCH_S3_SECRET_KEY": "s", "APBATCH_DB": "sqlite://" + filepath.Join(dir, "ledger.db"),
		"APBATCH_PROVIDER_URL": apiURL, "APBATCH_TOKEN": tok, "APBATCH_RECIPIENT": "13002526500013",
		"APBATCH_AUDIT_KEY": strings.Repeat("ab", 32), "APBATCH_KEK": strings.Repeat("5a", 32), "APBATCH_NO_MAINTENANCE_SKIP": "1", "APBATCH_LOG_LEVEL": "warn",
	}
}

// fastSandbox serves the sandbox of pop, with budgets no test reaches, for
// the test; it returns the server and a token with every scope.
func fastSandbox(t *testing.T, pop *sandbox.Population) (*httptest.Server, string) {
	t.Helper()
	sb, err := sandbox.New(sandbox.Config{Population: pop, Limits: sandbox.Limits{PerSecond: 1000, IPPerMinute: 1 << 20}})
	if err != nil {
		t.Fatal(err)
	}
	api := httptest.NewServer(sb)
	t.Cleanup(api.Close)
	tok, err := sandbox.Token([]byte(sandbox.DefaultSecret), sandbox.AllScopes, time.Now().Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	return api, tok
}

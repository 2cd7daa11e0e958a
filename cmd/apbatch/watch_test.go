package main

import (
	"bytes"
	"context"
	"io"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/apbatch/apbatch/pipeline"
	"github.com/apbatch/apbatch/pipeline/ledger"
	"github.com/apbatch/apbatch/pipeline/s3"
	"github.com/apbatch/apbatch/workers/sandbox"
)

// TestServe_WatchWithoutNotifications: with --watch-interval, a file put
// in a bucket that notifies nobody becomes a complete batch.
func TestServe_WatchWithoutNotifications(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	dir := t.TempDir()
	broker, srv := embeddedServices(t, ctx, dir)
	pop := sandbox.NewPopulation(30, 3)
	api, tok := fastSandbox(t, pop)
	environ := map[string]string{
		"APBATCH_KAFKA_BROKERS": broker.Addrs()[0], "APBATCH_WATCH_INTERVAL": "200ms",
		"APBATCH_S3_ENDPOINT": srv.URL(), "APBATCH_S3_ACCESS_KEY": "k", "APBATCH_S3_SECRET_KEY": "s",
		"APBATCH_DB":           "sqlite://" + filepath.Join(dir, "ledger.db"),
		"APBATCH_PROVIDER_URL": api.URL, "APBATCH_TOKEN": tok, "APBATCH_RECIPIENT": "13002526500013",
		"APBATCH_AUDIT_KEY": strings.Repeat("12", 32), "APBATCH_KEK": strings.Repeat("5a", 32), "APBATCH_NO_MAINTENANCE_SKIP": "1", "APBATCH_LOG_LEVEL": "warn",
	}
	client, err := s3.NewClient(ctx, s3.Config{Endpoint: srv.URL(), Bucket: "apbatch", AccessKey: "k", SecretKey: "s"})
	if err != nil {
		t.Fatal(err)
	}
	if err := client.EnsureBucket(ctx); err != nil {
		t.Fatal(err)
	}
	var roster bytes.Buffer
	if err := pop.WriteCSV(&roster); err != nil {
		t.Fatal(err)
	}
	key := pipeline.IncomingKey{Tenant: "ville", Campaign: "2026-09", File: "sans notification.csv"}.String()
	obj, err := client.Put(ctx, key, bytes.NewReader(roster.Bytes()), int64(roster.Len()), "text/csv")
	if err != nil {
		t.Fatal(err)
	}

	serveLog := &syncBuffer{}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		e := env{stdout: io.Discard, stderr: serveLog, getenv: func(k string) string { return environ[k] }}
		if code := runMain(ctx, e, []string{"serve", "--flush-interval", "300ms"}); code != 0 && ctx.Err() == nil {
			t.Errorf("serve: exit %d\n%s", code, serveLog.String())
		}
	}()
	defer func() { cancel(); wg.Wait() }()
	store, err := ledger.Open(ctx, environ["APBATCH_DB"])
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	id := ledger.BatchID("apbatch", key, pipeline.ObjectVersion(obj.VersionID, obj.ETag, ""))
	b := waitBatch(t, ctx, store, id, func() { t.Logf("apbatch serve:\n%s", serveLog.String()) })
	if counts, _ := store.Counts(ctx, id); counts.Rows != 30 || b.ManifestKey == "" {
		t.Fatalf("batch complete with %d results, manifest %q", counts.Rows, b.ManifestKey)
	}
}

package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
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
	"github.com/apbatch/apbatch/pipeline/s3"
	"github.com/apbatch/apbatch/workers/sandbox"
)

// versitygwBinary returns the versitygw executable: $APBATCH_VERSITYGW
// (the test fails when it names no file: CI sets it), else versitygw on
// PATH, else in `go env GOBIN` or $(go env GOPATH)/bin. Without one the
// test is skipped.
func versitygwBinary(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("APBATCH_VERSITYGW"); p != "" {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("APBATCH_VERSITYGW=%s: %v (go install github.com/versity/versitygw/cmd/versitygw@v1.8.0)", p, err)
		}
		return p
	}
	if p, err := exec.LookPath("versitygw"); err == nil {
		return p
	}
	if out, err := exec.Command("go", "env", "GOBIN", "GOPATH").Output(); err == nil {
		lines := strings.Split(strings.TrimSpace(string(out)), "\n")
		var dirs []string
		if len(lines) > 0 && strings.TrimSpace(lines[0]) != "" {
			dirs = append(dirs, strings.TrimSpace(lines[0]))
		}
		if len(lines) > 1 {
			for _, gp := range filepath.SplitList(strings.TrimSpace(lines[1])) {
				dirs = append(dirs, filepath.Join(gp, "bin"))
			}
		}
		for _, d := range dirs {
			p := filepath.Join(d, "versitygw")
			if _, err := os.Stat(p); err == nil {
				return p
			}
		}
	}
	t.Skip("versitygw not installed (go install github.com/versity/versitygw/cmd/versitygw@v1.8.0, or set APBATCH_VERSITYGW): " +
		"the test of real S3 notifications is skipped")
	return ""
}

// TestVersitygw_NotificationsStartBatches runs a real S3 server, versitygw,
// publishing its event notifications to our broker on a topic of its own,
// and apbatch serving every role with --events-topic on that topic and
// versitygw as its S3. A roster uploaded with the AWS SDK (its key with a
// space, an accent and a '+') becomes a complete batch; the same content
// uploaded again starts no other batch (the same object version: the ETag,
// versioning being off), a new content under the same key starts one.
func TestVersitygw_NotificationsStartBatches(t *testing.T) {
	bin := versitygwBinary(t)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	dir := t.TempDir()

	// Our broker, and the topic first: versitygw exits when it is missing.
	broker := &kafka.Broker{}
	if err := broker.Open(ctx); err != nil {
		t.Fatal(err)
	}
	defer broker.Close()
	const topic = "s3.events"
	kcfg := kafka.Config{Brokers: broker.Addrs()}
	if err := kafka.EnsureTopics(ctx, kcfg, topic); err != nil {
		t.Fatal(err)
	}

	// versitygw on a folder, root credentials from its environment.
	const access, secret = "apbatch-test", "apbatch-test-secret"
	s3Addr := freeAddr(t)
	gwLog := &syncBuffer{}
	gw := exec.CommandContext(ctx, bin, "--port", s3Addr,
		"--event-kafka-url", broker.Addrs()[0], "--event-kafka-topic", topic,
		"posix", filepath.Join(dir, "gw"))
	gw.Env = append(os.Environ(), "ROOT_ACCESS_KEY_ID="+access, "ROOT_SECRET_ACCESS_KEY="+secret)
	gw.Stdout, gw.Stderr = gwLog, gwLog
	gw.Cancel = func() error { return gw.Process.Signal(os.Interrupt) }
	gw.WaitDelay = 5 * time.Second
	if err := os.MkdirAll(filepath.Join(dir, "gw"), 0o750); err != nil {
		t.Fatal(err)
	}
	if err := gw.Start(); err != nil {
		t.Fatal(err)
	}
	gwDone := make(chan error, 1)
	go func() { gwDone <- gw.Wait() }()
	defer func() { cancel(); <-gwDone }()
	waitServing(t, ctx, s3Addr, gwDone, gwLog)

	client, err := s3.NewClient(ctx, s3.Config{Endpoint: "http://" + s3Addr, Bucket: "apbatch", AccessKey: access, SecretKey: secret})
	if err != nil {
		t.Fatal(err)
	}
	if err := client.EnsureBucket(ctx); err != nil {
		t.Fatalf("%v\nversitygw:\n%s", err, gwLog.String())
	}

	// apbatch: every role in one process, on versitygw and the sandbox.
	pop := sandbox.NewPopulation(40, 7)
	api, tok := fastSandbox(t, pop)
	environ := map[string]string{
		"APBATCH_KAFKA_BROKERS": broker.Addrs()[0], "APBATCH_EVENTS_TOPIC": topic,
		"APBATCH_S3_ENDPOINT": "http://" + s3Addr, "APBATCH_S3_ACCESS_KEY": access, "APBATCH_S3_SECRET_KEY": secret,
		"APBATCH_DB":           "sqlite://" + filepath.Join(dir, "ledger.db"),
		"APBATCH_PROVIDER_URL": api.URL, "APBATCH_TOKEN": tok, "APBATCH_RECIPIENT": "13002526500013",
		"APBATCH_AUDIT_KEY": strings.Repeat("ef", 32), "APBATCH_KEK": strings.Repeat("5a", 32), "APBATCH_NO_MAINTENANCE_SKIP": "1", "APBATCH_LOG_LEVEL": "warn",
	}
	serveLog := &syncBuffer{}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		e := env{stdout: io.Discard, stderr: serveLog, getenv: func(k string) string { return environ[k] }}
		if code := runMain(ctx, e, []string{"serve", "--flush-interval", "300ms", "--in-flight", "8"}); code != 0 && ctx.Err() == nil {
			t.Errorf("serve: exit %d\n%s", code, serveLog.String())
		}
	}()
	defer func() { cancel(); wg.Wait() }()
	dump := func() {
		t.Logf("versitygw:\n%s\napbatch serve:\n%s", gwLog.String(), serveLog.String())
	}

	store, err := ledger.Open(ctx, environ["APBATCH_DB"])
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()

	key := pipeline.IncomingKey{Tenant: "ville", Campaign: "2026-09", File: "cantine rentrée+1 (v2).csv"}.String()
	var roster bytes.Buffer
	if err := pop.WriteCSV(&roster); err != nil {
		t.Fatal(err)
	}
	upload := func(body []byte) string {
		t.Helper()
		obj, err := client.Put(ctx, key, bytes.NewReader(body), int64(len(body)), "text/csv")
		if err != nil {
			dump()
			t.Fatal(err)
		}
		return ledger.BatchID("apbatch", key, pipeline.ObjectVersion(obj.VersionID, obj.ETag, ""))
	}
	check := func(id string, rows int64) {
		t.Helper()
		b := waitBatch(t, ctx, store, id, dump)
		counts, err := store.Counts(ctx, id)
		if err != nil || counts.Rows != rows || b.ObjectKey != key {
			dump()
			t.Fatalf("batch %s: %d results (%v), key %q; want %d results of %q", id, counts.Rows, err, b.ObjectKey, rows, key)
		}
		if _, err := client.Head(ctx, b.ManifestKey); err != nil {
			t.Fatalf("manifest %q: %v", b.ManifestKey, err)
		}
	}

	first := upload(roster.Bytes())
	check(first, 40)
	if again := upload(roster.Bytes()); again != first {
		t.Fatalf("the same content has another identity: %s, %s", again, first)
	}
	var more bytes.Buffer
	if err := pop.WriteCSVRange(&more, 0, 25); err != nil {
		t.Fatal(err)
	}
	second := upload(more.Bytes())
	check(second, 25)

	// Every notification (versitygw's test event and three uploads) is
	// consumed: the upload of the same content started nothing.
	waitConsumed(t, ctx, kcfg, pipeline.GroupIngest, topic, 4, dump)
	bs, err := store.Batches(ctx)
	if err != nil || len(bs) != 2 {
		dump()
		t.Fatalf("%d batches (%v), want 2", len(bs), err)
	}
}

// waitServing waits until addr accepts connections, failing early if the
// process behind it exits.
func waitServing(t *testing.T, ctx context.Context, addr string, exited <-chan error, log *syncBuffer) {
	t.Helper()
	ready := make(chan struct{})
	go func() {
		waitListening(t, ctx, addr)
		close(ready)
	}()
	select {
	case <-ready:
	case err := <-exited:
		t.Fatalf("versitygw exited: %v\n%s", err, log.String())
	}
}

// waitBatch polls the ledger until the batch is complete (or failed).
func waitBatch(t *testing.T, ctx context.Context, store *ledger.Store, id string, dump func()) ledger.Batch {
	t.Helper()
	for {
		b, err := store.Batch(ctx, id)
		if err == nil && (b.State == ledger.StateComplete || b.State == ledger.StateFailed) {
			if b.State == ledger.StateFailed {
				dump()
				t.Fatalf("batch %s failed: %s", id, b.Error)
			}
			return b
		}
		if ctx.Err() != nil {
			dump()
			t.Fatalf("batch %s not complete: %+v %v", id, b, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// waitConsumed waits until topic holds at least want messages and group has
// committed every one of them.
func waitConsumed(t *testing.T, ctx context.Context, cfg kafka.Config, group, topic string, want int64, dump func()) {
	t.Helper()
	client := &kafkago.Client{Addr: kafkago.TCP(cfg.Brokers...), Timeout: 5 * time.Second}
	for {
		done, state, err := consumed(ctx, client, group, topic, want)
		if err == nil && done {
			return
		}
		if ctx.Err() != nil {
			dump()
			t.Fatalf("group %s has not consumed %d messages of %s: %s %v", group, want, topic, state, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func consumed(ctx context.Context, client *kafkago.Client, group, topic string, want int64) (bool, string, error) {
	meta, err := client.Metadata(ctx, &kafkago.MetadataRequest{Topics: []string{topic}})
	if err != nil || len(meta.Topics) != 1 {
		return false, "", errors.Join(errors.New("metadata"), err)
	}
	var parts []int
	var reqs []kafkago.OffsetRequest
	for _, p := range meta.Topics[0].Partitions {
		parts = append(parts, p.ID)
		reqs = append(reqs, kafkago.LastOffsetOf(p.ID))
	}
	ends, err := client.ListOffsets(ctx, &kafkago.ListOffsetsRequest{Topics: map[string][]kafkago.OffsetRequest{topic: reqs}})
	if err != nil {
		return false, "", err
	}
	commits, err := client.OffsetFetch(ctx, &kafkago.OffsetFetchRequest{GroupID: group, Topics: map[string][]int{topic: parts}})
	if err != nil {
		return false, "", err
	}
	end := map[int]int64{}
	var total int64
	for _, po := range ends.Topics[topic] {
		end[po.Partition] = po.LastOffset
		total += po.LastOffset
	}
	done := total >= want
	var sb strings.Builder
	for _, pc := range commits.Topics[topic] {
		committed := max(pc.CommittedOffset, 0)
		if committed < end[pc.Partition] {
			done = false
		}
		fmt.Fprintf(&sb, "partition %d: %d of %d committed; ", pc.Partition, committed, end[pc.Partition])
	}
	return done, sb.String(), nil
}

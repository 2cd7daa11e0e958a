package main

import (
	"context"
	"flag"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	json "github.com/segmentio/encoding/json"
	kafkago "github.com/segmentio/kafka-go"

	"github.com/apbatch/apbatch/pipeline"
	"github.com/apbatch/apbatch/pipeline/kafka"
	"github.com/apbatch/apbatch/schemas"
	"github.com/apbatch/apbatch/workers/sandbox"
)

// TestEngine_EmbeddedServicesLetNoOneIn starts the engine "apbatch run"
// uses, on its embedded services, calling a sandbox that counts its calls.
// While it works: the credentials file of the data folder is private; the
// embedded S3 refuses (403) an unsigned GET, PUT and listing, and serves the
// roster to no one else; a Kafka client without the broker's SASL
// credentials can neither produce nor fetch; and jobs forged by an insider
// who has them (identities in clear, version 1 and 2) are dropped: the
// workers commit them without a single API call, and nothing about them
// reaches apbatch.results.
func TestEngine_EmbeddedServicesLetNoOneIn(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dir := t.TempDir()
	sb, err := sandbox.New(sandbox.Config{})
	if err != nil {
		t.Fatal(err)
	}
	api := httptest.NewServer(sb)
	defer api.Close()
	tok, _ := sandbox.Token([]byte(sandbox.DefaultSecret), sandbox.AllScopes, time.Now().Add(time.Hour))
	tokenFile := filepath.Join(dir, "token")
	if err := os.WriteFile(tokenFile, []byte(tok), 0o600); err != nil {
		t.Fatal(err)
	}

	var flags engineFlags
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	flags.register(fs)
	if err := fs.Parse([]string{"--data-dir", filepath.Join(dir, "data"), "--provider-url", api.URL, "--token-file", tokenFile,
		"--no-maintenance-skip", "--flush-interval", "200ms"}); err != nil {
		t.Fatal(err)
	}
	logs := &syncBuffer{}
	en, err := flags.start(ctx, env{stdout: io.Discard, stderr: logs, getenv: func(string) string { return "" }}, func(cfg *pipeline.RunnerConfig) {
		cfg.Recipient, cfg.Checks = dinumSIRET, []schemas.Check{schemas.CheckQuotientFamilial}
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer en.Close()

	if st, err := os.Stat(filepath.Join(dir, "data", pipeline.CredentialsFile)); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("%s: %v %v", pipeline.CredentialsFile, st, err)
	}

	// S3: the roster is stored (signed), then asked for without credentials.
	const key = "incoming/demo/2026-09/cantine.csv"
	const roster = "reference;nom_naissance;prenoms\nF1;SECRETNAME;Léa\n"
	if _, err := en.st.S3.Put(ctx, key, strings.NewReader(roster), int64(len(roster)), "text/csv"); err != nil {
		t.Fatal(err)
	}
	endpoint := en.emb.S3().Endpoint
	for _, tc := range []struct{ method, path string }{
		{http.MethodGet, "/apbatch/" + key},
		{http.MethodHead, "/apbatch/" + key},
		{http.MethodPut, "/apbatch/" + key},
		{http.MethodPut, "/apbatch/incoming/demo/2026-09/autre.csv"},
		{http.MethodGet, "/apbatch?list-type=2&prefix=incoming/"},
		{http.MethodGet, "/"},
		{http.MethodDelete, "/apbatch/" + key},
	} {
		req, _ := http.NewRequestWithContext(ctx, tc.method, endpoint+tc.path, strings.NewReader("reference\nFORGED\n"))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden || strings.Contains(string(body), "SECRETNAME") || strings.Contains(string(body), "cantine") {
			t.Errorf("unauthenticated %s %s: %d %s, want 403", tc.method, tc.path, resp.StatusCode, body)
		}
	}
	rc, _, err := en.st.S3.Open(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(rc)
	rc.Close()
	if string(got) != roster {
		t.Fatalf("roster now %q", got)
	}

	// Kafka without the broker's credentials.
	cfg := en.st.Kafka
	if cfg.Username == "" {
		t.Fatal("the engine reaches its broker without credentials")
	}
	anon := kafka.Config{Brokers: cfg.Brokers}
	w := kafka.NewWriter(anon, schemas.TopicJobs)
	w.MaxAttempts, w.WriteTimeout = 1, 10*time.Second
	if err := w.WriteMessages(ctx, kafkago.Message{Key: []byte("demo"), Value: []byte(`{"v":1}`)}); err == nil {
		t.Error("a client without SASL produced to the jobs topic")
	}
	kafka.CloseWriter(w)
	if conn, err := anon.Dialer().DialLeader(ctx, "tcp", cfg.Brokers[0], schemas.TopicJobs, 0); err == nil {
		conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, err := conn.ReadMessage(1 << 20); err == nil {
			t.Error("a client without SASL fetched from the jobs topic")
		}
		conn.Close()
	}

	// An insider with the credentials produces jobs in clear: someone the
	// sandbox knows, under tenant demo's token.
	forged := schemas.Identity{NomNaissance: "LEFEBVRE", Prenoms: []string{"ALEXIS", "GÉRÔME", "JEAN-PHILIPPE"}, Sexe: "F",
		AnneeNaissance: 1982, MoisNaissance: 12, JourNaissance: 27, CodePaysNaissance: "99100", CodeCommuneNaissance: "08480"}
	var msgs []kafkago.Message
	for _, v := range []int{1, schemas.JobVersion} {
		job := schemas.Job{Version: v, BatchID: "bforged0000000000000", Tenant: "demo", Campaign: "2026-09",
			Check: schemas.CheckQuotientFamilial, LookupID: "forged", Recipient: dinumSIRET, Identity: forged,
			Rows: []schemas.RowRef{{Number: 1}}}
		b, err := json.Marshal(job)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(b), "LEFEBVRE") {
			t.Fatalf("forged job not in clear: %s", b)
		}
		msgs = append(msgs, kafkago.Message{Key: []byte("demo"), Value: b})
	}
	if err := en.st.Jobs.WriteMessages(ctx, msgs...); err != nil {
		t.Fatal(err)
	}

	// Wait until the workers committed past both (they are done with them).
	var part int
	var last int64 = -1
	for _, m := range readTopic(t, ctx, cfg, schemas.TopicJobs) {
		if strings.Contains(string(m.value), "bforged") {
			part, last = m.partition, max(last, m.offset)
		}
	}
	if last < 0 {
		t.Fatal("forged jobs not in the topic")
	}
	client := cfg.Client(10 * time.Second)
	for {
		resp, err := client.OffsetFetch(ctx, &kafkago.OffsetFetchRequest{GroupID: pipeline.GroupWorkers, Topics: map[string][]int{schemas.TopicJobs: {part}}})
		if err == nil && resp.Error == nil {
			if ps := resp.Topics[schemas.TopicJobs]; len(ps) == 1 && ps[0].CommittedOffset > last {
				break
			}
		}
		select {
		case <-ctx.Done():
			t.Fatalf("workers never committed the forged jobs\n%s", logs.String())
		case <-time.After(100 * time.Millisecond):
		}
	}
	if n := sb.Calls(); n != 0 {
		t.Fatalf("%d API calls for forged jobs", n)
	}
	for _, m := range readTopic(t, ctx, cfg, schemas.TopicResults) {
		if strings.Contains(string(m.value), "bforged") || strings.Contains(string(m.value), "LEFEBVRE") {
			t.Fatalf("a forged job reached apbatch.results: %s", m.value)
		}
	}
	if l := logs.String(); strings.Contains(l, "LEFEBVRE") || strings.Count(l, "in clear") < 2 {
		t.Errorf("logs:\n%s", l)
	}
}

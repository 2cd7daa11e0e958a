package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/rs/zerolog"

	"github.com/apbatch/apbatch/pipeline"
	"github.com/apbatch/apbatch/pipeline/ledger"
	"github.com/apbatch/apbatch/schemas"
	"github.com/apbatch/apbatch/workers"
	"github.com/apbatch/apbatch/workers/sandbox"
)

// httpGet returns the status and body of GET url.
func httpGet(t *testing.T, ctx context.Context, url string) (int, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	return resp.StatusCode, string(body)
}

// scrape reads and parses the text exposition at url.
func scrape(t *testing.T, ctx context.Context, url string) map[string]*dto.MetricFamily {
	t.Helper()
	code, body := httpGet(t, ctx, url)
	if code != http.StatusOK {
		t.Fatalf("GET %s: %d %s", url, code, body)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatalf("parse %s: %v", url, err)
	}
	return mfs
}

// sample sums the values of family name's series whose labels include
// want (a counter's or gauge's value, a histogram's count).
func sample(mfs map[string]*dto.MetricFamily, name string, want map[string]string) (sum float64, found bool) {
	mf, ok := mfs[name]
	if !ok {
		return 0, false
	}
metrics:
	for _, m := range mf.GetMetric() {
		labels := map[string]string{}
		for _, l := range m.GetLabel() {
			labels[l.GetName()] = l.GetValue()
		}
		for k, v := range want {
			if labels[k] != v {
				continue metrics
			}
		}
		found = true
		switch {
		case m.Counter != nil:
			sum += m.GetCounter().GetValue()
		case m.Gauge != nil:
			sum += m.GetGauge().GetValue()
		case m.Histogram != nil:
			sum += float64(m.GetHistogram().GetSampleCount())
		}
	}
	return sum, found
}

// TestServe_Metrics runs "apbatch serve" with --metrics-addr on the
// standalone broker and S3 server, verifies a roster against the sandbox,
// then checks /healthz, /readyz and that the metrics scraped agree with
// the ledger, and that neither the metrics' labels nor the logs hold the
// token or a name of the roster.
func TestServe_Metrics(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dir := t.TempDir()
	kafkaAddr, s3Addr, metricsAddr := freeAddr(t), freeAddr(t), freeAddr(t)
	const rows = 40
	pop := sandbox.NewPopulation(rows, 7)
	api, tok := fastSandbox(t, pop)
	environ := map[string]string{
		"APBATCH_KAFKA_BROKERS": kafkaAddr, "APBATCH_S3_ENDPOINT": "http://" + s3Addr, "APBATCH_S3_ACCESS_KEY": "k",
		"APBATCH_S3_SECRET_KEY": "s", "APBATCH_DB": "sqlite://" + filepath.Join(dir, "ledger.db"),
		"APBATCH_PROVIDER_URL": api.URL, "APBATCH_TOKEN": tok, "APBATCH_RECIPIENT": "13002526500013",
		"APBATCH_AUDIT_KEY": strings.Repeat("ab", 32), "APBATCH_KEK": strings.Repeat("5a", 32), "APBATCH_NO_MAINTENANCE_SKIP": "1", "APBATCH_LOG_LEVEL": "debug",
		"APBATCH_METRICS_ADDR": metricsAddr,
	}
	var wg sync.WaitGroup
	serveLog := &syncBuffer{}
	start := func(errb *syncBuffer, args ...string) {
		wg.Add(1)
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
	start(&syncBuffer{}, "broker", "--data-dir", filepath.Join(dir, "kafka"), "--addr", kafkaAddr)
	start(&syncBuffer{}, "s3", "--dir", filepath.Join(dir, "s3"), "--addr", s3Addr)
	waitListening(t, ctx, kafkaAddr, s3Addr)
	start(serveLog, "serve", "--in-flight", "8", "--flush-interval", "500ms")
	waitListening(t, ctx, metricsAddr)
	base := "http://" + metricsAddr

	if code, body := httpGet(t, ctx, base+"/healthz"); code != http.StatusOK {
		t.Fatalf("/healthz: %d %s", code, body)
	}
	for {
		code, body := httpGet(t, ctx, base+"/readyz")
		if code == http.StatusOK {
			break
		}
		if code != http.StatusServiceUnavailable || !strings.HasPrefix(body, "not ready") {
			t.Fatalf("/readyz: %d %q, want 200, or 503 with a reason", code, body)
		}
		if ctx.Err() != nil {
			t.Fatalf("/readyz still %d %q", code, body)
		}
		time.Sleep(50 * time.Millisecond)
	}

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
	waitComplete(t, ctx, store, id)
	counts, err := store.Counts(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if counts.Rows != rows || counts.ProviderCalls == 0 {
		t.Fatalf("batch has %d results and %d calls, want %d results", counts.Rows, counts.ProviderCalls, rows)
	}

	// The writer counts the batch just after the ledger marks it complete.
	var mfs map[string]*dto.MetricFamily
	for {
		mfs = scrape(t, ctx, base+"/metrics")
		if n, _ := sample(mfs, "apbatch_batches_completed_total", map[string]string{"tenant": "ville"}); n == 1 {
			break
		}
		if ctx.Err() != nil {
			t.Fatal("apbatch_batches_completed_total{tenant=\"ville\"} never reached 1")
		}
		time.Sleep(50 * time.Millisecond)
	}
	calls := float64(counts.ProviderCalls)
	qf := map[string]string{"check": string(schemas.CheckQuotientFamilial)}
	token := map[string]string{"budget": "token", "tenant": "ville"}
	for _, c := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"apbatch_provider_calls_total", nil, calls},
		{"apbatch_provider_calls_total", map[string]string{"check": string(schemas.CheckQuotientFamilial), "route": workers.QuotientFamilialPath}, calls},
		{"apbatch_provider_call_duration_seconds", qf, calls},
		{"apbatch_provider_429_total", qf, 0},
		{"apbatch_budget_grants_total", token, calls},
		{"apbatch_budget_limit_per_second", token, 20},
		{"apbatch_budget_grants_total", map[string]string{"budget": "ip"}, calls},
		{"apbatch_budget_limit_per_second", map[string]string{"budget": "ip"}, 1000.0 / 60},
		{"apbatch_rows_written_total", map[string]string{"tenant": "ville"}, rows},
		{"apbatch_batches_started_total", map[string]string{"tenant": "ville"}, 1},
		{"apbatch_batch_duration_seconds", nil, 1},
		{"apbatch_consumer_lag", map[string]string{"topic": schemas.TopicJobs, "group": pipeline.GroupWorkers}, 0},
	} {
		got, ok := sample(mfs, c.name, c.labels)
		if !ok || got != c.want {
			t.Errorf("%s%v = %v (present %v), want %v", c.name, c.labels, got, ok, c.want)
		}
	}
	for status, n := range counts.ByStatus {
		labels := map[string]string{"tenant": "ville", "check": string(schemas.CheckQuotientFamilial), "status": string(status)}
		if got, _ := sample(mfs, "apbatch_rows_written_total", labels); got != float64(n) {
			t.Errorf("apbatch_rows_written_total%v = %v, want %d (ledger)", labels, got, n)
		}
	}
	for _, topic := range []string{schemas.TopicUploads, schemas.TopicResults} {
		if _, ok := sample(mfs, "apbatch_consumer_lag", map[string]string{"topic": topic}); !ok {
			t.Errorf("no apbatch_consumer_lag of %s", topic)
		}
	}

	// Neither a label nor a log line holds the token or a name.
	secrets := []string{tok}
	for i := 0; i < pop.Len(); i++ {
		p := pop.Person(i)
		secrets = append(secrets, p.NomNaissance)
		secrets = append(secrets, p.Prenoms...)
	}
	for name, mf := range mfs {
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				for _, s := range secrets {
					if strings.Contains(l.GetValue(), s) {
						t.Errorf("%s: label %s=%q holds a token or a name", name, l.GetName(), l.GetValue())
					}
				}
			}
		}
	}
	logs := serveLog.String()
	for _, s := range secrets {
		if strings.Contains(logs, s) {
			t.Errorf("the serve logs hold the token or the name %q", s)
		}
	}
	// Log lines about a batch name its component and tenant.
	for _, line := range strings.Split(strings.TrimSpace(logs), "\n") {
		var f map[string]any
		if err := json.Unmarshal([]byte(line), &f); err != nil {
			t.Fatalf("log line is not JSON: %q", line)
		}
		if _, ok := f["batch_id"]; ok && (f["component"] == nil || f["tenant"] == nil) {
			t.Errorf("log line about a batch without its component or tenant: %s", line)
		}
	}
}

func TestMetricsServer_Probes(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ms, err := startMetrics(ctx, "127.0.0.1:0", newRegistry(), zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	defer ms.Close(ctx)
	base := "http://" + ms.Addr()
	down := errors.New("kafka: no broker reachable")
	for _, tc := range []struct {
		name      string
		set       bool
		check     func(context.Context) error
		code      int
		bodyStart string
	}{
		{"starting", false, nil, http.StatusServiceUnavailable, "not ready: the roles are not connected"},
		{"a service down", true, func(context.Context) error { return down }, http.StatusServiceUnavailable, "not ready: " + down.Error()},
		{"connected", true, func(context.Context) error { return nil }, http.StatusOK, "ok"},
		{"stopping", true, nil, http.StatusServiceUnavailable, "not ready"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.set {
				ms.SetReady(tc.check)
			}
			if code, body := httpGet(t, ctx, base+"/readyz"); code != tc.code || !strings.HasPrefix(body, tc.bodyStart) {
				t.Errorf("/readyz: %d %q, want %d %q...", code, body, tc.code, tc.bodyStart)
			}
			if code, _ := httpGet(t, ctx, base+"/healthz"); code != http.StatusOK {
				t.Errorf("/healthz: %d, want 200 while the process runs", code)
			}
		})
	}
	if mfs := scrape(t, ctx, base+"/metrics"); mfs["go_goroutines"] == nil {
		t.Error("/metrics lacks the Go runtime's metrics")
	}
}

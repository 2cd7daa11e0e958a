package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"maps"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/apbatch/apbatch/pipeline"
	"github.com/apbatch/apbatch/pipeline/ledger"
	"github.com/apbatch/apbatch/pipeline/s3"
	"github.com/apbatch/apbatch/workers"
	"github.com/apbatch/apbatch/workers/sandbox"
)

// TestServe_TenantIsolation runs three tenants through one serving
// process: ville-a and ville-b with their own token and SIRET, ville-c with
// neither, and no default for either. Every call the API receives for a
// row of ville-a carries ville-a's token and SIRET, and likewise for
// ville-b; ville-c's upload is refused without a single call; results land
// under their own tenant's prefix only.
func TestServe_TenantIsolation(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	dir := t.TempDir()
	broker, srv := embeddedServices(t, ctx, dir)

	type caller struct{ tokenID, recipient string }
	var mu sync.Mutex
	seen := map[caller]int{}
	pop := sandbox.NewPopulation(40, 7)
	sb, err := sandbox.New(sandbox.Config{Population: pop, Limits: sandbox.Limits{PerSecond: 1000, IPPerMinute: 1 << 20},
		OnRequest: func(r sandbox.RequestInfo) {
			mu.Lock()
			seen[caller{r.TokenID, r.Recipient}]++
			mu.Unlock()
		}})
	if err != nil {
		t.Fatal(err)
	}
	api := httptest.NewServer(sb)
	defer api.Close()
	tokA, _ := sandbox.Token([]byte(sandbox.DefaultSecret), sandbox.AllScopes, time.Now().Add(time.Hour))
	tokB, _ := sandbox.Token([]byte(sandbox.DefaultSecret), sandbox.AllScopes, time.Now().Add(time.Hour))
	const siretA, siretB = "13002526500013", "21750001600019"
	environ := map[string]string{
		"APBATCH_KAFKA_BROKERS": broker.Addrs()[0], "APBATCH_WATCH_INTERVAL": "200ms",
		"APBATCH_S3_ENDPOINT": srv.URL(), "APBATCH_S3_ACCESS_KEY": "k", "APBATCH_S3_SECRET_KEY": "s",
		"APBATCH_DB":           "sqlite://" + filepath.Join(dir, "ledger.db"),
		"APBATCH_PROVIDER_URL": api.URL, "APBATCH_TENANT_TOKENS_ONLY": "1",
		"APBATCH_TOKEN_VILLE_A": tokA, "APBATCH_TOKEN_VILLE_B": tokB,
		"APBATCH_RECIPIENT_VILLE_A": siretA, "APBATCH_RECIPIENT_VILLE_B": siretB,
		"APBATCH_AUDIT_KEY": strings.Repeat("34", 32), "APBATCH_KEK": strings.Repeat("5a", 32), "APBATCH_NO_MAINTENANCE_SKIP": "1", "APBATCH_LOG_LEVEL": "warn",
	}
	client, err := s3.NewClient(ctx, s3.Config{Endpoint: srv.URL(), Bucket: "apbatch", AccessKey: "k", SecretKey: "s"})
	if err != nil {
		t.Fatal(err)
	}
	if err := client.EnsureBucket(ctx); err != nil {
		t.Fatal(err)
	}
	// One population, cut in three rosters: rows 1–15, 16–30, 31–40.
	var all bytes.Buffer
	if err := pop.WriteCSV(&all); err != nil {
		t.Fatal(err)
	}
	lines := strings.SplitAfter(strings.TrimSuffix(all.String(), "\n"), "\n")
	header, rows := lines[0], lines[1:]
	rosters := map[string]string{
		"ville-a": header + strings.Join(rows[:15], "") + "\n",
		"ville-b": header + strings.Join(rows[15:30], "") + "\n",
		"ville-c": header + strings.Join(rows[30:], "") + "\n",
	}
	ids := map[string]string{}
	for tenant, body := range rosters {
		key := pipeline.IncomingKey{Tenant: tenant, Campaign: "2026-09", File: "cantine.csv"}.String()
		obj, err := client.Put(ctx, key, strings.NewReader(body), int64(len(body)), "text/csv")
		if err != nil {
			t.Fatal(err)
		}
		ids[tenant] = ledger.BatchID("apbatch", key, pipeline.ObjectVersion(obj.VersionID, obj.ETag, ""))
	}

	serveLog := &syncBuffer{}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		e := env{stdout: io.Discard, stderr: serveLog, getenv: func(k string) string { return environ[k] }, environ: func() []string {
			var kv []string
			for k, v := range environ {
				kv = append(kv, k+"="+v)
			}
			return kv
		}}
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
	dump := func() { t.Logf("apbatch serve:\n%s", serveLog.String()) }
	for _, tenant := range []string{"ville-a", "ville-b"} {
		b := waitBatch(t, ctx, store, ids[tenant], dump)
		if b.Recipient != map[string]string{"ville-a": siretA, "ville-b": siretB}[tenant] {
			t.Errorf("%s: batch recipient %s", tenant, b.Recipient)
		}
	}
	for {
		b, err := store.Batch(ctx, ids["ville-c"])
		if err == nil && b.State == ledger.StateFailed {
			if !strings.Contains(b.Error, "SIRET") {
				t.Errorf("ville-c refused for %q", b.Error)
			}
			break
		}
		if ctx.Err() != nil {
			dump()
			t.Fatalf("ville-c's batch not refused: %+v %v", b, err)
		}
		time.Sleep(100 * time.Millisecond)
	}

	// Who called: exactly ville-a's and ville-b's credentials, as many
	// times as the audit trail says each tenant called. A job's calls are
	// audited before its results are produced, so the trail of a complete
	// batch holds all of them.
	claimsA, _ := workers.DecodeToken(tokA)
	claimsB, _ := workers.DecodeToken(tokB)
	want := map[caller]int{}
	for tenant, c := range map[string]caller{"ville-a": {claimsA.ID, siretA}, "ville-b": {claimsB.ID, siretB}} {
		calls, err := store.BatchCalls(ctx, ids[tenant])
		if err != nil || len(calls) == 0 {
			t.Fatalf("%s: %d calls in the audit trail, %v", tenant, len(calls), err)
		}
		for _, call := range calls {
			if call.Tenant != tenant {
				t.Errorf("%s's batch has a call recorded for %s", tenant, call.Tenant)
			}
		}
		want[c] = len(calls)
	}
	mu.Lock()
	got := maps.Clone(seen)
	mu.Unlock()
	t.Logf("requests by caller: %v", got)
	if len(got) != len(want) {
		t.Errorf("the API saw callers %v, want %v", got, want)
	}
	for c, n := range want {
		if got[c] != n {
			t.Errorf("token %s with recipient %s: %d requests, the audit trail has %d", c.tokenID, c.recipient, got[c], n)
		}
	}

	// Results: under their own tenant only.
	objs, err := client.List(ctx, pipeline.ResultsPrefix)
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range objs {
		parts := strings.Split(o.Key, "/")
		b, err := store.Batch(ctx, parts[3])
		if err != nil || b.Tenant != parts[1] {
			t.Errorf("%s: under tenant %s, batch of %q (%v)", o.Key, parts[1], b.Tenant, err)
		}
	}
	if len(objs) < 4 {
		t.Errorf("%d result objects, want parts and manifests of two batches", len(objs))
	}
}

// TestTokenSources_Isolation: a tenant never reads another's token, and
// with tenantOnly never the default one.
func TestTokenSources_Isolation(t *testing.T) {
	vars := map[string]string{"APBATCH_TOKEN_VILLE_A": "tok-a", "APBATCH_TOKEN": "tok-default"}
	getenv := func(k string) string { return vars[k] }
	strict := tokenSources{tenantOnly: true, getenv: getenv}
	if tok, _, err := strict.lookup("ville-a"); err != nil || tok != "tok-a" {
		t.Fatalf("ville-a: %q, %v", tok, err)
	}
	if tok, _, err := strict.lookup("ville-b"); !errors.Is(err, workers.ErrNoToken) || tok != "" || strings.Contains(err.Error(), "tok-") {
		t.Fatalf("ville-b without a token of its own: %q, %v", tok, err)
	}
	if tok, _, _ := (tokenSources{getenv: getenv}).lookup("ville-b"); tok != "tok-default" {
		t.Fatalf("without tenantOnly, ville-b gets %q, want the default", tok)
	}
	// Names that would read another tenant's token (same variable, or
	// <tenant>.token of another) cannot be tenants.
	for _, name := range []string{"ville_a", "VILLE-A", "Ville-a", "ville.a", "x.token", "ville-a "} {
		if pipeline.ValidTenant(name) {
			t.Errorf("%q accepted as a tenant: it would share a token with another", name)
		}
		if _, err := pipeline.ParseIncomingKey("incoming/" + name + "/c/f.csv"); err == nil {
			t.Errorf("upload of tenant %q accepted", name)
		}
	}
}

// TestTenantValues: the per-tenant variables (SIRETs, habilitations) name
// a tenant and hold a valid value, and a refusal never repeats the value.
func TestTenantValues(t *testing.T) {
	for _, tc := range []struct {
		name    string
		read    func([]string) (map[string]string, error)
		environ []string
		want    map[string]string
		wantErr string
	}{
		{"recipients: none", tenantRecipients, []string{"APBATCH_RECIPIENT=13002526500013"}, map[string]string{}, ""},
		{"recipients: two", tenantRecipients, []string{"APBATCH_RECIPIENT_VILLE_A=13002526500013", "APBATCH_RECIPIENT_VILLE_DE_B= 21750001600019 "},
			map[string]string{"ville-a": "13002526500013", "ville-de-b": "21750001600019"}, ""},
		{"recipients: not a SIRET", tenantRecipients, []string{"APBATCH_RECIPIENT_VILLE_A=130025265"}, nil, "SIRET"},
		{"recipients: not a tenant", tenantRecipients, []string{"APBATCH_RECIPIENT_Ville=13002526500013"}, nil, "names no tenant"},
		{"recipients: empty tenant", tenantRecipients, []string{"APBATCH_RECIPIENT_=13002526500013"}, nil, "names no tenant"},
		{"habilitations: none", tenantHabilitations, []string{"APBATCH_TOKEN_VILLE_A=x"}, map[string]string{}, ""},
		{"habilitations: two", tenantHabilitations, []string{"APBATCH_HABILITATION_VILLE_A=51234", "APBATCH_HABILITATION_VILLE_DE_B= 51234 "},
			map[string]string{"ville-a": "51234", "ville-de-b": "51234"}, ""},
		{"habilitations: not an id", tenantHabilitations, []string{"APBATCH_HABILITATION_VILLE_A=Mairie de A"}, nil, "habilitation's id"},
		{"habilitations: empty", tenantHabilitations, []string{"APBATCH_HABILITATION_VILLE_A="}, nil, "habilitation's id"},
		{"habilitations: not a tenant", tenantHabilitations, []string{"APBATCH_HABILITATION_Ville=51234"}, nil, "names no tenant"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.read(tc.environ)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				if strings.Contains(err.Error(), "Mairie") {
					t.Fatalf("err %q repeats the value", err)
				}
				return
			}
			if err != nil || len(got) != len(tc.want) {
				t.Fatalf("got %v, %v; want %v", got, err, tc.want)
			}
			for k, v := range tc.want {
				if got[k] != v {
					t.Fatalf("got %v, want %v", got, tc.want)
				}
			}
		})
	}
}

package pipeline

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/rs/zerolog"
	kafkago "github.com/segmentio/kafka-go"

	"github.com/apbatch/apbatch/pipeline/ledger"
	"github.com/apbatch/apbatch/pipeline/s3"
	"github.com/apbatch/apbatch/schemas"
)

// bucketAndLedger is an embedded S3 bucket and a SQLite ledger for a
// test; both close when it ends.
func bucketAndLedger(t testing.TB) (*s3.Client, *ledger.Store) {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	srv := &s3.Server{Dir: filepath.Join(dir, "s3")}
	if err := srv.Open(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close(context.Background()) })
	client, err := s3.NewClient(ctx, EmbeddedS3(srv.URL()))
	if err != nil {
		t.Fatal(err)
	}
	if err := client.EnsureBucket(ctx); err != nil {
		t.Fatal(err)
	}
	store, err := ledger.Open(ctx, "sqlite://"+filepath.Join(dir, "ledger.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	return client, store
}

// Keys that try to leave a tenant's folder, or to pass for another tenant,
// or to smuggle characters into logs and the ledger.
var hostileKeys = []struct{ name, key string }{
	{"parent of the campaign", "incoming/ville-a/../ville-b/x.csv"},
	{"parent of the file", "incoming/ville-a/c/../../ville-b/c/x.csv"},
	{"file is ..", "incoming/ville-a/c/.."},
	{"file is .", "incoming/ville-a/c/."},
	{"tenant is ..", "incoming/../c/x.csv"},
	{"encoded dots as the tenant", "incoming/%2e%2e/c/x.csv"},
	{"encoded dots as the campaign", "incoming/ville-a/%2E%2E/x.csv"},
	{"absolute", "/incoming/ville-a/c/x.csv"},
	{"absolute inside", "incoming/ville-a/c//etc/passwd"},
	{"empty tenant", "incoming//c/x.csv"},
	{"empty campaign", "incoming/ville-a//x.csv"},
	{"too deep", "incoming/ville-a/c/sub/x.csv"},
	{"too shallow", "incoming/ville-a/x.csv"},
	{"backslash", "incoming/ville-a/c/..\\..\\ville-b\\x.csv"},
	{"NUL", "incoming/ville-a/c/x\x00.csv"},
	{"newline", "incoming/ville-a/c/x\n{\"tenant\":\"ville-b\"}.csv"},
	{"DEL", "incoming/ville-a/c/x\x7f.csv"},
	{"C1 control", "incoming/ville-a/c/x\u0085.csv"},
	{"right-to-left override", "incoming/ville-a/c/x\u202evsc.exe"},
	{"invalid UTF-8", "incoming/ville-a/c/x\xff.csv"},
	{"upper-case tenant (shares VILLE_A's token)", "incoming/Ville-A/c/x.csv"},
	{"underscore tenant (shares VILLE_A's token)", "incoming/ville_a/c/x.csv"},
	{"dotted tenant (reads x.token)", "incoming/x.token/c/x.csv"},
	{"tenant with a space", "incoming/ville a/c/x.csv"},
	{"outside incoming: results", "results/ville-a/c/b1/part-00001.parquet"},
	{"outside incoming: config", "config/ville-a/tarifs.yaml"},
	{"outside incoming: quarantine", "quarantine/ville-a/c/b1/x.csv"},
	{"prefix look-alike", "incoming-ville-a/c/x.csv"},
	{"case look-alike", "Incoming/ville-a/c/x.csv"},
}

// TestIsolation_Keys: every hostile key is refused by ParseIncomingKey,
// by the event path (URL-encoded as AWS sends it, and raw as versitygw
// does), and no batch is ever recorded for one.
func TestIsolation_Keys(t *testing.T) {
	ctx := context.Background()
	client, store := bucketAndLedger(t)
	in := &Ingester{Ledger: store, Bucket: "apbatch", Log: zerolog.Nop(), Recipient: "13002526500013",
		Splitter: &Splitter{S3: client, Ledger: store, Jobs: &countingWriter{}, Results: &countingWriter{}, Log: zerolog.Nop()}}
	encode := func(k string) string {
		var sb strings.Builder
		for _, seg := range strings.SplitAfter(k, "/") {
			sb.WriteString(strings.ReplaceAll(strings.ReplaceAll(escapeKey(seg), "%2F", "/"), "%20", "+"))
		}
		return sb.String()
	}
	for _, tc := range hostileKeys {
		t.Run(tc.name, func(t *testing.T) {
			if k, err := ParseIncomingKey(tc.key); err == nil {
				t.Fatalf("ParseIncomingKey accepted it as %+v", k)
			} else if strings.Contains(err.Error(), tc.key) {
				t.Fatalf("the error repeats the key: %v", err)
			}
			for _, key := range []string{encode(tc.key), tc.key} {
				rec := schemas.S3EventRecord{EventName: "ObjectCreated:Put", S3: schemas.S3Entity{
					Bucket: schemas.S3Bucket{Name: "apbatch"}, Object: schemas.S3Object{Key: key, ETag: "e1"}}}
				if up, err := UploadOf(rec); err == nil {
					t.Fatalf("event key %q accepted as %+v", key, up)
				}
				if !utf8.ValidString(key) {
					continue // JSON cannot carry it: json.Marshal would make it U+FFFD
				}
				ev, _ := json.Marshal(schemas.S3Event{Records: []schemas.S3EventRecord{rec}})
				if err := in.Handle(ctx, ev); err != nil {
					t.Fatal(err)
				}
			}
		})
	}
	// Double encoding does not decode twice: "%252e%252e" is the literal
	// name "%2e%2e", not a tenant.
	if up, err := UploadOf(schemas.S3EventRecord{EventName: "ObjectCreated:Put", S3: schemas.S3Entity{
		Bucket: schemas.S3Bucket{Name: "apbatch"}, Object: schemas.S3Object{Key: "incoming/%252e%252e/c/x.csv", ETag: "e"}}}); err == nil {
		t.Fatalf("double-encoded dots accepted as %+v", up)
	}
	if bs, err := store.Batches(ctx); err != nil || len(bs) != 0 {
		t.Fatalf("batches recorded for hostile keys: %+v %v", bs, err)
	}
	// The same path accepts a plain key: the refusals above are the keys'.
	ok := schemas.S3EventRecord{EventName: "ObjectCreated:Put", S3: schemas.S3Entity{
		Bucket: schemas.S3Bucket{Name: "apbatch"}, Object: schemas.S3Object{Key: "incoming/ville-a/c/liste+2026.csv", ETag: "e1"}}}
	if up, err := UploadOf(ok); err != nil || up.Key.Tenant != "ville-a" || up.Key.File != "liste 2026.csv" {
		t.Fatalf("plain key: %+v, %v", up, err)
	}
}

// escapeKey URL-encodes s as S3 notifications do.
func escapeKey(s string) string {
	const hex = "0123456789ABCDEF"
	var sb strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("-_.~/", c) >= 0 {
			sb.WriteByte(c)
			continue
		}
		sb.WriteByte('%')
		sb.WriteByte(hex[c>>4])
		sb.WriteByte(hex[c&15])
	}
	return sb.String()
}

// chanReader serves messages from a channel, then blocks until ctx ends.
type chanReader struct {
	msgs      chan kafkago.Message
	committed chan int
}

func (r *chanReader) FetchMessage(ctx context.Context) (kafkago.Message, error) {
	select {
	case m := <-r.msgs:
		return m, nil
	case <-ctx.Done():
		return kafkago.Message{}, ctx.Err()
	}
}

func (r *chanReader) CommitMessages(_ context.Context, msgs ...kafkago.Message) error {
	r.committed <- len(msgs)
	return nil
}

// TestIsolation_ResultWriter: results are written under the tenant of their
// batch in the ledger; a result claiming another tenant (or campaign) than
// its batch is dropped, never written under the prefix it claims, and one
// tenant's tariff grid never prices another's results.
func TestIsolation_ResultWriter(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	client, store := bucketAndLedger(t)
	grid, err := os.ReadFile("../deploy/samples/tarifs-cantine.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := client.Put(ctx, TariffKey("ville-a"), strings.NewReader(string(grid)), int64(len(grid)), ""); err != nil {
		t.Fatal(err)
	}
	batch := func(tenant string) ledger.Batch {
		b, _, err := store.CreateBatch(ctx, ledger.Batch{Tenant: tenant, Campaign: "c", Checks: "quotient_familial", Bucket: "apbatch",
			ObjectKey: IncomingKey{Tenant: tenant, Campaign: "c", File: "x.csv"}.String(), ObjectVersion: "e"})
		if err != nil {
			t.Fatal(err)
		}
		if err := store.SetSplit(ctx, b.ID, 2, 2, 0); err != nil {
			t.Fatal(err)
		}
		return b
	}
	a, b := batch("ville-a"), batch("ville-b")
	qf := int64(700)
	result := func(batchID, tenant, campaign string, row int64) kafkago.Message {
		v, _ := json.Marshal(schemas.Result{Version: schemas.ResultVersion, BatchID: batchID, Tenant: tenant, Campaign: campaign,
			RowNumber: row, Check: schemas.CheckQuotientFamilial, Status: schemas.StatusOK, QFValue: &qf, Provider: "CNAF", Primary: true, Attempts: 1,
			CheckedAt: time.Now().UTC()})
		return kafkago.Message{Value: v, Offset: row}
	}
	msgs := []kafkago.Message{
		result(a.ID, "ville-b", "c", 1),     // forged: A's batch, B's tenant
		result(a.ID, "ville-a", "other", 1), // forged: another campaign
		result(a.ID, "ville-a", "c", 1),
		result(b.ID, "ville-a", "c", 1), // forged: B's batch, A's tenant
		result(b.ID, "ville-b", "c", 1),
		result(a.ID, "ville-a", "c", 2),
		result(b.ID, "ville-b", "c", 2),
	}
	r := &chanReader{msgs: make(chan kafkago.Message, len(msgs)), committed: make(chan int, 100)}
	for _, m := range msgs {
		r.msgs <- m
	}
	w := &ResultWriter{Results: r, S3: client, Ledger: store, Log: zerolog.Nop(), FlushInterval: 50 * time.Millisecond}
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	for n := 0; n < len(msgs); {
		select {
		case k := <-r.committed:
			n += k
		case err := <-done:
			t.Fatalf("writer stopped: %v", err)
		case <-ctx.Done():
			t.Fatal("offsets not committed")
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	for _, x := range []ledger.Batch{a, b} {
		got, err := store.Batch(context.Background(), x.ID)
		if err != nil || got.State != ledger.StateComplete {
			t.Fatalf("batch of %s: %+v %v", x.Tenant, got, err)
		}
		counts, _ := store.Counts(context.Background(), x.ID)
		if counts.Rows != 2 {
			t.Fatalf("batch of %s: %d results, want 2", x.Tenant, counts.Rows)
		}
		objs, err := client.List(context.Background(), ResultsPrefix)
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range objs {
			if strings.Contains(o.Key, "/"+x.ID+"/") && !strings.HasPrefix(o.Key, ResultFolder(x.Tenant, "c", x.ID)) {
				t.Fatalf("%s's result %s outside its folder", x.Tenant, o.Key)
			}
		}
		var m schemas.Manifest
		body, _, err := client.Open(context.Background(), got.ManifestKey)
		if err != nil {
			t.Fatal(err)
		}
		err = json.NewDecoder(body).Decode(&m)
		body.Close()
		if err != nil {
			t.Fatal(err)
		}
		if priced := m.Tariff != ""; priced != (x.Tenant == "ville-a") || m.Tenant != x.Tenant {
			t.Fatalf("manifest of %s: tenant %s, tariff %q (only ville-a has a grid)", x.Tenant, m.Tenant, m.Tariff)
		}
	}
}

// TestIsolation_TenantConfig: a tenant's column mapping is read from its
// own folder only, never another's, and a name that is no tenant's reads
// nothing.
func TestIsolation_TenantConfig(t *testing.T) {
	ctx := context.Background()
	client, _ := bucketAndLedger(t)
	mapping := "nom_naissance: NOM JF\n"
	if _, err := client.Put(ctx, ColumnsKey("ville-a"), strings.NewReader(mapping), int64(len(mapping)), ""); err != nil {
		t.Fatal(err)
	}
	load := TenantColumns(client)
	if m, err := load(ctx, "ville-a"); err != nil || m["nom_naissance"] != "NOM JF" {
		t.Fatalf("ville-a: %v, %v", m, err)
	}
	for _, tenant := range []string{"ville-b", "ville-a-2", "ville"} {
		if m, err := load(ctx, tenant); err != nil || m != nil {
			t.Fatalf("%s read %v, %v", tenant, m, err)
		}
	}
	for _, tenant := range []string{"../config/ville-a", "ville-b/../ville-a", "Ville-A", ""} {
		var fe *FileError
		if m, err := load(ctx, tenant); !errors.As(err, &fe) || m != nil {
			t.Fatalf("%q read %v, %v; want a refusal", tenant, m, err)
		}
	}
	for key, tenant := range map[string]string{TariffKey("ville-a"): "ville-a", ColumnsKey("ville-b"): "ville-b", RetentionKey("x"): "x"} {
		if !strings.HasPrefix(key, ConfigPrefix+tenant+"/") {
			t.Errorf("%s is not under %s's folder", key, tenant)
		}
	}
}

package ledger

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/apbatch/apbatch/schemas"
)

// TestStore_IdentityIndex: a lookup finds every call of an identity
// whether the identity index holds it yet or not; the index is extended
// every identityRun calls and on Close; purges take index entries with
// their calls.
func TestStore_IdentityIndex(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "ledger.db")
	s, err := Open(ctx, "sqlite://"+path)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { s.Close() }()
	s.identityRun = 4
	ann, bob := schemas.IdentityHMAC([]byte("k"), schemas.Identity{NomNaissance: "ANN"}), schemas.IdentityHMAC([]byte("k"), schemas.Identity{NomNaissance: "BOB"})
	t0 := time.Date(2026, 9, 1, 8, 0, 0, 0, time.UTC)
	var recorded int
	record := func(tenant, who string) {
		t.Helper()
		recorded++
		c := schemas.CallRecord{At: t0.Add(time.Duration(recorded) * time.Minute), Tenant: tenant, BatchID: "b", RowNumber: int64(recorded),
			Rows: 1, Check: "quotient_familial", Route: "/v3/dss/quotient_familial/identite", HTTPStatus: 200, Attempt: 1, IdentityHMAC: who}
		if err := s.RecordCalls(ctx, []schemas.CallRecord{c}); err != nil {
			t.Fatal(err)
		}
	}
	indexed := func() (entries, upto int64) {
		t.Helper()
		if err := s.db.GetContext(ctx, &entries, `SELECT COUNT(*) FROM call_identities`); err != nil {
			t.Fatal(err)
		}
		if err := s.db.GetContext(ctx, &upto, `SELECT upto FROM call_identities_upto`); err != nil {
			t.Fatal(err)
		}
		return entries, upto
	}
	// rows returns the row numbers of who's calls, as a lookup sees them.
	rows := func(who string) string {
		t.Helper()
		got, err := s.CallsOf(ctx, who)
		if err != nil {
			t.Fatal(err)
		}
		var out []int64
		for _, c := range got {
			out = append(out, c.RowNumber)
		}
		return fmt.Sprint(out)
	}

	record("a", ann)
	record("a", bob)
	record("b", ann)
	if e, u := indexed(); e != 0 || u != 0 {
		t.Fatalf("after 3 calls: index holds %d, up to call %d; want none", e, u)
	}
	if got := rows(ann); got != "[1 3]" {
		t.Fatalf("ann's calls before indexing = %s, want [1 3]", got)
	}
	record("b", ann) // the fourth call: a run
	record("a", ann) // past the index's end
	if e, u := indexed(); e != 4 || u != 4 {
		t.Fatalf("after 5 calls: index holds %d, up to call %d; want 4, 4", e, u)
	}
	if got := rows(ann); got != "[1 3 4 5]" {
		t.Fatalf("ann's calls from index and tail = %s, want [1 3 4 5]", got)
	}
	if got := rows(bob); got != "[2]" {
		t.Fatalf("bob's calls = %s, want [2]", got)
	}

	// Tenant b's calls before 08:03:30 (call 3) go, with their entry.
	got, err := s.Purge(ctx, PurgeRequest{Tenant: "b", CallsBefore: t0.Add(3*time.Minute + 30*time.Second)})
	if err != nil || got.Calls != 1 {
		t.Fatalf("Purge(b) = %+v, %v; want 1 call", got, err)
	}
	if e, _ := indexed(); e != 3 {
		t.Fatalf("after the tenant purge: index holds %d, want 3", e)
	}
	// Every call before 08:02:30 (calls 1 and 2) goes, with its entry.
	if n, err := s.PurgeCalls(ctx, t0.Add(2*time.Minute+30*time.Second)); err != nil || n != 2 {
		t.Fatalf("PurgeCalls = %d, %v; want 2", n, err)
	}
	if e, _ := indexed(); e != 1 {
		t.Fatalf("after the purge: index holds %d, want 1", e)
	}
	if got := rows(ann); got != "[4 5]" {
		t.Fatalf("ann's calls after purges = %s, want [4 5]", got)
	}

	// Close indexes what is past the end; ids are never reused, even
	// once every call was purged.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if s, err = Open(ctx, "sqlite://"+path); err != nil {
		t.Fatal(err)
	}
	if e, u := indexed(); e != 2 || u != 5 {
		t.Fatalf("after Close: index holds %d, up to call %d; want 2, 5", e, u)
	}
	if n, err := s.PurgeCalls(ctx, t0.Add(time.Hour)); err != nil || n != 2 {
		t.Fatalf("PurgeCalls(all) = %d, %v; want 2", n, err)
	}
	record("a", bob)
	if got := rows(bob); got != "[6]" {
		t.Fatalf("bob's call after a full purge = %s, want [6]", got)
	}
	var id int64
	if err := s.db.GetContext(ctx, &id, `SELECT id FROM calls`); err != nil || id != 6 {
		t.Fatalf("id of the call after a full purge = %d, %v; want 6", id, err)
	}
}

// TestMigrate_CallIdentities upgrades a ledger whose calls predate the
// identity index: they keep their order and are all indexed.
func TestMigrate_CallIdentities(t *testing.T) {
	ctx := context.Background()
	s, err := Open(ctx, "sqlite://"+filepath.Join(t.TempDir(), "ledger.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	// Back to the schema before 0012, with three calls.
	for _, stmt := range []string{
		`DROP TABLE call_identities`,
		`DROP TABLE call_identities_upto`,
		`DROP TABLE calls`,
		`CREATE TABLE calls (at DATETIME NOT NULL, tenant TEXT NOT NULL, batch_id TEXT NOT NULL, row_number BIGINT NOT NULL,
			rows INTEGER NOT NULL, check_name TEXT NOT NULL, route TEXT NOT NULL, http_status INTEGER NOT NULL,
			error_code TEXT NOT NULL, request_id TEXT NOT NULL, latency_ms BIGINT NOT NULL, attempt INTEGER NOT NULL,
			identity_hmac TEXT NOT NULL)`,
		`CREATE INDEX calls_identity ON calls (identity_hmac, at)`,
		`CREATE INDEX calls_tenant_at ON calls (tenant, at)`,
		`DELETE FROM schema_migrations WHERE version = '0012_call_identities.sql'`,
	} {
		if _, err := s.db.ExecContext(ctx, stmt); err != nil {
			t.Fatalf("%s: %v", stmt, err)
		}
	}
	s.insertCalls.close()
	s.insertCalls = &bulkInsert{head: `INSERT INTO calls (at, tenant, batch_id, row_number, rows, check_name, route,
		http_status, error_code, request_id, latency_ms, attempt, identity_hmac) VALUES `, columns: 13, rebind: s.db.Rebind}
	calls := benchCalls(3)
	calls[2].IdentityHMAC = calls[0].IdentityHMAC
	if err := s.RecordCalls(ctx, calls); err != nil {
		t.Fatal(err)
	}
	if err := s.migrate(ctx); err != nil {
		t.Fatal(err)
	}
	var ids []int64
	if err := s.db.SelectContext(ctx, &ids, `SELECT id FROM calls ORDER BY row_number`); err != nil || fmt.Sprint(ids) != "[1 2 3]" {
		t.Fatalf("ids after upgrade = %v, %v; want [1 2 3]", ids, err)
	}
	var entries, upto int64
	if err := s.db.GetContext(ctx, &entries, `SELECT COUNT(*) FROM call_identities`); err != nil || entries != 3 {
		t.Fatalf("index entries after upgrade = %d, %v; want 3", entries, err)
	}
	if err := s.db.GetContext(ctx, &upto, `SELECT upto FROM call_identities_upto`); err != nil || upto != 3 {
		t.Fatalf("index end after upgrade = %d, %v; want 3", upto, err)
	}
	if got, err := s.CallsOf(ctx, calls[0].IdentityHMAC); err != nil || len(got) != 2 || got[1].RowNumber != calls[2].RowNumber {
		t.Fatalf("CallsOf after upgrade = %+v, %v", got, err)
	}
}

// TestStore_IdentityIndexPrefix: the index keys the first 64 bits of the
// hash; two hashes sharing them still each get their own calls only.
func TestStore_IdentityIndexPrefix(t *testing.T) {
	ctx := context.Background()
	s, err := Open(ctx, "sqlite://"+filepath.Join(t.TempDir(), "ledger.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	s.identityRun = 2
	one, two := "0123456789abcdef"+"11", "0123456789abcdef"+"22"
	at := time.Date(2026, 9, 1, 8, 0, 0, 0, time.UTC)
	for i, who := range []string{one, two, one} {
		c := schemas.CallRecord{At: at.Add(time.Duration(i) * time.Minute), Tenant: "a", BatchID: "b", RowNumber: int64(i + 1),
			Rows: 1, Check: "quotient_familial", Route: "/r", HTTPStatus: 200, Attempt: 1, IdentityHMAC: who}
		if err := s.RecordCalls(ctx, []schemas.CallRecord{c}); err != nil {
			t.Fatal(err)
		}
	}
	// Calls 1 and 2 are indexed, call 3 is past the index's end.
	for who, want := range map[string]int{one: 2, two: 1} {
		got, err := s.CallsOf(ctx, who)
		if err != nil || len(got) != want {
			t.Fatalf("CallsOf(%s) = %d calls, %v; want %d", who, len(got), err, want)
		}
		for _, c := range got {
			if c.IdentityHMAC != who {
				t.Fatalf("CallsOf(%s) returned a call of %s", who, c.IdentityHMAC)
			}
		}
	}
}

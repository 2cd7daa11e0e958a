package ledger

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/apbatch/apbatch/schemas"
)

func TestStore_BatchLifecycle(t *testing.T) {
	eachLedger(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		const qf = schemas.CheckQuotientFamilial
		in := Batch{Tenant: "demo", Campaign: "2026-09", Checks: "quotient_familial,scolarite", Bucket: "apbatch", ObjectKey: "incoming/demo/2026-09/a.csv", ObjectVersion: "etag1"}
		b, created, err := s.CreateBatch(ctx, in)
		if err != nil || !created {
			t.Fatalf("CreateBatch = %v, %v", created, err)
		}
		again, created, err := s.CreateBatch(ctx, in)
		if err != nil || created || again.ID != b.ID {
			t.Fatalf("second CreateBatch = %+v, %v, %v", again, created, err)
		}
		if err := s.SetSplit(ctx, b.ID, 3, 2, 1); err != nil {
			t.Fatal(err)
		}
		if n, _ := s.NextPartNo(ctx, b.ID); n != 1 {
			t.Fatalf("NextPartNo = %d", n)
		}
		rows := []RowStatus{{1, qf, schemas.StatusOK, 2}, {2, qf, schemas.StatusOK, 0}, {2, schemas.CheckScolarite, schemas.StatusNotFound, 1}}
		if err := s.RecordPart(ctx, Part{BatchID: b.ID, PartNo: 1, ObjectKey: "k1", Rows: 3, Size: 10}, rows); err != nil {
			t.Fatal(err)
		}
		// A row already published makes the whole part fail.
		err = s.RecordPart(ctx, Part{BatchID: b.ID, PartNo: 2, ObjectKey: "k2", Rows: 2}, []RowStatus{{3, qf, schemas.StatusInvalidInput, 0}, {2, qf, schemas.StatusOK, 0}})
		if !errors.Is(err, ErrDuplicateRow) {
			t.Fatalf("duplicate RecordPart = %v", err)
		}
		if err := s.RecordPart(ctx, Part{BatchID: b.ID, PartNo: 2, ObjectKey: "k2", Rows: 1}, []RowStatus{{3, qf, schemas.StatusInvalidInput, 0}}); err != nil {
			t.Fatal(err)
		}
		c, err := s.Counts(ctx, b.ID)
		if err != nil || c.Rows != 4 || c.ByStatus[schemas.StatusOK] != 2 || c.ProviderCalls != 3 ||
			c.ByCheck[schemas.CheckScolarite][schemas.StatusNotFound] != 1 || c.ByCheck[qf][schemas.StatusOK] != 2 {
			t.Fatalf("Counts = %+v, %v", c, err)
		}
		done, _ := s.DoneRows(ctx, b.ID)
		if _, ok := done[RowKey{2, schemas.CheckScolarite}]; len(done) != 4 || !ok {
			t.Fatalf("DoneRows = %v", done)
		}
		if err := s.Complete(ctx, b.ID, "m"); err != nil {
			t.Fatal(err)
		}
		got, _ := s.Batch(ctx, b.ID)
		if got.State != StateComplete || *got.RowsTotal != 3 || got.CompletedAt == nil {
			t.Fatalf("batch after Complete = %+v", got)
		}
		parts, _ := s.Parts(ctx, b.ID)
		if len(parts) != 2 {
			t.Fatalf("Parts = %v", parts)
		}
		if _, err := s.Batch(ctx, "nope"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("Batch(nope) = %v", err)
		}
		bs, _ := s.Batches(ctx, StateComplete)
		if len(bs) != 1 {
			t.Fatalf("Batches(complete) = %d", len(bs))
		}
	})
}

func TestStore_Answered(t *testing.T) {
	eachLedger(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		if base, offs, err := s.Answered(ctx, "g", "jobs", 3); err != nil || base != 0 || offs != "" {
			t.Fatalf("nothing saved: %d %q %v", base, offs, err)
		}
		for _, want := range []struct {
			base int64
			offs string
		}{{12, "13-14,17"}, {15, "17,19-20"}} {
			if err := s.SaveAnswered(ctx, "g", "jobs", 3, want.base, want.offs); err != nil {
				t.Fatal(err)
			}
			base, offs, err := s.Answered(ctx, "g", "jobs", 3)
			if err != nil || base != want.base || offs != want.offs {
				t.Fatalf("Answered = %d %q %v, want %d %q", base, offs, err, want.base, want.offs)
			}
		}
		if _, offs, _ := s.Answered(ctx, "other", "jobs", 3); offs != "" {
			t.Errorf("another group sees %q", offs)
		}
	})
}

func TestOpen_BadURL(t *testing.T) {
	for _, u := range []string{"", "mysql://x", "sqlite://"} {
		if _, err := Open(context.Background(), u); err == nil {
			t.Errorf("Open(%q) succeeded", u)
		}
	}
}

func TestStore_Calls(t *testing.T) {
	eachLedger(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		now := time.Now().UTC().Truncate(time.Second)
		h := schemas.IdentityHMAC([]byte("k"), schemas.Identity{NomNaissance: "X"})
		calls := []schemas.CallRecord{
			{At: now.Add(-40 * 24 * 30 * time.Hour), Tenant: "demo", BatchID: "b", RowNumber: 1, Rows: 2, Check: "quotient_familial",
				Route: "/v3/dss/quotient_familial/identite", HTTPStatus: 200, RequestID: "r1", LatencyMS: 210, Attempt: 1, IdentityHMAC: h},
			{At: now, Tenant: "demo", BatchID: "b", RowNumber: 1, Rows: 2, Check: "quotient_familial",
				Route: "/v3/dss/quotient_familial/identite", HTTPStatus: 502, ErrorCode: "37999", Attempt: 2, IdentityHMAC: h},
		}
		if err := s.RecordCalls(ctx, calls); err != nil {
			t.Fatal(err)
		}
		got, err := s.CallsOf(ctx, h)
		if err != nil || len(got) != 2 || got[1].ErrorCode != "37999" || got[0].LatencyMS != 210 || !got[1].At.Equal(now) {
			t.Fatalf("CallsOf = %+v, %v", got, err)
		}
		n, err := s.PurgeCalls(ctx, now.Add(-36*30*24*time.Hour))
		if err != nil || n != 1 {
			t.Fatalf("PurgeCalls = %d, %v", n, err)
		}
	})
}

// TestMigrate_ResultChecks upgrades a ledger whose result rows predate
// checks (one check per batch): they keep their batch's check.
func TestMigrate_ResultChecks(t *testing.T) {
	eachLedger(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		b, _, err := s.CreateBatch(ctx, Batch{Tenant: "demo", Campaign: "2026-09", Checks: "quotient_familial", Bucket: "apbatch",
			ObjectKey: "incoming/demo/2026-09/old.csv", ObjectVersion: "v1"})
		if err != nil {
			t.Fatal(err)
		}
		// Back to the schema before 0003, with one published row.
		for _, stmt := range []string{
			`DROP TABLE result_rows`,
			`CREATE TABLE result_rows (batch_id TEXT NOT NULL REFERENCES batches (id), row_number BIGINT NOT NULL,
				status TEXT NOT NULL, calls INTEGER NOT NULL, part_no INTEGER NOT NULL, PRIMARY KEY (batch_id, row_number))`,
			`DELETE FROM schema_migrations WHERE version = '0003_result_checks.sql'`,
		} {
			if _, err := s.db.ExecContext(ctx, stmt); err != nil {
				t.Fatalf("%s: %v", stmt, err)
			}
		}
		if _, err := s.db.ExecContext(ctx, s.db.Rebind(`INSERT INTO result_rows (batch_id, row_number, status, calls, part_no) VALUES (?, 1, 'ok', 1, 1)`), b.ID); err != nil {
			t.Fatal(err)
		}
		if err := s.migrate(ctx); err != nil {
			t.Fatal(err)
		}
		done, err := s.DoneRows(ctx, b.ID)
		if _, ok := done[RowKey{1, schemas.CheckQuotientFamilial}]; err != nil || len(done) != 1 || !ok {
			t.Fatalf("after upgrade: %v, %v", done, err)
		}
		// The new key lets one row carry a result per check.
		if err := s.RecordPart(ctx, Part{BatchID: b.ID, PartNo: 2, ObjectKey: "k", Rows: 1},
			[]RowStatus{{1, schemas.CheckScolarite, schemas.StatusOK, 1}}); err != nil {
			t.Fatal(err)
		}
	})
}

// TestLeaseSlot: concurrent leases of one slot never exceed its limit, on
// SQLite and PostgreSQL; other scopes and slots are separate.
func TestLeaseSlot(t *testing.T) {
	eachLedger(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		var mu sync.Mutex
		total := 0
		var wg sync.WaitGroup
		for w := 0; w < 4; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; i < 10; i++ {
					got, err := s.LeaseSlot(ctx, "ip:test", 1_790_000_000, 1, 17)
					if err != nil {
						t.Error(err)
						return
					}
					mu.Lock()
					total += got
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		if total != 17 {
			t.Fatalf("%d units leased from a slot of 17", total)
		}
		if got, err := s.LeaseSlot(ctx, "ip:test", 1_790_000_001, 5, 17); err != nil || got != 5 {
			t.Fatalf("next slot: %d, %v", got, err)
		}
		if got, err := s.LeaseSlot(ctx, "ip:other", 1_790_000_000, 5, 17); err != nil || got != 5 {
			t.Fatalf("other scope: %d, %v", got, err)
		}
	})
}

// TestOpen_Concurrently: processes opening a fresh ledger together (roles
// starting at once) each find it migrated, none fails.
func TestOpen_Concurrently(t *testing.T) {
	eachLedgerURL(t, func(t *testing.T, url string) {
		var wg sync.WaitGroup
		errs := make(chan error, 6)
		for i := 0; i < 6; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				s, err := Open(context.Background(), url)
				if err == nil {
					s.Close()
				}
				errs <- err
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Fatal(err)
			}
		}
	})
}

func TestStore_WatchCursor(t *testing.T) {
	eachLedger(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		if c, err := s.WatchCursor(ctx, "apbatch", "incoming/"); err != nil || !c.IsZero() {
			t.Fatalf("new cursor = %v, %v", c, err)
		}
		t1 := time.Date(2026, 9, 1, 8, 30, 15, 0, time.UTC)
		for _, step := range []struct {
			set, want time.Time
		}{
			{set: t1, want: t1},
			{set: t1.Add(-time.Hour), want: t1}, // never goes back
			{set: t1.Add(2 * time.Second), want: t1.Add(2 * time.Second)},
		} {
			if err := s.AdvanceWatchCursor(ctx, "apbatch", "incoming/", step.set); err != nil {
				t.Fatal(err)
			}
			if c, err := s.WatchCursor(ctx, "apbatch", "incoming/"); err != nil || !c.Equal(step.want) {
				t.Fatalf("after %v: cursor = %v, %v; want %v", step.set, c, err, step.want)
			}
		}
		if c, err := s.WatchCursor(ctx, "other", "incoming/"); err != nil || !c.IsZero() {
			t.Fatalf("other bucket's cursor = %v, %v", c, err)
		}
	})
}

func TestStore_Purge(t *testing.T) {
	eachLedger(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		mk := func(tenant, file string, rows int) Batch {
			b, _, err := s.CreateBatch(ctx, Batch{Tenant: tenant, Campaign: "c", Checks: "quotient_familial", Bucket: "apbatch",
				ObjectKey: "incoming/" + tenant + "/c/" + file, ObjectVersion: "e"})
			if err != nil {
				t.Fatal(err)
			}
			st := make([]RowStatus, rows)
			for i := range st {
				st[i] = RowStatus{RowNumber: int64(i + 1), Check: schemas.CheckQuotientFamilial, Status: schemas.StatusOK}
			}
			if err := s.RecordPart(ctx, Part{BatchID: b.ID, PartNo: 1, ObjectKey: "k", Rows: int64(rows)}, st); err != nil {
				t.Fatal(err)
			}
			return b
		}
		a1, a2, b1 := mk("a", "1.csv", 3), mk("a", "2.csv", 2), mk("b", "1.csv", 4)
		old, recent := time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(2029, 1, 1, 0, 0, 0, 0, time.UTC)
		var calls []schemas.CallRecord
		for _, c := range []struct {
			tenant string
			at     time.Time
		}{{"a", old}, {"a", old}, {"a", recent}, {"b", old}, {"c", old}} {
			calls = append(calls, schemas.CallRecord{At: c.at, Tenant: c.tenant, BatchID: "x", Check: "quotient_familial"})
		}
		if err := s.RecordCalls(ctx, calls); err != nil {
			t.Fatal(err)
		}
		if ts, err := s.Tenants(ctx); err != nil || len(ts) != 3 || ts[0] != "a" || ts[2] != "c" {
			t.Fatalf("Tenants = %v, %v", ts, err)
		}
		cutoff := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
		// b1 belongs to b: a purge of a leaves it alone.
		req := PurgeRequest{Tenant: "a", Batches: []string{a1.ID, b1.ID}, CallsBefore: cutoff, DryRun: true}
		want := PurgeCounts{Batches: 1, Parts: 1, ResultRows: 3, Calls: 2}
		for _, dry := range []bool{true, false} {
			req.DryRun = dry
			got, err := s.Purge(ctx, req)
			if err != nil || got != want {
				t.Fatalf("Purge (dry run %v) = %+v, %v; want %+v", dry, got, err, want)
			}
		}
		if got, err := s.Purge(ctx, req); err != nil || got != (PurgeCounts{}) {
			t.Fatalf("second Purge = %+v, %v; want nothing", got, err)
		}
		if _, err := s.Batch(ctx, a1.ID); !errors.Is(err, ErrNotFound) {
			t.Fatalf("purged batch: %v", err)
		}
		for _, id := range []string{a2.ID, b1.ID} {
			if c, err := s.Counts(ctx, id); err != nil || c.Rows == 0 {
				t.Fatalf("batch %s lost its rows: %+v %v", id, c, err)
			}
		}
		if bs, _ := s.TenantBatches(ctx, "a", ""); len(bs) != 1 || bs[0].ID != a2.ID {
			t.Fatalf("TenantBatches(a) = %+v", bs)
		}
	})
}

// TestStore_RecordCallsSizes writes batches of sizes that take one, several
// and the largest INSERT statements, and reads every record back in order.
func TestStore_RecordCallsSizes(t *testing.T) {
	eachLedger(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		for _, n := range []int{1, 3, 256, 300, 700} {
			calls := benchCalls(n)
			batch := fmt.Sprintf("b%d", n)
			for i := range calls {
				calls[i].BatchID = batch
			}
			if err := s.RecordCalls(ctx, calls); err != nil {
				t.Fatalf("RecordCalls(%d) = %v", n, err)
			}
			got, err := s.BatchCalls(ctx, batch)
			if err != nil || len(got) != n {
				t.Fatalf("BatchCalls after %d = %d records, %v", n, len(got), err)
			}
			for i := range got {
				if got[i].RowNumber != calls[i].RowNumber || got[i].IdentityHMAC != calls[i].IdentityHMAC || !got[i].At.Equal(calls[i].At) {
					t.Fatalf("record %d of %d = %+v, want %+v", i, n, got[i], calls[i])
				}
			}
		}
		last := benchCalls(700)[699]
		if got, err := s.CallsOf(ctx, last.IdentityHMAC); err != nil || len(got) != 1 || got[0].BatchID != "b700" {
			t.Fatalf("CallsOf = %+v, %v", got, err)
		}
	})
}

// TestStore_RecordPartSizes records parts that take several INSERT
// statements; a row already published in a later statement fails the whole
// part.
func TestStore_RecordPartSizes(t *testing.T) {
	eachLedger(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		b, _, err := s.CreateBatch(ctx, Batch{Tenant: "demo", Campaign: "2026-09", Checks: "quotient_familial",
			Bucket: "apbatch", ObjectKey: "incoming/demo/2026-09/sizes.csv", ObjectVersion: "v1"})
		if err != nil {
			t.Fatal(err)
		}
		rows := func(from, n int) []RowStatus {
			var rs []RowStatus
			for i := from; i < from+n; i++ {
				rs = append(rs, RowStatus{RowNumber: int64(i), Check: schemas.CheckQuotientFamilial, Status: schemas.StatusOK, Calls: 1})
			}
			return rs
		}
		if err := s.RecordPart(ctx, Part{BatchID: b.ID, PartNo: 1, ObjectKey: "k1", Rows: 300}, rows(1, 300)); err != nil {
			t.Fatal(err)
		}
		// Rows 301-600 are new but 300 (the last row) is not.
		err = s.RecordPart(ctx, Part{BatchID: b.ID, PartNo: 2, ObjectKey: "k2", Rows: 301}, append(rows(301, 300), rows(300, 1)...))
		if !errors.Is(err, ErrDuplicateRow) {
			t.Fatalf("RecordPart with a published row = %v", err)
		}
		if err := s.RecordPart(ctx, Part{BatchID: b.ID, PartNo: 2, ObjectKey: "k2", Rows: 700}, rows(301, 700)); err != nil {
			t.Fatal(err)
		}
		if c, err := s.Counts(ctx, b.ID); err != nil || c.Rows != 1000 || c.ProviderCalls != 1000 {
			t.Fatalf("Counts = %+v, %v", c, err)
		}
	})
}

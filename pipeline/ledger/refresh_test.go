package ledger

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestStore_Refresh(t *testing.T) {
	eachLedger(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		clock := time.Date(2026, 9, 7, 8, 0, 0, 0, time.UTC)
		s.now = func() time.Time { clock = clock.Add(time.Minute); return clock }
		defer func() { s.now = time.Now }()
		batch := func(tenant, campaign, file, state string) Batch {
			t.Helper()
			b, _, err := s.CreateBatch(ctx, Batch{Tenant: tenant, Campaign: campaign, Bucket: "apbatch",
				ObjectKey: "incoming/" + tenant + "/" + campaign + "/" + file, ObjectVersion: "v1"})
			if err != nil {
				t.Fatal(err)
			}
			switch state {
			case StateComplete:
				if err := s.SetSplit(ctx, b.ID, 1, 1, 0); err != nil {
					t.Fatal(err)
				}
				if err := s.Complete(ctx, b.ID, "m"); err != nil {
					t.Fatal(err)
				}
			case StateFailed:
				if err := s.Fail(ctx, b.ID, "refused"); err != nil {
					t.Fatal(err)
				}
			}
			b, err = s.Batch(ctx, b.ID)
			if err != nil {
				t.Fatal(err)
			}
			return b
		}
		cantine := batch("ville", "2026-09", "cantine.csv", StateComplete)
		autre := batch("ville", "2026-09", "autre.csv", StateComplete)
		batch("ville", "2026-12", "cantine.csv", StateFailed)
		batch("bourg", "2026-09", "cantine.csv", StateSplit)

		if ts, err := s.TenantsWithResults(ctx); err != nil || len(ts) != 1 || ts[0] != "ville" {
			t.Fatalf("Tenants = %v, %v", ts, err)
		}
		if b, err := s.LatestComplete(ctx, "ville", "2027-09"); err != nil || b.ID != autre.ID {
			t.Fatalf("LatestComplete = %s, %v; want %s", b.ID, err, autre.ID)
		}
		if _, err := s.LatestComplete(ctx, "ville", "2026-09"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("LatestComplete of the only campaign = %v", err)
		}
		if _, err := s.LatestComplete(ctx, "bourg", "2027-09"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("LatestComplete without a complete batch = %v", err)
		}

		if _, err := s.Refresh(ctx, "ville", "2027-09"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("Refresh before = %v", err)
		}
		in := Refresh{Tenant: "ville", Campaign: "2027-09", SourceBatch: autre.ID, ObjectKey: "incoming/ville/2027-09/autre.csv", Period: "2027-09"}
		r, created, err := s.RecordRefresh(ctx, in)
		if err != nil || !created || r.SourceBatch != autre.ID || r.BatchID != "" {
			t.Fatalf("RecordRefresh = %+v, %v, %v", r, created, err)
		}
		again := in
		again.SourceBatch = cantine.ID
		if r, created, err := s.RecordRefresh(ctx, again); err != nil || created || r.SourceBatch != autre.ID {
			t.Fatalf("second RecordRefresh = %+v, %v, %v", r, created, err)
		}
		refreshed := batch("ville", "2027-09", "autre.csv", StateSplit)
		if err := s.SetRefreshBatch(ctx, "ville", "2027-09", refreshed.ID); err != nil {
			t.Fatal(err)
		}
		if r, err := s.Refresh(ctx, "ville", "2027-09"); err != nil || r.BatchID != refreshed.ID || r.Period != "2027-09" {
			t.Fatalf("Refresh = %+v, %v", r, err)
		}
		if bs, err := s.TenantBatches(ctx, "ville", "2027-09"); err != nil || len(bs) != 1 {
			t.Fatalf("TenantBatches = %d, %v", len(bs), err)
		}

		// Previous batches: the refresh's source, else the last of
		// another campaign with the same file name.
		if p, err := s.PreviousBatch(ctx, refreshed); err != nil || p.ID != autre.ID {
			t.Fatalf("PreviousBatch(refreshed) = %s, %v; want %s", p.ID, err, autre.ID)
		}
		uploaded := batch("ville", "2027-09", "cantine.csv", StateSplit)
		if p, err := s.PreviousBatch(ctx, uploaded); err != nil || p.ID != cantine.ID {
			t.Fatalf("PreviousBatch(uploaded) = %s, %v; want %s", p.ID, err, cantine.ID)
		}
		if _, err := s.PreviousBatch(ctx, cantine); !errors.Is(err, ErrNotFound) {
			t.Fatalf("PreviousBatch(first) = %v", err)
		}
	})
}

package pipeline

import (
	"bytes"
	"context"
	"encoding/json"
	"testing"

	kafkago "github.com/segmentio/kafka-go"

	"github.com/apbatch/apbatch/pipeline/ledger"
	"github.com/apbatch/apbatch/schemas"
)

// events records the upload events a Refresher publishes.
type events struct{ msgs []kafkago.Message }

func (e *events) WriteMessages(_ context.Context, msgs ...kafkago.Message) error {
	e.msgs = append(e.msgs, msgs...)
	return nil
}

func TestRefresher_Refresh(t *testing.T) {
	ctx := context.Background()
	client, store := bucketAndLedger(t)
	ev := &events{}
	rf := &Refresher{S3: client, Ledger: store, Uploads: ev}

	// A town's accepted roster of 2026-09, with two checks.
	body := []byte("reference;nom_naissance\nF001;X\n")
	key := IncomingKey{Tenant: "ville", Campaign: "2026-09", File: "cantine.csv"}.String()
	obj, err := client.Put(ctx, key, bytes.NewReader(body), int64(len(body)), "text/csv")
	if err != nil {
		t.Fatal(err)
	}
	src, _, err := store.CreateBatch(ctx, ledger.Batch{Tenant: "ville", Campaign: "2026-09", Checks: "quotient_familial,scolarite",
		Bucket: client.Bucket(), ObjectKey: key, ObjectVersion: obj.ETag, Recipient: "21080105400013"})
	if err != nil {
		t.Fatal(err)
	}
	if err := store.SetSplit(ctx, src.ID, 1, 1, 0); err != nil {
		t.Fatal(err)
	}
	if err := store.Complete(ctx, src.ID, "m"); err != nil {
		t.Fatal(err)
	}

	check := func(tenant, outcome string, events int) RefreshResult {
		t.Helper()
		r, err := rf.Refresh(ctx, tenant, "2027-09", "2027-09")
		if err != nil || r.Outcome != outcome || len(ev.msgs) != events {
			t.Fatalf("Refresh(%s) = %+v, %v; %d events; want %s, %d events", tenant, r, err, len(ev.msgs), outcome, events)
		}
		return r
	}
	check("bourg", RefreshNoRoster, 0)
	started := check("ville", RefreshStarted, 1)
	newKey := "incoming/ville/2027-09/cantine.csv"
	if started.Source.ID != src.ID || schemas.JoinChecks(started.Checks) != src.Checks ||
		started.BatchID != ledger.BatchID(client.Bucket(), newKey, obj.ETag) {
		t.Fatalf("started %+v", started)
	}
	var e schemas.S3Event
	if err := json.Unmarshal(ev.msgs[0].Value, &e); err != nil || len(e.Records) != 1 || e.Records[0].S3.Object.Key != newKey ||
		e.Records[0].S3.Object.VersionID != "" || e.Records[0].S3.Object.ETag != obj.ETag || e.Records[0].S3.Object.Size != int64(len(body)) {
		t.Fatalf("event %s: %v", ev.msgs[0].Value, err)
	}

	// The ingest gives the new batch the source's checks and recipient
	// and the refresh's period, whatever its own defaults.
	in := &Ingester{Ledger: store, Checks: []schemas.Check{schemas.CheckRSA}, Recipient: "13002526500013"}
	nb := ledger.Batch{Tenant: "ville", Campaign: "2027-09", Bucket: client.Bucket(), ObjectKey: newKey, ObjectVersion: obj.ETag, Checks: "revenu_solidarite_active"}
	if err := in.refreshed(ctx, &nb); err != nil || nb.Checks != src.Checks || nb.Recipient != src.Recipient || nb.Period != "2027-09" {
		t.Fatalf("refreshed batch %+v, %v", nb, err)
	}
	later := ledger.Batch{Tenant: "ville", Campaign: "2027-09", Bucket: client.Bucket(), ObjectKey: newKey, ObjectVersion: "other", Checks: "x"}
	if err := in.refreshed(ctx, &later); err != nil || later.Checks != "x" {
		t.Fatalf("a later upload to the same key got the refresh's settings: %+v, %v", later, err)
	}

	// The event was not consumed (no batch yet): firing again publishes
	// it again, for the same batch.
	if again := check("ville", RefreshStarted, 2); again.BatchID != started.BatchID {
		t.Fatalf("re-published for batch %s, want %s", again.BatchID, started.BatchID)
	}
	// Once the batch exists, nothing more.
	if _, _, err := store.CreateBatch(ctx, nb); err != nil {
		t.Fatal(err)
	}
	if r := check("ville", RefreshAlready, 2); r.BatchID != started.BatchID || r.Source.ID != src.ID {
		t.Fatalf("already %+v", r)
	}

	// A town that uploaded in the campaign is left alone; one whose
	// accepted file was replaced in the bucket is not refreshed.
	for _, town := range []string{"village", "hameau"} {
		k := IncomingKey{Tenant: town, Campaign: "2026-09", File: "liste.csv"}.String()
		o, err := client.Put(ctx, k, bytes.NewReader(body), int64(len(body)), "text/csv")
		if err != nil {
			t.Fatal(err)
		}
		b, _, err := store.CreateBatch(ctx, ledger.Batch{Tenant: town, Campaign: "2026-09", Bucket: client.Bucket(), ObjectKey: k, ObjectVersion: o.ETag})
		if err != nil {
			t.Fatal(err)
		}
		store.SetSplit(ctx, b.ID, 1, 1, 0)
		store.Complete(ctx, b.ID, "m")
	}
	if _, _, err := store.CreateBatch(ctx, ledger.Batch{Tenant: "village", Campaign: "2027-09", Bucket: client.Bucket(),
		ObjectKey: "incoming/village/2027-09/neuf.csv", ObjectVersion: "e"}); err != nil {
		t.Fatal(err)
	}
	check("village", RefreshHasBatch, 2)
	changed := []byte("reference;nom_naissance\nF002;Y\n")
	if _, err := client.Put(ctx, "incoming/hameau/2026-09/liste.csv", bytes.NewReader(changed), int64(len(changed)), "text/csv"); err != nil {
		t.Fatal(err)
	}
	check("hameau", RefreshRosterGone, 2)
	if _, err := store.Refresh(ctx, "hameau", "2027-09"); err == nil {
		t.Error("a refresh that copied nothing was recorded")
	}
}

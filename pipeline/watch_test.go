package pipeline

import (
	"bytes"
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/apbatch/apbatch/pipeline/ledger"
	"github.com/apbatch/apbatch/pipeline/s3"
)

const watchRoster = "reference;nom_naissance;prenoms;sexe;date_naissance;code_insee_pays_naissance;code_insee_commune_naissance\n" +
	"R1;MARTIN;Léa;F;2015-04-02;99100;75056\n"

// TestWatcher_StartsEachVersionOnce lists a real (embedded) S3 service:
// uploads start one batch each, a restarted watcher starts none again, an
// upload already started by its notification is skipped, a new content
// starts a new batch, and a failed pass leaves its uploads to the next one.
func TestWatcher_StartsEachVersionOnce(t *testing.T) {
	ctx := context.Background()
	client, store := bucketAndLedger(t)
	in := &Ingester{Ledger: store, Bucket: "apbatch", Log: zerolog.Nop(), Recipient: "13002526500013",
		Splitter: &Splitter{S3: client, Ledger: store, Jobs: &countingWriter{}, Results: &countingWriter{}, Log: zerolog.Nop()}}
	put := func(key, body string) s3.ObjectInfo {
		t.Helper()
		obj, err := client.Put(ctx, key, bytes.NewReader([]byte(body)), int64(len(body)), "text/csv")
		if err != nil {
			t.Fatal(err)
		}
		return obj
	}
	var failNext bool
	newWatcher := func() *Watcher {
		return &Watcher{S3: client, Ledger: store, Interval: time.Minute, Log: zerolog.Nop(),
			Start: func(ctx context.Context, up Upload) error {
				if failNext {
					failNext = false
					return errors.New("ledger unreachable")
				}
				return in.Start(ctx, up)
			}}
	}
	pass := func(w *Watcher, want int) {
		t.Helper()
		n, err := w.Pass(ctx)
		if err != nil || n != want {
			t.Fatalf("Pass = %d, %v; want %d", n, err, want)
		}
	}
	batches := func(want int) {
		t.Helper()
		bs, err := store.Batches(ctx)
		if err != nil || len(bs) != want {
			t.Fatalf("%d batches (%v), want %d", len(bs), err, want)
		}
	}

	put("incoming/ville/2026-09/a.csv", watchRoster)
	put("incoming/ville/2026-09/b b.csv", watchRoster+"R2;DURAND;Hugo;M;2014-01-20;99100;75056\n")
	put("incoming/ville/lisez-moi.txt", "not an upload")
	w := newWatcher()
	pass(w, 2)
	batches(2)
	if c, err := store.WatchCursor(ctx, "apbatch", IncomingPrefix); err != nil || c.IsZero() {
		t.Fatalf("cursor = %v, %v", c, err)
	}
	pass(w, 0)
	pass(newWatcher(), 0) // restarted
	batches(2)

	// Started by its notification first.
	c := put("incoming/ville/2026-09/c.csv", watchRoster+"R3;PETIT;Jade;F;2016-07-11;99100;75056\n")
	if err := in.Start(ctx, Upload{Bucket: "apbatch", Key: IncomingKey{"ville", "2026-09", "c.csv"}, Version: c.ETag}); err != nil {
		t.Fatal(err)
	}
	pass(w, 0)
	batches(3)

	// A new content under a known key; the first pass fails.
	put("incoming/ville/2026-09/a.csv", watchRoster+"R9;ROUX;Léo;M;2013-02-03;99100;75056\n")
	failNext = true
	if _, err := w.Pass(ctx); err == nil {
		t.Fatal("failing pass: no error")
	}
	pass(newWatcher(), 1)
	batches(4)
	pass(w, 0)
}

// TestWatcher_Window: with a cursor, objects modified more than Grace
// before it are not looked at again.
func TestWatcher_Window(t *testing.T) {
	ctx := context.Background()
	store, err := ledger.Open(ctx, "sqlite://"+filepath.Join(t.TempDir(), "ledger.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	cursor := time.Date(2026, 9, 1, 12, 0, 0, 0, time.UTC)
	if err := store.AdvanceWatchCursor(ctx, "apbatch", IncomingPrefix, cursor); err != nil {
		t.Fatal(err)
	}
	objs := []s3.ObjectInfo{
		{Key: "incoming/v/c/old.csv", ETag: "e1", LastModified: cursor.Add(-2 * time.Hour)},
		{Key: "incoming/v/c/late.csv", ETag: "e2", LastModified: cursor.Add(-30 * time.Minute)},
		{Key: "incoming/v/c/new.csv", ETag: "e3", LastModified: cursor.Add(time.Minute)},
	}
	var started []string
	w := &Watcher{S3: fakeLister{objs: objs}, Ledger: store, Interval: time.Minute, Log: zerolog.Nop(),
		Start: func(_ context.Context, up Upload) error {
			started = append(started, up.Key.File+"@"+up.Version)
			return nil
		}}
	if n, err := w.Pass(ctx); err != nil || n != 2 {
		t.Fatalf("Pass = %d, %v", n, err)
	}
	if len(started) != 2 || started[0] != "late.csv@e2" || started[1] != "new.csv@e3" {
		t.Fatalf("started %v", started)
	}
	if c, _ := store.WatchCursor(ctx, "apbatch", IncomingPrefix); !c.Equal(cursor.Add(time.Minute)) {
		t.Fatalf("cursor = %v", c)
	}
}

// fakeLister serves a fixed listing; Head answers from it.
type fakeLister struct{ objs []s3.ObjectInfo }

func (f fakeLister) Bucket() string { return "apbatch" }

func (f fakeLister) List(context.Context, string) ([]s3.ObjectInfo, error) { return f.objs, nil }

func (f fakeLister) Head(_ context.Context, key string) (s3.ObjectInfo, error) {
	for _, o := range f.objs {
		if o.Key == key {
			return o, nil
		}
	}
	return s3.ObjectInfo{}, s3.ErrNotFound
}

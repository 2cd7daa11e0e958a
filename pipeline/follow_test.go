package pipeline

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/apbatch/apbatch/pipeline/ledger"
)

// followStore is a SQLite ledger holding one batch per state wanted, with
// ids "b-<name>".
func followStore(t *testing.T, ctx context.Context, states map[string]string) *ledger.Store {
	t.Helper()
	store, err := ledger.Open(ctx, "sqlite://"+filepath.Join(t.TempDir(), "ledger.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	for name, state := range states {
		id := "b-" + name
		if _, _, err := store.CreateBatch(ctx, ledger.Batch{ID: id, Tenant: "ville-" + name, Campaign: "2027-09", Checks: "quotient_familial",
			Bucket: "apbatch", ObjectKey: "incoming/ville-" + name + "/2027-09/cantine.csv", ObjectVersion: "v1"}); err != nil {
			t.Fatal(err)
		}
		if state == ledger.StateCreated {
			continue
		}
		if err := store.SetSplit(ctx, id, 3, 3, 0); err != nil {
			t.Fatal(err)
		}
		switch state {
		case ledger.StateComplete:
			err = store.Complete(ctx, id, "results/"+id+"/_manifest.json")
		case ledger.StateFailed:
			err = store.Fail(ctx, id, "aucune colonne connue.")
		case ledger.StateCancelled:
			if _, err = store.Cancel(ctx, id, "annulé"); err == nil {
				_, err = store.PublishCancelled(ctx, id, "results/"+id+"/_manifest.json")
			}
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	return store
}

func TestFollower_Follow(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	t.Run("all complete", func(t *testing.T) {
		store := followStore(t, ctx, map[string]string{"a": ledger.StateComplete, "b": ledger.StateComplete})
		views, err := (&Follower{Ledger: store, Interval: 10 * time.Millisecond}).Follow(ctx, []string{"b-a", "b-b"})
		if err != nil || len(views) != 2 || views[0].ID != "b-a" || views[1].State != ledger.StateComplete {
			t.Fatalf("Follow = %+v, %v", views, err)
		}
	})

	t.Run("one refused, one cancelled", func(t *testing.T) {
		store := followStore(t, ctx, map[string]string{"a": ledger.StateComplete, "b": ledger.StateFailed, "c": ledger.StateCancelled})
		_, err := (&Follower{Ledger: store, Interval: 10 * time.Millisecond}).Follow(ctx, []string{"b-a", "b-b", "b-c"})
		var fe *FollowError
		if !errors.As(err, &fe) || len(fe.Failed) != 1 || fe.Failed[0].ID != "b-b" || len(fe.Cancelled) != 1 || fe.Cancelled[0].ID != "b-c" ||
			len(fe.Unfinished) != 0 || fe.Total != 3 {
			t.Fatalf("Follow error %#v", err)
		}
		if want := "2 lot(s) sur 3 sans résultat complet : ville-b (lot b-b) refusé, ville-c (lot b-c) annulé"; err.Error() != want {
			t.Errorf("error %q, want %q", err, want)
		}
		advice := strings.Join(fe.Advice("apbatch status"), "\n")
		for _, want := range []string{"ville-b (lot b-b) : refusé : aucune colonne connue. Corrigez le fichier",
			"apbatch run --tenant ville-b --campaign 2027-09 FICHIER", "apbatch results b-c"} {
			if !strings.Contains(advice, want) {
				t.Errorf("advice lacks %q:\n%s", want, advice)
			}
		}
	})

	t.Run("runs, then completes", func(t *testing.T) {
		store := followStore(t, ctx, map[string]string{"a": ledger.StateSplit})
		var seen []string
		f := &Follower{Ledger: store, Interval: 10 * time.Millisecond, Progress: func(v BatchView) {
			seen = append(seen, FormatProgress(v))
			if v.State == ledger.StateSplit {
				if err := store.Complete(ctx, v.ID, "results/m.json"); err != nil {
					t.Error(err)
				}
			}
		}}
		if _, err := f.Follow(ctx, []string{"b-a"}); err != nil {
			t.Fatal(err)
		}
		if len(seen) != 2 || seen[0] != "ville-a : lot b-a : vérification en cours, 0 %" || seen[1] != "ville-a : lot b-a : terminé, 0 résultat(s)" {
			t.Fatalf("progress %q", seen)
		}
	})

	t.Run("unfinished at the deadline", func(t *testing.T) {
		store := followStore(t, ctx, map[string]string{"a": ledger.StateSplit})
		f := &Follower{Ledger: store, Interval: 10 * time.Millisecond, Timeout: 50 * time.Millisecond}
		_, err := f.Follow(ctx, []string{"b-a", "b-never"})
		var fe *FollowError
		if !errors.As(err, &fe) || len(fe.Unfinished) != 2 || fe.Unfinished[1].State != StatePending {
			t.Fatalf("Follow error %#v", err)
		}
		advice := strings.Join(fe.Advice("apbatch status --db URL"), "\n")
		if !strings.Contains(advice, "toujours en cours") || !strings.Contains(advice, "lot b-never : pas encore reçu par le rôle ingest") ||
			!strings.Contains(advice, "apbatch status --db URL b-never") {
			t.Errorf("advice:\n%s", advice)
		}
	})

	t.Run("interrupted", func(t *testing.T) {
		store := followStore(t, ctx, map[string]string{"a": ledger.StateSplit})
		cctx, stop := context.WithTimeout(ctx, 50*time.Millisecond)
		defer stop()
		_, err := (&Follower{Ledger: store, Interval: 10 * time.Millisecond}).Follow(cctx, []string{"b-a"})
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Follow error %v", err)
		}
	})
}

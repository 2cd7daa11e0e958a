package ledger

import (
	"context"
	"testing"
	"time"
)

func TestStore_LeaseToken(t *testing.T) {
	t0 := time.Date(2026, 9, 1, 20, 0, 0, 0, time.UTC)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	eachLedger(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		key := "k"
		steps := []struct {
			name, holder   string
			now, until     time.Time
			release        bool
			wantOK         bool
			wantPrevHolder string
			wantPrevUntil  time.Time
		}{
			{name: "free token", holder: "a", now: at(0), until: at(2000), wantOK: true},
			{name: "held by another", holder: "b", now: at(500), until: at(2500), wantPrevHolder: "a", wantPrevUntil: at(2000)},
			{name: "renewed by its holder", holder: "a", now: at(1000), until: at(3000), wantOK: true, wantPrevHolder: "a", wantPrevUntil: at(2000)},
			{name: "still held", holder: "b", now: at(2999), until: at(5000), wantPrevHolder: "a", wantPrevUntil: at(3000)},
			{name: "taken once expired", holder: "b", now: at(3001), until: at(5000), wantOK: true, wantPrevHolder: "a", wantPrevUntil: at(3000)},
			{name: "released by its holder", holder: "b", now: at(4000), release: true},
			{name: "free after the release", holder: "a", now: at(4001), until: at(6000), wantOK: true, wantPrevHolder: "b", wantPrevUntil: at(4000)},
			{name: "a release by another holder changes nothing", holder: "b", now: at(4500), release: true},
			{name: "so it is still held", holder: "b", now: at(4600), until: at(7000), wantPrevHolder: "a", wantPrevUntil: at(6000)},
		}
		for _, st := range steps {
			if st.release {
				if err := s.ReleaseToken(ctx, key, st.holder, st.now); err != nil {
					t.Fatalf("%s: %v", st.name, err)
				}
				continue
			}
			ph, pu, ok, err := s.LeaseToken(ctx, key, st.holder, st.now, st.until)
			if err != nil {
				t.Fatalf("%s: %v", st.name, err)
			}
			if ok != st.wantOK || ph != st.wantPrevHolder || !pu.Equal(st.wantPrevUntil) {
				t.Fatalf("%s: LeaseToken = %q, %v, %v; want %q, %v, %v", st.name, ph, pu, ok, st.wantPrevHolder, st.wantPrevUntil, st.wantOK)
			}
		}
	})
}

package workers

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	json "github.com/segmentio/encoding/json"
	kafkago "github.com/segmentio/kafka-go"

	"github.com/apbatch/apbatch/pipeline/keys"
	"github.com/apbatch/apbatch/schemas"
	"github.com/apbatch/apbatch/workers/sandbox"
)

func newTestRing(t *testing.T, kek *keys.Local, previous ...keys.Wrapper) *keys.Ring {
	t.Helper()
	r, err := keys.New(kek, previous...)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func newTestKEK(t *testing.T) *keys.Local {
	t.Helper()
	k := make([]byte, keys.KeySize)
	rand.Read(k)
	l, err := keys.NewLocal(k)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// failingOpener is a hand-written IdentityOpener failing with err.
type failingOpener struct{ err error }

func (f failingOpener) Open(context.Context, *schemas.Job) error { return f.err }

// TestPool_SealedJobs: sealed identities are opened and called for; a job
// whose identity cannot be opened still answers each of its rows (APB_SEAL),
// without a call and without logging the person; a transient failure stops
// the pool with the job uncommitted.
func TestPool_SealedJobs(t *testing.T) {
	sb, err := sandbox.New(sandbox.Config{})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(sb)
	defer srv.Close()
	tok, _ := sandbox.Token([]byte(sandbox.DefaultSecret), sandbox.AllScopes, time.Now().Add(time.Hour))
	lefebvre := schemas.Identity{NomNaissance: "LEFEBVRE", Prenoms: []string{"ALEXIS", "GÉRÔME", "JEAN-PHILIPPE"}, Sexe: "F",
		AnneeNaissance: 1982, MoisNaissance: 12, JourNaissance: 27, CodePaysNaissance: "99100", CodeCommuneNaissance: "08480"}
	workerKEK := newTestKEK(t)
	workerRing := newTestRing(t, workerKEK)
	// jobs seals one job per ring (nil: in clear) with two rows each.
	jobs := func(rings ...*keys.Ring) *fakeJobs {
		fj := &fakeJobs{committed: map[int]int64{}}
		for i, r := range rings {
			job := schemas.Job{Version: schemas.JobVersion, BatchID: "b1", Tenant: "demo", Check: schemas.CheckQuotientFamilial,
				LookupID: fmt.Sprint("l", i), Recipient: "13002526500013", Identity: lefebvre,
				Rows: []schemas.RowRef{{Number: int64(2*i + 1)}, {Number: int64(2*i + 2)}}}
			if r != nil {
				if err := r.Seal(t.Context(), &job); err != nil {
					t.Fatal(err)
				}
			}
			v, _ := json.Marshal(job)
			fj.msgs = append(fj.msgs, kafkago.Message{Topic: "jobs", Offset: int64(i), Value: v})
		}
		return fj
	}
	run := func(t *testing.T, fj *fakeJobs, opener IdentityOpener, allowClear bool) ([]schemas.Result, string, error) {
		t.Helper()
		fr := &fakeResults{}
		var logs bytes.Buffer
		pool := &Pool{Jobs: fj, Results: fr, Client: &Client{BaseURL: srv.URL}, Tokens: func(string) (string, error) { return tok, nil },
			Log: zerolog.New(&logs), Identities: opener, AllowClearJobs: allowClear}
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error, 1)
		go func() { done <- pool.Run(ctx) }()
		for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(10 * time.Millisecond) {
			fj.mu.Lock()
			c, ok := fj.committed[0]
			fj.mu.Unlock()
			if ok && c == int64(len(fj.msgs)-1) {
				break
			}
			select {
			case err := <-done:
				cancel()
				return fr.results, logs.String(), err
			default:
			}
			if time.Now().After(deadline) {
				t.Fatalf("offsets not committed: %d", c)
			}
		}
		cancel()
		err := <-done
		return fr.results, logs.String(), err
	}
	byStatus := func(rs []schemas.Result) map[string]int {
		m := map[string]int{}
		for _, r := range rs {
			m[string(r.Status)+" "+r.ErrorCode]++
		}
		return m
	}

	t.Run("opened and answered", func(t *testing.T) {
		previous := newTestKEK(t)
		// A worker in the grace period of a rotation: current and previous key.
		ring := newTestRing(t, workerKEK, previous)
		res, logs, err := run(t, jobs(workerRing, newTestRing(t, previous), nil), ring, true)
		if err != nil {
			t.Fatal(err)
		}
		if got := byStatus(res); got["ok "] != 6 || len(res) != 6 {
			t.Fatalf("results %v", got)
		}
		if strings.Contains(logs, "LEFEBVRE") {
			t.Fatalf("logs: %s", logs)
		}
	})
	t.Run("unknown key or no keyring: APB_SEAL rows, no call", func(t *testing.T) {
		for name, opener := range map[string]IdentityOpener{"unknown key": workerRing, "no keyring": nil} {
			calls := sb.Calls()
			other := newTestRing(t, newTestKEK(t))
			res, logs, err := run(t, jobs(other, nil), opener, true)
			if err != nil {
				t.Fatal(err)
			}
			got := byStatus(res)
			if got["provider_error "+schemas.CodeSeal] != 2 || got["ok "] != 2 || len(res) != 4 {
				t.Fatalf("%s: results %v", name, got)
			}
			if sb.Calls() != calls+1 {
				t.Fatalf("%s: %d calls, want 1 (the job in clear)", name, sb.Calls()-calls)
			}
			for _, r := range res {
				if r.ErrorCode == schemas.CodeSeal && (!strings.Contains(r.ErrorMessage, "APBATCH_KEK") || r.Attempts != 0) {
					t.Fatalf("%s: %+v", name, r)
				}
			}
			if !strings.Contains(logs, schemas.CodeSeal) || strings.Contains(logs, "LEFEBVRE") || strings.Contains(logs, "1982") {
				t.Fatalf("%s: logs: %s", name, logs)
			}
		}
	})
	t.Run("clear jobs dropped: no call, no result", func(t *testing.T) {
		calls := sb.Calls()
		fj := jobs(nil, workerRing, nil)
		res, logs, err := run(t, fj, workerRing, false)
		if err != nil {
			t.Fatal(err)
		}
		got := byStatus(res)
		if got["ok "] != 2 || len(res) != 2 {
			t.Fatalf("results %v, want the sealed job's 2 rows only", got)
		}
		for _, r := range res {
			if r.RowNumber != 3 && r.RowNumber != 4 {
				t.Fatalf("a clear job was answered: %+v", r)
			}
		}
		if sb.Calls() != calls+1 {
			t.Fatalf("%d calls, want 1 (the sealed job)", sb.Calls()-calls)
		}
		if strings.Count(logs, "in clear") != 2 || strings.Contains(logs, "LEFEBVRE") || strings.Contains(logs, "1982") {
			t.Fatalf("logs: %s", logs)
		}
	})
	t.Run("altered sealed job: APB_SEAL rows, no call", func(t *testing.T) {
		calls := sb.Calls()
		fj := jobs(workerRing, workerRing)
		job, err := schemas.DecodeJob(fj.msgs[0].Value)
		if err != nil || job.Sealed == nil {
			t.Fatalf("decode: %v", err)
		}
		job.Rows = []schemas.RowRef{{Number: 41}} // pointed at another family's row
		fj.msgs[0].Value, _ = json.Marshal(job)
		res, logs, err := run(t, fj, workerRing, false)
		if err != nil {
			t.Fatal(err, logs)
		}
		got := byStatus(res)
		if got["provider_error "+schemas.CodeSeal] != 1 || got["ok "] != 2 || len(res) != 3 || sb.Calls() != calls+1 {
			t.Fatalf("results %v, %d calls; want the altered job's row APB_SEAL without a call", got, sb.Calls()-calls)
		}
	})
	t.Run("transient failure stops the pool uncommitted", func(t *testing.T) {
		down := errors.New("kms out of reach")
		fj := jobs(workerRing)
		res, _, err := run(t, fj, failingOpener{fmt.Errorf("keys: %w", down)}, false)
		if !errors.Is(err, down) || len(res) != 0 {
			t.Fatalf("Run = %v with %d results", err, len(res))
		}
		if c, ok := fj.committed[0]; ok {
			t.Fatalf("offset %d committed", c)
		}
	})
}

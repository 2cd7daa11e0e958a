package pipeline

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/apbatch/apbatch/pipeline/ledger"
	"github.com/apbatch/apbatch/schemas"
)

// hook is a webhook for tests: it answers each POST with the next of
// codes (then 204) and keeps the bodies.
type hook struct {
	mu     sync.Mutex
	codes  []int
	bodies [][]byte
	got    chan struct{}
}

func (h *hook) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	h.mu.Lock()
	code := http.StatusNoContent
	if len(h.codes) > 0 {
		code, h.codes = h.codes[0], h.codes[1:]
	}
	if r.Method == http.MethodPost && r.Header.Get("Content-Type") == "application/json" {
		h.bodies = append(h.bodies, body)
	}
	h.mu.Unlock()
	w.WriteHeader(code)
	if h.got != nil {
		h.got <- struct{}{}
	}
}

func TestNotifier_Send(t *testing.T) {
	ctx := context.Background()
	rows := int64(3)
	b := ledger.Batch{ID: "b123", Tenant: "ville-a", Campaign: "2027-09", Checks: "quotient_familial", RowsTotal: &rows,
		ObjectKey: "incoming/ville-a/2027-09/Dupont Marie 2011-04-02.csv", Error: "ligne 2 : Dupont Marie, date 02/04/2011 invalide",
		CreatedAt: time.Date(2027, 9, 10, 18, 0, 0, 0, time.UTC)}
	counts := ledger.Counts{Rows: 3, ByStatus: map[schemas.Status]int64{schemas.StatusOK: 2, schemas.StatusNotFound: 1}}
	ev := NewBatchEvent(b, ledger.StateComplete, counts, time.Date(2027, 9, 10, 18, 5, 0, 0, time.UTC))

	t.Run("retried, then delivered without personal data", func(t *testing.T) {
		h := &hook{codes: []int{http.StatusServiceUnavailable, http.StatusTooManyRequests}}
		srv := httptest.NewServer(h)
		defer srv.Close()
		n := &Notifier{URL: srv.URL + "/hooks/s3cr3t-path", Backoff: time.Millisecond}
		if err := n.Send(ctx, ev); err != nil {
			t.Fatal(err)
		}
		if len(h.bodies) != 3 {
			t.Fatalf("%d posts, want 3 (two retried)", len(h.bodies))
		}
		var got map[string]any
		if err := json.Unmarshal(h.bodies[2], &got); err != nil {
			t.Fatal(err)
		}
		want := map[string]any{"id": "b123:complete", "event": "batch.complete", "batch_id": "b123", "tenant": "ville-a", "campaign": "2027-09",
			"state": "complete", "checks": []any{"quotient_familial"}, "rows_total": 3.0, "results": 3.0,
			"by_status": map[string]any{"ok": 2.0, "not_found": 1.0}, "created_at": "2027-09-10T18:00:00Z", "ended_at": "2027-09-10T18:05:00Z"}
		if g, w := mustJSON(t, got), mustJSON(t, want); g != w {
			t.Errorf("posted\n%s\nwant\n%s", g, w)
		}
		for _, personal := range []string{"Dupont", "Marie", "2011", "incoming/", ".csv", "ligne"} {
			if bytes.Contains(h.bodies[2], []byte(personal)) {
				t.Errorf("the event holds %q: %s", personal, h.bodies[2])
			}
		}
	})

	t.Run("permanent answer not retried", func(t *testing.T) {
		h := &hook{codes: []int{http.StatusBadRequest}}
		srv := httptest.NewServer(h)
		defer srv.Close()
		err := (&Notifier{URL: srv.URL, Backoff: time.Millisecond}).Send(ctx, ev)
		if err == nil || !strings.Contains(err.Error(), "400") || len(h.bodies) != 1 {
			t.Fatalf("Send = %v after %d posts, want a 400 after one", err, len(h.bodies))
		}
	})

	t.Run("a redirect is not followed", func(t *testing.T) {
		srv := httptest.NewServer(http.RedirectHandler("http://127.0.0.1:1/elsewhere", http.StatusFound))
		defer srv.Close()
		if err := (&Notifier{URL: srv.URL, Backoff: time.Millisecond}).Send(ctx, ev); err == nil || !strings.Contains(err.Error(), "302") {
			t.Fatalf("Send = %v, want the 302", err)
		}
	})

	t.Run("timeout, retries, URL never in the error", func(t *testing.T) {
		release := make(chan struct{})
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-release }))
		defer srv.Close()
		defer close(release)
		start := time.Now()
		err := (&Notifier{URL: srv.URL + "/hooks/s3cr3t-path?token=t0k3n", Timeout: 50 * time.Millisecond, Retries: 1, Backoff: time.Millisecond}).Send(ctx, ev)
		if err == nil || !strings.Contains(err.Error(), "attempt 2 of 2") || time.Since(start) > 5*time.Second {
			t.Fatalf("Send = %v after %s", err, time.Since(start))
		}
		if strings.Contains(err.Error(), "s3cr3t") || strings.Contains(err.Error(), "t0k3n") {
			t.Errorf("the error names the URL: %v", err)
		}
	})
}

// TestNotifier_Run: events queued are sent in order, those still queued
// when the context ends too; a webhook down is logged (component=notify,
// never the URL) and nothing else happens.
func TestNotifier_Run(t *testing.T) {
	h := &hook{got: make(chan struct{}, 10)}
	srv := httptest.NewServer(h)
	defer srv.Close()
	n := &Notifier{URL: srv.URL}
	n.Notify(BatchEvent{ID: "b1:complete", BatchID: "b1"})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- n.Run(ctx) }()
	<-h.got
	n.Notify(BatchEvent{ID: "b2:failed", BatchID: "b2"})
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if len(h.bodies) != 2 || !bytes.Contains(h.bodies[1], []byte(`"b2:failed"`)) {
		t.Fatalf("posted %q", h.bodies)
	}

	var logs bytes.Buffer
	down := &Notifier{URL: "http://127.0.0.1:1/hooks/s3cr3t", Retries: -1, Log: zerolog.New(&logs)}
	down.Notify(BatchEvent{ID: "b3:complete", BatchID: "b3", Tenant: "ville-a", Event: EventBatchComplete})
	stopped, stop := context.WithCancel(context.Background())
	stop()
	if err := down.Run(stopped); err != nil {
		t.Fatal(err)
	}
	if l := logs.String(); !strings.Contains(l, `"component":"notify"`) || !strings.Contains(l, `"batch_id":"b3"`) || strings.Contains(l, "s3cr3t") {
		t.Errorf("log %s", l)
	}
	var none *Notifier
	none.Notify(BatchEvent{ID: "b4:complete"}) // a nil Notifier notifies nothing
}

func TestNotifier_Validate(t *testing.T) {
	for _, tc := range []struct {
		url string
		ok  bool
	}{
		{"https://alerts.example.org/hooks/abc", true},
		{"http://127.0.0.1:9000/x", true},
		{"", false},
		{"alerts.example.org/hooks", false},
		{"ftp://alerts.example.org/", false},
		{"https:///nohost?secret=1", false},
	} {
		err := (&Notifier{URL: tc.url}).Validate()
		if (err == nil) != tc.ok {
			t.Errorf("Validate(%q) = %v, want ok %v", tc.url, err, tc.ok)
		}
		if err != nil && tc.url != "" && strings.Contains(err.Error(), tc.url) {
			t.Errorf("Validate(%q) repeats the URL: %v", tc.url, err)
		}
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

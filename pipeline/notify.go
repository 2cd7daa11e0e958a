package pipeline

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/apbatch/apbatch/pipeline/ledger"
	"github.com/apbatch/apbatch/schemas"
)

// Events a Notifier posts.
const (
	EventBatchComplete  = "batch.complete"
	EventBatchFailed    = "batch.failed"
	EventBatchCancelled = "batch.cancelled"
)

// BatchEvent is the JSON a Notifier posts when a batch ends. It names the
// batch and counts its results, nothing more: no file name, no error
// message (either may quote a person), no identity, no token.
type BatchEvent struct {
	// ID identifies the event, "<batch_id>:<state>": a receiver given the
	// same event twice (a retry whose first answer was lost) drops it.
	ID       string `json:"id"`
	Event    string `json:"event"`
	BatchID  string `json:"batch_id"`
	Tenant   string `json:"tenant"`
	Campaign string `json:"campaign"`
	// State is the batch's state in the ledger: complete, failed or
	// cancelled.
	State  string          `json:"state"`
	Checks []schemas.Check `json:"checks"`
	// RowsTotal is the roster's rows (0 for a file refused before its
	// rows were read); Results the results recorded, ByStatus those by
	// status.
	RowsTotal int64                    `json:"rows_total"`
	Results   int64                    `json:"results"`
	ByStatus  map[schemas.Status]int64 `json:"by_status"`
	CreatedAt time.Time                `json:"created_at"`
	EndedAt   time.Time                `json:"ended_at"`
}

// NewBatchEvent is the event of batch b ended in state at endedAt, with
// its results counted by counts.
func NewBatchEvent(b ledger.Batch, state string, counts ledger.Counts, endedAt time.Time) BatchEvent {
	ev := BatchEvent{ID: b.ID + ":" + state, BatchID: b.ID, Tenant: b.Tenant, Campaign: b.Campaign, State: state,
		Checks: b.CheckList(), Results: counts.Rows, ByStatus: counts.ByStatus, CreatedAt: b.CreatedAt.UTC(), EndedAt: endedAt.UTC()}
	switch state {
	case ledger.StateComplete:
		ev.Event = EventBatchComplete
	case ledger.StateFailed:
		ev.Event = EventBatchFailed
	default:
		ev.Event = EventBatchCancelled
	}
	if b.RowsTotal != nil {
		ev.RowsTotal = *b.RowsTotal
	}
	if ev.ByStatus == nil {
		ev.ByStatus = map[schemas.Status]int64{}
	}
	return ev
}

// Notifier posts a BatchEvent to a webhook when a batch ends (complete,
// refused at split, or cancelled and published), for the operator's
// alerting: the roles that end batches (ingest, write) call Notify, Run
// sends. Sending never holds a role up: Notify queues, and an event that
// cannot be delivered (a full queue, a webhook down past the retries) is
// logged and dropped; the batch is not affected. Delivery is at most
// once per process: an event queued when a process is killed is lost,
// and the ledger stays the reference (apbatch status).
//
// A nil *Notifier notifies nothing. Notify is safe for concurrent use.
type Notifier struct {
	// URL receives the events, POSTed as JSON. It may hold a secret (a
	// token in its path or query): it is never logged. Required.
	URL string
	// Client sends the events; it must not follow redirects (a POST
	// would become a GET). Default: an http.Client that does not.
	Client *http.Client
	// Timeout bounds each attempt. Default: 5 s.
	Timeout time.Duration
	// Retries is how many times an event is sent again after a network
	// error, a 429 or a 5xx answer; other answers are not retried.
	// Default: 2; negative: none.
	Retries int
	// Backoff is the wait before the first retry, doubled before each
	// next one. Default: 1 s.
	Backoff time.Duration
	// QueueSize is how many events wait to be sent at most.
	// Default: 100.
	QueueSize int
	// DrainTimeout bounds the sending of the events still queued when
	// Run's context ends. Default: 10 s.
	DrainTimeout time.Duration
	// Log receives delivery failures, with component=notify.
	Log zerolog.Logger

	once  sync.Once
	queue chan BatchEvent
}

// Validate checks the URL: absolute, http or https. Its errors do not
// repeat it.
func (n *Notifier) Validate() error {
	u, err := url.Parse(n.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return errors.New("notify: URL: want an absolute http:// or https:// URL")
	}
	return nil
}

func (n *Notifier) init() {
	n.once.Do(func() {
		size := n.QueueSize
		if size <= 0 {
			size = 100
		}
		n.queue = make(chan BatchEvent, size)
		if n.Client == nil {
			n.Client = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
		}
	})
}

// Notify queues ev for Run to send, without blocking; when the queue is
// full the event is logged and dropped.
func (n *Notifier) Notify(ev BatchEvent) {
	if n == nil {
		return
	}
	n.init()
	select {
	case n.queue <- ev:
	default:
		n.log(ev).Warn().Msg("notification dropped: too many waiting")
	}
}

// Run sends the queued events, one at a time, until ctx ends; then it
// sends those still queued, and returns nil. The sending in flight when
// ctx ends, and those after it, have DrainTimeout from then.
func (n *Notifier) Run(ctx context.Context) error {
	n.init()
	drain := n.DrainTimeout
	if drain <= 0 {
		drain = 10 * time.Second
	}
	sendCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	defer context.AfterFunc(ctx, func() { time.AfterFunc(drain, cancel) })()
	for {
		select {
		case ev := <-n.queue:
			n.deliver(sendCtx, ev)
		case <-ctx.Done():
			for {
				select {
				case ev := <-n.queue:
					n.deliver(sendCtx, ev)
				default:
					return nil
				}
			}
		}
	}
}

// deliver sends ev, logging a failure.
func (n *Notifier) deliver(ctx context.Context, ev BatchEvent) {
	if err := n.Send(ctx, ev); err != nil {
		n.log(ev).Warn().Err(err).Msg("notification not delivered; the batch is not affected")
	}
}

func (n *Notifier) log(ev BatchEvent) *zerolog.Logger {
	l := n.Log.With().Str("component", "notify").Str("batch_id", ev.BatchID).Str("tenant", ev.Tenant).Str("event", ev.Event).Logger()
	return &l
}

// Send posts ev now, retrying as configured; it blocks until a 2xx answer,
// a permanent failure, the last retry or ctx's end. Errors do not name
// the URL.
func (n *Notifier) Send(ctx context.Context, ev BatchEvent) error {
	n.init()
	body, err := json.Marshal(ev)
	if err != nil {
		return fmt.Errorf("notify: encode: %w", err)
	}
	retries := n.Retries
	switch {
	case retries == 0:
		retries = 2
	case retries < 0:
		retries = 0
	}
	wait := n.Backoff
	if wait <= 0 {
		wait = time.Second
	}
	for attempt := 0; ; attempt++ {
		retry, err := n.post(ctx, body)
		if err == nil {
			return nil
		}
		if !retry || attempt >= retries {
			return fmt.Errorf("notify: attempt %d of %d: %w", attempt+1, retries+1, err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("notify: attempt %d of %d: %w (then %w)", attempt+1, retries+1, err, ctx.Err())
		case <-time.After(wait):
		}
		wait *= 2
	}
}

// post makes one attempt; retry tells whether another may succeed.
func (n *Notifier) post(ctx context.Context, body []byte) (retry bool, err error) {
	timeout := n.Timeout
	if timeout <= 0 {
		timeout = 5 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, n.URL, bytes.NewReader(body))
	if err != nil {
		return false, errors.New("bad URL")
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "apbatch")
	resp, err := n.Client.Do(req)
	if err != nil {
		// A *url.Error repeats the URL, which may hold a secret.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return true, fmt.Errorf("post: %w", err)
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	switch {
	case resp.StatusCode >= 200 && resp.StatusCode < 300:
		return false, nil
	case resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500:
		return true, fmt.Errorf("answer %s", strings.TrimSpace(resp.Status))
	}
	return false, fmt.Errorf("answer %s (not retried)", strings.TrimSpace(resp.Status))
}

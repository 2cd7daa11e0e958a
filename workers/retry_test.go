package workers

import (
	"testing"
	"time"

	"github.com/apbatch/apbatch/schemas"
)

func TestRetryPolicy_Delay(t *testing.T) {
	p := RetryPolicy{Rand: func() float64 { return 0.5 }}
	for _, tc := range []struct {
		name      string
		n         int
		o         Outcome
		wantRetry bool
		wantDelay time.Duration
	}{
		{"200 final", 1, Outcome{HTTPStatus: 200}, false, 0},
		{"404 final", 1, Outcome{HTTPStatus: 404, Code: "37003"}, false, 0},
		{"422 final", 1, Outcome{HTTPStatus: 422, Code: "00355"}, false, 0},
		{"401 final", 1, Outcome{HTTPStatus: 401, Code: "00101"}, false, 0},
		{"410 final", 1, Outcome{HTTPStatus: 410}, false, 0},
		{"429 honours retry-after", 1, Outcome{HTTPStatus: 429, Retryable: true, RetryAfter: 2 * time.Second}, true, 2 * time.Second},
		{"409 backoff", 1, Outcome{HTTPStatus: 409, Retryable: true}, true, 250 * time.Millisecond},
		{"502 backoff grows", 3, Outcome{HTTPStatus: 502, Code: "37000", Retryable: true}, true, time.Second},
		{"503 retry_in", 1, Outcome{HTTPStatus: 503, Code: "37020", Retryable: true, RetryAfter: 10 * time.Second}, true, 10 * time.Second},
		{"504 backoff", 2, Outcome{HTTPStatus: 504, Code: "37002", Retryable: true}, true, 500 * time.Millisecond},
		{"502 XX999 once", 1, Outcome{HTTPStatus: 502, Code: "37999", Kind: schemas.KindProviderUnknown, Retryable: true}, true, 250 * time.Millisecond},
		{"502 XX999 not twice", 2, Outcome{HTTPStatus: 502, Code: "37999", Kind: schemas.KindProviderUnknown, Retryable: true}, false, 0},
		{"attempts spent", 5, Outcome{HTTPStatus: 504, Retryable: true}, false, 0},
		{"backoff capped", 4, Outcome{HTTPStatus: 502, Retryable: true}, true, 2 * time.Second},
		{"provider throttling waits long", 1, Outcome{HTTPStatus: 502, Code: "37008", Kind: schemas.KindProviderThrottled, Retryable: true}, true, 5*time.Minute + 15*time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, ok := p.Delay(tc.n, tc.o)
			if ok != tc.wantRetry || d != tc.wantDelay {
				t.Fatalf("Delay = %v, %v; want %v, %v", d, ok, tc.wantDelay, tc.wantRetry)
			}
		})
	}
	capped := RetryPolicy{MaxAttempts: 20, MaxDelay: time.Second, Rand: func() float64 { return 0.999 }}
	if d, _ := capped.Delay(15, Outcome{HTTPStatus: 502, Retryable: true}); d > time.Second {
		t.Fatalf("capped delay %v", d)
	}
}

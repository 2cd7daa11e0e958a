package pipeline

import (
	"testing"
	"time"
)

// TestPollInterval: one batch is polled every 25 ms, many less often per
// batch, a long wait at least a thousandth of its time apart, never less
// than once a second.
func TestPollInterval(t *testing.T) {
	for _, tc := range []struct {
		n       int
		elapsed time.Duration
		want    time.Duration
	}{
		{0, 0, 25 * time.Millisecond},
		{1, 0, 25 * time.Millisecond},
		{1, 10 * time.Second, 25 * time.Millisecond},
		{1, 3 * time.Minute, 180 * time.Millisecond},
		{1, time.Hour, time.Second},
		{4, 0, 100 * time.Millisecond},
		{40, 0, time.Second},
		{200, time.Minute, time.Second},
	} {
		if got := PollInterval(tc.n, tc.elapsed); got != tc.want {
			t.Errorf("PollInterval(%d, %v) = %v, want %v", tc.n, tc.elapsed, got, tc.want)
		}
	}
}

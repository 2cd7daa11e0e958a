package workers

import (
	"context"
	"time"
)

// parkAfter is the retry wait from which a job waits parked rather than
// holding its call slot.
const parkAfter = 2 * time.Second

// jobSlots are the slots one job holds: a call slot (bounding calls in
// flight) while it calls, a parked slot instead while it waits for a
// provider, and a post slot while its audit and results are written. The
// zero value (no channels) holds nothing and parks nothing.
type jobSlots struct {
	call, parked, post chan struct{}
	held, posted       bool
}

// park gives the call slot back while wait runs, waiting in a parked slot
// (bounded: when every one is taken, the call slot is kept), then takes a
// call slot again, unless ctx ends. wait's error is returned.
func (s *jobSlots) park(ctx context.Context, wait func() error) error {
	if s == nil || !s.held {
		return wait()
	}
	select {
	case s.parked <- struct{}{}:
	default:
		return wait()
	}
	<-s.call
	s.held = false
	err := wait()
	<-s.parked
	select {
	case s.call <- struct{}{}:
		s.held = true
	case <-ctx.Done(): // the caller sees ctx end
	}
	return err
}

// afterCalls trades the call slot for a post slot.
func (s *jobSlots) afterCalls(ctx context.Context) {
	if s == nil {
		return
	}
	if s.post != nil {
		select {
		case s.post <- struct{}{}:
			s.posted = true
		case <-ctx.Done():
		}
	}
	if s.held {
		<-s.call
		s.held = false
	}
}

// releaseAll frees what the job still holds.
func (s *jobSlots) releaseAll() {
	if s.held {
		<-s.call
		s.held = false
	}
	if s.posted {
		<-s.post
		s.posted = false
	}
}

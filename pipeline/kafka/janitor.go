package kafka

import (
	"context"
	"sync"
	"time"

	kafkago "github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// The embedded broker (kfake) sometimes keeps a consumer-group member whose
// process was killed in a Stable group, holding its partitions for good:
// nobody reads them and the batch never completes (seen in the chaos test,
// about one run in ten: a group Stable minutes after a SIGKILL, with the
// dead member's partitions). A real Kafka cluster expires such a member
// after its session timeout. The janitor makes the embedded broker do the
// same: it watches every member's join, sync and heartbeat requests, and
// removes (LeaveGroup on its behalf) a member silent for longer than
// janitorGrace times its session timeout.

// janitorGrace is how many session timeouts a member may stay silent
// before the janitor removes it; the broker's own expiry should come first.
const janitorGrace = 3

// janitorEvery is the pause between two sweeps.
const janitorEvery = time.Second

type memberKey struct{ group, member string }

type memberSeen struct {
	at      time.Time
	session time.Duration
}

// janitor tracks group members' activity on the broker and evicts the
// silent ones.
type janitor struct {
	cfg Config
	now func() time.Time

	mu      sync.Mutex
	seen    map[memberKey]memberSeen
	session map[string]time.Duration // by member id, from its join
}

func newJanitor(cfg Config) *janitor {
	return &janitor{cfg: cfg, now: time.Now, seen: map[memberKey]memberSeen{}, session: map[string]time.Duration{}}
}

// observe records a member's activity; it never handles the request (the
// broker processes it as usual). For kfake's Control.
func (j *janitor) observe(req kmsg.Request) (kmsg.Response, error, bool) {
	switch r := req.(type) {
	case *kmsg.JoinGroupRequest:
		j.touch(r.Group, r.MemberID, time.Duration(r.SessionTimeoutMillis)*time.Millisecond)
	case *kmsg.SyncGroupRequest:
		j.touch(r.Group, r.MemberID, 0)
	case *kmsg.HeartbeatRequest:
		j.touch(r.Group, r.MemberID, 0)
	}
	return nil, nil, false
}

func (j *janitor) touch(group, member string, session time.Duration) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if member == "" {
		// A first join: the broker names the member in its answer, and
		// the member's next request carries it.
		return
	}
	if session > 0 {
		j.session[member] = session
	}
	s := j.session[member]
	if s <= 0 {
		s = MinSessionTimeout
	}
	j.seen[memberKey{group, member}] = memberSeen{at: j.now(), session: s}
}

// groups returns the groups members were seen in.
func (j *janitor) groups() []string {
	j.mu.Lock()
	defer j.mu.Unlock()
	set := map[string]bool{}
	for k := range j.seen {
		set[k.group] = true
	}
	out := make([]string, 0, len(set))
	for g := range set {
		out = append(out, g)
	}
	return out
}

// silent returns which of the group's current members have been silent
// too long, and forgets members no longer in the group. A member the
// janitor never saw (restored from the data directory) starts its clock now.
func (j *janitor) silent(group string, members []string) []string {
	j.mu.Lock()
	defer j.mu.Unlock()
	now := j.now()
	current := map[string]bool{}
	var out []string
	for _, m := range members {
		current[m] = true
		k := memberKey{group, m}
		s, ok := j.seen[k]
		if !ok {
			j.seen[k] = memberSeen{at: now, session: MinSessionTimeout}
			continue
		}
		if now.Sub(s.at) > janitorGrace*s.session {
			out = append(out, m)
		}
	}
	for k := range j.seen {
		if k.group == group && !current[k.member] {
			delete(j.seen, k)
			delete(j.session, k.member)
		}
	}
	return out
}

// run sweeps the groups every janitorEvery until ctx ends.
func (j *janitor) run(ctx context.Context) {
	client := j.cfg.Client(5 * time.Second)
	defer closeIdle(client.Transport)
	t := time.NewTicker(janitorEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		groups := j.groups()
		if len(groups) == 0 {
			continue
		}
		resp, err := client.DescribeGroups(ctx, &kafkago.DescribeGroupsRequest{GroupIDs: groups})
		if err != nil {
			continue // the broker is starting or stopping
		}
		for _, g := range resp.Groups {
			if g.Error != nil {
				continue
			}
			ids := make([]string, 0, len(g.Members))
			for _, m := range g.Members {
				ids = append(ids, m.MemberID)
			}
			dead := j.silent(g.GroupID, ids)
			if len(dead) == 0 {
				continue
			}
			req := &kafkago.LeaveGroupRequest{GroupID: g.GroupID}
			for _, id := range dead {
				req.Members = append(req.Members, kafkago.LeaveGroupRequestMember{ID: id})
			}
			client.LeaveGroup(ctx, req) // retried at the next sweep if it failed
		}
	}
}

package kafka

import (
	"slices"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"
)

func TestJanitor_EvictsOnlySilentMembers(t *testing.T) {
	now := time.Date(2026, 9, 1, 8, 0, 0, 0, time.UTC)
	j := newJanitor("127.0.0.1:0")
	j.now = func() time.Time { return now }
	join := func(member string) {
		r := kmsg.NewPtrJoinGroupRequest()
		r.Group, r.MemberID, r.SessionTimeoutMillis = "writers", member, 6000
		j.observe(r)
	}
	beat := func(member string) {
		r := kmsg.NewPtrHeartbeatRequest()
		r.Group, r.MemberID = "writers", member
		j.observe(r)
	}
	join("") // a first join names no member: nothing to track
	join("alive")
	join("killed")
	if got := j.groups(); !slices.Equal(got, []string{"writers"}) {
		t.Fatalf("groups = %v", got)
	}
	for i := 0; i < 20; i++ { // 20 s: the live member beats, the killed one does not
		now = now.Add(time.Second)
		beat("alive")
	}
	members := []string{"alive", "killed", "restored"}
	if got := j.silent("writers", members); !slices.Equal(got, []string{"killed"}) {
		t.Fatalf("silent = %v, want [killed]", got)
	}
	// A member the janitor never saw (restored from disk) gets its own
	// grace; members gone from the group are forgotten.
	now = now.Add(10 * time.Second)
	beat("alive")
	if got := j.silent("writers", []string{"alive", "restored"}); len(got) != 0 {
		t.Fatalf("silent = %v, want none yet", got)
	}
	now = now.Add(10 * time.Second)
	beat("alive")
	if got := j.silent("writers", []string{"alive", "restored"}); !slices.Equal(got, []string{"restored"}) {
		t.Fatalf("silent = %v, want [restored]", got)
	}
	if _, ok := j.seen[memberKey{"writers", "killed"}]; ok {
		t.Error("a member gone from the group is still tracked")
	}
}

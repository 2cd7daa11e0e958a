package kafka

import (
	"context"
	"slices"
	"testing"
	"time"

	kafkago "github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func TestJanitor_EvictsOnlySilentMembers(t *testing.T) {
	now := time.Date(2026, 9, 1, 8, 0, 0, 0, time.UTC)
	j := newJanitor(Config{Brokers: []string{"127.0.0.1:0"}})
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

// The janitor's eviction, a LeaveGroup on a member's behalf, removes that
// member from the embedded broker's group.
func TestJanitor_LeaveOnBehalfRemovesTheMember(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	b := &Broker{}
	if err := b.Open(ctx); err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	cfg := Config{Brokers: b.Addrs()}
	if err := EnsureTopics(ctx, cfg, "t"); err != nil {
		t.Fatal(err)
	}
	r := NewReader(cfg, "g", "t")
	defer r.Close()
	go func() { r.FetchMessage(ctx) }() // drives the group membership
	client := &kafkago.Client{Addr: kafkago.TCP(b.Addrs()[0]), Timeout: 5 * time.Second}
	members := func() []string {
		resp, err := client.DescribeGroups(ctx, &kafkago.DescribeGroupsRequest{GroupIDs: []string{"g"}})
		if err != nil || len(resp.Groups) == 0 {
			return nil
		}
		var ids []string
		for _, m := range resp.Groups[0].Members {
			ids = append(ids, m.MemberID)
		}
		return ids
	}
	var first []string
	for len(first) == 0 {
		if ctx.Err() != nil {
			t.Fatal("the reader never joined")
		}
		time.Sleep(100 * time.Millisecond)
		first = members()
	}
	if _, err := client.LeaveGroup(ctx, &kafkago.LeaveGroupRequest{GroupID: "g",
		Members: []kafkago.LeaveGroupRequestMember{{ID: first[0]}}}); err != nil {
		t.Fatal(err)
	}
	for slices.Contains(members(), first[0]) {
		if ctx.Err() != nil {
			t.Fatalf("member %s still in the group", first[0])
		}
		time.Sleep(100 * time.Millisecond)
	}
}

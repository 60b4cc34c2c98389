package natsraft

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

// TestTrackRaftForgetsGroupsGone checks that the collector's memory of a
// node's Raft positions holds the groups of the latest sweep only: with
// streams and consumers coming and going (ephemeral consumers above all),
// a memory of every group ever seen would grow without bound.
func TestTrackRaftForgetsGroupsGone(t *testing.T) {
	h := newHealthMemory()
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	at := start.Add(time.Minute)
	report := func(groups ...string) *nodeReport {
		r := &nodeReport{raft: map[string]raftzGroupDoc{}}
		r.varz.Start = start
		for _, g := range groups {
			r.raft[g] = raftzGroupDoc{Term: 1, PIndex: 10}
		}
		return r
	}
	for i := range 100 {
		at = at.Add(time.Second)
		h.trackRaft(at, "nats-0", report(metaRaftGroup, fmt.Sprintf("C-ephemeral-%d", i)))
	}
	assert.Len(t, h.raft["nats-0"].pos, 2, "the meta group and the one consumer of the last sweep")
	assert.Contains(t, h.raft["nats-0"].pos, "C-ephemeral-99")
}

// TestKeepUnreported checks that a group no node reports any more while
// a member is down or quiesced stays in the view as unavailable, even when
// another member is up (it may not have recovered the group yet after a
// restart), while one whose members all answer with JetStream on and do
// not report it is gone.
func TestKeepUnreported(t *testing.T) {
	at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	node := func(name string, reachable, js bool) Node {
		return Node{Name: name, Reachable: reachable, JetStream: js}
	}
	r1 := func(name, on string) Group {
		return Group{Kind: KindStream, Account: "APP", Stream: name, Name: name, Leader: on, LeaderSince: &at,
			Peers: []Peer{{Name: on, Leader: true, Current: true, Healthy: true, Own: &MemberState{}}}}
	}
	// A group of two replicas, n0 quiesced and n3 up but restarting: n3
	// has not recovered the stream yet.
	r2 := Group{Kind: KindStream, Account: "APP", Stream: "restarting", Name: "restarting", Leader: "n3",
		Peers: []Peer{{Name: "n0", Current: true, Healthy: true}, {Name: "n3", Leader: true, Current: true, Healthy: true}}}
	// A group of two replicas on two nodes that are up: deleted.
	deleted2 := Group{Kind: KindStream, Account: "APP", Stream: "deleted2", Name: "deleted2", Leader: "n2",
		Peers: []Peer{{Name: "n2", Leader: true, Current: true, Healthy: true}, {Name: "n3", Current: true, Healthy: true}}}
	// n4 is back with its JetStream on, still recovering its streams from
	// disk: it does not list its stream of one replica yet.
	recovering := node("n4", true, true)
	recovering.Recovering = true
	prev := &View{At: at, Nodes: []Node{node("n0", true, true), node("n1", true, true), node("n2", true, true), node("n3", true, true), node("n4", true, true)},
		Groups: []Group{r1("quiesced", "n0"), r1("crashed", "n1"), r1("deleted", "n2"), r2, deleted2, r1("recovering", "n4")}}
	v := &View{At: at.Add(time.Second), Nodes: []Node{node("n0", true, false), node("n1", false, false), node("n2", true, true), node("n3", true, true), recovering}}
	keepUnreported(v, prev)
	var names []string
	for _, g := range v.Groups {
		names = append(names, g.Name)
		assert.Empty(t, g.Leader, g.Name)
		assert.Nil(t, g.LeaderSince, g.Name)
		for _, p := range g.Peers {
			assert.False(t, p.Current, "%s on %s", g.Name, p.Name)
			assert.False(t, p.Healthy)
			assert.Nil(t, p.Own)
		}
	}
	assert.Equal(t, []string{"crashed", "quiesced", "recovering", "restarting"}, names)
	assert.True(t, prev.Groups[0].Peers[0].Current, "the previous view is left alone")
}

// TestRecoveringNode checks that a clustered server whose JetStream is on
// but has no meta group yet counts as recovering: NATS lists a stream in
// /jsz once it has recovered it and starts the meta group after all of
// them, so such a node may not list every group it holds, and it is not
// ready. A server with no cluster has no meta group at all.
func TestRecoveringNode(t *testing.T) {
	rs := synthHealthy()
	rs["n2"].jsz.Meta = nil
	rs["n2"].jsz.Accounts = nil
	v := buildView(time.Now(), reportList(rs))
	n2, _ := v.Node("n2")
	assert.True(t, n2.Recovering)
	assert.True(t, n2.Serving())
	assert.False(t, n2.ListsAllGroups())
	ready, why := v.NodeReady("n2")
	assert.False(t, ready)
	assert.Contains(t, why, "still recovering")
	n0, _ := v.Node("n0")
	assert.False(t, n0.Recovering)
	assert.True(t, n0.ListsAllGroups())

	rs["n2"].varz.Cluster.Name = ""
	v = buildView(time.Now(), reportList(rs))
	n2, _ = v.Node("n2")
	assert.False(t, n2.Recovering, "no cluster, no meta group")
}

// TestCompleteLeaderless checks that a leaderless group keeps the members
// the previous view had for it: a server whose JetStream has just started
// reports a stream with no leader and no peer but itself, and the group
// must not seem to have lost its other members. A group with a leader is
// what its leader lists; the previous view is left alone.
func TestCompleteLeaderless(t *testing.T) {
	at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	r2 := func(name, leader string, peers ...Peer) Group {
		return Group{Kind: KindStream, Account: "APP", Stream: name, Name: name, Leader: leader, Peers: peers}
	}
	led := []Peer{{Name: "n0", Leader: true, Current: true, Healthy: true}, {Name: "n1", Current: true, Healthy: true}}
	prev := &View{At: at, Nodes: []Node{{Name: "n0", Reachable: true, JetStream: true}, {Name: "n1", Reachable: true, JetStream: true}},
		Groups: []Group{r2("restarting", "n0", led...), r2("moved", "n0", led...), r2("new", "n0", led...)}}
	v := &View{At: at.Add(time.Second), Nodes: []Node{{Name: "n0", Reachable: false}, {Name: "n1", Reachable: true, JetStream: true}},
		Groups: []Group{
			r2("moved", "n2", Peer{Name: "n1", Current: true, Healthy: true}, Peer{Name: "n2", Leader: true, Current: true, Healthy: true}),
			r2("restarting", "", Peer{Name: "n1"}),
		}}
	completeLeaderless(v, prev)
	got := map[string]Group{}
	for _, g := range v.Groups {
		got[g.Name] = g
	}
	assert.Equal(t, []Peer{{Name: "n0", Offline: true}, {Name: "n1"}}, got["restarting"].Peers, "n0 completed, offline: its node did not answer")
	assert.Equal(t, []string{"n1", "n2"}, got["moved"].PeerNames(), "a led group is its leader's list")
	assert.Len(t, prev.Groups[0].Peers, 2)
	assert.True(t, prev.Groups[0].Peers[1].Current, "the previous view is left alone")
}

// TestRaftlessClaimIsNoLeadership checks the report of a server whose Raft
// node for a stream of three replicas does not run yet (its JetStream has
// just started): NATS names the server itself as the leader, with no Raft
// group and no replica, as for a stream of one replica. It is no
// leadership: with n0 down and n1 quiesced, n2's raftless report made the
// stream seem led by n2 alone, and the safety rule saw no other member.
// The previous view completes its members. A stream configured with one
// replica reported so is led by its server.
func TestRaftlessClaimIsNoLeadership(t *testing.T) {
	prev := buildView(time.Now(), reportList(synthHealthy()))
	rs := synthHealthy()
	rs["n0"].err = errors.New("connection refused")
	rs["n1"].jsz = jszDoc{Disabled: true}
	s := &rs["n2"].jsz.Accounts[0].Streams[0]
	s.Cluster = &clusterDoc{Name: "dc1", Leader: "n2"}
	s.Config = &struct {
		Replicas int `json:"num_replicas"`
	}{Replicas: 3}
	s.Consumers = nil
	v := buildView(time.Now(), reportList(rs))
	g := groupNamed(t, v, "s")
	assert.Empty(t, g.Leader, "a raftless report leads nothing")
	assert.Equal(t, []string{"n2"}, g.PeerNames(), "only the reporter is known from this sweep")
	assert.Equal(t, 3, g.Replicas)
	assert.Equal(t, 2, g.Unnamed(), "two members are named by no report")
	assert.Equal(t, 2, g.Quorum(), "the quorum of three members")
	completeLeaderless(v, prev)
	g = groupNamed(t, v, "s")
	assert.Equal(t, []string{"n0", "n1", "n2"}, g.PeerNames())
	assert.Zero(t, g.Unnamed())
	for _, p := range g.Peers {
		assert.False(t, p.Current, p.Name)
	}

	s.Config.Replicas = 1
	v = buildView(time.Now(), reportList(rs))
	assert.Equal(t, "n2", groupNamed(t, v, "s").Leader, "one replica: its server leads it")
}

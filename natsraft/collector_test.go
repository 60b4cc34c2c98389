package natsraft

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// synthReport is a node report as a sweep would have decoded it: one node
// of dc1 with routes to the given peers.
func synthReport(name string, routes ...string) *nodeReport {
	r := &nodeReport{
		ep:     Endpoint{Name: name, DC: "dc1", MonitorURL: "http://" + name},
		routes: slices.Sorted(slices.Values(routes)),
		raft:   map[string]raftzGroupDoc{},
	}
	r.varz.Name, r.varz.ID = name, "ID-"+name
	r.varz.Cluster.Name = "dc1"
	return r
}

// replicas builds the replica list a leader reports: every named peer
// current, last heard from 100 ms ago.
func synthReplicas(names ...string) []peerDoc {
	out := make([]peerDoc, len(names))
	for i, n := range names {
		out[i] = peerDoc{Name: n, Current: true, Active: 100 * time.Millisecond, Peer: NodeHash(n)}
	}
	return out
}

// synthHealthy is a healthy 3-node cluster: n0 leads meta and stream s,
// n2 leads consumer s/c; every other node reports the same groups as a
// follower.
func synthHealthy() map[string]*nodeReport {
	rs := map[string]*nodeReport{
		"n0": synthReport("n0", "n1", "n2"),
		"n1": synthReport("n1", "n0", "n2"),
		"n2": synthReport("n2", "n0", "n1"),
	}
	leaders := map[string]string{"meta": "n0", "s": "n0", "c": "n2"}
	for name, r := range rs {
		// A leader lists its followers, a follower the leader and the other
		// follower: either way, every other node.
		others := func(string) []peerDoc {
			var names []string
			for _, n := range []string{"n0", "n1", "n2"} {
				if n != name {
					names = append(names, n)
				}
			}
			return synthReplicas(names...)
		}
		r.jsz.Meta = &clusterDoc{Name: "dc1", Leader: leaders["meta"], Replicas: others(leaders["meta"])}
		r.jsz.Accounts = []accountDoc{{ID: "APP", Streams: []streamDoc{{
			Name:    "s",
			Cluster: &clusterDoc{Name: "dc1", RaftGroup: "S-1", Leader: leaders["s"], Replicas: others(leaders["s"])},
			Consumers: []consumerDoc{{
				Name:    "c",
				Cluster: &clusterDoc{Name: "dc1", RaftGroup: "C-1", Leader: leaders["c"], Replicas: others(leaders["c"])},
			}},
		}}}}
		term := uint64(5)
		if name == "n0" {
			term = 6
		}
		r.raft[metaRaftGroup] = raftzGroupDoc{Term: term, Committed: 40, Applied: 39}
		r.raft["S-1"] = raftzGroupDoc{Term: term, Committed: 10, Applied: 10}
		r.raft["C-1"] = raftzGroupDoc{Term: 2, Committed: 7, Applied: 7}
	}
	return rs
}

func reportList(rs map[string]*nodeReport) []*nodeReport {
	out := make([]*nodeReport, 0, len(rs))
	for _, name := range slices.Sorted(func(yield func(string) bool) {
		for k := range rs {
			if !yield(k) {
				return
			}
		}
	}) {
		out = append(out, rs[name])
	}
	return out
}

func groupNamed(t *testing.T, v *View, name string) Group {
	t.Helper()
	g, ok := lookupGroup(v, name)
	require.True(t, ok, "group %s not in view", name)
	return g
}

func lookupGroup(v *View, name string) (Group, bool) {
	for _, g := range v.Groups {
		if g.Name == name {
			return g, true
		}
	}
	return Group{}, false
}

func TestBuildViewHealthy(t *testing.T) {
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	v := buildView(at, reportList(synthHealthy()))

	assert.Equal(t, at, v.At)
	require.Len(t, v.Groups, 3)
	assert.Equal(t, []string{MetaGroupName, "s", "s/c"}, []string{v.Groups[0].Name, v.Groups[1].Name, v.Groups[2].Name})
	assert.Equal(t, []GroupKind{KindMeta, KindStream, KindConsumer}, []GroupKind{v.Groups[0].Kind, v.Groups[1].Kind, v.Groups[2].Kind})

	meta := v.Groups[0]
	assert.Equal(t, "n0", meta.Leader)
	assert.Empty(t, meta.Cluster)
	assert.Equal(t, metaRaftGroup, meta.RaftGroup)
	assert.Equal(t, uint64(6), meta.Term, "term from the leader's raftz")
	assert.Equal(t, uint64(40), meta.Commit)
	assert.Equal(t, uint64(39), meta.Applied)

	s := v.Groups[1]
	assert.Equal(t, "APP", s.Account)
	assert.Equal(t, "s", s.Stream)
	assert.Equal(t, "dc1", s.Cluster)
	assert.Equal(t, "S-1", s.RaftGroup)
	c := v.Groups[2]
	assert.Equal(t, "n2", c.Leader)
	assert.Equal(t, "c", c.Consumer)
	assert.Equal(t, "C-1", c.RaftGroup)

	for _, g := range v.Groups {
		assert.Equal(t, []string{"n0", "n1", "n2"}, g.PeerNames(), g.Name)
		assert.Nil(t, g.LeaderlessSince, g.Name)
		for _, p := range g.Peers {
			assert.True(t, p.Current, "%s %s", g.Name, p.Name)
			assert.Equal(t, p.Name == g.Leader, p.Leader, "%s %s", g.Name, p.Name)
		}
	}

	require.Len(t, v.Nodes, 3)
	wantLeads := map[string]int{"n0": 2, "n1": 0, "n2": 1}
	for _, n := range v.Nodes {
		assert.True(t, n.Reachable, n.Name)
		assert.True(t, n.JetStream, n.Name)
		assert.Equal(t, "dc1", n.DC, n.Name)
		assert.Equal(t, "ID-"+n.Name, n.ID)
		assert.Len(t, n.Routes, 2, n.Name)
		assert.Equal(t, wantLeads[n.Name], n.Leads, n.Name)
	}
}

// TestBuildViewPeerHealth checks that a peer's Current is honest: NATS's
// own flag is corrected by Active, reachability, JetStream and routes.
func TestBuildViewPeerHealth(t *testing.T) {
	// n0 leads s; every case looks at n1 as n0 reports it.
	setN1 := func(rs map[string]*nodeReport, f func(p *peerDoc)) {
		for i := range rs["n0"].jsz.Accounts[0].Streams[0].Cluster.Replicas {
			if p := &rs["n0"].jsz.Accounts[0].Streams[0].Cluster.Replicas[i]; p.Name == "n1" {
				f(p)
			}
		}
	}
	tests := []struct {
		name   string
		mutate func(rs map[string]*nodeReport)
		want   Peer
	}{
		{
			name: "healthy",
			want: Peer{Name: "n1", Current: true, Healthy: true, Active: 100 * time.Millisecond},
		},
		{
			name:   "lag is reported, current kept",
			mutate: func(rs map[string]*nodeReport) { setN1(rs, func(p *peerDoc) { p.Lag = 5 }) },
			want:   Peer{Name: "n1", Current: true, Healthy: true, Active: 100 * time.Millisecond, Lag: 5},
		},
		{
			name: "replication in flight: not current, still a healthy voter",
			mutate: func(rs map[string]*nodeReport) {
				setN1(rs, func(p *peerDoc) { p.Current, p.Lag = false, 2 })
			},
			want: Peer{Name: "n1", Healthy: true, Active: 100 * time.Millisecond, Lag: 2},
		},
		{
			name: "catching up: too far behind to count as a voter",
			mutate: func(rs map[string]*nodeReport) {
				setN1(rs, func(p *peerDoc) { p.Current, p.Lag = false, HealthyLag+1 })
			},
			want: Peer{Name: "n1", Active: 100 * time.Millisecond, Lag: HealthyLag + 1},
		},
		{
			name: "silent above the threshold though NATS says current",
			mutate: func(rs map[string]*nodeReport) {
				setN1(rs, func(p *peerDoc) { p.Active = ActiveThreshold + time.Millisecond })
			},
			want: Peer{Name: "n1", Active: ActiveThreshold + time.Millisecond},
		},
		{
			name:   "silent exactly at the threshold",
			mutate: func(rs map[string]*nodeReport) { setN1(rs, func(p *peerDoc) { p.Active = ActiveThreshold }) },
			want:   Peer{Name: "n1", Current: true, Healthy: true, Active: ActiveThreshold},
		},
		{
			// NATS reports active 0 and lag = commit for a peer the leader
			// never heard from (every peer of a leader that just took over).
			name: "never heard from, its own report in step: a healthy voter",
			mutate: func(rs map[string]*nodeReport) {
				setN1(rs, func(p *peerDoc) { p.Current, p.Active, p.Lag = false, 0, 10 })
			},
			want: Peer{Name: "n1", Healthy: true, Lag: 10},
		},
		{
			name: "never heard from, catching up from a snapshot: not a voter",
			mutate: func(rs map[string]*nodeReport) {
				setN1(rs, func(p *peerDoc) { p.Current, p.Active, p.Lag = false, 0, 10 })
				rg := rs["n1"].raft["S-1"]
				rg.CatchingUp = true
				rs["n1"].raft["S-1"] = rg
			},
			want: Peer{Name: "n1", Lag: 10},
		},
		{
			// NATS pauses a stream group's apply while the member restores
			// a snapshot; it still acks appends, so it votes as before.
			name: "restoring a snapshot: reported as such, a voter still",
			mutate: func(rs map[string]*nodeReport) {
				rg := rs["n1"].raft["S-1"]
				rg.Paused = true
				rs["n1"].raft["S-1"] = rg
			},
			want: Peer{Name: "n1", Current: true, Healthy: true, Active: 100 * time.Millisecond},
		},
		{
			// A member whose JetStream has just resumed has not heard from
			// a leader yet; it still votes and acks the next append, so
			// only readiness waits for that (see memberBehind).
			name: "its Raft node has heard from no leader yet: reported as such, a voter still",
			mutate: func(rs map[string]*nodeReport) {
				rg := rs["n1"].raft["S-1"]
				rg.EverHadLeader = new(bool)
				rs["n1"].raft["S-1"] = rg
			},
			want: Peer{Name: "n1", Current: true, Healthy: true, Active: 100 * time.Millisecond},
		},
		{
			name: "never heard from, no report of its own: not a voter",
			mutate: func(rs map[string]*nodeReport) {
				setN1(rs, func(p *peerDoc) { p.Current, p.Active, p.Lag = false, 0, 10 })
				delete(rs["n1"].raft, "S-1")
			},
			want: Peer{Name: "n1", Lag: 10},
		},
		{
			name:   "pending: assigned, not a Raft member yet",
			mutate: func(rs map[string]*nodeReport) { setN1(rs, func(p *peerDoc) { p.Pending = true }) },
			want:   Peer{Name: "n1", Pending: true, Active: 100 * time.Millisecond},
		},
		{
			name:   "NATS says offline",
			mutate: func(rs map[string]*nodeReport) { setN1(rs, func(p *peerDoc) { p.Current, p.Offline = false, true }) },
			want:   Peer{Name: "n1", Offline: true, Active: 100 * time.Millisecond},
		},
		{
			name:   "node unreachable",
			mutate: func(rs map[string]*nodeReport) { rs["n1"].err = errors.New("connection refused") },
			want:   Peer{Name: "n1", Offline: true, Active: 100 * time.Millisecond},
		},
		{
			name:   "JetStream off on the node",
			mutate: func(rs map[string]*nodeReport) { rs["n1"].jsz = jszDoc{Disabled: true} },
			want:   Peer{Name: "n1", Active: 100 * time.Millisecond},
		},
		{
			name:   "leader has no route to it",
			mutate: func(rs map[string]*nodeReport) { rs["n0"].routes = []string{"n2"} },
			want:   Peer{Name: "n1", Active: 100 * time.Millisecond},
		},
		{
			name:   "it has no route to the leader",
			mutate: func(rs map[string]*nodeReport) { rs["n1"].routes = []string{"n2"} },
			want:   Peer{Name: "n1", Active: 100 * time.Millisecond},
		},
		{
			name: "other dc: no route expected",
			mutate: func(rs map[string]*nodeReport) {
				rs["n1"].varz.Cluster.Name = "dc2"
				rs["n1"].routes, rs["n0"].routes = nil, []string{"n2"}
			},
			want: Peer{Name: "n1", Current: true, Healthy: true, Active: 100 * time.Millisecond},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rs := synthHealthy()
			if tt.mutate != nil {
				tt.mutate(rs)
			}
			v := buildView(time.Now(), reportList(rs))
			s := groupNamed(t, v, "s")
			require.Equal(t, "n0", s.Leader)
			got, ok := peerOf(s, "n1")
			require.True(t, ok)
			if rg, ok := rs["n1"].raft["S-1"]; ok && rs["n1"].err == nil && !rs["n1"].jsz.Disabled {
				assert.Equal(t, &MemberState{Committed: rg.Committed, Applied: rg.Applied, CatchingUp: rg.CatchingUp, Restoring: rg.Paused,
					NoLeaderYet: rg.EverHadLeader != nil && !*rg.EverHadLeader}, got.Own, "n1's own report")
			} else {
				assert.Nil(t, got.Own, "n1 reported nothing")
			}
			got.Own = nil
			assert.Equal(t, tt.want, got)
			leader, _ := peerOf(s, "n0")
			assert.Equal(t, &MemberState{Committed: 10, Applied: 10}, leader.Own, "the leader's own report")
			leader.Own = nil
			assert.Equal(t, Peer{Name: "n0", Leader: true, Current: true, Healthy: true}, leader)
		})
	}
}

// TestBuildViewPeerNeverHeardFrom checks a member its leader reports
// never having heard from (active 0, not current), whose own report is in
// step with the leader's commit: a healthy voter and caught up while the
// leader has just taken over, but not once the leader has led for longer
// than ActiveThreshold (a working follower answers every append and
// heartbeat, one a second), nor when the leader's own commit is unknown.
func TestBuildViewPeerNeverHeardFrom(t *testing.T) {
	at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	sweep := func(led time.Duration, leaderRaft bool) (Peer, *View) {
		rs := synthHealthy()
		for i := range rs["n0"].jsz.Accounts[0].Streams[0].Cluster.Replicas {
			if p := &rs["n0"].jsz.Accounts[0].Streams[0].Cluster.Replicas[i]; p.Name == "n1" {
				p.Current, p.Active, p.Lag = false, 0, 10
			}
		}
		rg := rs["n0"].raft["S-1"]
		since := at.Add(-led)
		rg.LeaderSince = &since
		rs["n0"].raft["S-1"] = rg
		if !leaderRaft {
			delete(rs["n0"].raft, "S-1")
		}
		v := buildView(at, reportList(rs))
		s := groupNamed(t, v, "s")
		require.Equal(t, "n0", s.Leader)
		p, ok := peerOf(s, "n1")
		require.True(t, ok)
		return p, v
	}
	p, v := sweep(time.Second, true)
	assert.True(t, p.Healthy, "a leader of 1s: its own report decides")
	assert.Equal(t, at.Add(-time.Second), *groupNamed(t, v, "s").LeaderSince)
	assert.Empty(t, v.memberBehind(new(groupNamed(t, v, "s")), p))

	p, v = sweep(ActiveThreshold+time.Second, true)
	assert.False(t, p.Healthy, "a leader of 4s has never heard from it")
	assert.Equal(t, "never heard from by leader n0 in the 4s it has led", v.memberBehind(new(groupNamed(t, v, "s")), p))

	p, _ = sweep(time.Second, false)
	assert.False(t, p.Healthy, "the leader's commit is unknown")
}

// TestBuildViewRaftQuorum checks that a group's quorum is its leader's
// Raft quorum when that is more than a majority of the members its reports
// list: NATS counts its Raft cluster size, which a move of peers can leave
// larger than the list. A follower's report of its quorum is not used.
func TestBuildViewRaftQuorum(t *testing.T) {
	rs := synthHealthy()
	v := buildView(time.Now(), reportList(rs))
	assert.Equal(t, 2, groupNamed(t, v, "s").Quorum(), "no Raft quorum reported: a majority of three")

	rg := rs["n1"].raft["S-1"]
	rg.QuorumNeeded = 3
	rs["n1"].raft["S-1"] = rg
	v = buildView(time.Now(), reportList(rs))
	assert.Equal(t, 2, groupNamed(t, v, "s").Quorum(), "a follower's word is not the leader's")

	rg = rs["n0"].raft["S-1"]
	rg.QuorumNeeded = 3
	rs["n0"].raft["S-1"] = rg
	v = buildView(time.Now(), reportList(rs))
	s := groupNamed(t, v, "s")
	assert.Equal(t, 3, s.RaftQuorum)
	assert.Equal(t, 3, s.Quorum(), "the leader's Raft cluster of four or five")
}

// TestBuildViewMemberTheLeaderDoesNotList checks that a member that
// reports a group, or that a follower lists, is a peer of the group even
// when its leader does not list it (a leader that has just recovered the
// group from its disk lists no replica): healthy when its own report is as
// far as the leader's commit, not healthy when it is behind.
func TestBuildViewMemberTheLeaderDoesNotList(t *testing.T) {
	for _, tt := range []struct {
		name        string
		committed   uint64
		wantHealthy bool
	}{
		{"caught up", 2000, true},
		{"behind", 2000 - HealthyLag - 1, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			rs := synthHealthy()
			// n0 leads stream s and lists nobody; n1 reports it as a
			// follower and lists n0 and n2.
			rs["n0"].jsz.Accounts[0].Streams[0].Cluster.Replicas = nil
			rs["n0"].raft["S-1"] = raftzGroupDoc{Term: 6, Committed: 2000, Applied: 2000}
			rs["n1"].raft["S-1"] = raftzGroupDoc{Term: 6, Committed: tt.committed, Applied: tt.committed}
			v := buildView(time.Now(), reportList(rs))
			g := groupNamed(t, v, "s")
			require.Equal(t, "n0", g.Leader)
			require.Len(t, g.Peers, 3, "n1 reports the group, n1 lists n2")
			n1 := g.Peers[1]
			assert.Equal(t, "n1", n1.Name)
			assert.Equal(t, tt.wantHealthy, n1.Healthy)
			assert.False(t, n1.Current, "the leader did not say it is current")
		})
	}
}

func TestBuildViewLeadership(t *testing.T) {
	tests := []struct {
		name       string
		mutate     func(rs map[string]*nodeReport)
		wantLeader string
		wantTerm   uint64
		wantPeers  []string
	}{
		{
			name:       "one claim",
			wantLeader: "n0", wantTerm: 6, wantPeers: []string{"n0", "n1", "n2"},
		},
		{
			name: "the leader is unreachable: leaderless, peers kept",
			mutate: func(rs map[string]*nodeReport) {
				rs["n0"].err = errors.New("timeout")
			},
			wantTerm: 5, wantPeers: []string{"n0", "n1", "n2"},
		},
		{
			name: "nobody claims: leaderless, highest term kept",
			mutate: func(rs map[string]*nodeReport) {
				for name, r := range rs {
					ci := r.jsz.Accounts[0].Streams[0].Cluster
					ci.Leader = ""
					// Leaderless, a node lists itself among the replicas.
					ci.Replicas = append(ci.Replicas, synthReplicas(name)...)
				}
				rs["n2"].raft["S-1"] = raftzGroupDoc{Term: 9}
			},
			wantTerm: 9, wantPeers: []string{"n0", "n1", "n2"},
		},
		{
			name: "a cut-off old leader still claims: the higher term wins",
			mutate: func(rs map[string]*nodeReport) {
				ci := rs["n1"].jsz.Accounts[0].Streams[0].Cluster
				ci.Leader, ci.Replicas = "n1", synthReplicas("n0", "n2")
				rs["n1"].raft["S-1"] = raftzGroupDoc{Term: 8}
			},
			wantLeader: "n1", wantTerm: 8, wantPeers: []string{"n0", "n1", "n2"},
		},
		{
			name: "a peer name NATS does not know yet is resolved by its hash",
			mutate: func(rs map[string]*nodeReport) {
				ci := rs["n0"].jsz.Accounts[0].Streams[0].Cluster
				ci.Replicas[1].Name = "Server name unknown at this time (peerID: " + NodeHash("n2") + ")"
			},
			wantLeader: "n0", wantTerm: 6, wantPeers: []string{"n0", "n1", "n2"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rs := synthHealthy()
			if tt.mutate != nil {
				tt.mutate(rs)
			}
			v := buildView(time.Now(), reportList(rs))
			s := groupNamed(t, v, "s")
			assert.Equal(t, tt.wantLeader, s.Leader)
			assert.Equal(t, tt.wantTerm, s.Term)
			assert.Equal(t, tt.wantPeers, s.PeerNames())
			if tt.wantLeader == "" {
				for _, p := range s.Peers {
					assert.False(t, p.Current, "no leader vouches for %s", p.Name)
				}
			}
			leads := 0
			for _, n := range v.Nodes {
				leads += n.Leads
			}
			want := 0
			for _, g := range v.Groups {
				if g.Leader != "" {
					want++
				}
			}
			assert.Equal(t, want, leads, "Leads adds up to the groups with a leader")
		})
	}
}

func TestNodeHashMatchesNATS(t *testing.T) {
	for _, name := range []string{"nats-0", "nats-dc2-1", "pod.with.dots"} {
		t.Run(name, func(t *testing.T) {
			s, err := server.NewServer(&server.Options{ServerName: name, DontListen: true, NoSigs: true, NoLog: true})
			require.NoError(t, err)
			s.Start()
			t.Cleanup(s.Shutdown)
			require.True(t, s.ReadyForConnections(5*time.Second))
			assert.Equal(t, s.Node(), NodeHash(name))
		})
	}
}

func TestTrackLeaderless(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	c := NewCollector(CollectorOptions{Logger: zerolog.Nop()})
	view := func(at time.Time, leader string) *View {
		return &View{At: at, Groups: []Group{
			{Kind: KindMeta, Name: MetaGroupName, Leader: "n0"},
			{Kind: KindStream, Name: "s", Account: "APP", Stream: "s", Leader: leader},
		}}
	}
	steps := []struct {
		at        time.Time
		leader    string
		wantSince *time.Time
	}{
		{at: t0, leader: "n0"},
		{at: t0.Add(time.Second), leader: "", wantSince: new(t0.Add(time.Second))},
		{at: t0.Add(2 * time.Second), leader: "", wantSince: new(t0.Add(time.Second))},
		{at: t0.Add(3 * time.Second), leader: "n1"},
		{at: t0.Add(4 * time.Second), leader: "", wantSince: new(t0.Add(4 * time.Second))},
	}
	for i, st := range steps {
		t.Run(fmt.Sprintf("sweep %d", i), func(t *testing.T) {
			v := view(st.at, st.leader)
			c.trackLeaderless(v)
			assert.Nil(t, v.Groups[0].LeaderlessSince)
			assert.Equal(t, st.wantSince, v.Groups[1].LeaderlessSince)
		})
	}
}

// monitorStub serves canned monitoring documents of one single-node
// server, failing the paths in fail.
func monitorStub(t *testing.T, name string, fail ...string) (*httptest.Server, *atomic.Int64) {
	t.Helper()
	var sweeps atomic.Int64
	docs := map[string]any{
		"/varz":    map[string]any{"server_id": "ID-" + name, "server_name": name, "cluster": map[string]any{"name": "dc1"}},
		"/routez":  map[string]any{"routes": []any{}},
		"/healthz": map[string]any{"status": "ok"},
		"/jsz": map[string]any{
			"server_id":    "ID-" + name,
			"meta_cluster": map[string]any{"name": "dc1", "leader": name},
			"account_details": []any{map[string]any{"id": "APP", "stream_detail": []any{map[string]any{
				"name": "s", "cluster": map[string]any{"name": "dc1", "raft_group": "S-1", "leader": name},
			}}}},
		},
		"/raftz": map[string]any{"SYS": map[string]any{"_meta_": map[string]any{"state": "LEADER", "term": 3, "committed": 12, "applied": 12}}},
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/varz" {
			sweeps.Add(1)
		}
		if slices.Contains(fail, r.URL.Path) {
			http.Error(w, "boom", http.StatusInternalServerError)
			return
		}
		if r.URL.Path == "/raftz" && r.URL.Query().Get("acc") != "" {
			http.Error(w, "No Raft nodes returned, check supplied filters", http.StatusNotFound)
			return
		}
		doc, ok := docs[r.URL.Path]
		if !ok {
			http.NotFound(w, r)
			return
		}
		_ = json.NewEncoder(w).Encode(doc)
	}))
	t.Cleanup(srv.Close)
	return srv, &sweeps
}

// closedURL returns a loopback URL nothing listens on.
func closedURL(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := l.Addr().String()
	require.NoError(t, l.Close())
	return "http://" + addr
}

func TestSweepOverHTTP(t *testing.T) {
	ok, _ := monitorStub(t, "n0")
	jszDown, _ := monitorStub(t, "n1", "/jsz")
	tests := []struct {
		name          string
		endpoints     []Endpoint
		wantReachable map[string]bool
		wantErr       error
	}{
		{
			name:          "one healthy node",
			endpoints:     []Endpoint{{Name: "n0", DC: "dc1", MonitorURL: ok.URL}},
			wantReachable: map[string]bool{"n0": true},
		},
		{
			name: "one node down, one failing jsz",
			endpoints: []Endpoint{
				{Name: "n1", DC: "dc1", MonitorURL: jszDown.URL},
				{Name: "n2", DC: "dcX", MonitorURL: closedURL(t)},
			},
			wantReachable: map[string]bool{"n1": false, "n2": false},
			wantErr:       ErrNoNodeReachable,
		},
		{
			name: "mixed",
			endpoints: []Endpoint{
				{Name: "n0", DC: "dc1", MonitorURL: ok.URL},
				{Name: "n2", DC: "dcX", MonitorURL: closedURL(t)},
			},
			wantReachable: map[string]bool{"n0": true, "n2": false},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := NewCollector(CollectorOptions{Endpoints: tt.endpoints, Timeout: time.Second, Logger: zerolog.Nop()})
			v, err := c.Sweep(t.Context())
			if tt.wantErr != nil {
				require.ErrorIs(t, err, tt.wantErr)
			} else {
				require.NoError(t, err)
			}
			require.NotNil(t, v)
			assert.Same(t, v, c.Latest())
			require.Len(t, v.Nodes, len(tt.endpoints))
			for _, n := range v.Nodes {
				assert.Equal(t, tt.wantReachable[n.Name], n.Reachable, n.Name)
				if n.Reachable {
					assert.Empty(t, n.Error)
					assert.True(t, n.JetStream)
					continue
				}
				assert.NotEmpty(t, n.Error, n.Name)
				assert.False(t, n.JetStream)
				ep := tt.endpoints[slices.IndexFunc(tt.endpoints, func(e Endpoint) bool { return e.Name == n.Name })]
				assert.Equal(t, ep.DC, n.DC, "dc falls back to the endpoint's")
			}
			if tt.wantReachable["n0"] {
				meta := groupNamed(t, v, MetaGroupName)
				assert.Equal(t, "n0", meta.Leader)
				assert.Equal(t, uint64(3), meta.Term)
				assert.Equal(t, uint64(12), meta.Commit)
				assert.Equal(t, "n0", groupNamed(t, v, "s").Leader)
			}
		})
	}
}

func TestCollectorViewReusesFreshSweep(t *testing.T) {
	srv, sweeps := monitorStub(t, "n0")
	var mu sync.Mutex
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); defer mu.Unlock(); now = now.Add(d) }
	c := NewCollector(CollectorOptions{
		Endpoints: []Endpoint{{Name: "n0", DC: "dc1", MonitorURL: srv.URL}},
		Now:       clock,
		Logger:    zerolog.Nop(),
	})
	require.Nil(t, c.Latest())

	first, err := c.View(t.Context())
	require.NoError(t, err)
	require.EqualValues(t, 1, sweeps.Load())

	advance(200 * time.Millisecond)
	again, err := c.View(t.Context())
	require.NoError(t, err)
	assert.Same(t, first, again, "a view younger than 250ms is reused")
	assert.EqualValues(t, 1, sweeps.Load())

	advance(100 * time.Millisecond)
	fresh, err := c.View(t.Context())
	require.NoError(t, err)
	assert.NotSame(t, first, fresh)
	assert.EqualValues(t, 2, sweeps.Load())

	forced, err := c.Sweep(t.Context())
	require.NoError(t, err)
	assert.NotSame(t, fresh, forced, "Sweep never reuses")
	assert.EqualValues(t, 3, sweeps.Load())
}

func TestCollectorViewKeepsSweepError(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	c := NewCollector(CollectorOptions{
		Endpoints: []Endpoint{{Name: "n0", DC: "dc1", MonitorURL: closedURL(t)}},
		Now:       func() time.Time { return now },
		Logger:    zerolog.Nop(),
	})
	for _, call := range []string{"sweeps", "reuses"} {
		t.Run(call, func(t *testing.T) {
			v, err := c.View(t.Context())
			require.ErrorIs(t, err, ErrNoNodeReachable, "a view of no reachable node is never served as good")
			require.NotNil(t, v)
			assert.Same(t, c.Latest(), v)
		})
	}
}

func TestCollectorRun(t *testing.T) {
	srv, sweeps := monitorStub(t, "n0")
	c := NewCollector(CollectorOptions{
		Endpoints: []Endpoint{{Name: "n0", DC: "dc1", MonitorURL: srv.URL}},
		Interval:  10 * time.Millisecond,
		Logger:    zerolog.Nop(),
	})
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	require.Eventually(t, func() bool { return sweeps.Load() >= 3 }, 5*time.Second, 5*time.Millisecond)
	require.NotNil(t, c.Latest())
	cancel()
	select {
	case err := <-done:
		assert.NoError(t, err)
	case <-time.After(5 * time.Second):
		require.Fail(t, "Run did not return after its context ended")
	}
}

// TestCollectorRunWatch stops a node's monitoring port between two sweeps
// an hour apart: with the watch on, Run sweeps within about its interval
// and the view shows the node unreachable; with it off, nothing changes
// until the next sweep.
func TestCollectorRunWatch(t *testing.T) {
	for _, tt := range []struct {
		name  string
		watch time.Duration
		swept bool
	}{
		{name: "watch on", watch: 20 * time.Millisecond, swept: true},
		{name: "watch off", watch: 0, swept: false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			up, _ := monitorStub(t, "n0")
			down, sweeps := monitorStub(t, "n1")
			c := NewCollector(CollectorOptions{
				Endpoints: []Endpoint{
					{Name: "n0", DC: "dc1", MonitorURL: up.URL},
					{Name: "n1", DC: "dc1", MonitorURL: down.URL},
				},
				Interval:      time.Hour,
				WatchInterval: tt.watch,
				Logger:        zerolog.Nop(),
			})
			ctx, cancel := context.WithCancel(t.Context())
			done := make(chan error, 1)
			go func() { done <- c.Run(ctx) }()
			defer func() { cancel(); <-done }()
			require.Eventually(t, func() bool { return sweeps.Load() == 1 && c.Latest() != nil }, 5*time.Second, 5*time.Millisecond)
			n1Down := func() bool {
				n, ok := c.Latest().Node("n1")
				return ok && !n.Reachable
			}
			require.False(t, n1Down())
			down.Close()
			if tt.swept {
				assert.Eventually(t, n1Down, 2*time.Second, 5*time.Millisecond, "a stopped node is swept for at once")
			} else {
				assert.Never(t, n1Down, 300*time.Millisecond, 10*time.Millisecond, "no sweep before the interval")
			}
		})
	}
}

// TestCollectorRunWatchNoLoop: a node that is up but fails its sweep
// (its /jsz answers 500) is no change for the watch, which looks at its
// own answers only: no sweep before the interval.
func TestCollectorRunWatchNoLoop(t *testing.T) {
	srv, sweeps := monitorStub(t, "n0", "/jsz")
	c := NewCollector(CollectorOptions{
		Endpoints:     []Endpoint{{Name: "n0", DC: "dc1", MonitorURL: srv.URL}},
		Interval:      time.Hour,
		WatchInterval: 10 * time.Millisecond,
		Logger:        zerolog.Nop(),
	})
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	defer func() { cancel(); <-done }()
	require.Eventually(t, func() bool { return c.Latest() != nil }, 5*time.Second, 5*time.Millisecond)
	n, ok := c.Latest().Node("n0")
	require.True(t, ok)
	require.False(t, n.Reachable, "the failed sweep marks the node unreachable")
	assert.Never(t, func() bool { return sweeps.Load() > 1 }, 300*time.Millisecond, 10*time.Millisecond)
}

// raftCluster starts a 3-node embedded cluster with the demo stream and a
// collector over it; both end with the test.
func raftCluster(t *testing.T) (*Embedded, *Collector) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	start := time.Now()
	e, err := StartEmbedded(ctx, EmbeddedOptions{Topology: []int{3}, Demo: true, Logger: zerolog.Nop()})
	require.NoError(t, err)
	t.Cleanup(func() { assert.NoError(t, e.Close()) })
	t.Logf("cluster ready in %s", time.Since(start).Round(time.Millisecond))
	return e, NewCollector(CollectorOptions{Endpoints: e.Endpoints(), Timeout: time.Second, Logger: zerolog.Nop()})
}

// waitView sweeps until cond holds on a view and returns that view; the
// test fails when timeout passes first.
func waitView(t *testing.T, c *Collector, timeout time.Duration, what string, cond func(*View) bool) *View {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		v, err := c.Sweep(t.Context())
		if err == nil && cond(v) {
			return v
		}
		if time.Now().After(deadline) {
			require.Failf(t, "timed out", "waiting %s for %s (last error %v)", timeout, what, err)
		}
		select {
		case <-t.Context().Done():
			require.FailNow(t, "test context ended")
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// healthyDemo holds when meta, the demo stream and its consumer each have
// a leader and three current peers.
func healthyDemo(v *View) bool {
	if len(v.Groups) != 3 || !ledAndCurrent(v) {
		return false
	}
	for _, g := range v.Groups {
		if len(g.Peers) != 3 {
			return false
		}
	}
	return true
}

// ledAndCurrent says whether every group of v has a leader and every
// replica is current.
func ledAndCurrent(v *View) bool {
	for _, g := range v.Groups {
		if g.Leader == "" {
			return false
		}
		for _, p := range g.Peers {
			if !p.Current {
				return false
			}
		}
	}
	return true
}

func TestCollectorEmbedded(t *testing.T) {
	e, c := raftCluster(t)
	names := []string{"nats-0", "nats-1", "nats-2"}

	t.Run("healthy cluster", func(t *testing.T) {
		start := time.Now()
		v := waitView(t, c, 15*time.Second, "a healthy view", healthyDemo)
		t.Logf("healthy after %s", time.Since(start).Round(time.Millisecond))

		assert.Equal(t, []string{MetaGroupName, DemoStream, DemoStream + "/" + DemoConsumer},
			[]string{v.Groups[0].Name, v.Groups[1].Name, v.Groups[2].Name})
		assert.Equal(t, []GroupKind{KindMeta, KindStream, KindConsumer},
			[]GroupKind{v.Groups[0].Kind, v.Groups[1].Kind, v.Groups[2].Kind})
		leads := 0
		for _, g := range v.Groups {
			assert.Equal(t, names, g.PeerNames(), g.Name)
			assert.Contains(t, names, g.Leader, g.Name)
			assert.NotZero(t, g.Term, g.Name)
			assert.Nil(t, g.LeaderlessSince, g.Name)
			if g.Kind != KindMeta {
				assert.Equal(t, AppAccount, g.Account, g.Name)
				assert.Equal(t, "dc1", g.Cluster, g.Name)
				assert.NotEmpty(t, g.RaftGroup, g.Name)
			}
		}
		assert.Equal(t, e.MetaLeader(), v.Groups[0].Leader)
		assert.True(t, e.Node(v.Groups[1].Leader).Server().JetStreamIsStreamLeader(AppAccount, DemoStream))
		assert.True(t, e.Node(v.Groups[2].Leader).Server().JetStreamIsConsumerLeader(AppAccount, DemoStream, DemoConsumer))

		require.Len(t, v.Nodes, 3)
		for _, n := range v.Nodes {
			assert.True(t, n.Reachable, n.Name)
			assert.True(t, n.JetStream, n.Name)
			assert.Equal(t, "dc1", n.DC, n.Name)
			assert.Equal(t, e.Node(n.Name).Server().ID(), n.ID)
			var others []string
			for _, o := range names {
				if o != n.Name {
					others = append(others, o)
				}
			}
			assert.Equal(t, others, n.Routes, n.Name)
			leads += n.Leads
		}
		assert.Equal(t, 3, leads)
	})

	v, err := c.Sweep(t.Context())
	require.NoError(t, err)
	demo := groupNamed(t, v, DemoStream)

	// first is a follower of the demo stream.
	first := names[slices.IndexFunc(names, func(n string) bool { return n != demo.Leader })]

	t.Run("stopped follower is not current", func(t *testing.T) {
		require.NoError(t, e.StopNode(first))
		stopped := time.Now()
		v := waitView(t, c, 5*time.Second, first+" not current", func(v *View) bool {
			g, _ := lookupGroup(v, DemoStream)
			p, ok := peerOf(g, first)
			return g.Leader != "" && g.Leader != first && ok && !p.Current
		})
		t.Logf("%s not current %s after stop", first, time.Since(stopped).Round(time.Millisecond))
		n, ok := v.Node(first)
		require.True(t, ok)
		assert.False(t, n.Reachable)
		assert.NotEmpty(t, n.Error)
	})

	t.Run("lost quorum is leaderless", func(t *testing.T) {
		rctx, cancel := context.WithCancel(t.Context())
		c := NewCollector(CollectorOptions{Endpoints: e.Endpoints(), Timeout: time.Second, Interval: 100 * time.Millisecond, Logger: zerolog.Nop()})
		done := make(chan error, 1)
		go func() { done <- c.Run(rctx) }()
		defer func() { cancel(); <-done }()

		// Stop whichever node leads demo now (under load the leadership
		// may have moved since): the one left is a follower that cannot
		// win an election alone. Stopping a follower instead would leave a
		// leader that keeps claiming until its lost-quorum check.
		now, err := c.Sweep(t.Context())
		require.NoError(t, err)
		leader := groupNamed(t, now, DemoStream).Leader
		require.NotEmpty(t, leader)
		require.NotEqual(t, first, leader)
		require.NoError(t, e.StopNode(leader))
		stopped := time.Now()
		// Wait for a leaderless streak, not one leaderless sweep: should the
		// leadership have moved to the node left running just before the
		// stop, that node keeps claiming until its lost-quorum check (10 s)
		// and a sweep in between may miss its claim.
		var g Group
		var detected time.Time
		require.Eventually(t, func() bool {
			v := c.Latest()
			if v == nil {
				return false
			}
			cur, ok := lookupGroup(v, DemoStream)
			if !ok || cur.Leader != "" {
				detected = time.Time{}
				return false
			}
			if detected.IsZero() {
				g, detected = cur, time.Now()
			}
			return v.At.After(detected.Add(300 * time.Millisecond))
		}, 30*time.Second, 20*time.Millisecond)
		t.Logf("demo leaderless %s after stop", detected.Sub(stopped).Round(time.Millisecond))
		require.NotNil(t, g.LeaderlessSince)
		since := *g.LeaderlessSince
		assert.False(t, since.After(detected), "leaderless since %s, seen at %s", since, detected)
		assert.Less(t, detected.Sub(since), 2*time.Second)
		assert.Equal(t, names, g.PeerNames(), "a leaderless group keeps its peers")
		for _, p := range g.Peers {
			assert.False(t, p.Current, p.Name)
		}

		require.Eventually(t, func() bool {
			v := c.Latest()
			return v.At.After(detected.Add(300 * time.Millisecond))
		}, 5*time.Second, 20*time.Millisecond)
		later := groupNamed(t, c.Latest(), DemoStream)
		require.Empty(t, later.Leader)
		require.NotNil(t, later.LeaderlessSince)
		assert.True(t, since.Equal(*later.LeaderlessSince), "leaderless-since persists across sweeps")
	})
}

// synthJsz renders the /jsz document node would serve for a 3-node
// cluster with the given number of R3 streams, each with one R3 consumer:
// 2×streams+1 Raft groups, led in turn by each node.
func synthJsz(tb testing.TB, node string, nodes []string, streams int) []byte {
	tb.Helper()
	now := time.Now()
	ci := func(group string, i int) *server.ClusterInfo {
		leader := nodes[i%len(nodes)]
		c := &server.ClusterInfo{Name: "dc1", RaftGroup: group, Leader: leader, LeaderSince: &now}
		for _, p := range nodes {
			if p != leader && (leader == node || p != node) {
				c.Replicas = append(c.Replicas, &server.PeerInfo{Name: p, Current: true, Active: 200 * time.Millisecond, Peer: NodeHash(p)})
			}
		}
		return c
	}
	acc := &server.AccountDetail{Name: "APP", Id: "APP"}
	for i := range streams {
		name := fmt.Sprintf("stream-%05d", i)
		acc.Streams = append(acc.Streams, server.StreamDetail{
			Name:      name,
			Created:   now,
			Cluster:   ci(fmt.Sprintf("S-R3F-%05d", i), i),
			State:     server.StreamState{Msgs: 1000, Bytes: 64000, FirstSeq: 1, LastSeq: 1000, Consumers: 1},
			RaftGroup: fmt.Sprintf("S-R3F-%05d", i),
			Consumer: []*server.ConsumerInfo{{
				Stream: name, Name: "c", Created: now,
				Delivered: server.SequenceInfo{Consumer: 900, Stream: 900},
				AckFloor:  server.SequenceInfo{Consumer: 890, Stream: 890},
				Cluster:   ci(fmt.Sprintf("C-R3F-%05d", i), i+1),
				TimeStamp: now,
			}},
			ConsumerRaftGroups: []*server.RaftGroupDetail{{Name: "c", RaftGroup: fmt.Sprintf("C-R3F-%05d", i)}},
		})
	}
	meta := ci("", 0)
	doc := server.JSInfo{
		ID: "ID-" + node, Now: now, Streams: streams, Consumers: streams,
		Meta:           &server.MetaClusterInfo{Name: "dc1", Leader: meta.Leader, Replicas: meta.Replicas, Size: len(nodes)},
		AccountDetails: []*server.AccountDetail{acc},
	}
	b, err := json.Marshal(doc)
	require.NoError(tb, err)
	return b
}

// synthRaftz renders node's /raftz documents, by account filter ("" is
// the system account), for the groups synthJsz describes.
func synthRaftz(tb testing.TB, node string, nodes []string, streams int) map[string][]byte {
	tb.Helper()
	now := time.Now()
	group := func(name string, i int) server.RaftzGroup {
		leader := nodes[i%len(nodes)]
		g := server.RaftzGroup{
			ID: NodeHash(node), State: "FOLLOWER", Size: 3, QuorumNeeded: 2,
			Committed: 1000, Applied: 1000, Leader: NodeHash(leader), Term: 7, PTerm: 7, PIndex: 1000,
			EverHadLeader: true, TrafficAcc: "APP", Peers: map[string]server.RaftzGroupPeer{},
		}
		if leader == node {
			g.State, g.LeaderSince = "LEADER", &now
		}
		for _, p := range nodes {
			if p != node {
				g.Peers[NodeHash(p)] = server.RaftzGroupPeer{Name: p, Known: true, LastReplicatedIndex: 1000, LastSeen: "200ms"}
			}
		}
		return g
	}
	app := map[string]server.RaftzGroup{}
	for i := range streams {
		app[fmt.Sprintf("S-R3F-%05d", i)] = group(fmt.Sprintf("S-R3F-%05d", i), i)
		app[fmt.Sprintf("C-R3F-%05d", i)] = group(fmt.Sprintf("C-R3F-%05d", i), i+1)
	}
	sys, err := json.Marshal(map[string]map[string]server.RaftzGroup{"SYS": {metaRaftGroup: group(metaRaftGroup, 0)}})
	require.NoError(tb, err)
	apps, err := json.Marshal(map[string]map[string]server.RaftzGroup{"APP": app})
	require.NoError(tb, err)
	return map[string][]byte{"": sys, "APP": apps}
}

// synthCluster serves the monitoring endpoints of a synthetic 3-node
// cluster of 2×streams+1 Raft groups.
func synthCluster(tb testing.TB, streams int) []Endpoint {
	tb.Helper()
	nodes := []string{"n0", "n1", "n2"}
	var eps []Endpoint
	for _, n := range nodes {
		jsz := synthJsz(tb, n, nodes, streams)
		var others []map[string]string
		for _, o := range nodes {
			if o != n {
				others = append(others, map[string]string{"remote_name": o})
			}
		}
		raftz := synthRaftz(tb, n, nodes, streams)
		routez, _ := json.Marshal(map[string]any{"routes": others})
		varz, _ := json.Marshal(map[string]any{"server_id": "ID-" + n, "server_name": n, "cluster": map[string]string{"name": "dc1"}})
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			switch r.URL.Path {
			case "/jsz":
				_, _ = w.Write(jsz)
			case "/routez":
				_, _ = w.Write(routez)
			case "/varz":
				_, _ = w.Write(varz)
			case "/raftz":
				if doc, ok := raftz[r.URL.Query().Get("acc")]; ok {
					_, _ = w.Write(doc)
					return
				}
				http.NotFound(w, r)
			default:
				http.NotFound(w, r)
			}
		}))
		tb.Cleanup(srv.Close)
		eps = append(eps, Endpoint{Name: n, DC: "dc1", MonitorURL: srv.URL})
	}
	return eps
}

func TestSweepSynthetic(t *testing.T) {
	c := NewCollector(CollectorOptions{Endpoints: synthCluster(t, 50), Logger: zerolog.Nop()})
	v, err := c.Sweep(t.Context())
	require.NoError(t, err)
	require.Len(t, v.Groups, 101)
	leads := map[string]int{}
	for _, g := range v.Groups {
		require.NotEmpty(t, g.Leader, g.Name)
		require.Len(t, g.Peers, 3, g.Name)
		assert.Equal(t, uint64(7), g.Term, g.Name)
		assert.Equal(t, uint64(1000), g.Commit, g.Name)
		leads[g.Leader]++
	}
	for _, n := range v.Nodes {
		assert.Equal(t, leads[n.Name], n.Leads, n.Name)
	}
}

// BenchmarkSweep10k sweeps a synthetic cluster of 10,001 Raft groups over
// HTTP: the collector's own cost, without the servers' cost of rendering.
func BenchmarkSweep10k(b *testing.B) {
	c := NewCollector(CollectorOptions{Endpoints: synthCluster(b, 5000), Timeout: 30 * time.Second, Logger: zerolog.Nop()})
	b.ReportAllocs()
	for b.Loop() {
		v, err := c.Sweep(b.Context())
		if err != nil || len(v.Groups) != 10001 {
			b.Fatalf("sweep: %v (%d groups)", err, len(v.Groups))
		}
	}
}

// BenchmarkDecodeJsz10k compares decoding one node's /jsz of 10,001 groups
// into the collector's small structs and into the server's own types.
func BenchmarkDecodeJsz10k(b *testing.B) {
	doc := synthJsz(b, "n0", []string{"n0", "n1", "n2"}, 5000)
	b.Logf("/jsz of 10,001 groups: %d bytes", len(doc))
	b.Run("collector", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(doc)))
		for b.Loop() {
			var d jszDoc
			if err := json.Unmarshal(doc, &d); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("server types", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(doc)))
		for b.Loop() {
			var d server.JSInfo
			if err := json.Unmarshal(doc, &d); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkBuildView10k measures turning three decoded reports of 10,001
// groups into a View.
func BenchmarkBuildView10k(b *testing.B) {
	nodes := []string{"n0", "n1", "n2"}
	var reports []*nodeReport
	for _, n := range nodes {
		r := synthReport(n, slices.DeleteFunc(slices.Clone(nodes), func(o string) bool { return o == n })...)
		require.NoError(b, json.Unmarshal(synthJsz(b, n, nodes, 5000), &r.jsz))
		reports = append(reports, r)
	}
	b.ReportAllocs()
	for b.Loop() {
		if v := buildView(time.Now(), reports); len(v.Groups) != 10001 {
			b.Fatalf("%d groups", len(v.Groups))
		}
	}
}

func TestCollectorSupercluster(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	e, err := StartEmbedded(ctx, EmbeddedOptions{Topology: []int{2, 2}, Demo: true, Logger: zerolog.Nop()})
	require.NoError(t, err)
	t.Cleanup(func() { assert.NoError(t, e.Close()) })
	c := NewCollector(CollectorOptions{Endpoints: e.Endpoints(), Timeout: time.Second, Logger: zerolog.Nop()})

	dcs := map[string]string{"nats-dc1-0": "dc1", "nats-dc1-1": "dc1", "nats-dc2-0": "dc2", "nats-dc2-1": "dc2"}
	v := waitView(t, c, 20*time.Second, "meta and demo current across dcs", func(v *View) bool {
		if len(v.Groups) != 3 || !ledAndCurrent(v) {
			return false
		}
		for _, n := range v.Nodes {
			if len(n.Gateways) == 0 {
				return false
			}
		}
		return true
	})
	for _, n := range v.Nodes {
		assert.Equal(t, dcs[n.Name], n.DC, n.Name)
		other := map[string]string{"dc1": "dc2", "dc2": "dc1"}[n.DC]
		assert.Equal(t, []string{other}, n.Gateways, n.Name)
	}
	meta := groupNamed(t, v, MetaGroupName)
	assert.Equal(t, []string{"nats-dc1-0", "nats-dc1-1", "nats-dc2-0", "nats-dc2-1"}, meta.PeerNames(),
		"meta spans the dcs; peers across a gateway are current without a route")
	demo := groupNamed(t, v, DemoStream)
	assert.Equal(t, "dc1", demo.Cluster)
	assert.Equal(t, []string{"nats-dc1-0", "nats-dc1-1"}, demo.PeerNames())
}

// TestGetJszPages checks that every account is read when /jsz lists them a
// page at a time.
func TestGetJszPages(t *testing.T) {
	tests := []struct {
		name     string
		accounts int
		page     int
	}{
		{name: "one page", accounts: 3, page: 1024},
		{name: "exact pages", accounts: 4, page: 2},
		{name: "a short last page", accounts: 5, page: 2},
		{name: "no accounts", accounts: 0, page: 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var requests atomic.Int64
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				requests.Add(1)
				offset, _ := strconv.Atoi(r.URL.Query().Get("offset"))
				limit, err := strconv.Atoi(r.URL.Query().Get("limit"))
				if err != nil || limit <= 0 {
					http.Error(w, "no limit", http.StatusBadRequest)
					return
				}
				var details []any
				for i := offset; i < min(tt.accounts, offset+min(limit, tt.page)); i++ {
					details = append(details, map[string]any{"id": fmt.Sprintf("A%04d", i)})
				}
				_ = json.NewEncoder(w).Encode(map[string]any{"total": tt.accounts, "account_details": details})
			}))
			t.Cleanup(srv.Close)
			c := NewCollector(CollectorOptions{Endpoints: []Endpoint{{Name: "n0", MonitorURL: srv.URL}}, Logger: zerolog.Nop()})

			var doc jszDoc
			require.NoError(t, c.getJsz(t.Context(), srv.URL, &doc))
			require.Len(t, doc.Accounts, tt.accounts)
			for i, a := range doc.Accounts {
				assert.Equal(t, fmt.Sprintf("A%04d", i), a.ID)
			}
			assert.Equal(t, int64(max(1, (tt.accounts+tt.page-1)/tt.page)), requests.Load(), "requests")
		})
	}
}

// TestCollectorViewSince checks that ViewSince reuses a sweep started at or
// after the given time and that concurrent callers share one sweep.
func TestCollectorViewSince(t *testing.T) {
	srv, sweeps := monitorStub(t, "n0")
	var mu sync.Mutex
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); defer mu.Unlock(); now = now.Add(d) }
	c := NewCollector(CollectorOptions{
		Endpoints: []Endpoint{{Name: "n0", DC: "dc1", MonitorURL: srv.URL}},
		Now:       clock,
		Logger:    zerolog.Nop(),
	})
	t0 := clock()

	const callers = 8
	views := make([]*View, callers)
	var wg sync.WaitGroup
	for i := range callers {
		wg.Go(func() {
			v, err := c.ViewSince(t.Context(), t0)
			assert.NoError(t, err)
			views[i] = v
		})
	}
	wg.Wait()
	require.EqualValues(t, 1, sweeps.Load(), "concurrent callers share one sweep")
	for _, v := range views {
		assert.Same(t, views[0], v)
	}

	advance(time.Second)
	again, err := c.ViewSince(t.Context(), t0)
	require.NoError(t, err)
	assert.Same(t, views[0], again, "a sweep started at since is reused however old")
	assert.EqualValues(t, 1, sweeps.Load())

	newer, err := c.ViewSince(t.Context(), t0.Add(time.Nanosecond))
	require.NoError(t, err)
	assert.NotSame(t, views[0], newer, "a sweep started before since is not reused")
	assert.EqualValues(t, 2, sweeps.Load())
}

// TestDecodeBodyLimited checks that a monitoring body is decoded whole up
// to the limit and refused past it, whether or not its length is announced.
func TestDecodeBodyLimited(t *testing.T) {
	const limit = 10
	tests := []struct {
		name    string
		body    string
		length  int64 // Content-Length; -1 when not announced
		want    string
		wantErr string
	}{
		{name: "announced", body: `"0123"`, length: 6, want: "0123"},
		{name: "not announced", body: `"0123"`, length: -1, want: "0123"},
		{name: "exactly the limit", body: `"01234567"`, length: -1, want: "01234567"},
		{name: "over, announced", body: `"012345678"`, length: 11, wantErr: "body of 11 bytes is over the limit of 10"},
		{name: "over, not announced", body: `"012345678"`, length: -1, wantErr: "body over the limit of 10 bytes"},
		{name: "announced short, sent long", body: `"012345678"`, length: 3, wantErr: "body over the limit of 10 bytes"},
		{name: "not JSON", body: `{"a":`, length: -1, wantErr: "decode: "},
		{name: "trailing data", body: `"0" "1"`, length: -1, wantErr: "decode: "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := &http.Response{Body: io.NopCloser(strings.NewReader(tt.body)), ContentLength: tt.length}
			var got string
			err := decodeBody(resp, limit, &got)
			if tt.wantErr != "" {
				require.ErrorContains(t, err, tt.wantErr)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want, got)
		})
	}
}

// TestDecodeDocLenient checks that a monitoring document decodes as
// encoding/json decoded it: a repeated name (the last wins), a string that
// is not valid UTF-8, unknown fields, and a duration in nanoseconds.
func TestDecodeDocLenient(t *testing.T) {
	doc := []byte("{\"name\":\"a\",\"name\":\"n1\",\"current\":true,\"active\":1500000000,\"peer\":\"x\xff\",\"extra\":{\"deep\":[1,2]}}")
	var p peerDoc
	require.NoError(t, decodeDoc(doc, &p))
	assert.Equal(t, "n1", p.Name)
	assert.True(t, p.Current)
	assert.Equal(t, 1500*time.Millisecond, p.Active)
	assert.Equal(t, "x\ufffd", p.Peer)
}

// TestCollectorSetEndpoints replaces the swept nodes of a running
// collector.
func TestCollectorSetEndpoints(t *testing.T) {
	e := embeddedForTest(t, EmbeddedOptions{})
	ctx := context.Background()
	c := NewCollector(CollectorOptions{Logger: zerolog.Nop()})
	_, err := c.Sweep(ctx)
	require.Error(t, err, "no endpoints yet")

	all := e.Endpoints()
	tests := []struct {
		name string
		eps  []Endpoint
		want []string
	}{
		{"every node", all, []string{"nats-0", "nats-1", "nats-2"}},
		{"one left out", slices.DeleteFunc(slices.Clone(all), func(ep Endpoint) bool { return ep.Name == "nats-1" }), []string{"nats-0", "nats-2"}},
		{"every node again", all, []string{"nats-0", "nats-1", "nats-2"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			require.NoError(t, c.SetEndpoints(ctx, tt.eps))
			got, err := c.Endpoints(ctx)
			require.NoError(t, err)
			assert.Equal(t, tt.eps, got)
			v, err := c.Sweep(ctx)
			require.NoError(t, err)
			var names []string
			for _, n := range v.Nodes {
				assert.True(t, n.Reachable, n.Name)
				names = append(names, n.Name)
			}
			assert.Equal(t, tt.want, names)
		})
	}

	t.Run("a cancelled context while a sweep runs", func(t *testing.T) {
		require.NoError(t, c.acquire(ctx))
		defer c.release()
		cctx, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
		defer cancel()
		require.ErrorIs(t, c.SetEndpoints(cctx, nil), context.DeadlineExceeded)
	})
}

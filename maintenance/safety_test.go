package maintenance

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/prober-dev/prober/natsraft"
)

// safetyView builds a view of reachable nodes "a1","a2","b1","b2","c1","c2"
// (dcs a, b, c) and the given groups.
func safetyView(groups ...natsraft.Group) *natsraft.View {
	v := &natsraft.View{Groups: groups}
	for _, n := range []string{"a1", "a2", "b1", "b2", "c1", "c2"} {
		v.Nodes = append(v.Nodes, natsraft.Node{Name: n, DC: n[:1], Reachable: true, JetStream: true})
	}
	return v
}

// safetyGroup makes a group whose first peer leads and every peer is current.
func safetyGroup(kind natsraft.GroupKind, name string, peers ...string) natsraft.Group {
	g := natsraft.Group{Kind: kind, Name: name}
	if kind != natsraft.KindMeta {
		g.Account = "APP"
	}
	for i, p := range peers {
		g.Peers = append(g.Peers, natsraft.Peer{Name: p, Leader: i == 0, Current: true, Healthy: true})
	}
	return g
}

func safetyStream(name string, peers ...string) natsraft.Group {
	return safetyGroup(natsraft.KindStream, name, peers...)
}

func safetyMeta(peers ...string) natsraft.Group {
	return safetyGroup(natsraft.KindMeta, natsraft.MetaGroupName, peers...)
}

// safetyPeer changes one peer of g.
func safetyPeer(g natsraft.Group, name string, edit func(*natsraft.Peer)) natsraft.Group {
	g.Peers = append([]natsraft.Peer(nil), g.Peers...)
	for i := range g.Peers {
		if g.Peers[i].Name == name {
			edit(&g.Peers[i])
		}
	}
	return g
}

func safetyNotCurrent(p *natsraft.Peer) { p.Current, p.Healthy = false, false }
func safetyOffline(p *natsraft.Peer)    { p.Current, p.Healthy, p.Offline = false, false, true }

// safetyNode changes the named node of v, and returns v.
func safetyNode(v *natsraft.View, name string, edit func(*natsraft.Node)) *natsraft.View {
	for i := range v.Nodes {
		if v.Nodes[i].Name == name {
			edit(&v.Nodes[i])
		}
	}
	return v
}

func safetyUnreachable(v *natsraft.View, name string) *natsraft.View {
	return safetyNode(v, name, func(n *natsraft.Node) { n.Reachable = false })
}

// safetyNoJetStream marks the named node as serving no JetStream (quiesced,
// or starting).
func safetyNoJetStream(v *natsraft.View, name string) *natsraft.View {
	return safetyNode(v, name, func(n *natsraft.Node) { n.JetStream = false })
}

// safetyRecovering marks the named node as still recovering its JetStream
// (on, no meta group yet).
func safetyRecovering(v *natsraft.View, name string) *natsraft.View {
	return safetyNode(v, name, func(n *natsraft.Node) { n.Recovering = true })
}

// safetyHalfSeen makes g a group configured with replicas replicas whose
// reports name only the peers it has: with no leader (its peers not
// current), as a sweep sees a group whose one answering member has just
// started its JetStream, or with its leader (a change of replicas).
func safetyHalfSeen(g natsraft.Group, replicas int, leader bool) natsraft.Group {
	g.Replicas = replicas
	if leader {
		g.Leader = g.Peers[0].Name
		return g
	}
	g.Peers = append([]natsraft.Peer(nil), g.Peers...)
	for i := range g.Peers {
		g.Peers[i] = natsraft.Peer{Name: g.Peers[i].Name}
	}
	return g
}

func TestCheckSafety(t *testing.T) {
	tests := []struct {
		name          string
		view          *natsraft.View
		requested     []string
		inMaintenance []string
		want          []string // "<group>: <reason>" per violation, in order
	}{
		{
			name:      "R1 on the requested pod",
			view:      safetyView(safetyStream("solo", "a1")),
			requested: []string{"a1"},
			want:      []string{"solo: stream solo of account APP (R1) lives only on a1 requested and would be unavailable"},
		},
		{
			name:      "R1 elsewhere",
			view:      safetyView(safetyStream("solo", "a2")),
			requested: []string{"a1"},
		},
		{
			name:      "R3 healthy, one requested",
			view:      safetyView(safetyStream("demo", "a1", "a2", "b1")),
			requested: []string{"a1"},
		},
		{
			name:      "R3, the leader requested",
			view:      safetyView(safetyStream("demo", "a2", "b1", "a1")),
			requested: []string{"a2"},
		},
		{
			name:      "R3, two requested",
			view:      safetyView(safetyStream("demo", "a1", "a2", "b1")),
			requested: []string{"a1", "a2"},
			want:      []string{"demo: stream demo of account APP (R3) would keep 1 of 3 peers, needs 2: a1 requested, a2 requested"},
		},
		{
			name:      "R3, another peer not current",
			view:      safetyView(safetyPeer(safetyStream("demo", "a1", "a2", "b1"), "b1", safetyNotCurrent)),
			requested: []string{"a1"},
			want:      []string{"demo: stream demo of account APP (R3) would keep 1 of 3 peers, needs 2: a1 requested, b1 not current"},
		},
		{
			name:      "R3, another peer offline",
			view:      safetyView(safetyPeer(safetyStream("demo", "a1", "a2", "b1"), "a2", safetyOffline)),
			requested: []string{"b1"},
			want:      []string{"demo: stream demo of account APP (R3) would keep 1 of 3 peers, needs 2: a2 offline, b1 requested"},
		},
		{
			name:      "R3, another node unreachable",
			view:      safetyUnreachable(safetyView(safetyStream("demo", "a1", "a2", "b1")), "a2"),
			requested: []string{"a1"},
			want:      []string{"demo: stream demo of account APP (R3) would keep 1 of 3 peers, needs 2: a1 requested, a2 unreachable"},
		},
		{
			// Its pod is being deleted (a rolling restart): the preStop
			// hook runs, the server still serves, and goes in seconds.
			name: "R3, another pod stopping",
			view: safetyNode(safetyView(safetyStream("demo", "a1", "a2", "b1")), "a2",
				func(n *natsraft.Node) { n.Stopping = true }),
			requested: []string{"a1"},
			want:      []string{"demo: stream demo of account APP (R3) would keep 1 of 3 peers, needs 2: a1 requested, a2 stopping"},
		},
		{
			name: "the leader's Raft quorum is more than a majority of the listed members",
			view: safetyView(func() natsraft.Group {
				g := safetyStream("moving", "a1", "a2", "b1")
				g.RaftQuorum = 3
				return g
			}()),
			requested: []string{"a2"},
			want:      []string{"moving: stream moving of account APP (R3) would keep 2 of 3 peers, needs 3: a2 requested"},
		},
		{
			name:      "leaderless R2 named by one member, the requested pod serves no JetStream",
			view:      safetyNoJetStream(safetyView(safetyHalfSeen(safetyStream("pair", "c1"), 2, false)), "c2"),
			requested: []string{"c2"},
			want: []string{"pair: stream pair of account APP (R2) would keep 0 of 2 peers, needs 2: c1 not current; " +
				"no report names 1 of its members, and c2 may hold one (requested)"},
		},
		{
			name:      "leaderless R3 named by one member, the requested pod unreachable",
			view:      safetyUnreachable(safetyView(safetyHalfSeen(safetyStream("trio", "a1"), 3, false)), "b1"),
			requested: []string{"b1", "a2"},
			want: []string{"trio: stream trio of account APP (R3) would keep 0 of 3 peers, needs 2: a1 not current; " +
				"no report names 2 of its members, and b1 may hold one (requested)"},
		},
		{
			name:      "leaderless R2 named by one member, the requested pod still recovering its JetStream",
			view:      safetyRecovering(safetyView(safetyHalfSeen(safetyStream("pair", "c1"), 2, false)), "c2"),
			requested: []string{"c2"},
			want: []string{"pair: stream pair of account APP (R2) would keep 0 of 2 peers, needs 2: c1 not current; " +
				"no report names 1 of its members, and c2 may hold one (requested)"},
		},
		{
			name:      "leaderless R2 named by one member, the requested pod serves JetStream",
			view:      safetyNoJetStream(safetyView(safetyHalfSeen(safetyStream("pair", "c1"), 2, false)), "c2"),
			requested: []string{"a1"},
		},
		{
			name:      "a leader listing fewer members than configured",
			view:      safetyUnreachable(safetyView(safetyHalfSeen(safetyStream("growing", "a1"), 3, true)), "b1"),
			requested: []string{"b1"},
		},
		{
			name:          "R3, another node in maintenance",
			view:          safetyView(safetyStream("demo", "a1", "a2", "b1")),
			requested:     []string{"a1"},
			inMaintenance: []string{"b1"},
			want:          []string{"demo: stream demo of account APP (R3) would keep 1 of 3 peers, needs 2: a1 requested, b1 in maintenance"},
		},
		{
			name:          "R3, a node in maintenance outside the group",
			view:          safetyView(safetyStream("demo", "a1", "a2", "b1")),
			requested:     []string{"a1"},
			inMaintenance: []string{"c1"},
		},
		{
			name:      "R5, two requested",
			view:      safetyView(safetyStream("big", "a1", "a2", "b1", "b2", "c1")),
			requested: []string{"a1", "b1"},
		},
		{
			name:      "R5, two requested and one not current",
			view:      safetyView(safetyPeer(safetyStream("big", "a1", "a2", "b1", "b2", "c1"), "c1", safetyNotCurrent)),
			requested: []string{"a1", "b1"},
			want:      []string{"big: stream big of account APP (R5) would keep 2 of 5 peers, needs 3: a1 requested, b1 requested, c1 not current"},
		},
		{
			name:      "meta of 3, one requested",
			view:      safetyView(safetyMeta("a1", "a2", "b1")),
			requested: []string{"b1"},
		},
		{
			name:      "meta of 3, one requested, one unreachable",
			view:      safetyUnreachable(safetyView(safetyMeta("a1", "a2", "b1")), "a1"),
			requested: []string{"b1"},
			want:      []string{"_meta_: meta group (3 peers) would keep 1 of 3 peers, needs 2: a1 unreachable, b1 requested"},
		},
		{
			name:          "meta of 5, one in maintenance, one requested",
			view:          safetyView(safetyMeta("a1", "a2", "b1", "b2", "c1")),
			requested:     []string{"a2"},
			inMaintenance: []string{"a1"},
		},
		{
			name:          "meta of 5, one in maintenance, one requested, one not current",
			view:          safetyView(safetyPeer(safetyMeta("a1", "a2", "b1", "b2", "c1"), "c1", safetyNotCurrent)),
			requested:     []string{"a2"},
			inMaintenance: []string{"a1"},
			want:          []string{"_meta_: meta group (5 peers) would keep 2 of 5 peers, needs 3: a1 in maintenance, a2 requested, c1 not current"},
		},
		{
			name:      "meta of 6, a whole dc of 2",
			view:      safetyView(safetyMeta("a1", "a2", "b1", "b2", "c1", "c2")),
			requested: []string{"a1", "a2"},
		},
		{
			name: "meta of 6, a whole dc of 2 that holds an R2 stream and an R3 stream",
			view: safetyView(safetyMeta("a1", "a2", "b1", "b2", "c1", "c2"),
				safetyStream("pair", "a1", "a2"), safetyStream("spread", "a1", "b1", "c1")),
			requested: []string{"a1", "a2"},
			want:      []string{"pair: stream pair of account APP (R2) would keep 0 of 2 peers, needs 2: a1 requested, a2 requested"},
		},
		{
			name:      "meta of 6, an R2 stream loses one of two",
			view:      safetyView(safetyMeta("a1", "a2", "b1", "b2", "c1", "c2"), safetyStream("pair", "a1", "b1")),
			requested: []string{"a1"},
			want:      []string{"pair: stream pair of account APP (R2) would keep 1 of 2 peers, needs 2: a1 requested"},
		},
		{
			name:          "meta of 6, a second dc while the first is in maintenance",
			view:          safetyView(safetyMeta("a1", "a2", "b1", "b2", "c1", "c2")),
			requested:     []string{"b1", "b2"},
			inMaintenance: []string{"a1", "a2"},
			want: []string{"_meta_: meta group (6 peers) would keep 2 of 6 peers, needs 4: " +
				"a1 in maintenance, a2 in maintenance, b1 requested, b2 requested"},
		},
		{
			name:      "a pod in no group",
			view:      safetyView(safetyMeta("a1", "a2", "b1"), safetyStream("demo", "a1", "a2", "b1")),
			requested: []string{"c2"},
		},
		{
			name:      "an untouched group that is already broken is not the request's fault",
			view:      safetyView(safetyStream("broken", "b1", "b2", "c1"), safetyStream("solo", "b2")),
			requested: []string{"a1"},
		},
		{
			name: "an already broken group the request touches is reported",
			view: safetyView(safetyPeer(safetyPeer(safetyStream("demo", "a1", "b1", "c1"),
				"b1", safetyOffline), "c1", safetyOffline)),
			requested: []string{"a1"},
			want:      []string{"demo: stream demo of account APP (R3) would keep 0 of 3 peers, needs 2: a1 requested, b1 offline, c1 offline"},
		},
		{
			name:          "repeating a request for a pod already in maintenance changes nothing",
			view:          safetyView(safetyStream("solo", "a1")),
			requested:     []string{"a1"},
			inMaintenance: []string{"a1"},
		},
		{
			name:      "a peer the sweep does not know counts by its Raft state",
			view:      safetyView(safetyStream("demo", "a1", "x1", "x2")),
			requested: []string{"a1"},
		},
		{
			name:      "nothing requested",
			view:      safetyView(safetyStream("solo", "a1")),
			requested: nil,
		},
		{
			name:      "no view",
			view:      nil,
			requested: []string{"a1"},
		},
		{
			name: "order: meta, streams by account and name, consumers",
			view: safetyView(
				safetyGroup(natsraft.KindConsumer, "zeta/c", "a1"),
				safetyStream("zeta", "a1"),
				func() natsraft.Group { g := safetyStream("zeta", "a1"); g.Account = "ACC"; return g }(),
				safetyStream("alpha", "a1"),
				safetyMeta("a1", "b1", "c1"),
			),
			requested: []string{"a1", "b1"},
			want: []string{
				"_meta_: meta group (3 peers) would keep 1 of 3 peers, needs 2: a1 requested, b1 requested",
				"zeta: stream zeta of account ACC (R1) lives only on a1 requested and would be unavailable",
				"alpha: stream alpha of account APP (R1) lives only on a1 requested and would be unavailable",
				"zeta: stream zeta of account APP (R1) lives only on a1 requested and would be unavailable",
				"zeta/c: consumer zeta/c of account APP (R1) lives only on a1 requested and would be unavailable",
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := CheckSafety(tt.view, tt.requested, tt.inMaintenance)
			var reasons []string
			for _, v := range got {
				reasons = append(reasons, v.Group+": "+v.Reason)
			}
			assert.Equal(t, tt.want, reasons)
			if len(tt.want) == 0 {
				assert.Nil(t, got)
			}
			for _, v := range got {
				assert.Less(t, len(v.Remaining), v.Quorum, v.Group)
				assert.Equal(t, len(v.Peers), len(v.Remaining)+len(v.Lost), v.Group)
			}
		})
	}
}

func TestCheckSafetyViolationDetail(t *testing.T) {
	view := safetyUnreachable(safetyView(
		safetyPeer(safetyStream("demo", "b1", "a1", "c1"), "c1", safetyNotCurrent),
	), "b1")
	got := CheckSafety(view, []string{"a1", "a1"}, []string{"a2"})
	require.Len(t, got, 1)
	want := Violation{
		Group:     "demo",
		Kind:      natsraft.KindStream,
		Account:   "APP",
		Peers:     []string{"a1", "b1", "c1"},
		Quorum:    2,
		Remaining: []string{},
		Lost: []LostPeer{
			{Name: "a1", Why: LostRequested},
			{Name: "b1", Why: LostUnreachable},
			{Name: "c1", Why: LostNotCurrent},
		},
		Reason: "stream demo of account APP (R3) would keep 0 of 3 peers, needs 2: a1 requested, b1 unreachable, c1 not current",
	}
	assert.Equal(t, want, got[0])

	// The JSON a 409 carries.
	b, err := json.Marshal(got[0])
	require.NoError(t, err)
	assert.JSONEq(t, `{"group":"demo","kind":"stream","account":"APP","peers":["a1","b1","c1"],"quorum":2,
		"remaining":[],"lost":[{"name":"a1","why":"requested"},{"name":"b1","why":"unreachable"},
		{"name":"c1","why":"not current"}],
		"reason":"stream demo of account APP (R3) would keep 0 of 3 peers, needs 2: a1 requested, b1 unreachable, c1 not current"}`,
		string(b))

	// The view is not changed.
	assert.Equal(t, []string{"b1", "a1", "c1"}, view.Groups[0].PeerNames())
}

func TestCheckSafetyDeterministic(t *testing.T) {
	var groups []natsraft.Group
	for _, name := range []string{"s3", "s1", "s2", "s5", "s4"} {
		groups = append(groups, safetyStream(name, "c2", "a1", "b2"))
	}
	view := safetyView(groups...)
	first := CheckSafety(view, []string{"a1", "b2"}, nil)
	require.Len(t, first, 5)
	for range 20 {
		assert.Equal(t, first, CheckSafety(view, []string{"b2", "a1"}, nil))
	}
}

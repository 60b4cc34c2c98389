// Package natsraft owns everything NATS: the embedded cluster used by the
// embedded default and the tests, the collection of health from the
// monitoring endpoints into a Cluster view of every JetStream Raft group,
// leadership hand-off, quiescing and the fences. It knows nothing about
// maintenance requests or HTTP.
package natsraft

import "time"

// GroupKind tells which layer of JetStream a Raft group belongs to.
type GroupKind string

// The three kinds of JetStream Raft groups.
const (
	KindMeta     GroupKind = "meta"
	KindStream   GroupKind = "stream"
	KindConsumer GroupKind = "consumer"
)

// MetaGroupName is the name the view gives the meta group.
const MetaGroupName = "_meta_"

// View is one consistent sweep over every node's monitoring endpoints.
// It is immutable once built: callers may share it between goroutines.
type View struct {
	At     time.Time `json:"at"`
	Nodes  []Node    `json:"nodes"`
	Groups []Group   `json:"groups"`
}

// Node is one NATS server as seen by the sweep.
type Node struct {
	Name string `json:"name"`
	// DC is the NATS cluster name the server reports (the datacenter).
	DC string `json:"dc"`
	ID string `json:"id,omitempty"`
	// Reachable is false when its monitoring endpoint did not answer.
	Reachable bool `json:"reachable"`
	// JetStream is false when JetStream is disabled (for example quiesced).
	JetStream bool `json:"jetstream"`
	// Routes names the servers this node has a route to.
	Routes []string `json:"routes"`
	// Gateways names the remote clusters this node has an outbound gateway to.
	Gateways []string `json:"gateways,omitempty"`
	// Leads counts the Raft groups this node currently leads.
	Leads int    `json:"leads"`
	Error string `json:"error,omitempty"`
}

// Group is one Raft group: the meta group, a stream or a consumer.
type Group struct {
	Kind     GroupKind `json:"kind"`
	Name     string    `json:"name"` // "_meta_", "<stream>" or "<stream>/<consumer>"
	Account  string    `json:"account,omitempty"`
	Stream   string    `json:"stream,omitempty"`
	Consumer string    `json:"consumer,omitempty"`
	// RaftGroup is the NATS Raft group id (for example "S-R3F-xyz").
	RaftGroup string `json:"raftGroup,omitempty"`
	// Cluster is the NATS cluster (dc) the group is placed in; empty for meta.
	Cluster string `json:"cluster,omitempty"`
	Leader  string `json:"leader,omitempty"`
	// LeaderlessSince is set while no node claims leadership.
	LeaderlessSince *time.Time `json:"leaderlessSince,omitempty"`
	Term            uint64     `json:"term,omitempty"`
	Commit          uint64     `json:"commit,omitempty"`
	Applied         uint64     `json:"applied,omitempty"`
	// Peers lists every member, the leader included.
	Peers []Peer `json:"peers"`
}

// Peer is one member of a Raft group as its leader sees it.
type Peer struct {
	Name    string `json:"name"`
	Leader  bool   `json:"leader,omitempty"`
	Current bool   `json:"current"`
	Offline bool   `json:"offline,omitempty"`
	// Active is the time since the leader last heard from this peer.
	Active time.Duration `json:"active"`
	Lag    uint64        `json:"lag,omitempty"`
}

// Quorum is the number of members a group needs to elect a leader and commit.
func (g Group) Quorum() int { return len(g.Peers)/2 + 1 }

// PeerNames returns the names of the group's members.
func (g Group) PeerNames() []string {
	names := make([]string, len(g.Peers))
	for i, p := range g.Peers {
		names[i] = p.Name
	}
	return names
}

// Node returns the named node and whether the view has it.
func (v *View) Node(name string) (Node, bool) {
	for _, n := range v.Nodes {
		if n.Name == name {
			return n, true
		}
	}
	return Node{}, false
}

// GroupsOf returns the groups the named node is a member of.
func (v *View) GroupsOf(name string) []Group {
	var out []Group
	for _, g := range v.Groups {
		for _, p := range g.Peers {
			if p.Name == name {
				out = append(out, g)
				break
			}
		}
	}
	return out
}

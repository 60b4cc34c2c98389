// Package natsraft owns everything NATS: the embedded cluster used by the
// embedded default and the tests, the collection of health from the
// monitoring endpoints into a Cluster view of every JetStream Raft group,
// leadership hand-off, quiescing and the fences. It knows nothing about
// maintenance requests or HTTP.
package natsraft

import (
	"slices"
	"strings"
	"time"
)

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
	// Recovering is set while the clustered node's JetStream is on but has
	// not finished recovering the streams on its disk (a start, a resume):
	// NATS lists a stream in /jsz once it has recovered it, with its
	// consumers after it, and starts the meta group only after all of them,
	// so until /jsz shows the meta group the groups it lists may be only
	// some of those it holds. See ListsAllGroups.
	Recovering bool `json:"recovering,omitempty"`
	// Stopping is set while the node's own sidecar readies its server for
	// a shutdown (the preStop hook of a pod being deleted, a rolling
	// restart): it still serves, but is about to go. Only a report from
	// its sidecar says so (see report.go).
	Stopping bool `json:"stopping,omitempty"`
	// Routes names the servers this node has a route to.
	Routes []string `json:"routes"`
	// Gateways names the remote clusters this node has an outbound gateway to.
	Gateways []string `json:"gateways,omitempty"`
	// Leads counts the Raft groups this node currently leads.
	Leads int    `json:"leads"`
	Error string `json:"error,omitempty"`

	// Started is when the server last started (from /varz).
	Started time.Time `json:"started,omitzero"`
	// ClientPort and ClusterPort are the ports the server listens on for
	// clients and for routes (from /varz).
	ClientPort  int `json:"clientPort,omitempty"`
	ClusterPort int `json:"clusterPort,omitempty"`
	// ConfiguredRoutes are the route URLs (host:port) of the node's
	// configuration (from /varz): where it dials its peers.
	ConfiguredRoutes []string `json:"configuredRoutes,omitempty"`
	// RouteErrors lists configured routes whose host name does not
	// resolve. They are looked up only while the node misses a route to a
	// reachable peer of its dc.
	RouteErrors []RouteError `json:"routeErrors,omitempty"`
	// Resources are the node's usage numbers (from /varz).
	Resources *Resources `json:"resources,omitempty"`
	// Healthz is what the node's /healthz says: "ok" or its error.
	Healthz string `json:"healthz,omitempty"`
	// RaftRegressions lists Raft groups whose durable state (term, log
	// index) the node reported lower after a restart than before it: it
	// came back with older state than it had.
	RaftRegressions []RaftRegression `json:"raftRegressions,omitempty"`
}

// Serving reports whether the node answered and runs JetStream: whether it
// can hold a leadership or take one over.
func (n Node) Serving() bool { return n.Reachable && n.JetStream }

// ListsAllGroups reports whether the node's report names every group it
// holds: it serves JetStream and has finished recovering it. A group that
// such a node does not list is not on it.
func (n Node) ListsAllGroups() bool { return n.Serving() && !n.Recovering }

// RouteError is a configured route that cannot be used.
type RouteError struct {
	Route string `json:"route"`
	Error string `json:"error"`
}

// Resources are one node's usage numbers as its /varz reports them.
type Resources struct {
	// CPU is the server's CPU use in percent of one core.
	CPU   float64 `json:"cpu"`
	Cores int     `json:"cores"`
	// Mem is the resident memory in bytes; MemLimit the GOMEMLIMIT, 0
	// when none is set.
	Mem      int64 `json:"mem"`
	MemLimit int64 `json:"memLimit,omitempty"`
	// SlowConsumers counts the connections the server dropped as slow
	// consumers since it started, and SlowConsumersLastMinute those of
	// the last minute (as far as the collector has watched).
	SlowConsumers           int64         `json:"slowConsumers"`
	SlowConsumersLastMinute int64         `json:"slowConsumersLastMinute"`
	SlowConsumerKinds       SlowConsumers `json:"slowConsumerKinds"`
	// JetStream storage in use and its limits, in bytes (0: no limit known).
	JetStreamMemory    uint64 `json:"jetstreamMemory"`
	JetStreamMaxMemory int64  `json:"jetstreamMaxMemory,omitempty"`
	JetStreamStore     uint64 `json:"jetstreamStore"`
	JetStreamMaxStore  int64  `json:"jetstreamMaxStore,omitempty"`
}

// SlowConsumers counts slow consumers by the kind of connection.
type SlowConsumers struct {
	Clients  uint64 `json:"clients"`
	Routes   uint64 `json:"routes"`
	Gateways uint64 `json:"gateways"`
	Leafs    uint64 `json:"leafs"`
}

// RaftRegression is one Raft group whose state went back in time on a node:
// what the node reported before its restart and what it reported after.
type RaftRegression struct {
	Kind      GroupKind `json:"kind"`
	Account   string    `json:"account,omitempty"`
	Group     string    `json:"group"`
	RaftGroup string    `json:"raftGroup"`
	// DetectedAt is the sweep that saw the older state.
	DetectedAt  time.Time `json:"detectedAt"`
	TermBefore  uint64    `json:"termBefore"`
	TermAfter   uint64    `json:"termAfter"`
	IndexBefore uint64    `json:"indexBefore"`
	IndexAfter  uint64    `json:"indexAfter"`
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
	// Ephemeral marks an ephemeral consumer (no durable name): ordered
	// consumers, KV watchers. Its client makes a new one when it is gone,
	// so losing it costs no data and refuses no maintenance.
	Ephemeral bool   `json:"ephemeral,omitempty"`
	Leader    string `json:"leader,omitempty"`
	// LeaderSince is when the leader took over (its /raftz), when known.
	LeaderSince *time.Time `json:"leaderSince,omitempty"`
	// LeaderlessSince is set while no node claims leadership.
	LeaderlessSince *time.Time `json:"leaderlessSince,omitempty"`
	// QuorumLostSince is set while fewer than a quorum of the members are
	// healthy, the leader counted: a leader that still claims leadership
	// then cannot commit either. It is set whenever LeaderlessSince is.
	QuorumLostSince *time.Time `json:"quorumLostSince,omitempty"`
	// TermChangesPerMinute counts the term increments (elections) of the
	// last minute, as far as the collector has watched.
	TermChangesPerMinute uint64 `json:"termChangesPerMinute,omitempty"`
	Term                 uint64 `json:"term,omitempty"`
	Commit               uint64 `json:"commit,omitempty"`
	Applied              uint64 `json:"applied,omitempty"`
	// LastSeq is the last sequence of the stream as its leader stores it
	// (streams only).
	LastSeq uint64 `json:"lastSeq,omitempty"`
	// Peers lists every member, the leader included.
	Peers []Peer `json:"peers"`
	// RaftQuorum is the quorum the leader's Raft node needs (its /raftz's
	// quorum_needed, from the Raft cluster size), 0 when unknown. See
	// Quorum.
	RaftQuorum int `json:"raftQuorum,omitempty"`
	// Replicas is the number of replicas the stream or consumer is
	// configured with (from /jsz's config), 0 when no report said, and
	// for the meta group. See Unnamed.
	Replicas int `json:"replicas,omitempty"`
	// MemberTerms holds the term each member reports itself (its /raftz)
	// where it differs from Term: a member cut off from its group keeps
	// campaigning and runs ahead.
	MemberTerms map[string]uint64 `json:"memberTerms,omitempty"`
}

// Peer is one member of a Raft group as its leader sees it.
type Peer struct {
	Name   string `json:"name"`
	Leader bool   `json:"leader,omitempty"`
	// Current is the strict caught-up flag: in contact and lag 0 (what a
	// node leaving maintenance waits for).
	Current bool `json:"current"`
	// Healthy says the peer is a working voter: reachable, routed, in
	// contact within ActiveThreshold and at most HealthyLag entries behind.
	// Under a steady write load a follower is rarely at lag 0 when a sweep
	// looks, so the safety rule counts Healthy, not Current.
	Healthy bool `json:"healthy"`
	Offline bool `json:"offline,omitempty"`
	// Active is the time since the leader last heard from this peer.
	Active time.Duration `json:"active"`
	Lag    uint64        `json:"lag,omitempty"`
	// Pending is set for a peer the group is assigned to that is not (yet,
	// or no longer) a member of its Raft group; it is never Healthy.
	Pending bool `json:"pending,omitempty"`
	// Own is what the member itself reports of the group (its /raftz and
	// its copy of the stream), nil when it did not report the group. The
	// leader's view of a follower can run ahead of the follower's own
	// state; a member has caught up only once its own state has too.
	Own *MemberState `json:"own,omitempty"`
}

// MemberState is one member's own report of a Raft group.
type MemberState struct {
	Committed  uint64 `json:"committed"`
	Applied    uint64 `json:"applied"`
	CatchingUp bool   `json:"catchingUp,omitempty"`
	// Restoring is set for a stream whose member restores a snapshot from
	// its leader (NATS pauses the group's apply meanwhile). NATS's
	// JetStream shutdown waits for such a catch-up to end, and one whose
	// leader is out of reach only stalls and asks again.
	Restoring bool `json:"restoring,omitempty"`
	// NoLeaderYet is set while the member's Raft node has not heard from
	// any leader since it was created: a node whose JetStream has just
	// started (or resumed) knows the log it has on disk but not yet the
	// leader, until the leader's next append or heartbeat (every second).
	NoLeaderYet bool `json:"noLeaderYet,omitempty"`
	// LastSeq is the last sequence of the member's copy of the stream
	// (streams only).
	LastSeq uint64 `json:"lastSeq,omitempty"`
}

// Quorum is the number of members a group needs to elect a leader and
// commit: a majority of its members, its unnamed ones counted, or what its
// leader's Raft node needs when that is more (NATS counts its Raft cluster
// size, which can include a member its reports no longer list, during a
// move of peers).
func (g Group) Quorum() int { return max((len(g.Peers)+g.Unnamed())/2+1, g.RaftQuorum) }

// Unnamed is how many members of a leaderless group no report names: the
// configured replicas less the listed peers. A leaderless group's members
// are what its reporters list, and a server whose JetStream has just
// started reports its streams before their Raft nodes run, with no peer
// but itself; when every member that answers reports it so, the others
// are named nowhere in the sweep. Such a member is on a node that does not
// list all its groups (Node.ListsAllGroups). A group with a leader is what
// its leader lists (during a change of replicas it lists fewer or more
// than configured), and has none.
func (g Group) Unnamed() int {
	if g.Leader != "" || g.Replicas <= len(g.Peers) {
		return 0
	}
	return g.Replicas - len(g.Peers)
}

// PeerNames returns the names of the group's members.
func (g Group) PeerNames() []string {
	names := make([]string, len(g.Peers))
	for i, p := range g.Peers {
		names[i] = p.Name
	}
	return names
}

// AddPeers adds to g those of peers whose names it does not list yet and
// keeps its peers sorted by name, for a group whose reports name fewer
// members than it has. The slice g had is not written to: g may be a copy
// of a view's group that shares it.
func (g *Group) AddPeers(peers ...Peer) {
	out := g.Peers
	for _, p := range peers {
		if slices.ContainsFunc(out, func(q Peer) bool { return q.Name == p.Name }) {
			continue
		}
		if len(out) == len(g.Peers) {
			out = slices.Clone(out)
		}
		out = append(out, p)
	}
	if len(out) != len(g.Peers) {
		slices.SortFunc(out, func(a, b Peer) int { return strings.Compare(a.Name, b.Name) })
		g.Peers = out
	}
}

// Group returns the group of the view with that kind, account (streams
// and consumers) and name, and whether the view has it.
func (v *View) Group(kind GroupKind, account, name string) (Group, bool) {
	for _, g := range v.Groups {
		if g.Kind == kind && g.Name == name && (kind == KindMeta || g.Account == account) {
			return g, true
		}
	}
	return Group{}, false
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

// WithDCs returns the view with the dc of each named node replaced by the
// one dcs gives (a Kubernetes mode pod's dc label, say); v itself is shared
// and left alone. The view's own dcs are the NATS cluster names, which
// routes and gateways follow; maintenance may group the pods otherwise.
func (v *View) WithDCs(dcs map[string]string) *View {
	if v == nil || len(dcs) == 0 {
		return v
	}
	out := *v
	out.Nodes = slices.Clone(v.Nodes)
	for i := range out.Nodes {
		if dc := dcs[out.Nodes[i].Name]; dc != "" {
			out.Nodes[i].DC = dc
		}
	}
	return &out
}

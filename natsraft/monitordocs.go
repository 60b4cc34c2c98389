package natsraft

import (
	"slices"
	"time"
)

// The monitoring documents of a NATS server, decoded into only the fields
// the prober reads: a /jsz of ten thousand groups is mostly fields we skip.
// The collector, the fences and the link verifier share these types.

type varzDoc struct {
	ID      string `json:"server_id"`
	Name    string `json:"server_name"`
	Port    int    `json:"port"`
	Cluster struct {
		Name string   `json:"name"`
		Port int      `json:"cluster_port"`
		URLs []string `json:"urls"`
	} `json:"cluster"`
	Gateway struct {
		Name string `json:"name"`
	} `json:"gateway"`
	Start              time.Time `json:"start"`
	Mem                int64     `json:"mem"`
	MemLimit           int64     `json:"gomemlimit"`
	Cores              int       `json:"cores"`
	CPU                float64   `json:"cpu"`
	SlowConsumers      int64     `json:"slow_consumers"`
	SlowConsumersStats *struct {
		Clients  uint64 `json:"clients"`
		Routes   uint64 `json:"routes"`
		Gateways uint64 `json:"gateways"`
		Leafs    uint64 `json:"leafs"`
	} `json:"slow_consumer_stats"`
	JetStream struct {
		Config *struct {
			MaxMemory int64 `json:"max_memory"`
			MaxStore  int64 `json:"max_storage"`
		} `json:"config"`
		Stats *struct {
			Memory uint64 `json:"memory"`
			Store  uint64 `json:"storage"`
		} `json:"stats"`
	} `json:"jetstream"`
}

// healthzDoc is the answer of /healthz, given with 200 and with 503.
type healthzDoc struct {
	Status string `json:"status"`
	Error  string `json:"error"`
}

// routezDoc is the answer of /routez: a server's route connections.
type routezDoc struct {
	Routes []routeDoc `json:"routes"`
}

type routeDoc struct {
	RemoteID   string `json:"remote_id"`
	RemoteName string `json:"remote_name"`
}

// remoteNames returns the names of the servers the routes go to, sorted,
// each once.
func (rz routezDoc) remoteNames() []string {
	names := make([]string, 0, len(rz.Routes))
	for _, rt := range rz.Routes {
		if rt.RemoteName != "" && !slices.Contains(names, rt.RemoteName) {
			names = append(names, rt.RemoteName)
		}
	}
	slices.Sort(names)
	return names
}

// count returns how many of the routes go to the server with the given id
// or name: a route pool (and each account pinned to a route of its own)
// makes several per peer.
func (rz routezDoc) count(id, name string) int {
	n := 0
	for _, r := range rz.Routes {
		if (id != "" && r.RemoteID == id) || (name != "" && r.RemoteName == name) {
			n++
		}
	}
	return n
}

// most returns the largest number of routes the server has to any one
// peer other than the one named by id or name.
func (rz routezDoc) most(id, name string) int {
	per := map[string]int{}
	for _, r := range rz.Routes {
		if (id != "" && r.RemoteID == id) || (name != "" && r.RemoteName == name) {
			continue
		}
		per[r.RemoteID+"/"+r.RemoteName]++
	}
	most := 0
	for _, n := range per {
		most = max(most, n)
	}
	return most
}

// has reports whether the routes include one to the server with the given
// id or name.
func (rz routezDoc) has(id, name string) bool {
	return slices.ContainsFunc(rz.Routes, func(r routeDoc) bool {
		return (id != "" && r.RemoteID == id) || (name != "" && r.RemoteName == name)
	})
}

// gatewayzDoc is the answer of /gatewayz: a server's gateway connections to
// other clusters, outbound by remote cluster name, inbound likewise.
type gatewayzDoc struct {
	Outbound map[string]*gatewayDoc  `json:"outbound_gateways"`
	Inbound  map[string][]gatewayDoc `json:"inbound_gateways"`
}

type gatewayDoc struct {
	Connection *struct {
		// Name is the remote server's id.
		Name string `json:"name"`
	} `json:"connection"`
}

// connected reports whether g is an established connection, to the server
// with the given id when id is not empty.
func (g *gatewayDoc) connected(id string) bool {
	return g != nil && g.Connection != nil && (id == "" || g.Connection.Name == id)
}

// connzDoc is one page of /connz: the server's client connections.
type connzDoc struct {
	Conns []struct {
		Cid uint64 `json:"cid"`
	} `json:"connections"`
}

type jszDoc struct {
	ID       string       `json:"server_id"`
	Disabled bool         `json:"disabled"`
	Meta     *clusterDoc  `json:"meta_cluster"`
	Accounts []accountDoc `json:"account_details"`
	// Total is the number of JetStream accounts, over all pages.
	Total int `json:"total"`
}

// jszPageSize is how many accounts one /jsz request asks for; NATS gives
// at most 1024 unless told otherwise.
const jszPageSize = 1024

type accountDoc struct {
	ID      string      `json:"id"`
	Streams []streamDoc `json:"stream_detail"`
}

type streamDoc struct {
	Name    string      `json:"name"`
	Cluster *clusterDoc `json:"cluster"`
	// Config is there when /jsz is asked with config=true.
	Config *struct {
		Replicas int `json:"num_replicas"`
	} `json:"config"`
	State struct {
		LastSeq uint64 `json:"last_seq"`
	} `json:"state"`
	Consumers []consumerDoc `json:"consumer_detail"`
}

// replicas is the stream's configured number of replicas, 0 when /jsz did
// not say.
func (s *streamDoc) replicas() int {
	if s.Config == nil {
		return 0
	}
	return s.Config.Replicas
}

type consumerDoc struct {
	Name    string      `json:"name"`
	Cluster *clusterDoc `json:"cluster"`
	// Config is there when /jsz is asked with config=true.
	Config *struct {
		Durable string `json:"durable_name"`
		// Replicas is 0 when the consumer has as many as its stream.
		Replicas int `json:"num_replicas"`
	} `json:"config"`
}

// replicas is the consumer's number of replicas, its stream's when its
// configuration names none, 0 when /jsz did not say.
func (c *consumerDoc) replicas(stream int) int {
	if c.Config == nil {
		return 0
	}
	if c.Config.Replicas > 0 {
		return c.Config.Replicas
	}
	return stream
}

// ephemeral reports whether the consumer is ephemeral (no durable name),
// as ordered consumers, KV watchers and `nats stream view` are: their
// clients make a new one when it is gone.
func (c *consumerDoc) ephemeral() bool { return c.Config != nil && c.Config.Durable == "" }

// raftless reports whether ci, the cluster info of an asset configured
// with replicas replicas, comes from a server whose Raft node for it does
// not run (yet): NATS then names the server itself as the leader, with no
// Raft group and no replica, as it does for an asset of one replica, which
// has no Raft node at all. A server whose JetStream has just started
// reports the streams it recovered from disk so until the meta layer
// attaches their groups. A nil ci is not raftless.
func (ci *clusterDoc) raftless(replicas int) bool {
	return ci != nil && replicas > 1 && ci.RaftGroup == "" && len(ci.Replicas) == 0
}

// clusterDoc is the common part of ClusterInfo and MetaClusterInfo.
type clusterDoc struct {
	Name      string    `json:"name"`
	RaftGroup string    `json:"raft_group"`
	Leader    string    `json:"leader"`
	Replicas  []peerDoc `json:"replicas"`
}

type peerDoc struct {
	Name    string        `json:"name"`
	Current bool          `json:"current"`
	Offline bool          `json:"offline"`
	Active  time.Duration `json:"active,format:nano"`
	Lag     uint64        `json:"lag"`
	Peer    string        `json:"peer"`
	// Pending: assigned to the group but not a member of its Raft group.
	Pending bool `json:"pending"`
}

type raftzGroupDoc struct {
	State     string `json:"state"`
	Committed uint64 `json:"committed"`
	Applied   uint64 `json:"applied"`
	// CatchingUp is set while the node's Raft layer catches up on the
	// leader's log.
	CatchingUp bool `json:"catching_up"`
	// Paused is set while the group's apply channel is paused: for a
	// stream, while it restores a snapshot from its leader (and briefly
	// while a large log is replayed at start).
	Paused bool   `json:"paused"`
	Term   uint64 `json:"term"`
	// PIndex is the index of the last entry of the node's log.
	PIndex uint64 `json:"pindex"`
	// EverHadLeader is false until the node's Raft node, since it was
	// created (a start, a JetStream resume), has heard from a leader. NATS
	// always writes it; a peer's report from a prober that did not read it
	// leaves it nil (unknown).
	EverHadLeader *bool `json:"ever_had_leader,omitempty"`
	// LeaderSince is when the node took the group's leadership, on the
	// node that leads it.
	LeaderSince *time.Time `json:"leader_since,omitempty"`
	// QuorumNeeded is the quorum of the node's Raft cluster size (0 in a
	// report that does not say).
	QuorumNeeded int `json:"quorum_needed,omitempty"`
}

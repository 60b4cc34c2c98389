// Package synth renders the monitoring documents of a healthy synthetic
// NATS cluster — /varz, /routez, /healthz, /jsz and /raftz of each node —
// with nats-server's own types, so that the prober decodes the real wire
// format, and serves them as they are. It takes the NATS servers' own cost
// of rendering their documents out of a measure; that cost is measured on
// real clusters of a size this machine holds.
package synth

import (
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/prober-dev/prober/natsraft"
)

// Nodes names the n nodes of a synthetic cluster nats-0 … nats-<n-1>.
func Nodes(n int) []string {
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("nats-%d", i)
	}
	return names
}

// Handler serves one node's documents; /raftz by account. Its documents
// are rendered once and never change.
type Handler struct {
	varz, routez, healthz, jsz []byte
	raftz                      map[string][]byte // by ?acc= ("" is the system account)
}

// ServeHTTP answers GET /varz, /routez, /healthz, /jsz and /raftz?acc=;
// anything else is 404, as /gatewayz is on a server without gateways.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	var doc []byte
	switch r.URL.Path {
	case "/varz":
		doc = h.varz
	case "/routez":
		doc = h.routez
	case "/healthz":
		doc = h.healthz
	case "/jsz":
		doc = h.jsz
	case "/raftz":
		doc = h.raftz[r.URL.Query().Get("acc")]
	}
	if doc == nil {
		http.NotFound(w, r)
		return
	}
	_, _ = w.Write(doc)
}

// members returns the three nodes (indexes into nodes) holding stream s:
// streams are spread over the nodes in turn, three consecutive nodes each,
// and the stream's consumers live on the same nodes, as NATS places them.
func members(s, n int) []int {
	if n <= 3 {
		m := make([]int, n)
		for i := range m {
			m[i] = (s + i) % n
		}
		return m
	}
	return []int{s % n, (s + 1) % n, (s + 2) % n}
}

// NewHandler renders the documents of node self of a cluster of nodes
// (at least 3) holding streams R3 streams with consumers R3 consumers each,
// and the meta group over every node. Stream s is led by the first of its
// members, its consumer c by member (c+1) mod 3, so leaderships are spread
// evenly; a leader lists its followers, a follower the leader and the
// other followers, as NATS does.
func NewHandler(nodes []string, self, streams, consumers int) (*Handler, error) {
	if len(nodes) < 3 || self < 0 || self >= len(nodes) {
		return nil, fmt.Errorf("synthetic cluster: node %d of %d nodes: want 3 or more nodes", self, len(nodes))
	}
	now := time.Now()
	name := nodes[self]
	hash := natsraft.NodeHash
	cluster := func(group string, in []int, leader int) *server.ClusterInfo {
		ci := &server.ClusterInfo{Name: "dc1", RaftGroup: group, Leader: nodes[leader], LeaderSince: &now}
		for _, i := range in {
			if i != leader && (leader == self || i != self) {
				ci.Replicas = append(ci.Replicas, &server.PeerInfo{Name: nodes[i], Current: true, Active: 300 * time.Millisecond, Peer: hash(nodes[i])})
			}
		}
		return ci
	}
	raftGroup := func(in []int, leader int, term uint64) server.RaftzGroup {
		g := server.RaftzGroup{
			ID: hash(name), State: "FOLLOWER", Size: len(in), QuorumNeeded: len(in)/2 + 1, Committed: 5000, Applied: 5000,
			Leader: hash(nodes[leader]), EverHadLeader: true, Term: term, PTerm: term, PIndex: 5000,
			TrafficAcc: natsraft.AppAccount, Peers: map[string]server.RaftzGroupPeer{},
		}
		if leader == self {
			g.State, g.LeaderSince = "LEADER", &now
		}
		for _, i := range in {
			if i != self {
				g.Peers[hash(nodes[i])] = server.RaftzGroupPeer{Name: nodes[i], Known: true, LastReplicatedIndex: 5000, LastSeen: "300ms"}
			}
		}
		return g
	}
	has := func(in []int) bool {
		for _, i := range in {
			if i == self {
				return true
			}
		}
		return false
	}

	acc := &server.AccountDetail{Name: natsraft.AppAccount, Id: natsraft.AppAccount}
	appRaft := map[string]server.RaftzGroup{}
	nStreams, nConsumers := 0, 0
	for s := range streams {
		in := members(s, len(nodes))
		if !has(in) {
			continue
		}
		nStreams++
		sname := fmt.Sprintf("s%05d", s)
		sgroup := fmt.Sprintf("S-R3M-%07d", s)
		sd := server.StreamDetail{
			Name: sname, Created: now, Cluster: cluster(sgroup, in, in[0]), RaftGroup: sgroup,
			State: server.StreamState{Msgs: 5000, Bytes: 320000, FirstSeq: 1, LastSeq: 5000, Consumers: consumers},
		}
		appRaft[sgroup] = raftGroup(in, in[0], 7)
		for c := range consumers {
			nConsumers++
			cgroup := fmt.Sprintf("C-R3M-%07d-%d", s, c)
			leader := in[(c+1)%len(in)]
			sd.Consumer = append(sd.Consumer, &server.ConsumerInfo{
				Stream: sname, Name: fmt.Sprintf("c%d", c), Created: now, TimeStamp: now,
				Delivered:     server.SequenceInfo{Consumer: 4900, Stream: 4900},
				AckFloor:      server.SequenceInfo{Consumer: 4890, Stream: 4890},
				NumAckPending: 10, NumPending: 100, Cluster: cluster(cgroup, in, leader),
			})
			sd.ConsumerRaftGroups = append(sd.ConsumerRaftGroups, &server.RaftGroupDetail{Name: fmt.Sprintf("c%d", c), RaftGroup: cgroup})
			appRaft[cgroup] = raftGroup(in, leader, 3)
		}
		acc.Streams = append(acc.Streams, sd)
	}
	all := make([]int, len(nodes))
	for i := range all {
		all[i] = i
	}
	meta := cluster("_meta_", all, 0)
	jsz := server.JSInfo{
		ID: "ID-" + name, Now: now, Streams: nStreams, Consumers: nConsumers,
		Meta:           &server.MetaClusterInfo{Name: "dc1", Leader: meta.Leader, Replicas: meta.Replicas, Size: len(nodes)},
		AccountDetails: []*server.AccountDetail{acc},
	}
	var routes []map[string]any
	var urls []string
	for i, p := range nodes {
		if i != self {
			routes = append(routes, map[string]any{"rid": i, "remote_id": "ID-" + p, "remote_name": p, "ip": "127.0.0.1", "port": 6222})
			urls = append(urls, p+".nats:6222")
		}
	}
	varz := server.Varz{
		ID: "ID-" + name, Name: name, Version: server.VERSION, Host: "0.0.0.0", Port: 4222, Start: now.Add(-time.Hour),
		Now: now, Mem: 3 << 30, Cores: 8, CPU: 40, Routes: len(nodes) - 1, Remotes: len(nodes) - 1,
		Cluster:            server.ClusterOptsVarz{Name: "dc1", Host: "0.0.0.0", Port: 6222, URLs: urls},
		SlowConsumersStats: &server.SlowConsumersStats{},
		JetStream: server.JetStreamVarz{
			Config: &server.JetStreamConfig{MaxMemory: 8 << 30, MaxStore: 100 << 30},
			Stats:  &server.JetStreamStats{Memory: 1 << 30, Store: 0},
		},
	}
	sys := map[string]map[string]server.RaftzGroup{"SYS": {"_meta_": raftGroup(all, 0, 12)}}
	h := &Handler{raftz: map[string][]byte{}}
	var err error
	for _, d := range []struct {
		into *[]byte
		v    any
	}{
		{&h.jsz, jsz}, {&h.varz, varz}, {&h.routez, map[string]any{"routes": routes}},
		{&h.healthz, map[string]any{"status": "ok", "status_code": 200}},
	} {
		if *d.into, err = json.Marshal(d.v); err != nil {
			return nil, err
		}
	}
	if h.raftz[""], err = json.Marshal(sys); err != nil {
		return nil, err
	}
	if h.raftz[natsraft.AppAccount], err = json.Marshal(map[string]map[string]server.RaftzGroup{natsraft.AppAccount: appRaft}); err != nil {
		return nil, err
	}
	return h, nil
}

// Size is how many bytes one sweep of this node's documents carries.
func (h *Handler) Size() int {
	n := len(h.varz) + len(h.routez) + len(h.healthz) + len(h.jsz)
	for _, d := range h.raftz {
		n += len(d)
	}
	return n
}

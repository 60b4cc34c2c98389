package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/prober-dev/prober/natsraft"
)

// The synthetic cluster: the monitoring documents of a healthy 3-node
// cluster of streams × (1 + consumers) R3 Raft groups, rendered once with
// nats-server's own types (so the prober decodes the real wire format) and
// served as they are. It takes the NATS servers' own cost of rendering
// their documents out of the measure — that cost is measured on a real
// cluster of a size this machine holds.

var synthNodes = []string{"nats-0", "nats-1", "nats-2"}

// serveSynthetic serves the synthetic cluster on loopback, announces its
// endpoints on out and serves until in closes.
func serveSynthetic(ctx context.Context, streams, consumers int, out io.Writer, in io.Reader) error {
	start := time.Now()
	var eps []natsraft.Endpoint
	var servers []*http.Server
	defer func() {
		for _, s := range servers {
			_ = s.Close()
		}
	}()
	for i, name := range synthNodes {
		docs, err := synthDocs(i, streams, consumers)
		if err != nil {
			return err
		}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return err
		}
		srv := &http.Server{Handler: docs, ReadHeaderTimeout: 10 * time.Second}
		servers = append(servers, srv)
		go func() { _ = srv.Serve(ln) }()
		eps = append(eps, natsraft.Endpoint{Name: name, DC: "dc1", MonitorURL: "http://" + ln.Addr().String()})
	}
	fmt.Fprintf(out, "synthetic documents of %d groups rendered in %.1fs\n", streams*(1+consumers)+1, time.Since(start).Seconds())
	b, err := json.Marshal(eps)
	if err != nil {
		return err
	}
	fmt.Fprintln(out, readyLine+string(b))
	_, _ = io.Copy(io.Discard, in)
	return ctx.Err()
}

// synthHandler serves one node's documents; /raftz by account.
type synthHandler struct {
	varz, routez, healthz, jsz []byte
	raftz                      map[string][]byte // by ?acc= ("" is the system account)
}

func (h *synthHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
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

// synthDocs renders node self's documents. Groups are led in turn by each
// node; a leader lists its followers, a follower the leader and the other
// follower, as NATS does.
func synthDocs(self, streams, consumers int) (*synthHandler, error) {
	now := time.Now()
	name := synthNodes[self]
	hash := natsraft.NodeHash
	cluster := func(group string, leader int) *server.ClusterInfo {
		ci := &server.ClusterInfo{Name: "dc1", RaftGroup: group, Leader: synthNodes[leader], LeaderSince: &now}
		for i, p := range synthNodes {
			if i != leader && (leader == self || i != self) {
				ci.Replicas = append(ci.Replicas, &server.PeerInfo{Name: p, Current: true, Active: 300 * time.Millisecond, Peer: hash(p)})
			}
		}
		return ci
	}
	raftGroup := func(leader int, term uint64) server.RaftzGroup {
		g := server.RaftzGroup{
			ID: hash(name), State: "FOLLOWER", Size: 3, QuorumNeeded: 2, Committed: 5000, Applied: 5000,
			Leader: hash(synthNodes[leader]), EverHadLeader: true, Term: term, PTerm: term, PIndex: 5000,
			TrafficAcc: natsraft.AppAccount, Peers: map[string]server.RaftzGroupPeer{},
		}
		if leader == self {
			g.State, g.LeaderSince = "LEADER", &now
		}
		for i, p := range synthNodes {
			if i != self {
				g.Peers[hash(p)] = server.RaftzGroupPeer{Name: p, Known: true, LastReplicatedIndex: 5000, LastSeen: "300ms"}
			}
		}
		return g
	}

	acc := &server.AccountDetail{Name: natsraft.AppAccount, Id: natsraft.AppAccount}
	appRaft := map[string]server.RaftzGroup{}
	for s := range streams {
		sname := fmt.Sprintf("s%05d", s)
		sgroup := fmt.Sprintf("S-R3M-%07d", s)
		sd := server.StreamDetail{
			Name: sname, Created: now, Cluster: cluster(sgroup, s%3), RaftGroup: sgroup,
			State: server.StreamState{Msgs: 5000, Bytes: 320000, FirstSeq: 1, LastSeq: 5000, Consumers: consumers},
		}
		appRaft[sgroup] = raftGroup(s%3, 7)
		for c := range consumers {
			cgroup := fmt.Sprintf("C-R3M-%07d-%d", s, c)
			leader := (s + c + 1) % 3
			sd.Consumer = append(sd.Consumer, &server.ConsumerInfo{
				Stream: sname, Name: fmt.Sprintf("c%d", c), Created: now, TimeStamp: now,
				Delivered:     server.SequenceInfo{Consumer: 4900, Stream: 4900},
				AckFloor:      server.SequenceInfo{Consumer: 4890, Stream: 4890},
				NumAckPending: 10, NumPending: 100, Cluster: cluster(cgroup, leader),
			})
			sd.ConsumerRaftGroups = append(sd.ConsumerRaftGroups, &server.RaftGroupDetail{Name: fmt.Sprintf("c%d", c), RaftGroup: cgroup})
			appRaft[cgroup] = raftGroup(leader, 3)
		}
		acc.Streams = append(acc.Streams, sd)
	}
	meta := cluster("_meta_", 0)
	jsz := server.JSInfo{
		ID: "ID-" + name, Now: now, Streams: streams, Consumers: streams * consumers,
		Meta:           &server.MetaClusterInfo{Name: "dc1", Leader: meta.Leader, Replicas: meta.Replicas, Size: 3},
		AccountDetails: []*server.AccountDetail{acc},
	}
	var routes []map[string]any
	var urls []string
	for i, p := range synthNodes {
		if i != self {
			routes = append(routes, map[string]any{"rid": i, "remote_id": "ID-" + p, "remote_name": p, "ip": "127.0.0.1", "port": 6222})
			urls = append(urls, p+".nats:6222")
		}
	}
	varz := server.Varz{
		ID: "ID-" + name, Name: name, Version: server.VERSION, Host: "0.0.0.0", Port: 4222, Start: now.Add(-time.Hour),
		Now: now, Mem: 3 << 30, Cores: 8, CPU: 40, Routes: 2, Remotes: 2,
		Cluster:            server.ClusterOptsVarz{Name: "dc1", Host: "0.0.0.0", Port: 6222, URLs: urls},
		SlowConsumersStats: &server.SlowConsumersStats{},
		JetStream: server.JetStreamVarz{
			Config: &server.JetStreamConfig{MaxMemory: 8 << 30, MaxStore: 100 << 30},
			Stats:  &server.JetStreamStats{Memory: 1 << 30, Store: 0},
		},
	}
	sys := map[string]map[string]server.RaftzGroup{"SYS": {"_meta_": raftGroup(0, 12)}}
	h := &synthHandler{raftz: map[string][]byte{}}
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

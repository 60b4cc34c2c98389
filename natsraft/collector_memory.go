package natsraft

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"
)

// What the collector remembers between sweeps, so that a view can say how
// things develop and not only how they are: since when a group has lacked
// quorum, how often its term moved in the last minute, how many slow
// consumers a node dropped lately, and whether a node came back from a
// restart with older Raft state than it had.

// Windows and bounds of the collector's memory.
const (
	// RateWindow is the window of TermChangesPerMinute and
	// SlowConsumersLastMinute.
	RateWindow = time.Minute
	// RegressionMemory is how long a view keeps reporting a Raft
	// regression after the sweep that saw it.
	RegressionMemory = 10 * time.Minute
	// regressionWatch is how long after a restart groups that have not
	// shown up on the node yet are still compared with their state from
	// before the restart.
	regressionWatch = 2 * time.Minute
	// dnsTTL is how long a route host lookup is reused.
	dnsTTL = 10 * time.Second
	// dnsTimeout bounds one route host lookup.
	dnsTimeout = time.Second
	// healthzBody bounds the /healthz answer read.
	healthzBody = 64 * 1024
)

// Resolver looks up host names; *net.Resolver is one.
type Resolver interface {
	LookupHost(ctx context.Context, host string) ([]string, error)
}

// healthMemory is the collector's memory across sweeps. It is guarded by
// Collector.mu.
type healthMemory struct {
	quorumLost  map[groupKey]time.Time
	terms       map[groupKey]*termTrack
	slow        map[string]*slowTrack
	raft        map[string]*nodeRaft
	regressions map[string][]RaftRegression
}

func newHealthMemory() *healthMemory {
	return &healthMemory{
		quorumLost:  map[groupKey]time.Time{},
		terms:       map[groupKey]*termTrack{},
		slow:        map[string]*slowTrack{},
		raft:        map[string]*nodeRaft{},
		regressions: map[string][]RaftRegression{},
	}
}

// termTrack follows one group's term; changes holds only the sweeps in
// the window that saw it move.
type termTrack struct {
	last    uint64
	changes []termChange
}

type termChange struct {
	at time.Time
	n  uint64
}

// slowTrack holds one node's slow consumer count per sweep over the window
// (and one sample older than it, the baseline).
type slowTrack struct {
	start   time.Time
	samples []slowSample
}

type slowSample struct {
	at    time.Time
	count int64
}

// nodeRaft is the durable Raft position of every group of one node, as
// last seen, with the server start it was seen under.
type nodeRaft struct {
	start time.Time
	pos   map[string]raftPos
	// before holds, after a restart, the positions of groups that have not
	// shown up on the node again yet; watched until beforeUntil.
	before      map[string]raftPos
	beforeUntil time.Time
}

type raftPos struct{ term, index uint64 }

// dnsAnswer is one cached route host lookup.
type dnsAnswer struct {
	at  time.Time
	err error
}

// healthz asks the node's /healthz, which answers 200 and 503 alike with
// a small document; "" when the node did not answer at all.
func (c *Collector) healthz(ctx context.Context, ep Endpoint) string {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(ep.MonitorURL, "/")+"/healthz", nil)
	if err != nil {
		return ""
	}
	resp, err := c.o.Client.Do(req)
	if err != nil {
		return ""
	}
	defer func() {
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
	}()
	return healthzVerdict(resp.StatusCode, resp.Body)
}

// healthzVerdict reads the answer of /healthz, given with status: "ok",
// the error it names, or its status.
func healthzVerdict(status int, body io.Reader) string {
	var d healthzDoc
	if err := json.NewDecoder(io.LimitReader(body, healthzBody)).Decode(&d); err != nil {
		if status == http.StatusOK {
			return "ok"
		}
		return fmt.Sprintf("status %d", status)
	}
	switch {
	case d.Error != "":
		return d.Error
	case d.Status == "ok" || status == http.StatusOK:
		return "ok"
	default:
		return d.Status
	}
}

// fillNodeFacts copies what /varz and /healthz said into the node.
func fillNodeFacts(n *Node, r *nodeReport) {
	vz := &r.varz
	n.Started = vz.Start
	n.ClientPort = vz.Port
	n.ClusterPort = vz.Cluster.Port
	if len(vz.Cluster.URLs) > 0 {
		n.ConfiguredRoutes = slices.Sorted(slices.Values(vz.Cluster.URLs))
	}
	n.Healthz = r.healthz
	res := &Resources{CPU: vz.CPU, Cores: vz.Cores, Mem: vz.Mem, MemLimit: vz.MemLimit, SlowConsumers: vz.SlowConsumers}
	if st := vz.SlowConsumersStats; st != nil {
		res.SlowConsumerKinds = SlowConsumers{Clients: st.Clients, Routes: st.Routes, Gateways: st.Gateways, Leafs: st.Leafs}
	}
	if cfg := vz.JetStream.Config; cfg != nil {
		res.JetStreamMaxMemory, res.JetStreamMaxStore = cfg.MaxMemory, cfg.MaxStore
	}
	if st := vz.JetStream.Stats; st != nil {
		res.JetStreamMemory, res.JetStreamStore = st.Memory, st.Store
	}
	n.Resources = res
}

// setMemberTerms records the members whose own term differs from the
// group's.
func setMemberTerms(g *Group, nodes map[string]*nodeReport) {
	for _, p := range g.Peers {
		r, ok := nodes[p.Name]
		if !ok || r.err != nil {
			continue
		}
		rs, ok := r.raft[g.RaftGroup]
		if !ok || rs.Term == 0 || rs.Term == g.Term {
			continue
		}
		if g.MemberTerms == nil {
			g.MemberTerms = map[string]uint64{}
		}
		g.MemberTerms[p.Name] = rs.Term
	}
}

// MissingRoutes names the reachable peers of the node's dc that it has no
// route with, in either direction. Nodes of a dc route to each other
// directly; a missing route cuts Raft traffic between them.
func (v *View) MissingRoutes(name string) []string {
	n, ok := v.Node(name)
	if !ok || !n.Reachable {
		return nil
	}
	var out []string
	for _, p := range v.Nodes {
		if p.Name == name || !p.Reachable || p.DC != n.DC {
			continue
		}
		if !routeEachOther(name, n.Routes, p.Name, p.Routes) {
			out = append(out, p.Name)
		}
	}
	return out
}

// checkRoutes looks up the host names of the configured routes of every
// node that misses a route, and records those that do not resolve. Nodes
// whose routes are all up are not looked at: their names resolved. The
// lookups run at once, bounded together by dnsTimeout, so that a DNS
// outage cannot stall the sweep.
func (c *Collector) checkRoutes(ctx context.Context, v *View) {
	if c.dns == nil {
		c.dns = map[string]dnsAnswer{}
	}
	now := c.o.Now()
	var nodes []*Node
	var hosts []string
	for i := range v.Nodes {
		n := &v.Nodes[i]
		if len(n.ConfiguredRoutes) == 0 || len(v.MissingRoutes(n.Name)) == 0 {
			continue
		}
		nodes = append(nodes, n)
		for _, route := range n.ConfiguredRoutes {
			host, _, err := net.SplitHostPort(route)
			if err != nil || net.ParseIP(host) != nil {
				continue
			}
			if a, ok := c.dns[host]; (!ok || now.Sub(a.at) > dnsTTL) && !slices.Contains(hosts, host) {
				hosts = append(hosts, host)
			}
		}
	}
	c.lookupAll(ctx, hosts, now)
	for _, n := range nodes {
		for _, route := range n.ConfiguredRoutes {
			host, _, err := net.SplitHostPort(route)
			if err != nil {
				n.RouteErrors = append(n.RouteErrors, RouteError{Route: route, Error: err.Error()})
				continue
			}
			if a, ok := c.dns[host]; ok && a.err != nil {
				n.RouteErrors = append(n.RouteErrors, RouteError{Route: route, Error: a.err.Error()})
			}
		}
	}
	for host, a := range c.dns {
		if now.Sub(a.at) > dnsTTL {
			delete(c.dns, host)
		}
	}
}

// lookupAll resolves hosts concurrently into the cache. A lookup cut short
// by ctx (the sweep's own end) is not cached: it says nothing of the name.
func (c *Collector) lookupAll(ctx context.Context, hosts []string, now time.Time) {
	if len(hosts) == 0 {
		return
	}
	var res Resolver = net.DefaultResolver
	if c.o.Resolver != nil {
		res = c.o.Resolver
	}
	lctx, cancel := context.WithTimeout(ctx, dnsTimeout)
	defer cancel()
	errs := make([]error, len(hosts))
	var wg sync.WaitGroup
	for i, host := range hosts {
		wg.Go(func() {
			addrs, err := res.LookupHost(lctx, host)
			if err == nil && len(addrs) == 0 {
				err = fmt.Errorf("lookup %s: no addresses", host)
			}
			errs[i] = err
		})
	}
	wg.Wait()
	if ctx.Err() != nil {
		return
	}
	for i, host := range hosts {
		c.dns[host] = dnsAnswer{at: now, err: errs[i]}
	}
}

// trackHealth stamps the view with what the collector remembers and
// updates the memory. c.mu must be held.
func (c *Collector) trackHealth(v *View, reports []*nodeReport) {
	if c.health == nil {
		c.health = newHealthMemory()
	}
	h := c.health
	h.trackGroups(v)
	byName := make(map[string]*nodeReport, len(reports))
	for _, r := range reports {
		byName[r.name()] = r
	}
	var index map[string]*Group // raft group → group, built when needed
	for i := range v.Nodes {
		n := &v.Nodes[i]
		r := byName[n.Name]
		if r == nil || r.err != nil {
			continue
		}
		h.trackSlow(v.At, n, r)
		if r.raft != nil {
			if h.trackRaft(v.At, n.Name, r) && index == nil {
				index = groupIndex(v)
			}
			h.recordRegressions(v.At, n.Name, r, index)
		}
	}
	for i := range v.Nodes {
		n := &v.Nodes[i]
		kept := h.regressions[n.Name][:0]
		for _, rg := range h.regressions[n.Name] {
			if v.At.Sub(rg.DetectedAt) <= RegressionMemory {
				kept = append(kept, rg)
			}
		}
		if len(kept) == 0 {
			delete(h.regressions, n.Name)
			continue
		}
		h.regressions[n.Name] = kept
		n.RaftRegressions = slices.Clone(kept)
	}
}

// trackGroups stamps QuorumLostSince and TermChangesPerMinute and forgets
// groups that are gone.
func (h *healthMemory) trackGroups(v *View) {
	seen := make(map[groupKey]struct{}, len(v.Groups))
	lost := 0
	for i := range v.Groups {
		g := &v.Groups[i]
		k := keyOf(g)
		seen[k] = struct{}{}

		if quorumLost(g) {
			lost++
			since, ok := h.quorumLost[k]
			if !ok || (g.LeaderlessSince != nil && g.LeaderlessSince.Before(since)) {
				since = v.At
				if g.LeaderlessSince != nil && g.LeaderlessSince.Before(since) {
					since = *g.LeaderlessSince
				}
				h.quorumLost[k] = since
			}
			g.QuorumLostSince = &since
		} else if len(h.quorumLost) > 0 {
			delete(h.quorumLost, k)
		}

		t := h.terms[k]
		if t == nil {
			h.terms[k] = &termTrack{last: g.Term}
			continue
		}
		if g.Term > t.last && t.last != 0 {
			t.changes = append(t.changes, termChange{at: v.At, n: g.Term - t.last})
		}
		if g.Term != 0 {
			t.last = g.Term
		}
		drop := 0
		for drop < len(t.changes) && v.At.Sub(t.changes[drop].at) > RateWindow {
			drop++
		}
		if drop > 0 {
			t.changes = slices.Delete(t.changes, 0, drop)
		}
		for _, ch := range t.changes {
			g.TermChangesPerMinute += ch.n
		}
	}
	if len(h.terms) > len(seen) || lost < len(h.quorumLost) {
		for k := range h.terms {
			if _, ok := seen[k]; !ok {
				delete(h.terms, k)
			}
		}
		for k := range h.quorumLost {
			if _, ok := seen[k]; !ok {
				delete(h.quorumLost, k)
			}
		}
	}
}

// trackSlow records the node's slow consumer count and sets how many it
// counted in the last minute.
func (h *healthMemory) trackSlow(at time.Time, n *Node, r *nodeReport) {
	if n.Resources == nil {
		return
	}
	count := r.varz.SlowConsumers
	t := h.slow[n.Name]
	if t == nil || !t.start.Equal(r.varz.Start) || (len(t.samples) > 0 && count < t.samples[len(t.samples)-1].count) {
		// First sight or a restart: the counter starts again.
		t = &slowTrack{start: r.varz.Start}
		h.slow[n.Name] = t
	}
	t.samples = append(t.samples, slowSample{at: at, count: count})
	// Keep one sample at or before the window's start as the baseline.
	drop := 0
	for drop+1 < len(t.samples) && at.Sub(t.samples[drop+1].at) >= RateWindow {
		drop++
	}
	if drop > 0 {
		t.samples = slices.Delete(t.samples, 0, drop)
	}
	base := t.samples[0].count
	if at.Sub(t.samples[0].at) < RateWindow && !r.varz.Start.IsZero() && at.Sub(r.varz.Start) <= RateWindow {
		// The server started within the window: all it counted is recent.
		base = 0
	}
	n.Resources.SlowConsumersLastMinute = count - base
}

// trackRaft compares the node's Raft positions with those it had before
// a restart, and remembers the new ones. It reports whether a regression
// is pending in r (recordRegressions then needs the group index).
func (h *healthMemory) trackRaft(at time.Time, node string, r *nodeReport) bool {
	nr := h.raft[node]
	if nr == nil {
		nr = &nodeRaft{start: r.varz.Start, pos: make(map[string]raftPos, len(r.raft))}
		h.raft[node] = nr
	} else if !nr.start.Equal(r.varz.Start) {
		// A restart: what the node had before becomes the reference for
		// each group until the group shows up again.
		nr.before, nr.beforeUntil = nr.pos, at.Add(regressionWatch)
		nr.pos = make(map[string]raftPos, len(r.raft))
		nr.start = r.varz.Start
	}
	if nr.before != nil && at.After(nr.beforeUntil) {
		nr.before = nil
	}
	// The positions of this sweep only: groups come and go (ephemeral
	// consumers above all), and one gone is not compared again. A sweep
	// whose /raftz failed keeps the last positions.
	if len(r.raft) > 0 {
		nr.pos = make(map[string]raftPos, len(r.raft))
	}
	pending := false
	for name, g := range r.raft {
		nr.pos[name] = raftPos{term: g.Term, index: g.PIndex}
		if nr.before == nil {
			continue
		}
		if freshStore(g) {
			// Wiped on purpose (a resync): nothing to compare with, and
			// the state it catches up to is its group's, not stale.
			delete(nr.before, name)
			continue
		}
		if old, ok := nr.before[name]; ok && regressed(name, old, g) {
			pending = true
		}
	}
	return pending
}

// recordRegressions turns the groups of r whose position went back into
// RaftRegressions, and stops watching every group of r.
func (h *healthMemory) recordRegressions(at time.Time, node string, r *nodeReport, index map[string]*Group) {
	nr := h.raft[node]
	if nr == nil || nr.before == nil {
		return
	}
	for name, g := range r.raft {
		old, ok := nr.before[name]
		if !ok {
			continue
		}
		delete(nr.before, name)
		if !regressed(name, old, g) {
			continue
		}
		rg := RaftRegression{
			Group: name, RaftGroup: name, DetectedAt: at,
			TermBefore: old.term, TermAfter: g.Term, IndexBefore: old.index, IndexAfter: g.PIndex,
		}
		if grp, ok := index[name]; ok {
			rg.Kind, rg.Account, rg.Group = grp.Kind, grp.Account, grp.Name
		} else if name == metaRaftGroup {
			rg.Kind, rg.Group = KindMeta, MetaGroupName
		}
		h.regressions[node] = append(h.regressions[node], rg)
	}
	if len(nr.before) == 0 {
		nr.before = nil
	}
}

// regressed tells whether a group's state went back. The term is kept on
// disk for every group; the log index only for file-backed groups (a
// memory stream's log starts empty after every restart): NATS names them
// "S-R<n>F-…" and "C-R<n>F-…", and the meta group is on file.
func regressed(raftGroup string, old raftPos, now raftzGroupDoc) bool {
	if freshStore(now) {
		return false
	}
	if now.Term < old.term {
		return true
	}
	parts := strings.SplitN(raftGroup, "-", 3)
	fileBacked := raftGroup == metaRaftGroup || (len(parts) == 3 && strings.HasSuffix(parts[1], "F"))
	return fileBacked && now.PIndex < old.index
}

// groupIndex maps Raft group names to the view's groups.
func groupIndex(v *View) map[string]*Group {
	out := make(map[string]*Group, len(v.Groups))
	for i := range v.Groups {
		g := &v.Groups[i]
		if g.RaftGroup != "" {
			out[g.RaftGroup] = g
		}
	}
	return out
}

// freshStore tells whether a group's state is that of an empty store (term
// 0, log index 0): a node whose store was wiped, which resyncs from its
// peers, not one that came back with stale Raft state.
func freshStore(g raftzGroupDoc) bool { return g.Term == 0 && g.PIndex == 0 }

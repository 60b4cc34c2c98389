package natsraft

import (
	"cmp"
	"fmt"
	"maps"
	"net"
	"slices"
	"strings"
	"time"
)

// Diagnosis: what is wrong with the Raft groups of a view, in words an
// operator can act on. It makes the troubleshooting text for "leader
// election in progress" executable: each of its six causes (too few nodes
// available, network partition, wrong routes, stale Raft state, resource
// exhaustion, DNS) is recognised from the view's numbers, and so are a few
// milder states that precede them (a node down with quorum kept, a lagging
// replica, term inflation, an election under way). Node loss is read from
// reachability, last contact and routes, never from NATS's own offline
// flag, which appears only after about 150 s.

// Cause names what is wrong.
type Cause string

// The causes a finding can have. The first six are those of the
// troubleshooting text.
const (
	CauseTooFewNodes   Cause = "too few nodes available"
	CausePartition     Cause = "network partition"
	CauseWrongRoutes   Cause = "wrong routes"
	CauseStaleState    Cause = "stale Raft state"
	CauseResources     Cause = "resource exhaustion"
	CauseDNS           Cause = "DNS"
	CauseNodeDown      Cause = "node unavailable"
	CauseLagging       Cause = "lagging replica"
	CauseTermInflation Cause = "term inflation"
	CauseElection      Cause = "leader election in progress"
	CauseMaintenance   Cause = "maintenance"
)

// Severity tells how urgent a finding is.
type Severity string

// Severities: critical means some group cannot commit.
const (
	SeverityCritical Severity = "critical"
	SeverityWarning  Severity = "warning"
	SeverityInfo     Severity = "info"
)

// GroupState is a Raft group's health in one word.
type GroupState string

// Group states, from worst to best. A finding may also mark a healthy group
// it concerns as at risk.
const (
	StateLeaderless GroupState = "leaderless"
	StateQuorumLost GroupState = "quorum lost"
	StateDegraded   GroupState = "degraded"
	StateHealthy    GroupState = "healthy"
	StateAtRisk     GroupState = "at risk"
)

// GroupStates lists the states State returns, worst first.
var GroupStates = []GroupState{StateLeaderless, StateQuorumLost, StateDegraded, StateHealthy}

// Thresholds of the diagnosis.
const (
	// ElectionGrace is how long a group with enough members may be
	// leaderless before the election counts as failing: NATS elections
	// time out after 4–9 s.
	ElectionGrace = 10 * time.Second
	// TermInflationPerMinute is the number of term changes in a minute
	// from which a group's elections count as inflating its term.
	TermInflationPerMinute = 3
	// TermAhead is how far a member's own term may run ahead of its
	// group's before it counts as campaigning alone.
	TermAhead = 2
	// HighUsage is the share of a limit from which usage counts as
	// exhaustion (memory, storage, CPU).
	HighUsage = 0.9
	// ReadyLag is how far a replica may be behind and still count as
	// caught up (NodeReady, HandOff.CaughtUp): Raft entries behind its
	// leader and behind its own commit, messages behind the leader's copy
	// of a stream. Under a steady write load a follower is rarely at zero.
	ReadyLag = 16
	// MaxFindingGroups bounds the groups a finding lists (GroupCount has
	// them all).
	MaxFindingGroups = 100
	// maxEvidence bounds the evidence lines of one kind in a finding.
	maxEvidence = 8
)

// Finding is one diagnosed problem: its cause, the groups and nodes it
// affects, the numbers it is read from and what to do.
type Finding struct {
	Cause    Cause    `json:"cause"`
	Severity Severity `json:"severity"`
	// Summary says what is wrong in one sentence.
	Summary string `json:"summary"`
	// Nodes are the nodes the cause is located at.
	Nodes []string `json:"nodes"`
	// Groups are the affected Raft groups, worst first, at most
	// MaxFindingGroups of them; GroupCount counts them all.
	Groups     []AffectedGroup `json:"groups"`
	GroupCount int             `json:"groupCount"`
	// Evidence lists the observations, with their numbers.
	Evidence []string `json:"evidence"`
	// Remedy lists what to do, in order.
	Remedy []string `json:"remedy"`
}

// AffectedGroup is one Raft group a finding concerns.
type AffectedGroup struct {
	Kind    GroupKind  `json:"kind"`
	Account string     `json:"account,omitempty"`
	Name    string     `json:"name"`
	Leader  string     `json:"leader,omitempty"`
	State   GroupState `json:"state"`
	// LeaderlessSeconds is how long the group has been without a working
	// leader: no leader, or one without a quorum of healthy members.
	LeaderlessSeconds float64 `json:"leaderlessSeconds,omitempty"`
	// Healthy counts the working voters (Peer.Healthy, the leader
	// included) out of Peers; Quorum is how many it needs.
	Healthy int `json:"healthy"`
	Peers   int `json:"peers"`
	Quorum  int `json:"quorum"`
}

// DiagnoseOptions tunes a diagnosis.
type DiagnoseOptions struct {
	// Now is when durations are measured to; View.At when zero.
	Now time.Time
	// Maintenance names the nodes that are out of service on purpose
	// (in maintenance, or on their way in or out): their being fenced,
	// quiesced or stopped is expected and reported as such.
	Maintenance []string
}

// State returns the group's health: leaderless when no node leads it,
// quorum lost when its leader has fewer than a quorum of healthy members
// (itself included), degraded when some member is not healthy. Healthy,
// not Current: under a write load followers are rarely at lag 0.
func (g *Group) State() GroupState {
	if g.Leader == "" {
		return StateLeaderless
	}
	healthy := g.HealthyCount()
	switch {
	case healthy < g.Quorum():
		return StateQuorumLost
	case healthy < len(g.Peers):
		return StateDegraded
	}
	return StateHealthy
}

// HealthyCount counts the working voters, the leader included; 0 without
// a leader.
func (g *Group) HealthyCount() int {
	if g.Leader == "" {
		return 0
	}
	n := 0
	for _, p := range g.Peers {
		if p.Leader || p.Healthy {
			n++
		}
	}
	return n
}

// WorkingLeaderSince returns since when the group has been without a
// working leader (no leader, or a leader without quorum); nil when it has
// one or the view does not know.
func (g *Group) WorkingLeaderSince() *time.Time {
	since := g.LeaderlessSince
	if q := g.QuorumLostSince; q != nil && (since == nil || q.Before(*since)) {
		since = q
	}
	if since == nil || g.State() == StateHealthy || g.State() == StateDegraded {
		return nil
	}
	return since
}

// NodeReady tells whether node is ready to serve: it answers with
// JetStream on, is a peer of the meta group, and has caught up with every
// group it is a member of (see memberBehind). A node back from a restart
// or from maintenance is ready only once it has caught up. why says what
// is missing. HandOff.CaughtUp asks the same question.
func (v *View) NodeReady(node string) (ready bool, why string) {
	n, found := v.Node(node)
	switch {
	case !found:
		return false, fmt.Sprintf("%s is not in the view", node)
	case !n.Reachable:
		return false, fmt.Sprintf("%s is unreachable: %s", node, n.Error)
	case !n.JetStream:
		return false, fmt.Sprintf("%s has JetStream off", node)
	}
	var behind []string
	meta := false
	for i := range v.Groups {
		g := &v.Groups[i]
		self, member := peerOf(*g, node)
		if !member {
			continue
		}
		if g.Kind == KindMeta {
			meta = true
		}
		if why := v.memberBehind(g, self); why != "" {
			behind = append(behind, fmt.Sprintf("%s %s: %s", g.Kind, g.Name, why))
		}
	}
	if !meta {
		behind = append([]string{fmt.Sprintf("%s is not a peer of the meta group yet", node)}, behind...)
	}
	if len(behind) == 0 {
		return true, ""
	}
	return false, joinBounded(behind, maxCatchUpDetails, "; ")
}

// routed tells whether two nodes have a route both ways; nodes of other
// dcs reach each other over gateways and count as routed.
func (v *View) routed(a, b string) bool {
	na, okA := v.Node(a)
	nb, okB := v.Node(b)
	if !okA || !okB {
		return false
	}
	if a == b || na.DC != nb.DC {
		return true
	}
	return routeEachOther(a, na.Routes, b, nb.Routes)
}

// routeEachOther tells whether nodes a and b, with the given routes, have
// a route both ways: each lists the other among its routes. It is the one
// definition the route checks share; which pairs must route (those of one
// dc) is theirs to say.
func routeEachOther(a string, aRoutes []string, b string, bRoutes []string) bool {
	return slices.Contains(aRoutes, b) && slices.Contains(bRoutes, a)
}

// Diagnose reads the view and returns its findings, most severe first; a
// healthy cluster has none.
func Diagnose(v *View, o DiagnoseOptions) []Finding {
	if v == nil {
		return nil
	}
	d := newDiagnosis(v, o)
	d.classifyNodes()
	d.classifyGroups()
	d.checkResources()
	d.checkStale()
	d.checkTerms()
	return d.result()
}

// condition is what is wrong with one node, as far as its groups are
// concerned.
type condition int

const (
	condOK condition = iota
	condMaintenance
	condDown
	condCutOff
	condJetStreamOff
)

type nodeHealth struct {
	node *Node
	cond condition
	// cause is, for a cut-off node, why it is cut off.
	cause    Cause
	evidence []string
}

// draft is a finding under construction.
type draft struct {
	cause    Cause
	nodes    map[string]bool
	groups   map[groupKey]AffectedGroup
	evidence []string
	// extra evidence, bounded per kind
	groupNotes []string
	critical   bool
}

type diagnosis struct {
	v       *View
	now     time.Time
	maint   map[string]bool
	nodes   map[string]*nodeHealth
	main    map[string]map[string]bool // dc → nodes of its largest routed part
	missing map[string][]string        // node → reachable dc peers it has no route with
	drafts  map[Cause]*draft
	// explained holds groups whose quorum loss a node-level cause explains.
	explained map[groupKey]bool
	// byRaft maps Raft group names to groups, built when first needed.
	byRaft map[string]*Group
}

func newDiagnosis(v *View, o DiagnoseOptions) *diagnosis {
	d := &diagnosis{
		v:         v,
		now:       o.Now,
		maint:     map[string]bool{},
		nodes:     map[string]*nodeHealth{},
		main:      map[string]map[string]bool{},
		missing:   map[string][]string{},
		drafts:    map[Cause]*draft{},
		explained: map[groupKey]bool{},
	}
	if d.now.IsZero() {
		d.now = v.At
	}
	for _, m := range o.Maintenance {
		d.maint[m] = true
	}
	for i := range v.Nodes {
		n := &v.Nodes[i]
		d.nodes[n.Name] = &nodeHealth{node: n}
	}
	return d
}

func (d *diagnosis) draft(c Cause) *draft {
	dr := d.drafts[c]
	if dr == nil {
		dr = &draft{cause: c, nodes: map[string]bool{}, groups: map[groupKey]AffectedGroup{}}
		d.drafts[c] = dr
	}
	return dr
}

// classifyNodes finds the nodes that are down, cut off or quiesced, and
// why they are cut off.
func (d *diagnosis) classifyNodes() {
	d.findMainParts()
	for _, n := range sortedNodes(d.v) {
		st := d.nodes[n.Name]
		missing := d.v.MissingRoutes(n.Name)
		d.missing[n.Name] = missing
		switch {
		case d.maint[n.Name]:
			st.cond = condMaintenance
		case !n.Reachable:
			st.cond = condDown
		case !d.main[n.DC][n.Name] && len(missing) > 0:
			st.cond = condCutOff
			st.cause, st.evidence = d.connectivityCause(n.Name)
		case !n.JetStream:
			st.cond = condJetStreamOff
		}
	}
	for _, n := range sortedNodes(d.v) {
		st := d.nodes[n.Name]
		switch st.cond {
		case condMaintenance:
			dr := d.draft(CauseMaintenance)
			dr.nodes[n.Name] = true
			dr.evidence = append(dr.evidence, d.describeNode(n))
		case condDown:
			dr := d.draft(CauseNodeDown)
			dr.nodes[n.Name] = true
			dr.evidence = append(dr.evidence, fmt.Sprintf("%s does not answer on its monitoring port: %s", n.Name, n.Error))
		case condJetStreamOff:
			dr := d.draft(CauseNodeDown)
			dr.nodes[n.Name] = true
			dr.evidence = append(dr.evidence, fmt.Sprintf("%s answers but has JetStream off (it switches JetStream off itself when storage runs out)", n.Name))
		case condCutOff:
			dr := d.draft(st.cause)
			dr.nodes[n.Name] = true
			dr.evidence = append(dr.evidence, st.evidence...)
		}
	}
	// Not one node answers: whatever the groups are doing, nobody can
	// tell, and they can do nothing either.
	if dr := d.drafts[CauseNodeDown]; dr != nil && !slices.ContainsFunc(d.v.Nodes, func(n Node) bool { return n.Reachable }) {
		dr.critical = true
		dr.evidence = append(dr.evidence, "not one node answers: the prober cannot see any Raft group")
	}
	// Routes missing between nodes of the main part: a partial partition.
	for _, n := range sortedNodes(d.v) {
		if d.nodes[n.Name].cond != condOK && d.nodes[n.Name].cond != condJetStreamOff {
			continue
		}
		for _, p := range d.missing[n.Name] {
			ps := d.nodes[p]
			if p < n.Name || ps == nil || (ps.cond != condOK && ps.cond != condJetStreamOff) {
				continue
			}
			cause, ev := d.pairCause(n.Name, p)
			dr := d.draft(cause)
			dr.nodes[n.Name], dr.nodes[p] = true, true
			dr.evidence = append(dr.evidence, ev...)
		}
	}
}

// findMainParts splits each dc's reachable nodes into parts that route to
// each other and keeps the largest (ties: the one with the meta leader,
// then the first by name).
func (d *diagnosis) findMainParts() {
	metaLeader := ""
	for i := range d.v.Groups {
		if d.v.Groups[i].Kind == KindMeta {
			metaLeader = d.v.Groups[i].Leader
		}
	}
	byDC := map[string][]string{}
	for _, n := range sortedNodes(d.v) {
		if n.Reachable {
			byDC[n.DC] = append(byDC[n.DC], n.Name)
		}
	}
	for dc, names := range byDC {
		seen := map[string]bool{}
		var best []string
		bestMeta := false
		for _, start := range names {
			if seen[start] {
				continue
			}
			part := []string{start}
			seen[start] = true
			for i := 0; i < len(part); i++ {
				for _, other := range names {
					if !seen[other] && d.v.routed(part[i], other) {
						seen[other] = true
						part = append(part, other)
					}
				}
			}
			hasMeta := slices.Contains(part, metaLeader)
			if len(part) > len(best) || (len(part) == len(best) && hasMeta && !bestMeta) {
				best, bestMeta = part, hasMeta
			}
		}
		d.main[dc] = map[string]bool{}
		for _, n := range best {
			d.main[dc][n] = true
		}
	}
}

// connectivityCause tells why a reachable node has no routes to the main
// part of its dc: route hosts that do not resolve (DNS), routes that do
// not lead to its peers (wrong routes), or else the network (partition).
func (d *diagnosis) connectivityCause(name string) (Cause, []string) {
	n := d.nodes[name].node
	missing := d.missing[name]
	base := fmt.Sprintf("%s is reachable but has no route to %s (routes it has: %s)",
		name, strings.Join(missing, ", "), listOrNone(n.Routes))
	if len(n.RouteErrors) > 0 {
		ev := []string{base}
		for _, re := range n.RouteErrors {
			ev = append(ev, fmt.Sprintf("route %s of %s does not resolve: %s", re.Route, name, re.Error))
		}
		return CauseDNS, ev
	}
	if wrong, ev := d.wrongRoutes(name); wrong {
		return CauseWrongRoutes, append([]string{base}, ev...)
	}
	return CausePartition, []string{base, fmt.Sprintf(
		"its configured routes (%s) match those of its peers and resolve: the network between them drops the cluster traffic",
		listOrNone(n.ConfiguredRoutes))}
}

// pairCause is connectivityCause for two nodes of the main part that have
// no route with each other.
func (d *diagnosis) pairCause(a, b string) (Cause, []string) {
	base := fmt.Sprintf("%s and %s have no route with each other, though both route to the rest of %s",
		a, b, d.nodes[a].node.DC)
	for _, x := range []string{a, b} {
		if errs := d.nodes[x].node.RouteErrors; len(errs) > 0 {
			ev := []string{base}
			for _, re := range errs {
				ev = append(ev, fmt.Sprintf("route %s of %s does not resolve: %s", re.Route, x, re.Error))
			}
			return CauseDNS, ev
		}
	}
	return CausePartition, []string{base}
}

// wrongRoutes tells whether a node's configured routes cannot lead to its
// peers: none configured, some pointing at a client port, or none among
// the routes that the connected nodes of its dc use.
func (d *diagnosis) wrongRoutes(name string) (bool, []string) {
	n := d.nodes[name].node
	if len(n.ConfiguredRoutes) == 0 {
		return true, []string{fmt.Sprintf("%s has no routes configured: it can only wait to be dialed", name)}
	}
	known := map[string]bool{}
	clientPorts := map[string][]string{}
	for _, p := range d.v.Nodes {
		if p.DC != n.DC || p.Name == name {
			continue
		}
		if d.main[n.DC][p.Name] {
			for _, r := range p.ConfiguredRoutes {
				known[r] = true
			}
		}
		if p.ClientPort > 0 {
			port := fmt.Sprint(p.ClientPort)
			clientPorts[port] = append(clientPorts[port], p.Name)
		}
	}
	var ev []string
	overlap := false
	for _, r := range n.ConfiguredRoutes {
		if known[r] {
			overlap = true
		}
		if _, port, err := net.SplitHostPort(r); err == nil && len(clientPorts[port]) > 0 {
			ev = append(ev, fmt.Sprintf("route %s of %s points at a client port (that of %s), not a cluster port",
				r, name, strings.Join(clientPorts[port], ", ")))
		}
	}
	if len(known) > 0 && !overlap {
		ev = append(ev, fmt.Sprintf("%s routes to %s; the connected nodes of %s route to %s: not one in common",
			name, strings.Join(n.ConfiguredRoutes, ", "), n.DC, strings.Join(slices.Sorted(maps.Keys(known)), ", ")))
	}
	return len(ev) > 0, ev
}

// classifyGroups attaches every unhealthy group to the finding of what
// keeps it so.
func (d *diagnosis) classifyGroups() {
	for i := range d.v.Groups {
		g := &d.v.Groups[i]
		state := g.State()
		if state == StateHealthy {
			continue
		}
		k := keyOf(g)
		lost := state == StateLeaderless || state == StateQuorumLost

		// A leader cut off from its dc still claims the group for a while.
		if g.Leader != "" && d.nodes[g.Leader] != nil && d.nodes[g.Leader].cond == condCutOff {
			st := d.nodes[g.Leader]
			d.attach(st.cause, g, lost, []string{g.Leader})
			d.explained[k] = true
			continue
		}

		available := 0
		reasons := map[Cause][]string{}
		for _, p := range g.Peers {
			cause, ok := d.memberProblem(g, p)
			if ok {
				available++
				continue
			}
			reasons[cause] = append(reasons[cause], p.Name)
		}
		if lost && available >= g.Quorum() {
			d.election(g, state, available)
			continue
		}
		if len(reasons) == 0 {
			continue
		}
		for _, cause := range slices.Sorted(maps.Keys(reasons)) {
			d.attach(cause, g, lost, reasons[cause])
		}
		if lost {
			d.explained[k] = true
		}
	}
}

// memberProblem tells what keeps a member from counting for its group;
// ok when nothing does.
func (d *diagnosis) memberProblem(g *Group, p Peer) (Cause, bool) {
	st := d.nodes[p.Name]
	if st == nil {
		return CauseNodeDown, false
	}
	switch st.cond {
	case condMaintenance:
		return CauseMaintenance, false
	case condDown, condJetStreamOff:
		return CauseNodeDown, false
	case condCutOff:
		return st.cause, false
	}
	if g.Leader == "" || p.Leader || p.Healthy {
		return "", true
	}
	if !d.v.routed(p.Name, g.Leader) {
		cause, _ := d.pairCause(p.Name, g.Leader)
		return cause, false
	}
	// Reachable, routed, JetStream on, and yet no working voter: more than
	// HealthyLag behind, or its leader has not heard from it lately.
	return CauseLagging, false
}

// attach adds g to the finding of cause, located at nodes.
func (d *diagnosis) attach(cause Cause, g *Group, lost bool, nodes []string) {
	dr := d.draft(cause)
	for _, n := range nodes {
		dr.nodes[n] = true
	}
	dr.groups[keyOf(g)] = d.affected(g, "")
	if lost {
		dr.critical = true
	}
	if cause == CauseLagging {
		for _, n := range nodes {
			if p, ok := peerOf(*g, n); ok {
				dr.groupNotes = append(dr.groupNotes, fmt.Sprintf("%s %s: %s is %d entries behind leader %s, last heard %s ago",
					g.Kind, g.Name, n, p.Lag, g.Leader, p.Active.Round(time.Millisecond)))
			}
		}
	}
}

// election handles a group without a working leader although a quorum of
// its members is available.
func (d *diagnosis) election(g *Group, state GroupState, available int) {
	k := keyOf(g)
	var nodes []string
	for _, p := range g.Peers {
		nodes = append(nodes, p.Name)
	}
	for _, p := range g.Peers {
		if st := d.nodes[p.Name]; st != nil && len(st.node.RaftRegressions) > 0 {
			d.attach(CauseStaleState, g, true, []string{p.Name})
			d.explained[k] = true
			return
		}
	}
	if g.TermChangesPerMinute >= TermInflationPerMinute {
		d.attach(CauseTermInflation, g, true, nodes)
		d.explained[k] = true
		return
	}
	dr := d.draft(CauseElection)
	d.attach(CauseElection, g, false, nodes)
	since := g.WorkingLeaderSince()
	var dur time.Duration
	if since != nil {
		dur = d.now.Sub(*since)
	}
	if dur >= ElectionGrace {
		dr.critical = true
	}
	what := "has no leader"
	if state == StateQuorumLost {
		what = fmt.Sprintf("has leader %s without a quorum of current members", g.Leader)
	}
	dr.groupNotes = append(dr.groupNotes, fmt.Sprintf("%s %s %s for %.1f s, with %d of %d members available (quorum %d), term %d",
		g.Kind, g.Name, what, dur.Seconds(), available, len(g.Peers), g.Quorum(), g.Term))
}

// checkResources looks at every node's usage numbers.
func (d *diagnosis) checkResources() {
	for _, n := range sortedNodes(d.v) {
		r := n.Resources
		if r == nil || !n.Reachable {
			continue
		}
		var ev []string
		if r.SlowConsumersLastMinute > 0 {
			k := r.SlowConsumerKinds
			ev = append(ev, fmt.Sprintf("%s dropped %d slow consumer(s) in the last minute (%d since start: clients %d, routes %d, gateways %d, leafs %d)",
				n.Name, r.SlowConsumersLastMinute, r.SlowConsumers, k.Clients, k.Routes, k.Gateways, k.Leafs))
		}
		if r.JetStreamMaxMemory > 0 && float64(r.JetStreamMemory) >= HighUsage*float64(r.JetStreamMaxMemory) {
			ev = append(ev, fmt.Sprintf("%s uses %s of JetStream memory, %.0f%% of its max_memory_store %s",
				n.Name, bytesText(int64(r.JetStreamMemory)), pct(float64(r.JetStreamMemory), float64(r.JetStreamMaxMemory)), bytesText(r.JetStreamMaxMemory)))
		}
		if r.JetStreamMaxStore > 0 && float64(r.JetStreamStore) >= HighUsage*float64(r.JetStreamMaxStore) {
			ev = append(ev, fmt.Sprintf("%s uses %s of JetStream file storage, %.0f%% of its max_file_store %s",
				n.Name, bytesText(int64(r.JetStreamStore)), pct(float64(r.JetStreamStore), float64(r.JetStreamMaxStore)), bytesText(r.JetStreamMaxStore)))
		}
		if r.MemLimit > 0 && float64(r.Mem) >= HighUsage*float64(r.MemLimit) {
			ev = append(ev, fmt.Sprintf("%s has %s resident, %.0f%% of its GOMEMLIMIT %s",
				n.Name, bytesText(r.Mem), pct(float64(r.Mem), float64(r.MemLimit)), bytesText(r.MemLimit)))
		}
		if r.Cores > 0 && r.CPU >= HighUsage*100*float64(r.Cores) {
			ev = append(ev, fmt.Sprintf("%s uses %.0f%% CPU of %d cores", n.Name, r.CPU, r.Cores))
		}
		if len(ev) == 0 {
			continue
		}
		dr := d.draft(CauseResources)
		dr.nodes[n.Name] = true
		dr.evidence = append(dr.evidence, ev...)
		d.groupsOn(dr, n.Name)
	}
}

// groupsOn adds every group with a member on node to the draft: the
// unhealthy ones as they are, the healthy ones as at risk.
func (d *diagnosis) groupsOn(dr *draft, node string) {
	for i := range d.v.Groups {
		g := &d.v.Groups[i]
		if _, ok := peerOf(*g, node); !ok {
			continue
		}
		state := g.State()
		if state == StateHealthy {
			state = StateAtRisk
		}
		if _, ok := dr.groups[keyOf(g)]; !ok {
			dr.groups[keyOf(g)] = d.affected(g, state)
		}
		if state == StateLeaderless || state == StateQuorumLost {
			dr.critical = true
		}
	}
}

// checkStale reports nodes that came back with older Raft state.
func (d *diagnosis) checkStale() {
	for _, n := range sortedNodes(d.v) {
		if len(n.RaftRegressions) == 0 {
			continue
		}
		dr := d.draft(CauseStaleState)
		dr.nodes[n.Name] = true
		for i, rg := range n.RaftRegressions {
			if i == maxEvidence {
				dr.evidence = append(dr.evidence, fmt.Sprintf("and %d more groups", len(n.RaftRegressions)-i))
				break
			}
			dr.evidence = append(dr.evidence, fmt.Sprintf(
				"%s restarted with older state for %s %s: term %d (had %d), last log index %d (had %d), seen %s",
				n.Name, rg.Kind, rg.Group, rg.TermAfter, rg.TermBefore, rg.IndexAfter, rg.IndexBefore,
				rg.DetectedAt.UTC().Format(time.RFC3339)))
		}
		for _, rg := range n.RaftRegressions {
			g := d.groupByRaft(rg.RaftGroup)
			if g == nil {
				continue
			}
			state := g.State()
			if state == StateHealthy {
				state = StateAtRisk
			}
			dr.groups[keyOf(g)] = d.affected(g, state)
		}
	}
}

func (d *diagnosis) groupByRaft(name string) *Group {
	if d.byRaft == nil {
		d.byRaft = groupIndex(d.v)
	}
	return d.byRaft[name]
}

// checkTerms reports groups whose term keeps moving, and members that
// campaign alone (their own term ahead of their group's), unless another
// finding already explains the group.
func (d *diagnosis) checkTerms() {
	for i := range d.v.Groups {
		g := &d.v.Groups[i]
		k := keyOf(g)
		var ahead []string
		for _, name := range slices.Sorted(maps.Keys(g.MemberTerms)) {
			term := g.MemberTerms[name]
			if g.Term == 0 || term < g.Term+TermAhead || d.maint[name] {
				continue
			}
			ahead = append(ahead, name)
			if st := d.nodes[name]; st != nil && st.cond == condCutOff {
				dr := d.draft(st.cause)
				dr.groupNotes = append(dr.groupNotes, fmt.Sprintf(
					"%s campaigns alone in %s %s: its term is %d, the group's %d; when its routes return it makes the leader step down",
					name, g.Kind, g.Name, term, g.Term))
			}
		}
		if d.explained[k] {
			continue
		}
		inflating := g.TermChangesPerMinute >= TermInflationPerMinute
		if !inflating && len(ahead) == 0 {
			continue
		}
		nodes := ahead
		if len(nodes) == 0 {
			nodes = g.PeerNames()
		}
		cutOff := true
		for _, n := range nodes {
			if st := d.nodes[n]; st == nil || st.cond != condCutOff {
				cutOff = false
			}
		}
		if !inflating && cutOff {
			continue // the connectivity finding carries it
		}
		lost := g.State() == StateLeaderless || g.State() == StateQuorumLost
		d.attach(CauseTermInflation, g, lost, nodes)
		dr := d.draft(CauseTermInflation)
		if inflating {
			dr.groupNotes = append(dr.groupNotes, fmt.Sprintf("%s %s: term rose by %d in the last minute, now %d",
				g.Kind, g.Name, g.TermChangesPerMinute, g.Term))
		}
		for _, n := range ahead {
			dr.groupNotes = append(dr.groupNotes, fmt.Sprintf("%s %s: member %s has term %d, the group %d",
				g.Kind, g.Name, n, g.MemberTerms[n], g.Term))
		}
	}
}

// affected describes g for a finding; state overrides its own state.
func (d *diagnosis) affected(g *Group, state GroupState) AffectedGroup {
	if state == "" {
		state = g.State()
	}
	ag := AffectedGroup{
		Kind: g.Kind, Account: g.Account, Name: g.Name, Leader: g.Leader, State: state,
		Healthy: g.HealthyCount(), Peers: len(g.Peers), Quorum: g.Quorum(),
	}
	if since := g.WorkingLeaderSince(); since != nil {
		ag.LeaderlessSeconds = roundSeconds(d.now.Sub(*since))
	}
	return ag
}

// result turns the drafts into findings, most severe first.
func (d *diagnosis) result() []Finding {
	// Nodes down: too few nodes available when that costs a group its
	// quorum, otherwise a node unavailable with quorum kept.
	if dr := d.drafts[CauseNodeDown]; dr != nil && dr.critical {
		dr.cause = CauseTooFewNodes
		d.drafts[CauseTooFewNodes] = dr
		delete(d.drafts, CauseNodeDown)
	}
	out := make([]Finding, 0, len(d.drafts))
	for _, dr := range d.drafts {
		out = append(out, d.finish(dr))
	}
	slices.SortFunc(out, func(a, b Finding) int {
		return cmp.Or(
			cmp.Compare(severityRank[a.Severity], severityRank[b.Severity]),
			cmp.Compare(causeRank(a.Cause), causeRank(b.Cause)),
			slices.Compare(a.Nodes, b.Nodes),
		)
	})
	return out
}

var severityRank = map[Severity]int{SeverityCritical: 0, SeverityWarning: 1, SeverityInfo: 2}

var causeOrder = []Cause{
	CauseTooFewNodes, CausePartition, CauseWrongRoutes, CauseDNS, CauseStaleState, CauseResources,
	CauseElection, CauseTermInflation, CauseNodeDown, CauseLagging, CauseMaintenance,
}

func causeRank(c Cause) int {
	if i := slices.Index(causeOrder, c); i >= 0 {
		return i
	}
	return len(causeOrder)
}

var stateRank = map[GroupState]int{StateLeaderless: 0, StateQuorumLost: 1, StateDegraded: 2, StateAtRisk: 3, StateHealthy: 4}

var kindRank = map[GroupKind]int{KindMeta: 0, KindStream: 1, KindConsumer: 2}

func (d *diagnosis) finish(dr *draft) Finding {
	f := Finding{Cause: dr.cause, Severity: SeverityWarning, Nodes: slices.Sorted(maps.Keys(dr.nodes))}
	if f.Nodes == nil {
		f.Nodes = []string{}
	}
	switch {
	case dr.critical:
		f.Severity = SeverityCritical
	case dr.cause == CauseMaintenance:
		f.Severity = SeverityInfo
	}
	groups := make([]AffectedGroup, 0, len(dr.groups))
	for _, g := range dr.groups {
		groups = append(groups, g)
	}
	slices.SortFunc(groups, func(a, b AffectedGroup) int {
		return cmp.Or(
			cmp.Compare(stateRank[a.State], stateRank[b.State]),
			cmp.Compare(kindRank[a.Kind], kindRank[b.Kind]),
			cmp.Compare(a.Account, b.Account),
			cmp.Compare(a.Name, b.Name),
		)
	})
	f.GroupCount = len(groups)
	if len(groups) > MaxFindingGroups {
		groups = groups[:MaxFindingGroups]
	}
	f.Groups = groups

	f.Evidence = append(f.Evidence, dedupe(dr.evidence)...)
	f.Evidence = append(f.Evidence, d.groupEvidence(groups, f.GroupCount)...)
	f.Evidence = append(f.Evidence, bounded(dedupe(dr.groupNotes), maxEvidence)...)
	if f.Evidence == nil {
		f.Evidence = []string{}
	}
	f.Summary, f.Remedy = explain(f)
	return f
}

// groupEvidence summarises the affected groups by state, and the worst few
// one by one.
func (d *diagnosis) groupEvidence(groups []AffectedGroup, total int) []string {
	if total == 0 {
		return nil
	}
	counts := map[GroupState]int{}
	for _, g := range groups {
		counts[g.State]++
	}
	var parts []string
	for _, s := range []GroupState{StateLeaderless, StateQuorumLost, StateDegraded, StateAtRisk} {
		if counts[s] > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", counts[s], s))
		}
	}
	out := []string{fmt.Sprintf("%d group(s) affected: %s", total, strings.Join(parts, ", "))}
	if total > len(groups) {
		out[0] += fmt.Sprintf(" (of the %d listed)", len(groups))
	}
	for i, g := range groups {
		if i == maxEvidence {
			break
		}
		if g.State != StateLeaderless && g.State != StateQuorumLost {
			continue
		}
		line := fmt.Sprintf("%s %s: %s for %.1f s, %d of %d members healthy, quorum %d", g.Kind, g.Name, g.State,
			g.LeaderlessSeconds, g.Healthy, g.Peers, g.Quorum)
		if g.Leader != "" {
			line += ", leader " + g.Leader + " still claims leadership"
		}
		out = append(out, line)
	}
	return out
}

// describeNode says how a node in maintenance stands.
func (d *diagnosis) describeNode(n *Node) string {
	switch {
	case !n.Reachable:
		return fmt.Sprintf("%s is in maintenance and stopped", n.Name)
	case !n.JetStream:
		return fmt.Sprintf("%s is in maintenance: JetStream off, %d route(s)", n.Name, len(n.Routes))
	default:
		return fmt.Sprintf("%s is in maintenance: JetStream on, %d route(s)", n.Name, len(n.Routes))
	}
}

// explain writes a finding's summary and remedy.
func explain(f Finding) (string, []string) {
	nodes := strings.Join(f.Nodes, ", ")
	lost, leaderless := 0, 0
	for _, g := range f.Groups {
		switch g.State {
		case StateLeaderless:
			leaderless++
		case StateQuorumLost:
			lost++
		}
	}
	without := ""
	if lost+leaderless > 0 {
		without = fmt.Sprintf("; %d group(s) have no working leader", lost+leaderless)
	}
	switch f.Cause {
	case CauseTooFewNodes:
		return fmt.Sprintf("Too few nodes available: %s down, and the groups they belong to lack a quorum%s", nodes, without), []string{
			fmt.Sprintf("Bring %s back: look at the pods (kubectl get pods -o wide; kubectl describe pod) and the NATS logs; a pod that is Pending or crash-looping keeps its groups without quorum.", nodes),
			"Do not restart the nodes that are still up and do not force elections: the groups elect a leader on their own once a quorum of their members is back.",
			"If a node is gone for good, remove it from its groups (nats server raft peer-remove for the meta group; streams then place their replicas elsewhere) rather than waiting for it.",
		}
	case CauseNodeDown:
		return fmt.Sprintf("Node unavailable: %s down, quorum kept, but the affected groups tolerate no further failure", nodes), []string{
			fmt.Sprintf("Bring %s back: look at the pod (kubectl describe pod) and the NATS log; once up it catches up on its own.", nodes),
			"Until it is back, do not restart or put into maintenance another member of the affected groups: that would cost them their quorum (the prober refuses it).",
		}
	case CausePartition:
		return fmt.Sprintf("Network partition: %s cut off from the cluster traffic of their peers%s", nodes, without), []string{
			fmt.Sprintf("Check the cluster port (6222) between %s and their peers in both directions: NetworkPolicies, firewalls and security groups, the nodes' network; /routez on each side shows who routes to whom.", nodes),
			"Do not restart the cut-off nodes to fix it: they rejoin on their own once the network lets them.",
			"A cut-off node keeps campaigning and raising its term (NATS has no pre-vote); when it returns it makes healthy leaders step down. If the cut lasts, put it into maintenance (which switches its JetStream off) before the network heals.",
		}
	case CauseWrongRoutes:
		return fmt.Sprintf("Wrong routes: %s configured with routes that do not lead to their peers%s", nodes, without), []string{
			fmt.Sprintf("Fix cluster.routes of %s: they must name the peers' cluster addresses, e.g. nats-route://<pod>.<headless service>:6222 — compare with /varz cluster.urls of a connected node.", nodes),
			"A route on the client port (4222) is refused by the peer: use the cluster port.",
			"Make sure the node listens for routes where its peers dial it (cluster.port, cluster.advertise), then restart or reload it; its groups catch up on their own.",
		}
	case CauseDNS:
		return fmt.Sprintf("DNS: route host names of %s do not resolve, so they cannot route to their peers%s", nodes, without), []string{
			"Check the host names in cluster.routes: the headless service name and namespace (an empty template value leaves an empty label, as in 'nats-0.nats..svc').",
			"Resolve them from the pod: kubectl exec <pod> -c nats -- nslookup <host>; check that the cluster DNS (CoreDNS) answers.",
			"A headless service lists pods that are not ready only with publishNotReadyAddresses: true — NATS pods need it to find each other while they start.",
		}
	case CauseStaleState:
		return fmt.Sprintf("Stale Raft state: %s came back with older Raft state than it had before its restart (an old backup, volume snapshot or another pod's volume)", nodes), []string{
			"Raft assumes what a node once wrote stays written: a node that forgot its votes or log entries can let a group lose acknowledged writes.",
			"If the groups catch up (lag 0), compare the streams on every replica (nats stream report; message counts and last sequences) before trusting them.",
			fmt.Sprintf("If a group stays leaderless or lagging: stop %s, delete its JetStream store so that it resyncs from its peers, and start it again — or peer-remove it from the group and add it back.", nodes),
			"Never restore a single NATS node from a volume snapshot; restore streams with nats stream backup/restore instead.",
		}
	case CauseResources:
		return fmt.Sprintf("Resource exhaustion on %s: the numbers below are at their limits%s", nodes, without), []string{
			"Slow consumers are connections the server dropped because they did not read fast enough; on routes they cut Raft traffic. Check the node's CPU and network, the clients' subscriptions, write_deadline and max_pending.",
			"JetStream memory or storage at its limit: raise max_memory_store / max_file_store (and the pod's memory or volume), or give streams limits (max_bytes, max_age).",
			"Memory near GOMEMLIMIT or CPU saturated: raise the pod's limits (and GOMEMLIMIT with them); a starved server misses Raft heartbeats and its groups re-elect.",
		}
	case CauseElection:
		return fmt.Sprintf("Leader election in progress in %d group(s) whose members are available", len(f.Groups)), []string{
			"NATS elections time out after 4–9 s; wait for them to finish and retry the failed requests.",
			"If it lasts longer than ~20 s: compare the members' terms and votes (/raftz), look for vote messages in their logs, and for stalls (GC, disk, CPU) longer than the 1 s heartbeat.",
		}
	case CauseTermInflation:
		return fmt.Sprintf("Term inflation: elections keep happening in %d group(s)", len(f.Groups)), []string{
			"A group whose term keeps rising keeps losing its leader: look for a member that flaps (cut off and back), for CPU starvation or stalls longer than the 1 s heartbeat, and for the other findings.",
			"A member that campaigns alone (its term ahead of its group's) makes the leader step down when it reconnects: put it into maintenance before it returns.",
		}
	case CauseLagging:
		return fmt.Sprintf("Lagging replica: %s connected but behind their leaders", nodes), []string{
			fmt.Sprintf("%s is catching up or too slow to keep up: check its disk (I/O wait), CPU and network.", nodes),
			"If the lag does not shrink over minutes, treat it as stale Raft state: resync the node from its peers.",
		}
	case CauseMaintenance:
		return fmt.Sprintf("Maintenance: %s out of service on purpose; the affected groups run with less redundancy", nodes), []string{
			"Nothing to do while the maintenance lasts; end it with DELETE /pods/<pod> and the node is ready again once caught up.",
		}
	}
	return string(f.Cause), nil
}

func sortedNodes(v *View) []*Node {
	out := make([]*Node, len(v.Nodes))
	for i := range v.Nodes {
		out[i] = &v.Nodes[i]
	}
	slices.SortFunc(out, func(a, b *Node) int { return cmp.Compare(a.Name, b.Name) })
	return out
}

func dedupe(lines []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, l := range lines {
		if !seen[l] {
			seen[l] = true
			out = append(out, l)
		}
	}
	return out
}

func listOrNone(s []string) string {
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, ", ")
}

// bounded returns the first max items, and a last "and N more" for the
// rest; items itself is left as it is.
func bounded(items []string, max int) []string {
	if len(items) > max {
		return append(items[:max:max], fmt.Sprintf("and %d more", len(items)-max))
	}
	return items
}

// joinBounded joins the bounded items with sep.
func joinBounded(items []string, max int, sep string) string {
	return strings.Join(bounded(items, max), sep)
}

func roundSeconds(d time.Duration) float64 {
	return float64(d.Round(10*time.Millisecond)) / float64(time.Second)
}

func pct(a, b float64) float64 { return 100 * a / b }

// bytesText writes a byte count in binary units.
func bytesText(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

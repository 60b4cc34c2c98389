package natsraft

import (
	"cmp"
	"maps"
	"slices"
	"time"
)

// analysis is what every rule of the diagnosis reads, worked out once per
// view: what each node suffers from (in maintenance, down, cut off and
// why, JetStream off), the main part of each dc, the routes missing inside
// it, and which causes keep each unhealthy group so.
type analysis struct {
	v           *View
	now         time.Time
	clusterPort int
	maint       map[string]bool
	nodes       map[string]*nodeHealth
	main        map[string]map[string]bool // dc → nodes of its largest routed part
	missing     map[string][]string        // node → reachable dc peers it has no route with
	// gaps are the routes missing between two nodes of a dc's main part.
	gaps []routeGap
	// blamed holds, per cause, the unhealthy groups it keeps so.
	blamed map[Cause][]blame
	// explained holds groups whose quorum loss a node-level cause explains.
	explained map[groupKey]bool
	// byRaft maps Raft group names to groups, built when first needed.
	byRaft map[string]*Group
	// down is the draft of the nodes down, built when first needed.
	down *draft
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

// routeGap is a route missing between two nodes of a dc's main part, and
// why.
type routeGap struct {
	a, b     string
	cause    Cause
	evidence []string
}

// blame lays an unhealthy group at a cause's door.
type blame struct {
	g *Group
	// nodes are those the cause is located at.
	nodes []string
	// lost tells that the group has no working leader for it.
	lost bool
	// available counts the members available, for a group without a
	// working leader although a quorum of them is.
	available int
}

// draft is a finding under construction.
type draft struct {
	nodes    map[string]bool
	groups   map[groupKey]AffectedGroup
	evidence []string
	// extra evidence, bounded per kind
	groupNotes []string
	critical   bool
}

func newDraft() *draft {
	return &draft{nodes: map[string]bool{}, groups: map[groupKey]AffectedGroup{}}
}

// empty tells whether a draft holds nothing to report.
func (dr *draft) empty() bool {
	return dr == nil || (len(dr.nodes) == 0 && len(dr.groups) == 0 && len(dr.evidence) == 0 && len(dr.groupNotes) == 0)
}

// analyse works out the analysis of v.
func analyse(v *View, o DiagnoseOptions) *analysis {
	a := &analysis{
		v:           v,
		now:         o.Now,
		clusterPort: cmp.Or(o.ClusterPort, DefaultClusterPort),
		maint:       map[string]bool{},
		nodes:       map[string]*nodeHealth{},
		main:        map[string]map[string]bool{},
		missing:     map[string][]string{},
		blamed:      map[Cause][]blame{},
		explained:   map[groupKey]bool{},
	}
	if a.now.IsZero() {
		a.now = v.At
	}
	for _, m := range o.Maintenance {
		a.maint[m] = true
	}
	for i := range v.Nodes {
		n := &v.Nodes[i]
		a.nodes[n.Name] = &nodeHealth{node: n}
	}
	a.classifyNodes()
	a.classifyGroups()
	return a
}

// classifyNodes finds the nodes that are down, cut off or quiesced, why
// they are cut off, and the routes missing inside the main parts.
func (a *analysis) classifyNodes() {
	a.findMainParts()
	for _, n := range sortedNodes(a.v) {
		st := a.nodes[n.Name]
		missing := a.v.MissingRoutes(n.Name)
		a.missing[n.Name] = missing
		switch {
		case a.maint[n.Name]:
			st.cond = condMaintenance
		case !n.Reachable:
			st.cond = condDown
		case !a.main[n.DC][n.Name] && len(missing) > 0:
			st.cond = condCutOff
			st.cause, st.evidence = a.connectivityCause(n.Name)
		case !n.JetStream:
			st.cond = condJetStreamOff
		}
	}
	// Routes missing between nodes of the main part: a partial partition.
	for _, n := range sortedNodes(a.v) {
		if !a.nodes[n.Name].connected() {
			continue
		}
		for _, p := range a.missing[n.Name] {
			ps := a.nodes[p]
			if p < n.Name || ps == nil || !ps.connected() {
				continue
			}
			cause, ev := a.pairCause(n.Name, p)
			a.gaps = append(a.gaps, routeGap{a: n.Name, b: p, cause: cause, evidence: ev})
		}
	}
}

// connected tells whether a node is up and routed within the main part of
// its dc, JetStream on or off.
func (st *nodeHealth) connected() bool { return st.cond == condOK || st.cond == condJetStreamOff }

// classifyGroups lays every unhealthy group at the door of what keeps it
// so: a leader cut off, the members that do not count, or, when a quorum
// of them is available, stale Raft state, term inflation or an election.
func (a *analysis) classifyGroups() {
	for i := range a.v.Groups {
		g := &a.v.Groups[i]
		state := g.State()
		if state == StateHealthy {
			continue
		}
		k := keyOf(g)
		lost := state.noWorkingLeader()

		// A leader cut off from its dc still claims the group for a while.
		if st := a.nodes[g.Leader]; g.Leader != "" && st != nil && st.cond == condCutOff {
			a.blame(st.cause, blame{g: g, nodes: []string{g.Leader}, lost: lost})
			a.explained[k] = true
			continue
		}

		available := 0
		reasons := map[Cause][]string{}
		for _, p := range g.Peers {
			cause, ok := a.memberProblem(g, p)
			if ok {
				available++
				continue
			}
			reasons[cause] = append(reasons[cause], p.Name)
		}
		if lost && available >= g.Quorum() {
			a.classifyElection(g, available)
			continue
		}
		if len(reasons) == 0 {
			continue
		}
		for _, cause := range slices.Sorted(maps.Keys(reasons)) {
			a.blame(cause, blame{g: g, nodes: reasons[cause], lost: lost})
		}
		if lost {
			a.explained[k] = true
		}
	}
}

// classifyElection lays a group without a working leader, although a
// quorum of its members is available, at the door of a member that came
// back with stale Raft state, else of term inflation, else of an election
// under way.
func (a *analysis) classifyElection(g *Group, available int) {
	k := keyOf(g)
	for _, p := range g.Peers {
		if st := a.nodes[p.Name]; st != nil && len(st.node.RaftRegressions) > 0 {
			a.blame(CauseStaleState, blame{g: g, nodes: []string{p.Name}, lost: true})
			a.explained[k] = true
			return
		}
	}
	if g.TermChangesPerMinute >= TermInflationPerMinute {
		a.blame(CauseTermInflation, blame{g: g, nodes: g.PeerNames(), lost: true})
		a.explained[k] = true
		return
	}
	a.blame(CauseElection, blame{g: g, nodes: g.PeerNames(), available: available})
}

func (a *analysis) blame(c Cause, b blame) { a.blamed[c] = append(a.blamed[c], b) }

// memberProblem tells what keeps a member from counting for its group;
// ok when nothing does.
func (a *analysis) memberProblem(g *Group, p Peer) (Cause, bool) {
	st := a.nodes[p.Name]
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
	if !a.v.routed(p.Name, g.Leader) {
		cause, _ := a.pairCause(p.Name, g.Leader)
		return cause, false
	}
	// Reachable, routed, JetStream on, and yet no working voter: more than
	// HealthyLag behind, or its leader has not heard from it lately.
	return CauseLagging, false
}

// attachBlamed adds to dr the groups laid at c's door, and where c is
// located in them; it returns their blames, for the notes of c's rule.
func (a *analysis) attachBlamed(dr *draft, c Cause) []blame {
	for _, b := range a.blamed[c] {
		a.attach(dr, b)
	}
	return a.blamed[c]
}

// attach adds b's group to dr, located at b's nodes.
func (a *analysis) attach(dr *draft, b blame) {
	for _, n := range b.nodes {
		dr.nodes[n] = true
	}
	dr.groups[keyOf(b.g)] = a.affected(b.g, "")
	if b.lost {
		dr.critical = true
	}
}

// affected describes g for a finding; state overrides its own state.
func (a *analysis) affected(g *Group, state GroupState) AffectedGroup {
	if state == "" {
		state = g.State()
	}
	ag := AffectedGroup{
		Kind: g.Kind, Account: g.Account, Name: g.Name, Leader: g.Leader, State: state,
		Healthy: g.HealthyCount(), Peers: len(g.Peers), Quorum: g.Quorum(),
	}
	if since := g.WorkingLeaderSince(); since != nil {
		ag.LeaderlessSeconds = roundSeconds(a.now.Sub(*since))
	}
	return ag
}

// atRisk is g's state for a finding that concerns it whatever its health:
// a healthy group is at risk.
func atRisk(g *Group) GroupState {
	if state := g.State(); state != StateHealthy {
		return state
	}
	return StateAtRisk
}

// campaigning returns the members of g, in name order, whose own term runs
// TermAhead or more ahead of the group's: they campaign alone. Nodes in
// maintenance are left out.
func (a *analysis) campaigning(g *Group) []string {
	var out []string
	for _, name := range slices.Sorted(maps.Keys(g.MemberTerms)) {
		if g.Term == 0 || g.MemberTerms[name] < g.Term+TermAhead || a.maint[name] {
			continue
		}
		out = append(out, name)
	}
	return out
}

func (a *analysis) groupByRaft(name string) *Group {
	if a.byRaft == nil {
		a.byRaft = groupIndex(a.v)
	}
	return a.byRaft[name]
}

func sortedNodes(v *View) []*Node {
	out := make([]*Node, len(v.Nodes))
	for i := range v.Nodes {
		out[i] = &v.Nodes[i]
	}
	slices.SortFunc(out, func(a, b *Node) int { return cmp.Compare(a.Name, b.Name) })
	return out
}

package natsraft

import (
	"cmp"
	"fmt"
	"maps"
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
//
// Each cause is one rule, in a file cause_<name>.go of its own, and rules
// lists them all. A rule's check reads the analysis of the view (analysis.go:
// what each node suffers from, the main part of each dc, which cause keeps
// each unhealthy group so), computed once for every rule.

// Cause names what is wrong. Each has a rule, in a file of its own.
type Cause string

// Severity tells how urgent a finding is.
type Severity string

// Severities: critical means some group cannot commit.
const (
	SeverityCritical Severity = "critical"
	SeverityWarning  Severity = "warning"
	SeverityInfo     Severity = "info"
)

// Severities lists the severities a finding can have, most severe first.
var Severities = []Severity{SeverityCritical, SeverityWarning, SeverityInfo}

const (
	// DefaultClusterPort is the port NATS listens on for routes unless
	// configured otherwise.
	DefaultClusterPort = 6222
	// MaxFindingGroups bounds the groups a finding lists (GroupCount has
	// them all).
	MaxFindingGroups = 100
	// maxEvidence bounds the evidence lines of one kind in a finding.
	maxEvidence = 8
)

// rules lists every cause the diagnosis recognises, in the order in which
// findings of one severity are listed. A new cause is a file with its rule
// and one line here; the API document lists the causes in this order too,
// and prober's tests compare the two.
var rules = []rule{
	tooFewNodes,
	networkPartition,
	wrongRoutes,
	dnsFailure,
	staleState,
	resourceExhaustion,
	electionInProgress,
	termInflation,
	nodeUnavailable,
	laggingReplica,
	plannedMaintenance,
}

// rule recognises one cause and words its finding.
type rule struct {
	cause Cause
	// severity is that of the finding unless the check marks it critical.
	severity Severity
	// check drafts the cause's finding from the analysis; nil, or a draft
	// that names no node and no group, when the cause is absent.
	check func(a *analysis) *draft
	// explain writes the finding's summary and remedy.
	explain func(a *analysis, f Finding) (summary string, remedy []string)
}

// Causes lists every cause a finding can have, in the order in which
// findings of one severity are listed.
func Causes() []Cause {
	out := make([]Cause, len(rules))
	for i, r := range rules {
		out[i] = r.cause
	}
	return out
}

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
	// ClusterPort is the port the nodes listen on for routes, as the
	// remedies name it; 0 means DefaultClusterPort.
	ClusterPort int
}

// Diagnose reads the view and returns its findings, most severe first
// and, within a severity, in the order of rules; a healthy cluster has
// none.
func Diagnose(v *View, o DiagnoseOptions) []Finding {
	if v == nil {
		return nil
	}
	a := analyse(v, o)
	out := []Finding{}
	for _, r := range rules {
		if dr := r.check(a); !dr.empty() {
			out = append(out, a.finish(r, dr))
		}
	}
	slices.SortStableFunc(out, func(x, y Finding) int {
		return cmp.Compare(slices.Index(Severities, x.Severity), slices.Index(Severities, y.Severity))
	})
	return out
}

var stateRank = map[GroupState]int{StateLeaderless: 0, StateQuorumLost: 1, StateDegraded: 2, StateAtRisk: 3, StateHealthy: 4}

var kindRank = map[GroupKind]int{KindMeta: 0, KindStream: 1, KindConsumer: 2}

// finish turns the draft of r's cause into its finding.
func (a *analysis) finish(r rule, dr *draft) Finding {
	f := Finding{Cause: r.cause, Severity: r.severity, Nodes: slices.Sorted(maps.Keys(dr.nodes))}
	if f.Nodes == nil {
		f.Nodes = []string{}
	}
	if dr.critical {
		f.Severity = SeverityCritical
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
	f.Evidence = append(f.Evidence, groupEvidence(groups, f.GroupCount)...)
	f.Evidence = append(f.Evidence, bounded(dedupe(dr.groupNotes), maxEvidence)...)
	if f.Evidence == nil {
		f.Evidence = []string{}
	}
	f.Summary, f.Remedy = r.explain(a, f)
	return f
}

// groupEvidence summarises the affected groups by state, and the worst few
// one by one.
func groupEvidence(groups []AffectedGroup, total int) []string {
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
		if !g.State.noWorkingLeader() {
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

// nodeList names a finding's nodes for its summary and remedy.
func (f Finding) nodeList() string { return strings.Join(f.Nodes, ", ") }

// withoutLeader is the end of a summary that counts the finding's groups
// without a working leader; "" when there are none.
func (f Finding) withoutLeader() string {
	n := 0
	for _, g := range f.Groups {
		if g.State.noWorkingLeader() {
			n++
		}
	}
	if n == 0 {
		return ""
	}
	return fmt.Sprintf("; %d group(s) have no working leader", n)
}

package maintenance

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/prober-dev/prober/natsraft"
)

// Why a peer does not count towards a group's quorum, as LostPeer.Why.
const (
	LostRequested     = "requested"
	LostInMaintenance = "in maintenance"
	LostUnreachable   = "unreachable"
	LostNotCurrent    = "not current"
	LostOffline       = "offline"
	// LostStopping is a peer whose pod is being stopped: its sidecar
	// readies its server for the shutdown (a preStop hook), and it is
	// about to go whatever it serves now.
	LostStopping = "stopping"
	// LostDraining is a peer that is draining: it stays a voter but takes
	// no leadership (it counts against a drain, never against a quorum).
	LostDraining = "draining"
)

// LostPeer is a member of a Raft group that would not count towards its
// quorum, and why.
type LostPeer struct {
	Name string `json:"name"`
	Why  string `json:"why"` // one of the Lost… constants
}

// Violation is one Raft group that a maintenance request would leave
// without quorum. It is what a 409 names, one per group.
type Violation struct {
	Group   string             `json:"group"`
	Kind    natsraft.GroupKind `json:"kind"`
	Account string             `json:"account,omitempty"`
	// Peers are all members of the group, sorted.
	Peers []string `json:"peers"`
	// Quorum is how many members the group needs.
	Quorum int `json:"quorum"`
	// Remaining are the members that would still count, sorted.
	Remaining []string `json:"remaining"`
	// Lost are the members that would not, sorted by name.
	Lost []LostPeer `json:"lost"`
	// Unnamed is how many members of the leaderless group no report names
	// (natsraft.Group.Unnamed), and MayHold the requested pods that could
	// be those members: their nodes serve no JetStream or are still
	// recovering it, so the sweep does not show whether they hold the group.
	Unnamed int      `json:"unnamed,omitempty"`
	MayHold []string `json:"mayHold,omitempty"`
	// Reason is one sentence, for example "stream demo (R3) would keep 1 of
	// 3 peers, needs 2: nats-0 requested, nats-1 not current".
	Reason string `json:"reason"`
}

// CheckSafety applies the safety rule to a request to put the requested
// pods into maintenance, given the pods already in maintenance and the
// current Raft view, and returns one Violation per Raft group that would
// lose its quorum, or nil when the request is safe.
//
// Let U be the requested pods, the pods in maintenance and the peers that
// are not healthy in the view: whose node did not answer the sweep
// (unreachable), or whom the group's leader reports offline or not current.
// Every group that has a newly requested pod as a member must keep a quorum
// outside U: |P \ U| ≥ |P|/2+1. A group the request does not touch cannot
// be made worse by it and is not checked, and neither is one touched only
// by a requested pod that is already in maintenance (repeating a request
// changes nothing). An R1 group on a requested pod is therefore always a
// violation. A peer the view has no node for is judged by its Raft state
// alone: the sweep may not reach every server of a super-cluster.
//
// A leaderless group may have members that no report names (see
// natsraft.Group.Unnamed). They are on nodes that do not list all their
// groups (natsraft.Node.ListsAllGroups: JetStream off, or still recovering
// its streams), so a newly requested pod whose node does not (or that the
// view has no node for) and that the group does not list may be one of them: the group
// counts as touched by it, and its quorum counts the unnamed members, none
// of which counts towards it. Without this, a prober that has just started
// (no earlier view to complete the group from) let the last members of an
// R2 group go while its other member had just restarted.
//
// An ephemeral consumer (ordered consumers, KV watchers, `nats stream
// view`) is not a group worth refusing for: its client makes a new one on a
// peer. Its loss is a warning (see Judge), never a violation.
//
// The result is sorted by kind (meta, stream, consumer), account and group
// name. A nil view holds no groups and yields no violation: the caller must
// refuse a request when it has no view at all.
func CheckSafety(view *natsraft.View, requested, inMaintenance []string) []Violation {
	return Judge(view, requested, inMaintenance).Violations
}

// Verdict is the safety rule's judgement of a request.
type Verdict struct {
	// Violations are the groups that would lose their quorum: the request
	// is refused unless forced.
	Violations []Violation
	// Warnings are the ephemeral consumers that would go down with the
	// requested pods: the request goes on, and their clients make new ones.
	Warnings []Violation
}

// Judge applies the safety rule (see CheckSafety) and also names the
// ephemeral consumers the request would cost, as warnings.
func Judge(view *natsraft.View, requested, inMaintenance []string) Verdict {
	return judge(view, requested, inMaintenance, nil, false)
}

// withDark returns view with the groups that the statuses of d record as
// dark (Status.Dark): a group whose members are all out of service is
// reported by no server, and is added with every member offline. A dark
// group the view has with no leader is completed with the recorded
// members it lacks, as offline: a member whose Raft node has not started
// yet (a node restarted in maintenance, before it is quiesced again)
// reports the group with no peer but itself, and judged on that alone the
// group would seem to have no other member. view itself is left alone.
func withDark(view *natsraft.View, d *Document) *natsraft.View {
	if view == nil {
		return view
	}
	var gs []GroupRef
	for _, pod := range slices.Sorted(maps.Keys(d.Status)) {
		gs = mergeGroups(gs, d.Status[pod].Dark)
	}
	if len(gs) == 0 {
		return view
	}
	groups := slices.Clone(view.Groups)
	changed := false
	for _, og := range gs {
		i := slices.IndexFunc(groups, func(g natsraft.Group) bool {
			return g.Kind == og.Kind && g.Name == og.Group && (og.Kind == natsraft.KindMeta || g.Account == og.Account)
		})
		if i < 0 {
			groups = append(groups, natsraft.Group{Kind: og.Kind, Account: og.Account, Name: og.Group, Peers: offlinePeers(og.Peers)})
			changed = true
			continue
		}
		if groups[i].Leader != "" {
			continue // its leader lists its members
		}
		n := len(groups[i].Peers)
		groups[i].AddPeers(offlinePeers(og.Peers)...)
		changed = changed || len(groups[i].Peers) != n
	}
	if !changed {
		return view
	}
	v := *view
	v.Groups = groups
	return &v
}

// offlinePeers returns the named members, each offline.
func offlinePeers(names []string) []natsraft.Peer {
	peers := make([]natsraft.Peer, len(names))
	for i, n := range names {
		peers[i] = natsraft.Peer{Name: n, Offline: true}
	}
	return peers
}

// JudgeDrain applies the drain rule to a request to drain the requested
// pods, given the pods in maintenance and the pods draining. A drain cuts
// nothing: it moves every leadership of the pods to a peer and keeps it
// there, so it asks only whether a peer can take each one.
//
// Let A be the requested pods, the pods in maintenance, the pods draining
// and the peers that are not healthy in the view (as for CheckSafety).
// Every group with a newly requested pod as a member must keep a member
// outside A: |P \ A| ≥ 1. A group of one replica on a requested pod is
// therefore always a violation (its leadership cannot move), unless
// forced; an ephemeral consumer is a warning. Pods already draining or in
// maintenance among the requested are not judged again.
func JudgeDrain(view *natsraft.View, requested, inMaintenance, draining []string) Verdict {
	return judge(view, requested, inMaintenance, draining, true)
}

// judge is the one body of both rules: drain says whether the requested
// pods only give their leaderships away (a group then needs one member
// left that can lead) or leave (a group needs its quorum).
func judge(view *natsraft.View, requested, inMaintenance, draining []string, drain bool) Verdict {
	if view == nil {
		return Verdict{}
	}
	inMaint := make(map[string]bool, len(inMaintenance))
	for _, p := range inMaintenance {
		inMaint[p] = true
	}
	drains := make(map[string]bool, len(draining))
	for _, p := range draining {
		drains[p] = true
	}
	// A requested pod already in maintenance is lost either way; only the
	// others are what the request changes.
	req := make(map[string]bool, len(requested))
	for _, p := range requested {
		if !inMaint[p] && !(drain && drains[p]) {
			req[p] = true
		}
	}
	if len(req) == 0 {
		return Verdict{}
	}
	unreachable := make(map[string]bool)
	stopping := make(map[string]bool)
	for _, n := range view.Nodes {
		if !n.Reachable {
			unreachable[n.Name] = true
		}
		if n.Stopping {
			stopping[n.Name] = true
		}
	}

	var out, warnings []Violation
	for _, g := range view.Groups {
		touched := false
		for _, p := range g.Peers {
			if req[p.Name] {
				touched = true
				break
			}
		}
		var mayHold []string
		if g.Unnamed() > 0 {
			mayHold = mayHoldUnnamed(view, g, req)
		}
		if !touched && len(mayHold) == 0 {
			continue
		}
		v := Violation{
			Group:   g.Name,
			Kind:    g.Kind,
			Account: g.Account,
			Peers:   []string{},
			Quorum:  g.Quorum(),
			Unnamed: g.Unnamed(),
			MayHold: mayHold,
		}
		if drain {
			v.Quorum = 1
		}
		remaining := []string{}
		for _, p := range g.Peers {
			v.Peers = append(v.Peers, p.Name)
			why := ""
			switch {
			case req[p.Name]:
				why = LostRequested
			case inMaint[p.Name]:
				why = LostInMaintenance
			case drain && drains[p.Name]:
				why = LostDraining
			case unreachable[p.Name]:
				why = LostUnreachable
			case stopping[p.Name]:
				why = LostStopping
			case p.Offline:
				why = LostOffline
			case !p.Healthy:
				why = LostNotCurrent
			}
			if why == "" {
				remaining = append(remaining, p.Name)
			} else {
				v.Lost = append(v.Lost, LostPeer{Name: p.Name, Why: why})
			}
		}
		if len(remaining) >= v.Quorum {
			continue
		}
		slices.Sort(v.Peers)
		slices.Sort(remaining)
		v.Remaining = remaining
		slices.SortFunc(v.Lost, func(a, b LostPeer) int { return cmp.Compare(a.Name, b.Name) })
		v.Reason = violationReason(g, v, drain)
		if g.Ephemeral {
			v.Reason += "; it is an ephemeral consumer, which its client makes again on a peer"
			warnings = append(warnings, v)
			continue
		}
		out = append(out, v)
	}
	sortViolations(out)
	sortViolations(warnings)
	return Verdict{Violations: out, Warnings: warnings}
}

// mayHoldUnnamed returns the newly requested pods, sorted, that could hold
// one of g's unnamed members: not listed by g, and with no node in the view
// that lists all its groups (serving JetStream, recovered).
func mayHoldUnnamed(view *natsraft.View, g natsraft.Group, req map[string]bool) []string {
	var out []string
	for p := range req {
		if slices.ContainsFunc(g.Peers, func(q natsraft.Peer) bool { return q.Name == p }) {
			continue
		}
		if n, ok := view.Node(p); ok && n.ListsAllGroups() {
			continue // it would report the group
		}
		out = append(out, p)
	}
	slices.Sort(out)
	return out
}

// sortViolations sorts by kind (meta, stream, consumer), account and group.
func sortViolations(vs []Violation) {
	slices.SortFunc(vs, func(a, b Violation) int {
		return cmp.Or(
			cmp.Compare(kindOrder(a.Kind), kindOrder(b.Kind)),
			cmp.Compare(a.Account, b.Account),
			cmp.Compare(a.Group, b.Group),
		)
	})
}

// violationReason says in one sentence why the group would lose its quorum.
func violationReason(g natsraft.Group, v Violation, drain bool) string {
	var subject string
	switch g.Kind {
	case natsraft.KindMeta:
		subject = fmt.Sprintf("meta group (%d peers)", len(v.Peers))
	default:
		subject = fmt.Sprintf("%s %s", g.Kind, g.Name)
		if g.Account != "" {
			subject += " of account " + g.Account
		}
		subject += fmt.Sprintf(" (R%d)", len(v.Peers)+v.Unnamed)
	}
	lost := make([]string, len(v.Lost))
	for i, l := range v.Lost {
		lost[i] = l.Name + " " + l.Why
	}
	var unnamed string
	if v.Unnamed > 0 {
		unnamed = fmt.Sprintf("; no report names %d of its members", v.Unnamed)
	}
	if len(v.MayHold) > 0 {
		unnamed += fmt.Sprintf(", and %s may hold one (requested)", strings.Join(v.MayHold, ", "))
	}
	switch {
	case len(v.Peers) == 1 && v.Unnamed == 0 && drain:
		return fmt.Sprintf("%s lives only on %s: its leadership cannot move", subject, strings.Join(lost, ", "))
	case len(v.Peers) == 1 && v.Unnamed == 0:
		return fmt.Sprintf("%s lives only on %s and would be unavailable", subject, strings.Join(lost, ", "))
	case drain:
		return fmt.Sprintf("%s would keep no peer to take its leadership: %s%s", subject, strings.Join(lost, ", "), unnamed)
	}
	return fmt.Sprintf("%s would keep %d of %d peers, needs %d: %s%s",
		subject, len(v.Remaining), len(v.Peers)+v.Unnamed, v.Quorum, strings.Join(lost, ", "), unnamed)
}

func kindOrder(k natsraft.GroupKind) int {
	switch k {
	case natsraft.KindMeta:
		return 0
	case natsraft.KindStream:
		return 1
	case natsraft.KindConsumer:
		return 2
	}
	return 3
}

// evacuating returns the verdict for a request that moves the streams of
// one replica off the pods first: a stream of one replica on a requested
// pod, and each consumer of such a stream that lives with it, is moved,
// not lost. They become warnings saying so.
func (v Verdict) evacuating(view *natsraft.View) Verdict {
	moved := map[string]bool{}
	for _, x := range v.Violations {
		if x.Kind == natsraft.KindStream && len(x.Peers) == 1 && x.Unnamed == 0 {
			moved[x.Account+"/"+x.Group] = true
		}
	}
	stream := map[string]string{}
	for _, g := range view.Groups {
		if g.Kind == natsraft.KindConsumer {
			stream[g.Account+"/"+g.Name] = g.Stream
		}
	}
	out := Verdict{Warnings: v.Warnings}
	for _, x := range v.Violations {
		one := len(x.Peers) == 1 && x.Unnamed == 0
		movable := x.Kind == natsraft.KindStream && one
		if x.Kind == natsraft.KindConsumer && one {
			movable = moved[x.Account+"/"+stream[x.Account+"/"+x.Group]]
		}
		if !movable {
			out.Violations = append(out.Violations, x)
			continue
		}
		x.Reason += "; evacuate moves it to another node first"
		out.Warnings = append(out.Warnings, x)
	}
	sortViolations(out.Warnings)
	return out
}

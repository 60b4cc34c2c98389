package maintenance

import (
	"cmp"
	"fmt"
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
// The result is sorted by kind (meta, stream, consumer), account and group
// name. A nil view holds no groups and yields no violation: the caller must
// refuse a request when it has no view at all.
func CheckSafety(view *natsraft.View, requested, inMaintenance []string) []Violation {
	if view == nil {
		return nil
	}
	inMaint := make(map[string]bool, len(inMaintenance))
	for _, p := range inMaintenance {
		inMaint[p] = true
	}
	// A requested pod already in maintenance is lost either way; only the
	// others are what the request changes.
	req := make(map[string]bool, len(requested))
	for _, p := range requested {
		if !inMaint[p] {
			req[p] = true
		}
	}
	if len(req) == 0 {
		return nil
	}
	unreachable := make(map[string]bool)
	for _, n := range view.Nodes {
		if !n.Reachable {
			unreachable[n.Name] = true
		}
	}

	var out []Violation
	for _, g := range view.Groups {
		touched := false
		for _, p := range g.Peers {
			if req[p.Name] {
				touched = true
				break
			}
		}
		if !touched {
			continue
		}
		v := Violation{
			Group:   g.Name,
			Kind:    g.Kind,
			Account: g.Account,
			Peers:   []string{},
			Quorum:  g.Quorum(),
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
			case unreachable[p.Name]:
				why = LostUnreachable
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
		v.Reason = safetyReason(g, v)
		out = append(out, v)
	}
	slices.SortFunc(out, func(a, b Violation) int {
		return cmp.Or(
			cmp.Compare(safetyKindOrder(a.Kind), safetyKindOrder(b.Kind)),
			cmp.Compare(a.Account, b.Account),
			cmp.Compare(a.Group, b.Group),
		)
	})
	return out
}

// safetyReason says in one sentence why the group would lose its quorum.
func safetyReason(g natsraft.Group, v Violation) string {
	var subject string
	switch g.Kind {
	case natsraft.KindMeta:
		subject = fmt.Sprintf("meta group (%d peers)", len(v.Peers))
	default:
		subject = fmt.Sprintf("%s %s", g.Kind, g.Name)
		if g.Account != "" {
			subject += " of account " + g.Account
		}
		subject += fmt.Sprintf(" (R%d)", len(v.Peers))
	}
	lost := make([]string, len(v.Lost))
	for i, l := range v.Lost {
		lost[i] = l.Name + " " + l.Why
	}
	if len(v.Peers) == 1 {
		return fmt.Sprintf("%s lives only on %s and would be unavailable", subject, strings.Join(lost, ", "))
	}
	return fmt.Sprintf("%s would keep %d of %d peers, needs %d: %s",
		subject, len(v.Remaining), len(v.Peers), v.Quorum, strings.Join(lost, ", "))
}

func safetyKindOrder(k natsraft.GroupKind) int {
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

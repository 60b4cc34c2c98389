package natsraft

import (
	"fmt"
	"slices"
)

// Node readiness: whether a node serves, has caught up with every group it
// is a member of, and routes to its peers. /readyz and the hand-off's
// catch-up ask it.

// ReadyLag is how far a replica may be behind and still count as caught
// up (NodeReady, HandOff.CaughtUp): Raft entries behind its leader and
// behind its own commit, messages behind the leader's copy of a stream.
// Under a steady write load a follower is rarely at zero.
const ReadyLag = 16

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
	case n.Recovering:
		return false, fmt.Sprintf("%s is still recovering its streams (no meta group yet)", node)
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
	return false, JoinBounded(behind, maxCatchUpDetails, "; ")
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

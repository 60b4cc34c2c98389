package natsraft

import (
	"context"
	"fmt"
	"strings"
)

// maxCatchUpDetails bounds how many lagging groups CaughtUp names; a node
// back from maintenance on a large cluster may be behind on thousands.
const maxCatchUpDetails = 10

// CaughtUp tells whether node has caught up with every Raft group it is a
// member of: node answers with JetStream on, the meta group counts it as a
// peer, and each of its groups has a leader that reports it current with no
// lag (a group node leads counts as caught up). Only a group's leader knows
// its followers, so the answer is read from the leaders. detail lists what
// is still behind; err is set only when no view could be had. The view is
// a fresh sweep when Views can sweep: a cached one may predate the very
// change (a quiesce, a fence) the caller is asking about.
func (h *HandOff) CaughtUp(ctx context.Context, node string) (ok bool, detail string, err error) {
	v, err := h.freshView(ctx)
	if err != nil {
		return false, "", fmt.Errorf("caught up %s: %w", node, err)
	}
	ok, detail = caughtUp(v, node)
	return ok, detail, nil
}

// caughtUp is CaughtUp on a given view.
func caughtUp(v *View, node string) (bool, string) {
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
	for _, g := range v.Groups {
		self, member := peerOf(g, node)
		if !member {
			continue
		}
		if g.Kind == KindMeta {
			meta = true
		}
		switch {
		case g.Leader == "":
			behind = append(behind, fmt.Sprintf("%s %s: no leader", g.Kind, g.Name))
		case g.Leader == node:
		case !self.Current:
			behind = append(behind, fmt.Sprintf("%s %s: not current (active %s, lag %d, leader %s)",
				g.Kind, g.Name, self.Active, self.Lag, g.Leader))
		case self.Lag > 0:
			behind = append(behind, fmt.Sprintf("%s %s: lag %d (leader %s)", g.Kind, g.Name, self.Lag, g.Leader))
		}
	}
	if !meta {
		behind = append([]string{fmt.Sprintf("%s is not a peer of the meta group yet", node)}, behind...)
	}
	if len(behind) == 0 {
		return true, ""
	}
	total := len(behind)
	if total > maxCatchUpDetails {
		behind = append(behind[:maxCatchUpDetails], fmt.Sprintf("and %d more", total-maxCatchUpDetails))
	}
	return false, strings.Join(behind, "; ")
}

// peerOf returns node's entry in g's peers.
func peerOf(g Group, node string) (Peer, bool) {
	for _, p := range g.Peers {
		if p.Name == node {
			return p, true
		}
	}
	return Peer{}, false
}

package natsraft

import (
	"fmt"
	"slices"
)

// CauseNodeDown is a node that does not answer, or answers with JetStream
// off, while the groups it belongs to keep their quorum.
const CauseNodeDown Cause = "node unavailable"

var nodeUnavailable = rule{
	cause:    CauseNodeDown,
	severity: SeverityWarning,
	check: func(a *analysis) *draft {
		if dr := a.nodesDown(); !dr.critical {
			return dr
		}
		return nil // too few nodes available
	},
	explain: func(_ *analysis, f Finding) (string, []string) {
		nodes := f.nodeList()
		return fmt.Sprintf("Node unavailable: %s down, quorum kept, but the affected groups tolerate no further failure", nodes), []string{
			fmt.Sprintf("Bring %s back: look at the pod (kubectl describe pod) and the NATS log; once up it catches up on its own.", nodes),
			"Until it is back, do not restart or put into maintenance another member of the affected groups: that would cost them their quorum (the prober refuses it).",
		}
	},
}

// nodesDown drafts the finding of the nodes that are down or have
// JetStream off, and of the groups they keep unhealthy. Critical when
// that costs a group its quorum or not one node answers: then it is the
// finding of too few nodes available, else that of a node unavailable.
func (a *analysis) nodesDown() *draft {
	if a.down != nil {
		return a.down
	}
	dr := newDraft()
	for _, n := range sortedNodes(a.v) {
		switch a.nodes[n.Name].cond {
		case condDown:
			dr.nodes[n.Name] = true
			dr.evidence = append(dr.evidence, fmt.Sprintf("%s does not answer on its monitoring port: %s", n.Name, n.Error))
		case condJetStreamOff:
			dr.nodes[n.Name] = true
			dr.evidence = append(dr.evidence, fmt.Sprintf("%s answers but has JetStream off (it switches JetStream off itself when storage runs out)", n.Name))
		}
	}
	// Not one node answers: whatever the groups are doing, nobody can
	// tell, and they can do nothing either.
	if len(dr.nodes) > 0 && !slices.ContainsFunc(a.v.Nodes, func(n Node) bool { return n.Reachable }) {
		dr.critical = true
		dr.evidence = append(dr.evidence, "not one node answers: the prober cannot see any Raft group")
	}
	a.attachBlamed(dr, CauseNodeDown)
	a.down = dr
	return dr
}

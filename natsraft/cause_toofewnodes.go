package natsraft

import "fmt"

// CauseTooFewNodes is nodes down (or with JetStream off) that cost some
// group its quorum, or not one node answering.
const CauseTooFewNodes Cause = "too few nodes available"

var tooFewNodes = rule{
	cause:    CauseTooFewNodes,
	severity: SeverityCritical,
	check: func(a *analysis) *draft {
		if dr := a.nodesDown(); dr.critical {
			return dr
		}
		return nil // a node unavailable, if any
	},
	explain: func(_ *analysis, f Finding) (string, []string) {
		nodes := f.nodeList()
		return fmt.Sprintf("Too few nodes available: %s down, and the groups they belong to lack a quorum%s", nodes, f.withoutLeader()), []string{
			fmt.Sprintf("Bring %s back: look at the pods (kubectl get pods -o wide; kubectl describe pod) and the NATS logs; a pod that is Pending or crash-looping keeps its groups without quorum.", nodes),
			"Do not restart the nodes that are still up and do not force elections: the groups elect a leader on their own once a quorum of their members is back.",
			"If a node is gone for good, remove it from its groups (nats server raft peer-remove for the meta group; streams then place their replicas elsewhere) rather than waiting for it.",
		}
	},
}

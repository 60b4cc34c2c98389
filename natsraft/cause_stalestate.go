package natsraft

import (
	"fmt"
	"time"
)

// CauseStaleState is a node that came back from a restart with older Raft
// state than it had before.
const CauseStaleState Cause = "stale Raft state"

var staleState = rule{
	cause:    CauseStaleState,
	severity: SeverityWarning,
	check:    checkStaleState,
	explain: func(_ *analysis, f Finding) (string, []string) {
		nodes := f.nodeList()
		return fmt.Sprintf("Stale Raft state: %s came back with older Raft state than it had before its restart (an old backup, volume snapshot or another pod's volume)", nodes), []string{
			"Raft assumes what a node once wrote stays written: a node that forgot its votes or log entries can let a group lose acknowledged writes.",
			"If the groups catch up (lag 0), compare the streams on every replica (nats stream report; message counts and last sequences) before trusting them.",
			fmt.Sprintf("If a group stays leaderless or lagging: stop %s, delete its JetStream store so that it resyncs from its peers, and start it again — or peer-remove it from the group and add it back.", nodes),
			"Never restore a single NATS node from a volume snapshot; restore streams with nats stream backup/restore instead.",
		}
	},
}

// checkStaleState reports the nodes whose Raft state regressed, the groups
// they regressed in, and the groups without a leader that a stale member
// keeps so.
func checkStaleState(a *analysis) *draft {
	dr := newDraft()
	a.attachBlamed(dr, CauseStaleState)
	for _, n := range sortedNodes(a.v) {
		if len(n.RaftRegressions) == 0 {
			continue
		}
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
			if g := a.groupByRaft(rg.RaftGroup); g != nil {
				dr.groups[keyOf(g)] = a.affected(g, atRisk(g))
			}
		}
	}
	return dr
}

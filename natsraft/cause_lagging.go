package natsraft

import (
	"fmt"
	"time"
)

// CauseLagging is a member that answers and routes to its leader but is
// too far behind it, or not heard from lately, to count as a working
// voter.
const CauseLagging Cause = "lagging replica"

var laggingReplica = rule{
	cause:    CauseLagging,
	severity: SeverityWarning,
	check:    checkLagging,
	explain: func(_ *analysis, f Finding) (string, []string) {
		nodes := f.nodeList()
		return fmt.Sprintf("Lagging replica: %s connected but behind their leaders", nodes), []string{
			fmt.Sprintf("%s is catching up or too slow to keep up: check its disk (I/O wait), CPU and network.", nodes),
			"If the lag does not shrink over minutes, treat it as stale Raft state: resync the node from its peers.",
		}
	},
}

// checkLagging reports the groups whose lagging members keep them
// unhealthy, with how far behind each member is.
func checkLagging(a *analysis) *draft {
	dr := newDraft()
	for _, b := range a.attachBlamed(dr, CauseLagging) {
		for _, n := range b.nodes {
			if p, ok := peerOf(*b.g, n); ok {
				restoring := ""
				if p.Own != nil && p.Own.Restoring {
					restoring = ", restoring a snapshot from it"
				}
				dr.groupNotes = append(dr.groupNotes, fmt.Sprintf("%s %s: %s is %d entries behind leader %s%s, last heard %s ago",
					b.g.Kind, b.g.Name, n, p.Lag, b.g.Leader, restoring, p.Active.Round(time.Millisecond)))
			}
		}
	}
	return dr
}

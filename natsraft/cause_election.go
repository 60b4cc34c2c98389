package natsraft

import (
	"fmt"
	"time"
)

// CauseElection is a group without a working leader although a quorum of
// its members is available: an election under way, or failing once it
// lasts longer than ElectionGrace.
const CauseElection Cause = "leader election in progress"

// ElectionGrace is how long a group with enough members may be leaderless
// before the election counts as failing: NATS elections time out after
// 4–9 s.
const ElectionGrace = 10 * time.Second

var electionInProgress = rule{
	cause:    CauseElection,
	severity: SeverityWarning,
	check:    checkElection,
	explain: func(_ *analysis, f Finding) (string, []string) {
		return fmt.Sprintf("Leader election in progress in %d group(s) whose members are available", len(f.Groups)), []string{
			"NATS elections time out after 4–9 s; wait for them to finish and retry the failed requests.",
			"If it lasts longer than ~20 s: compare the members' terms and votes (/raftz), look for vote messages in their logs, and for stalls (GC, disk, CPU) longer than the 1 s heartbeat.",
		}
	},
}

// checkElection reports the groups in an election, critical once one has
// lasted ElectionGrace.
func checkElection(a *analysis) *draft {
	dr := newDraft()
	for _, b := range a.attachBlamed(dr, CauseElection) {
		g := b.g
		var dur time.Duration
		if since := g.WorkingLeaderSince(); since != nil {
			dur = a.now.Sub(*since)
		}
		if dur >= ElectionGrace {
			dr.critical = true
		}
		what := "has no leader"
		if g.State() == StateQuorumLost {
			what = fmt.Sprintf("has leader %s without a quorum of current members", g.Leader)
		}
		dr.groupNotes = append(dr.groupNotes, fmt.Sprintf("%s %s %s for %.1f s, with %d of %d members available (quorum %d), term %d",
			g.Kind, g.Name, what, dur.Seconds(), b.available, len(g.Peers), g.Quorum(), g.Term))
	}
	return dr
}

package natsraft

import "fmt"

// CauseTermInflation is a group whose term keeps rising, or that has a
// member campaigning alone: its elections keep happening.
const CauseTermInflation Cause = "term inflation"

const (
	// TermInflationPerMinute is the number of term changes in a minute
	// from which a group's elections count as inflating its term.
	TermInflationPerMinute = 3
	// TermAhead is how far a member's own term may run ahead of its
	// group's before it counts as campaigning alone.
	TermAhead = 2
)

var termInflation = rule{
	cause:    CauseTermInflation,
	severity: SeverityWarning,
	check:    checkTermInflation,
	explain: func(_ *analysis, f Finding) (string, []string) {
		return fmt.Sprintf("Term inflation: elections keep happening in %d group(s)", len(f.Groups)), []string{
			"A group whose term keeps rising keeps losing its leader: look for a member that flaps (cut off and back), for CPU starvation or stalls longer than the 1 s heartbeat, and for the other findings.",
			"A member that campaigns alone (its term ahead of its group's) makes the leader step down when it reconnects: put it into maintenance before it returns.",
		}
	},
}

// checkTermInflation reports groups whose term keeps moving, and members
// that campaign alone, unless another finding already explains the group
// (a member cut off that campaigns is in its connectivity finding).
func checkTermInflation(a *analysis) *draft {
	dr := newDraft()
	a.attachBlamed(dr, CauseTermInflation)
	for i := range a.v.Groups {
		g := &a.v.Groups[i]
		if a.explained[keyOf(g)] {
			continue
		}
		ahead := a.campaigning(g)
		inflating := g.TermChangesPerMinute >= TermInflationPerMinute
		if !inflating && len(ahead) == 0 {
			continue
		}
		nodes := ahead
		if len(nodes) == 0 {
			nodes = g.PeerNames()
		}
		allCutOff := true
		for _, n := range nodes {
			if st := a.nodes[n]; st == nil || st.cond != condCutOff {
				allCutOff = false
			}
		}
		if !inflating && allCutOff {
			continue // the connectivity finding carries it
		}
		a.attach(dr, blame{g: g, nodes: nodes, lost: quorumLost(g)})
		if inflating {
			dr.groupNotes = append(dr.groupNotes, fmt.Sprintf("%s %s: term rose by %d in the last minute, now %d",
				g.Kind, g.Name, g.TermChangesPerMinute, g.Term))
		}
		for _, n := range ahead {
			dr.groupNotes = append(dr.groupNotes, fmt.Sprintf("%s %s: member %s has term %d, the group %d",
				g.Kind, g.Name, n, g.MemberTerms[n], g.Term))
		}
	}
	return dr
}

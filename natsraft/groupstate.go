package natsraft

import "time"

// The health model of a Raft group: its state in one word, its working
// voters and since when it has lacked a working leader. The collector
// stamps the views with it, the diagnosis and the metrics read it.

// GroupState is a Raft group's health in one word.
type GroupState string

// Group states, from worst to best. A finding may also mark a healthy group
// it concerns as at risk.
const (
	StateLeaderless GroupState = "leaderless"
	StateQuorumLost GroupState = "quorum lost"
	StateDegraded   GroupState = "degraded"
	StateHealthy    GroupState = "healthy"
	StateAtRisk     GroupState = "at risk"
)

// GroupStates lists the states State returns, worst first.
var GroupStates = []GroupState{StateLeaderless, StateQuorumLost, StateDegraded, StateHealthy}

// State returns the group's health: leaderless when no node leads it,
// quorum lost when its leader has fewer than a quorum of healthy members
// (itself included), degraded when some member is not healthy. Healthy,
// not Current: under a write load followers are rarely at lag 0.
func (g *Group) State() GroupState {
	if g.Leader == "" {
		return StateLeaderless
	}
	healthy := g.HealthyCount()
	switch {
	case healthy < g.Quorum():
		return StateQuorumLost
	case healthy < len(g.Peers):
		return StateDegraded
	}
	return StateHealthy
}

// HealthyCount counts the working voters, the leader included; 0 without
// a leader.
func (g *Group) HealthyCount() int {
	if g.Leader == "" {
		return 0
	}
	n := 0
	for _, p := range g.Peers {
		if p.Leader || p.Healthy {
			n++
		}
	}
	return n
}

// WorkingLeaderSince returns since when the group has been without a
// working leader (no leader, or a leader without quorum); nil when it has
// one or the view does not know.
func (g *Group) WorkingLeaderSince() *time.Time {
	since := g.LeaderlessSince
	if q := g.QuorumLostSince; q != nil && (since == nil || q.Before(*since)) {
		since = q
	}
	if since == nil || g.State() == StateHealthy || g.State() == StateDegraded {
		return nil
	}
	return since
}

// quorumLost tells whether g has no working leader: none, or one with
// fewer than a quorum of healthy members (itself counted).
func quorumLost(g *Group) bool {
	return g.State().noWorkingLeader()
}

// noWorkingLeader tells whether a group in state s cannot commit: it has
// no leader, or one without a quorum of healthy members.
func (s GroupState) noWorkingLeader() bool {
	return s == StateLeaderless || s == StateQuorumLost
}

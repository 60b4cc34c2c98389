package natsraft

import (
	"context"
	"fmt"
	"time"
)

// maxCatchUpDetails bounds how many lagging groups CaughtUp names; a node
// back from maintenance on a large cluster may be behind on thousands.
const maxCatchUpDetails = 10

// CaughtUp tells whether node has caught up with every Raft group it is a
// member of: the same question as View.NodeReady, asked of a view swept
// after the call began. detail lists what is still behind; err is set only
// when no view could be had. A view swept even shortly before the call may
// predate the very change (a resume, an unfence) the caller asks about: a
// maintenance in and out within 0.1 s then read as caught up from the
// state before it. Concurrent callers still share a sweep that began after
// the call.
func (h *HandOff) CaughtUp(ctx context.Context, node string) (ok bool, detail string, err error) {
	v, err := h.viewSince(ctx, time.Now())
	if err != nil {
		return false, "", fmt.Errorf("caught up %s: %w", node, err)
	}
	ok, detail = v.NodeReady(node)
	return ok, detail, nil
}

// memberBehind says why self, a member of g, has not caught up with g, ""
// when it has. The leader's view of a follower is not enough: NATS counts
// a follower current from the replies to its appends, failed ones
// included, and /jsz does not correct it for a stream catch-up in flight.
// So the member's own report must agree: its Raft node has heard from a
// leader since it started, its log is committed as far as the leader's,
// applied as far as committed, no snapshot catch-up is running and, for a
// stream, its copy is as long as the leader's. Each comparison allows
// ReadyLag. A group's leader has caught up by definition.
func (v *View) memberBehind(g *Group, self Peer) string {
	switch {
	case g.Leader == "":
		return v.electionBehind(g, self)
	case g.Leader == self.Name:
		return ""
	case self.Pending:
		return fmt.Sprintf("pending, not a Raft member yet (leader %s)", g.Leader)
	case self.Active == 0 && !self.Current && g.LeaderSince != nil && v.At.Sub(*g.LeaderSince) > ActiveThreshold:
		// A working follower answers every append and heartbeat.
		return fmt.Sprintf("never heard from by leader %s in the %s it has led", g.Leader,
			v.At.Sub(*g.LeaderSince).Round(time.Second))
	case self.Active == 0 && !self.Current:
		// A leader that has just taken over has heard from nobody yet (and
		// reports the whole log as lag): then the member's own report
		// decides, below, provided it has a route to the leader. Failing
		// here would make every follower unready at each hand-off.
		if !v.routed(self.Name, g.Leader) {
			return fmt.Sprintf("never heard from by leader %s, and no route to it", g.Leader)
		}
	case self.Active > ActiveThreshold || (!self.Current && (self.Lag > ReadyLag || !v.routed(self.Name, g.Leader))):
		// Current by its index alone is not enough: a leader that has not
		// heard from the member within ActiveThreshold counts it unhealthy
		// in the safety rule, which would then refuse the next pod.
		return fmt.Sprintf("not current (lag %d, active %s, leader %s)",
			self.Lag, self.Active.Round(time.Millisecond), g.Leader)
	}
	own := self.Own
	switch {
	case own == nil:
		return fmt.Sprintf("no Raft state of its own reported (leader %s)", g.Leader)
	case own.CatchingUp:
		return fmt.Sprintf("catching up from a snapshot (leader %s)", g.Leader)
	case own.NoLeaderYet:
		// Its log may be complete, but until the leader's next append it
		// has not rejoined: NATS counts it not current, and it cannot take
		// the leadership a give-back hands it.
		return fmt.Sprintf("not heard from leader %s since its JetStream started", g.Leader)
	case own.Committed+ReadyLag < g.Commit:
		return fmt.Sprintf("committed %d of the leader's %d (leader %s)", own.Committed, g.Commit, g.Leader)
	case own.Applied+ReadyLag < own.Committed:
		return fmt.Sprintf("applied %d of %d committed (leader %s)", own.Applied, own.Committed, g.Leader)
	case g.Kind == KindStream && own.LastSeq+ReadyLag < g.LastSeq:
		return fmt.Sprintf("stream at sequence %d of the leader's %d (leader %s)", own.LastSeq, g.LastSeq, g.Leader)
	}
	return ""
}

// electionBehind says why self, a member of g while g has no leader, may
// not count as caught up, "" when it may. A leader hand-off or a fence
// leaves a group leaderless for a moment, and a sweep taken then must not
// make every member of it unready (a readiness probe that fails once takes
// the pod out of its Service). So while the election is younger than
// ElectionGrace, the member counts as caught up when its own log is as far
// as any member reports: committed, applied and (a stream) stored as far as
// the furthest one, within ReadyLag. Whoever wins the election then has
// nothing self lacks. An election of unknown age, or an older one, counts
// as "no leader".
func (v *View) electionBehind(g *Group, self Peer) string {
	since := g.LeaderlessSince
	if since == nil || v.At.Sub(*since) >= ElectionGrace {
		return "no leader"
	}
	own := self.Own
	if own == nil {
		return "no leader, and no Raft state of its own reported"
	}
	var committed, lastSeq uint64
	for _, p := range g.Peers {
		if p.Own != nil {
			committed = max(committed, p.Own.Committed)
			lastSeq = max(lastSeq, p.Own.LastSeq)
		}
	}
	age := v.At.Sub(*since).Round(time.Millisecond)
	switch {
	case own.CatchingUp:
		return fmt.Sprintf("no leader for %s, and catching up from a snapshot", age)
	case own.NoLeaderYet:
		// The grace is for members a hand-off leaves leaderless for a
		// moment, not for one that has not rejoined since it started.
		return fmt.Sprintf("no leader for %s, and none heard from since its JetStream started", age)
	case own.Committed+ReadyLag < committed:
		return fmt.Sprintf("no leader for %s, and committed %d of the %d another member has", age, own.Committed, committed)
	case own.Applied+ReadyLag < own.Committed:
		return fmt.Sprintf("no leader for %s, and applied %d of %d committed", age, own.Applied, own.Committed)
	case g.Kind == KindStream && own.LastSeq+ReadyLag < lastSeq:
		return fmt.Sprintf("no leader for %s, and stream at sequence %d of the %d another member has", age, own.LastSeq, lastSeq)
	}
	return ""
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

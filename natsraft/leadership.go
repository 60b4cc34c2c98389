package natsraft

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"time"
)

// Moving one leadership to a named peer: the give-back after maintenance
// (the node gets back what it led) and the balance of leaderships across
// the pods. Both step the current leader down with the peer preferred
// ({"placement":{"preferred":"<peer>"}}, which nats-server v2.15 honours
// for the meta group, streams and consumers) and wait until a fresh view
// shows the peer leading.

// Why a leadership was not given back, as NotGivenBack.Why.
const (
	NotBackGone       = "gone"
	NotBackNotMember  = "no longer a member"
	NotBackNotHealthy = "not current"
	NotBackNotAsked   = "restoreLeaders is false"
	// NotBackNoTime: the give-back's deadline passed before this group's
	// turn (a node that led hundreds of groups); it stays where it is.
	NotBackNoTime = "not tried: the give-back ran out of time"
)

// giveBackTimeout bounds the move of one leadership back: a give-back that
// cannot happen (NATS keeps refusing the preferred peer, say, or the group
// has no leader) is reported as not given back rather than holding the
// node's exit up. A variable only so that a test can shorten it.
var giveBackTimeout = 10 * time.Second

// ErrGroupGone is returned by MoveLeader when the group no longer exists.
var ErrGroupGone = errors.New("group gone")

// NotGivenBack is a group whose leadership did not go back to a node, and
// why.
type NotGivenBack struct {
	Group string `json:"group"`
	Why   string `json:"why"`
}

// LeaderMove is one leadership moved (or to move) from one peer to another.
type LeaderMove struct {
	Group   string    `json:"group"`
	Kind    GroupKind `json:"kind"`
	Account string    `json:"account,omitempty"`
	From    string    `json:"from"`
	To      string    `json:"to"`
}

// Leaders names the groups node leads that a hand-off would move (more than
// one replica), as the view names them, from a fresh view: the roles
// snapshot a maintenance takes on entry.
func (h *HandOff) Leaders(ctx context.Context, node string) ([]string, error) {
	v, err := h.freshView(ctx)
	if err != nil {
		return nil, err
	}
	var out []string
	led, _ := ledBy(v, node, false)
	for _, g := range led {
		if !slices.Contains(out, g.Name) {
			out = append(out, g.Name)
		}
	}
	return out, nil
}

// MoveLeader moves the leadership of m's group (found by kind, account and
// name) to m.To and returns once a fresh view shows m.To leading it. It
// steps the current leader down with m.To preferred and asks again, at most
// maxStepDownAttempts times, when the election picked another peer. A group
// that is gone is ErrGroupGone; one already led by m.To needs nothing.
func (h *HandOff) MoveLeader(ctx context.Context, m LeaderMove) error {
	ctx, cancel := withDefaultDeadline(ctx, DefaultHandOffTimeout)
	defer cancel()
	conns := &connCache{dial: h.Dial}
	defer conns.close()
	since := time.Now().Add(-sharedViewAge)
	var lastErr error
	for attempt := 0; ; {
		v, err := h.viewSince(ctx, since)
		if err != nil {
			return err
		}
		// Not through a node fenced or quiesced: its client port may
		// accept the connection, but its routes are cut.
		conns.setAvoid(outOfReach(v, ""))
		g, ok := v.Group(m.Kind, m.Account, m.Group)
		switch {
		case !ok:
			return fmt.Errorf("%s %s: %w", m.Kind, m.Group, ErrGroupGone)
		case g.Leader == m.To:
			return nil
		case !slices.Contains(g.PeerNames(), m.To):
			return fmt.Errorf("%s %s: %s is not a member", m.Kind, m.Group, m.To)
		case g.Leader == "":
			// An election is under way: look again.
			if err := sleepCtx(ctx, electionPoll); err != nil {
				return fmt.Errorf("%s %s: waiting for a leader: %w", m.Kind, m.Group, err)
			}
			since = time.Now()
			continue
		}
		if attempt >= maxStepDownAttempts {
			if lastErr == nil {
				lastErr = fmt.Errorf("led by %s", g.Leader)
			}
			return fmt.Errorf("%s %s not led by %s after %d step downs: %w", m.Kind, m.Group, m.To, attempt, lastErr)
		}
		attempt++
		lastErr = h.stepDown(ctx, conns, stepDown{group: g, to: m.To})
		if lastErr != nil {
			h.Logger.Debug().Err(lastErr).Str("group", g.Name).Str("to", m.To).Msg("move leader")
			if err := sleepCtx(ctx, time.Duration(attempt)*20*time.Millisecond); err != nil {
				return err
			}
		}
		since = time.Now()
	}
}

// GiveBack moves the leadership of each named group (as Leaders names
// them) back to node, and says which went back and which did not: a group
// that is gone, one node is no longer a member of, or one whose replica on
// node is not healthy (not caught up) stays where it is. A name several
// accounts use gives back each such group node is a member of. Only a
// view that cannot be had at the start is an error.
//
// The moves go in rounds, like a hand-off's: one fresh view, then a step
// down with node preferred for every group still led elsewhere, a bounded
// number in flight at once, then one view again. A node that led hundreds
// of groups gets them back in a few rounds, not in one sweep and one
// election per group. A group gets at most maxStepDownAttempts step downs
// and giveBackTimeout from its first, or from when it was first seen with
// no leader; one whose turn never came before ctx ended is NotBackNoTime.
// A node that stops serving meanwhile gets nothing more back (not
// current). Without a deadline in ctx, GiveBack gives up after
// DefaultHandOffTimeout.
func (h *HandOff) GiveBack(ctx context.Context, node string, groups []string) ([]string, []NotGivenBack, error) {
	ctx, cancel := withDefaultDeadline(ctx, DefaultHandOffTimeout)
	defer cancel()
	v, err := h.freshView(ctx)
	if err != nil {
		return nil, nil, err
	}

	// One move per group node is a member of, in the order of groups.
	type move struct {
		name     string
		key      groupKey
		group    Group
		attempts int
		first    time.Time
		lastErr  error
		done     bool
		back     bool
		why      string
	}
	var moves []*move
	found := map[string]bool{}
	member := map[string]bool{}
	byName := map[string][]Group{}
	for _, g := range v.Groups {
		byName[g.Name] = append(byName[g.Name], g)
	}
	seen := map[string]bool{}
	for _, name := range groups {
		if seen[name] {
			continue
		}
		seen[name] = true
		for _, g := range byName[name] {
			found[name] = true
			p, isPeer := peerOf(g, node)
			if !isPeer {
				continue
			}
			member[name] = true
			m := &move{name: name, key: keyOf(&g), group: g}
			switch {
			case g.Leader == node:
				m.done, m.back = true, true
			case p.Offline || p.Pending || !(p.Current || p.Healthy):
				// A node not serving at all is found by the first round.
				m.done, m.why = true, NotBackNotHealthy
			}
			moves = append(moves, m)
		}
	}

	conns := &connCache{dial: h.Dial}
	defer conns.close()
	// moved are the groups that came back here, for settle.
	var moved []Group
	for {
		// Not through a node fenced or quiesced (see MoveLeader).
		conns.setAvoid(outOfReach(v, ""))
		var steps []stepDown
		var stepping []*move
		idx := indexGroups(v)
		n, ok := v.Node(node)
		serving := ok && n.Serving()
		for _, m := range moves {
			if m.done {
				continue
			}
			g, ok := idx[m.key]
			if ok {
				m.group = g
			}
			_, isPeer := peerOf(g, node)
			switch {
			case !ok:
				m.done, m.why = true, NotBackGone
			case g.Leader == node:
				m.done, m.back = true, true
				moved = append(moved, g)
			case !isPeer:
				m.done, m.why = true, NotBackNotMember
			case !serving:
				// Gone away meanwhile (its server restarts, say): a step
				// down to it would only hand the group to a third peer.
				m.done, m.why = true, NotBackNotHealthy
			case !m.first.IsZero() && time.Since(m.first) > giveBackTimeout,
				m.attempts >= maxStepDownAttempts:
				m.done, m.why = true, notLedError(g, node, m.attempts, m.lastErr).Error()
			case g.Leader == "":
				// An election is under way: look again, within the
				// group's time (a group that lost its quorum may have no
				// leader for long).
				if m.first.IsZero() {
					m.first = time.Now()
				}
			default:
				m.attempts++
				steps = append(steps, stepDown{group: g, to: node})
				stepping = append(stepping, m)
			}
		}
		if !slices.ContainsFunc(moves, func(m *move) bool { return !m.done }) {
			break
		}
		if len(steps) > 0 {
			errs := h.stepDownAll(ctx, conns, steps, h.Logger.With().Str("node", node).Logger())
			sent := time.Now()
			for i, err := range errs {
				stepping[i].lastErr = err
				if stepping[i].first.IsZero() {
					// The group's time runs from its first step down's
					// answer: a long batch does not eat it.
					stepping[i].first = sent
				}
			}
		} else if sleepCtx(ctx, electionPoll) != nil {
			break
		}
		nv, err := h.lookAgain(ctx, time.Now())
		if err != nil {
			break // ctx ended
		}
		v = nv
	}

	// What ctx's end left: a group never tried, or one not yet seen led by
	// node.
	for _, m := range moves {
		switch {
		case m.done:
		case m.attempts == 0:
			m.done, m.why = true, NotBackNoTime
		default:
			m.done, m.why = true, notLedError(m.group, node, m.attempts, m.lastErr).Error()
		}
	}
	movesOf := map[string][]*move{}
	for _, m := range moves {
		movesOf[m.name] = append(movesOf[m.name], m)
	}
	var given []string
	var notGiven []NotGivenBack
	for _, name := range groups {
		if !found[name] {
			notGiven = append(notGiven, NotGivenBack{Group: name, Why: NotBackGone})
			continue
		}
		if !member[name] {
			notGiven = append(notGiven, NotGivenBack{Group: name, Why: NotBackNotMember})
			continue
		}
		back, why := false, ""
		for _, m := range movesOf[name] {
			back = back || m.back
			if !m.back {
				why = m.why
			}
		}
		if back {
			given = append(given, name)
		} else {
			notGiven = append(notGiven, NotGivenBack{Group: name, Why: why})
		}
	}
	if len(moved) > 0 {
		h.settle(ctx, moved)
	}
	if len(given) > 0 || len(notGiven) > 0 {
		h.Logger.Info().Str("node", node).Strs("given", given).Int("notGiven", len(notGiven)).Msg("leaderships given back")
	}
	return given, notGiven, nil
}

// indexGroups maps v's groups by their key.
func indexGroups(v *View) map[groupKey]Group {
	idx := make(map[groupKey]Group, len(v.Groups))
	for i := range v.Groups {
		idx[keyOf(&v.Groups[i])] = v.Groups[i]
	}
	return idx
}

// lookAgain returns a view swept at or after since, sweeping again after
// a failed sweep (a peer that did not answer in time, say) until ctx ends:
// a round must not act twice on the view it has acted on.
func (h *HandOff) lookAgain(ctx context.Context, since time.Time) (*View, error) {
	for pause := 20 * time.Millisecond; ; pause = min(2*pause, 500*time.Millisecond) {
		v, err := h.viewSince(ctx, since)
		if err == nil {
			return v, nil
		}
		h.Logger.Debug().Err(err).Msg("look again")
		if err := sleepCtx(ctx, pause); err != nil {
			return nil, err
		}
	}
}

// notLedError says that g is not led by node after attempts step downs,
// with the last step down's error when it had one.
func notLedError(g Group, node string, attempts int, last error) error {
	if attempts == 0 {
		return fmt.Errorf("%s %s has had no leader for %s", g.Kind, g.Name, giveBackTimeout)
	}
	if last == nil {
		last = fmt.Errorf("led by %s", cmp.Or(g.Leader, "nobody"))
	}
	return fmt.Errorf("%s %s not led by %s after %d step downs: %w", g.Kind, g.Name, node, attempts, last)
}

// settle waits, at most giveBackTimeout, until a fresh view shows every
// group of moved led and each of its members healthy: a leader that has
// just taken over has heard from nobody yet, and a safety judgement right
// after the give-back would count its followers as not current.
func (h *HandOff) settle(ctx context.Context, moved []Group) {
	ctx, cancel := context.WithTimeout(ctx, giveBackTimeout)
	defer cancel()
	err := pollUntil(ctx, electionPoll, func() bool {
		v, err := h.freshView(ctx)
		if err != nil {
			return false
		}
		for _, m := range moved {
			g, ok := v.Group(m.Kind, m.Account, m.Name)
			if !ok {
				continue
			}
			if g.Leader == "" {
				return false
			}
			for _, p := range g.Peers {
				if !p.Leader && !p.Healthy {
					return false
				}
			}
		}
		return true
	})
	if err != nil {
		h.Logger.Info().Err(err).Msg("groups given back not yet settled; going on")
	}
}

// LeaderCounts counts the groups each of pods leads in v (every kind; a
// pod leading nothing counts 0).
func LeaderCounts(v *View, pods []string) map[string]int {
	counts := make(map[string]int, len(pods))
	for _, p := range pods {
		counts[p] = 0
	}
	if v == nil {
		return counts
	}
	for _, g := range v.Groups {
		if _, ok := counts[g.Leader]; ok && g.Leader != "" {
			counts[g.Leader]++
		}
	}
	return counts
}

// Skew is the largest minus the smallest of counts, 0 for none.
func Skew(counts map[string]int) int {
	if len(counts) == 0 {
		return 0
	}
	lo, hi := -1, 0
	for _, n := range counts {
		hi = max(hi, n)
		if lo < 0 || n < lo {
			lo = n
		}
	}
	return hi - lo
}

// PlanBalance plans the leadership moves that even out the leaderships
// among pods, one move at a time: each takes a group of more than one
// replica from a pod leading the most to a healthy peer among pods that
// leads at least two fewer, the one leading fewest. Every move lowers the
// sum of squares of the counts, so the plan ends; it stops when no move
// helps. Groups are taken in a fixed order (meta, streams, consumers, then
// by account and name), so the plan is deterministic. It returns the moves
// and the counts they lead to.
func PlanBalance(v *View, pods []string) ([]LeaderMove, map[string]int) {
	return planBalance(v, pods, "")
}

// PlanBalanceTo plans, as PlanBalance does, only the moves that give pod
// to its share of the leaderships: each takes a group from a pod leading
// the most while pod leads at least two fewer. A pod that has just
// restarted, and leads nothing after the hand-offs of a rolling restart,
// takes its share back this way without moving anything among the others.
// No moves when pod is not among pods.
func PlanBalanceTo(v *View, pods []string, pod string) ([]LeaderMove, map[string]int) {
	if !slices.Contains(pods, pod) {
		return nil, LeaderCounts(v, pods)
	}
	return planBalance(v, pods, pod)
}

// planBalance is PlanBalance, with every move going to only when it is set.
func planBalance(v *View, pods []string, only string) ([]LeaderMove, map[string]int) {
	counts := LeaderCounts(v, pods)
	if v == nil {
		return nil, counts
	}
	groups := slices.Clone(v.Groups)
	slices.SortFunc(groups, func(a, b Group) int {
		return cmp.Or(cmp.Compare(kindRank[a.Kind], kindRank[b.Kind]), cmp.Compare(a.Account, b.Account), cmp.Compare(a.Name, b.Name))
	})
	leader := make([]string, len(groups))
	for i, g := range groups {
		leader[i] = g.Leader
	}
	var moves []LeaderMove
	for len(moves) <= len(groups)*len(pods) {
		order := slices.Clone(pods)
		slices.SortStableFunc(order, func(a, b string) int { return cmp.Or(cmp.Compare(counts[b], counts[a]), cmp.Compare(a, b)) })
		moved := false
		for _, from := range order {
			for i, g := range groups {
				if leader[i] != from || len(g.Peers) < 2 {
					continue
				}
				to := ""
				for _, p := range g.Peers {
					c, ok := counts[p.Name]
					if !ok || p.Name == from || (only != "" && p.Name != only) || p.Offline || p.Pending || !(p.Current || p.Healthy) || c > counts[from]-2 {
						continue
					}
					if to == "" || c < counts[to] || (c == counts[to] && p.Name < to) {
						to = p.Name
					}
				}
				if to == "" {
					continue
				}
				moves = append(moves, LeaderMove{Group: g.Name, Kind: g.Kind, Account: g.Account, From: from, To: to})
				leader[i] = to
				counts[from]--
				counts[to]++
				moved = true
				break
			}
			if moved {
				break
			}
		}
		if !moved {
			break
		}
	}
	return moves, counts
}

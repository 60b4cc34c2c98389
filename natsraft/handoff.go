package natsraft

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"
)

// ViewSource gives a recent View of the cluster. *Collector satisfies it.
type ViewSource interface {
	View(ctx context.Context) (*View, error)
}

// SinceViewer is a ViewSource that can give a view swept after a given
// time: after a step down the hand-off needs a view built after it, not a
// cached one, and readiness confirms a "not ready" on one. *Collector
// satisfies it.
type SinceViewer interface {
	ViewSince(ctx context.Context, since time.Time) (*View, error)
}

// Defaults of HandOff.
const (
	DefaultStepDownTimeout = 750 * time.Millisecond
	// DefaultHandOffTimeout bounds a Run whose context has no deadline.
	DefaultHandOffTimeout = 30 * time.Second
	// sharedViewAge is how long before a call a sweep may have started
	// for CaughtUp to reuse it: rapid and concurrent callers share sweeps.
	sharedViewAge = 100 * time.Millisecond
	// electionPoll is the pause between two looks for the new leaders of
	// the groups handed off.
	electionPoll = 50 * time.Millisecond
	// maxStepDownAttempts bounds the step downs of one group in one Run: a
	// group still led by the node after that many is an error, not a loop.
	maxStepDownAttempts = 10
	// stepDownParallel bounds the step-down requests in flight at once.
	stepDownParallel = 16
	// maxErrorGroups bounds the groups an error names ("and N more" for
	// the rest): the reconciler stores it as the status message.
	maxErrorGroups = 10
)

// The JetStream API subjects of the three kinds of step down.
const (
	metaStepDownSubject     = "$JS.API.META.LEADER.STEPDOWN"
	streamStepDownSubject   = "$JS.API.STREAM.LEADER.STEPDOWN."
	consumerStepDownSubject = "$JS.API.CONSUMER.LEADER.STEPDOWN."
)

// Scope says which of a node's leaderships a hand-off moves, and where to.
type Scope struct {
	// Avoid names peers on their way into maintenance themselves: they take
	// a leadership only when no other can, so that it does not move twice.
	Avoid []string
	// Draining names peers that are draining themselves: they would move a
	// leadership right off again. A drain never moves one to them (two
	// draining pods would hand it back and forth for as long as both
	// entries last); a node that leaves takes them, like Avoid, only when
	// no other can.
	Draining []string
	// Leaving says the node is about to lose its routes (a fence, a
	// restart), not merely its leaderships (a drain). A group that then
	// loses its quorum whoever leads it stays led by the node (see
	// lostAnyway): moving it buys nothing, and only a forced request gets
	// that far.
	Leaving bool
}

// HandOff moves every Raft leadership off one node, so that fencing it
// later costs no group its leader.
type HandOff struct {
	Views ViewSource
	Dial  Dialer
	// StepDownTimeout bounds the wait for one step-down answer; an answer
	// lost around a leader change is retried on the next round.
	StepDownTimeout time.Duration
	Logger          zerolog.Logger
}

// Run steps down every group node leads and returns once a fresh view shows
// it leads nothing and each group it handed off has its new leader (a
// group caught between two leaders may still need node's vote). Streams
// and consumers are stepped down from their own account (from the system
// account NATS refuses them with 10039), the meta group from the system
// account (from any other it is silently ignored), each with a current
// peer other than node as the preferred new leader, else a healthy one
// (under a write load a follower is rarely at lag 0); peers named in
// s.Avoid are taken only when no other can. A group of one replica has
// nobody to move to: it stays where it is and goes down with the node (the
// safety rule has named it); so does, when s.Leaving, a group that loses
// its quorum with the node whoever leads it. A group none of whose other
// peers is healthy cannot be handed off: Run returns an error naming it
// once everything else has moved. Without a deadline in ctx, Run gives up
// after DefaultHandOffTimeout. Its errors do not repeat the node's name:
// the caller knows it.
func (h *HandOff) Run(ctx context.Context, node string, s Scope) error {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultHandOffTimeout)
		defer cancel()
	}
	log := h.Logger.With().Str("node", node).Logger()
	start := time.Now()
	conns := &connCache{dial: h.Dial, avoid: []string{node}}
	defer conns.close()

	// since is when the state the next view must show began: the start,
	// the last step downs answered, the last look for new leaders.
	since := start.Add(-sharedViewAge)

	attempts := map[groupKey]int{}
	lastErr := map[groupKey]error{}
	moved := map[groupKey]bool{}
	for round := 0; ; round++ {
		v, err := h.viewSince(ctx, since)
		if err != nil {
			return err
		}
		n, ok := v.Node(node)
		if !ok {
			return fmt.Errorf("node %s not in the view", node)
		}
		if !n.Reachable {
			return fmt.Errorf("node %s unreachable, cannot tell what it leads: %s", node, n.Error)
		}

		// Step downs go through a server that can pass them on: not node,
		// and not a node fenced or quiesced for maintenance, whose client
		// port still accepts connections but whose routes are cut.
		conns.setAvoid(avoidFrom(v, node))

		led, lost := ledBy(v, node, s.Leaving)
		if round == 0 {
			if kept := singles(v, node); len(kept) > 0 {
				log.Warn().Strs("groups", kept).Msg("groups of one replica stay on the node")
			}
			if len(lost) > 0 {
				log.Warn().Strs("groups", lost).Msg("groups that lose their quorum with the node whoever leads them stay on it")
			}
		}
		if len(led) == 0 {
			electing, orphaned := leaderlessAmong(v, moved, node)
			if len(orphaned) > 0 {
				// Nobody but node can win these elections: waiting would
				// only run out the caller's deadline.
				return fmt.Errorf("no other healthy peer to take over %s: every other member is unreachable or has JetStream off",
					JoinBounded(orphaned, maxErrorGroups, ", "))
			}
			if len(electing) == 0 {
				log.Info().Dur("took", time.Since(start)).Int("rounds", round).Int("moved", len(moved)).Msg("leads nothing")
				return nil
			}
			if err := sleepCtx(ctx, electionPoll); err != nil {
				return fmt.Errorf("waiting for the new leader of %s: %w", JoinBounded(electing, maxErrorGroups, ", "), err)
			}
			since = time.Now()
			continue
		}

		leads := map[string]int{}
		for _, nn := range v.Nodes {
			leads[nn.Name] = nn.Leads
		}
		var steps []stepDown
		var stuck []string
		for _, g := range led {
			k := keyOf(&g)
			if attempts[k] >= maxStepDownAttempts {
				last := lastErr[k]
				if last == nil {
					last = errors.New("NATS answered success each time")
				}
				return fmt.Errorf("%s %s still led after %d step downs: %w", g.Kind, g.Name, attempts[k], last)
			}
			to := preferredPeer(v, g, node, leads, s)
			if to == "" {
				stuck = append(stuck, fmt.Sprintf("%s %s", g.Kind, g.Name))
				continue
			}
			leads[to]++
			attempts[k]++
			moved[k] = true
			steps = append(steps, stepDown{group: g, to: to})
		}
		if len(steps) == 0 {
			return fmt.Errorf("no other healthy peer to take over %s", JoinBounded(stuck, maxErrorGroups, ", "))
		}

		errs := h.stepDownAll(ctx, conns, steps, log)
		since = time.Now()
		failed := false
		for i, err := range errs {
			k := keyOf(&steps[i].group)
			lastErr[k] = err
			failed = failed || err != nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if failed {
			// An error answer comes back at once: pause a little so that
			// a leader change in flight can settle before the next round.
			if err := sleepCtx(ctx, time.Duration(round+1)*20*time.Millisecond); err != nil {
				return err
			}
		}
	}
}

// freshView returns a view swept no earlier than sharedViewAge before the
// call, so that concurrent and rapid callers share one sweep.
func (h *HandOff) freshView(ctx context.Context) (*View, error) {
	return h.viewSince(ctx, time.Now().Add(-sharedViewAge))
}

// viewSince returns a view swept at or after since when Views can tell,
// else whatever Views gives.
func (h *HandOff) viewSince(ctx context.Context, since time.Time) (*View, error) {
	if s, ok := h.Views.(SinceViewer); ok {
		return s.ViewSince(ctx, since)
	}
	return h.Views.View(ctx)
}

// ledBy returns the groups the named node leads that another member can
// take over: a group of one replica has nobody to move to. When leaving,
// the groups that lose their quorum with the node whoever leads them are
// left out too, and named in lost.
func ledBy(v *View, node string, leaving bool) (led []Group, lost []string) {
	for _, g := range v.Groups {
		if g.Leader != node || len(g.Peers) <= 1 {
			continue
		}
		if leaving && lostAnyway(v, &g, node) {
			lost = append(lost, fmt.Sprintf("%s %s", g.Kind, g.Name))
			continue
		}
		led = append(led, g)
	}
	return led, lost
}

// lostAnyway reports whether g is left without a quorum once node is out,
// whoever leads it: its members other than node that are online, on a
// reachable node with JetStream on, are fewer than a quorum. Only a forced
// request fences such a node (the safety rule refuses it otherwise), for
// instance the member of a group of two replicas whose other member is
// still catching up after a restart; a step down to that member starts an
// election it cannot win, and node is elected again, round after round.
func lostAnyway(v *View, g *Group, node string) bool {
	members, live := 0, 0
	for _, p := range g.Peers {
		if p.Pending {
			continue
		}
		members++
		if p.Name == node || p.Offline {
			continue
		}
		if n, ok := v.Node(p.Name); ok && !n.Serving() {
			continue
		}
		live++
	}
	return live < members/2+1
}

// singles names the groups of one replica the node leads: they stay on it.
func singles(v *View, node string) []string {
	var out []string
	for _, g := range v.Groups {
		if g.Leader == node && len(g.Peers) <= 1 {
			out = append(out, fmt.Sprintf("%s %s", g.Kind, g.Name))
		}
	}
	return out
}

// Leads names the groups node leads that a hand-off of scope s would move
// (see Run), from a fresh view: what such a hand-off must still move.
func (h *HandOff) Leads(ctx context.Context, node string, s Scope) ([]string, error) {
	v, err := h.freshView(ctx)
	if err != nil {
		return nil, err
	}
	var out []string
	led, _ := ledBy(v, node, s.Leaving)
	for _, g := range led {
		out = append(out, fmt.Sprintf("%s %s", g.Kind, g.Name))
	}
	return out, nil
}

// Restoring names the streams ("stream <name>") of which node's copy is
// restoring a snapshot from the stream's leader, read from a view no older
// than the call. NATS's JetStream shutdown (a quiesce) waits for each such
// catch-up to end, and one whose leader is out of reach (fenced, down)
// does not end: it stalls every 5 s, asks again and, after three tries,
// replays the snapshot and starts over. A quiesce begun then held the
// embedded default's reconciler for more than 30 s; the kernel fence's
// reload, and with it the reload that resumes, would wait as long.
func (h *HandOff) Restoring(ctx context.Context, node string) ([]string, error) {
	v, err := h.freshView(ctx)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, g := range v.Groups {
		if p, ok := peerOf(g, node); ok && p.Own != nil && p.Own.Restoring {
			out = append(out, fmt.Sprintf("%s %s", g.Kind, g.Name))
		}
	}
	return out, nil
}

// leaderlessAmong names the groups of keys that the view shows without a
// leader, and among them those orphaned: no member but node is on a
// reachable node with JetStream on, so no other member can win the
// election (a group whose other members went into maintenance meanwhile).
func leaderlessAmong(v *View, keys map[groupKey]bool, node string) (electing, orphaned []string) {
	for i := range v.Groups {
		g := &v.Groups[i]
		if g.Leader != "" || !keys[keyOf(g)] {
			continue
		}
		name := fmt.Sprintf("%s %s", g.Kind, g.Name)
		electing = append(electing, name)
		candidate := false
		for _, p := range g.Peers {
			if n, ok := v.Node(p.Name); ok && p.Name != node && n.Serving() {
				candidate = true
				break
			}
		}
		if !candidate {
			orphaned = append(orphaned, name)
		}
	}
	return electing, orphaned
}

// preferredPeer picks the peer to take over g from node: a member on a
// reachable node with JetStream on, neither in s.Avoid nor in s.Draining
// nor stopping if any other can (a drain never picks one in s.Draining),
// current if any is, else healthy (under a write load a follower is rarely
// at lag 0), and of those the one that leads least so that a hand-off
// spreads the leaderships. "" when there is none.
func preferredPeer(v *View, g Group, node string, leads map[string]int, s Scope) string {
	best, bestRank := "", 0
	for _, p := range g.Peers {
		rank := 0
		draining := slices.Contains(s.Draining, p.Name)
		switch {
		case p.Name == node || p.Leader || p.Offline || p.Pending:
		case draining && !s.Leaving:
		case p.Current:
			rank = 2
		case p.Healthy:
			rank = 1
		}
		if rank == 0 {
			continue
		}
		n, known := v.Node(p.Name)
		if known && !n.Serving() {
			continue
		}
		// A peer whose pod is being stopped would lead for seconds.
		if !draining && !slices.Contains(s.Avoid, p.Name) && !(known && n.Stopping) {
			rank += 2
		}
		if best == "" || rank > bestRank ||
			(rank == bestRank && (leads[p.Name] < leads[best] || (leads[p.Name] == leads[best] && p.Name < best))) {
			best, bestRank = p.Name, rank
		}
	}
	return best
}

type stepDown struct {
	group Group
	to    string
}

// stepDownAll sends the step downs, a bounded number at a time, and returns
// each one's error (nil when NATS answered success).
func (h *HandOff) stepDownAll(ctx context.Context, conns *connCache, steps []stepDown, log zerolog.Logger) []error {
	errs := make([]error, len(steps))
	sem := make(chan struct{}, stepDownParallel)
	var wg sync.WaitGroup
	for i, s := range steps {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			errs[i] = ctx.Err()
			continue
		}
		wg.Go(func() {
			defer func() { <-sem }()
			errs[i] = h.stepDown(ctx, conns, s)
			ev := log.Debug()
			if errs[i] != nil {
				ev = log.Info().Err(errs[i])
			}
			ev.Str("group", s.group.Name).Str("kind", string(s.group.Kind)).Str("to", s.to).Msg("step down")
		})
	}
	wg.Wait()
	return errs
}

func (h *HandOff) stepDown(ctx context.Context, conns *connCache, s stepDown) error {
	account, subject := s.group.Account, ""
	switch s.group.Kind {
	case KindMeta:
		account, subject = SystemAccount, metaStepDownSubject
	case KindStream:
		subject = streamStepDownSubject + s.group.Stream
	case KindConsumer:
		subject = consumerStepDownSubject + s.group.Stream + "." + s.group.Consumer
	default:
		return fmt.Errorf("step down %s: unknown kind %q", s.group.Name, s.group.Kind)
	}
	nc, err := conns.get(account)
	if err != nil {
		return err
	}
	body, err := json.Marshal(server.JSApiLeaderStepdownRequest{Placement: &server.Placement{Preferred: s.to}})
	if err != nil {
		return fmt.Errorf("step down %s: %w", s.group.Name, err)
	}
	timeout := cmp.Or(h.StepDownTimeout, DefaultStepDownTimeout)
	rctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	msg, err := nc.RequestWithContext(rctx, subject, body)
	if err != nil {
		return fmt.Errorf("step down %s: %w", s.group.Name, err)
	}
	var resp server.JSApiLeaderStepDownResponse
	if err := json.Unmarshal(msg.Data, &resp); err != nil {
		return fmt.Errorf("step down %s: decode answer: %w", s.group.Name, err)
	}
	if resp.Error != nil {
		return fmt.Errorf("step down %s: %w", s.group.Name, resp.Error)
	}
	if !resp.Success {
		return fmt.Errorf("step down %s: not successful: %s", s.group.Name, msg.Data)
	}
	return nil
}

// avoidFrom names the servers a request leaving from should not go
// through: from itself (unless ""), and the other nodes out of reach in v
// (none without a view).
func avoidFrom(v *View, from string) []string {
	var avoid []string
	if from != "" {
		avoid = append(avoid, from)
	}
	if v != nil {
		avoid = append(avoid, outOfReach(v, from)...)
	}
	return avoid
}

// outOfReach names the nodes other than node that the view shows
// unreachable or with JetStream off: a request sent through them may never
// reach a leader.
func outOfReach(v *View, node string) []string {
	var out []string
	for _, n := range v.Nodes {
		if n.Name != node && !n.Serving() {
			out = append(out, n.Name)
		}
	}
	return out
}

// connCache holds one connection per account for the length of one Run.
type connCache struct {
	dial  Dialer
	avoid []string

	mu    sync.Mutex
	conns map[string]*nats.Conn
}

func (c *connCache) get(account string) (*nats.Conn, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if nc, ok := c.conns[account]; ok && !nc.IsClosed() {
		return nc, nil
	}
	nc, err := c.dial(account, c.avoid...)
	if err != nil {
		return nil, fmt.Errorf("dial account %s avoiding %s: %w", account, strings.Join(c.avoid, ", "), err)
	}
	if c.conns == nil {
		c.conns = map[string]*nats.Conn{}
	}
	c.conns[account] = nc
	return nc, nil
}

// setAvoid sets the servers to avoid; when they change, the connections
// dialled before are closed so that none stays on a server now avoided.
func (c *connCache) setAvoid(avoid []string) {
	slices.Sort(avoid)
	c.mu.Lock()
	same := slices.Equal(c.avoid, avoid)
	c.avoid = avoid
	c.mu.Unlock()
	if !same {
		c.close()
	}
}

func (c *connCache) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, nc := range c.conns {
		nc.Close()
	}
	c.conns = nil
}

// sleepCtx waits for d or until ctx ends.
func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

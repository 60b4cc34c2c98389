package natsraft

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"
)

// Dialer connects to the cluster as a user of the given account, on any
// node but those named in avoid. Embedded.Dial satisfies it.
type Dialer func(account string, avoid ...string) (*nats.Conn, error)

// ViewSource gives a recent View of the cluster. *Collector satisfies it.
type ViewSource interface {
	View(ctx context.Context) (*View, error)
}

// sinceViewer is a ViewSource that can give a view swept after a given
// time; after a step down the hand-off needs a view built after it, not a
// cached one. *Collector satisfies it.
type sinceViewer interface {
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
)

// The JetStream API subjects of the three kinds of step down.
const (
	metaStepDownSubject     = "$JS.API.META.LEADER.STEPDOWN"
	streamStepDownSubject   = "$JS.API.STREAM.LEADER.STEPDOWN."
	consumerStepDownSubject = "$JS.API.CONSUMER.LEADER.STEPDOWN."
)

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
// (under a write load a follower is rarely at lag 0). A group none of
// whose other peers is healthy cannot be handed off: Run returns an error
// naming it once everything else has moved. Without a deadline in ctx,
// Run gives up after DefaultHandOffTimeout.
func (h *HandOff) Run(ctx context.Context, node string) error {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultHandOffTimeout)
		defer cancel()
	}
	log := h.Logger.With().Str("node", node).Logger()
	start := time.Now()
	conns := &connCache{dial: h.Dial, avoid: node}
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
			return fmt.Errorf("hand off %s: %w", node, err)
		}
		n, ok := v.Node(node)
		if !ok {
			return fmt.Errorf("hand off %s: node not in the view", node)
		}
		if !n.Reachable {
			return fmt.Errorf("hand off %s: node unreachable, cannot tell what it leads: %s", node, n.Error)
		}

		led := ledBy(v, node)
		if len(led) == 0 {
			electing := leaderlessAmong(v, moved)
			if len(electing) == 0 {
				log.Info().Dur("took", time.Since(start)).Int("rounds", round).Int("moved", len(moved)).Msg("leads nothing")
				return nil
			}
			if err := sleepCtx(ctx, electionPoll); err != nil {
				return fmt.Errorf("hand off %s: waiting for the new leader of %s: %w", node, strings.Join(electing, ", "), err)
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
				return fmt.Errorf("hand off %s: %s %s still led after %d step downs: %w",
					node, g.Kind, g.Name, attempts[k], last)
			}
			to := preferredPeer(v, g, node, leads)
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
			return fmt.Errorf("hand off %s: no other healthy peer to take over %s", node, strings.Join(stuck, ", "))
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
			return fmt.Errorf("hand off %s: %w", node, ctx.Err())
		}
		if failed {
			// An error answer comes back at once: pause a little so that
			// a leader change in flight can settle before the next round.
			if err := sleepCtx(ctx, time.Duration(round+1)*20*time.Millisecond); err != nil {
				return fmt.Errorf("hand off %s: %w", node, err)
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
	if s, ok := h.Views.(sinceViewer); ok {
		return s.ViewSince(ctx, since)
	}
	return h.Views.View(ctx)
}

// ledBy returns the groups the named node leads.
func ledBy(v *View, node string) []Group {
	var out []Group
	for _, g := range v.Groups {
		if g.Leader == node {
			out = append(out, g)
		}
	}
	return out
}

// leaderlessAmong names the groups of keys that the view shows without a
// leader.
func leaderlessAmong(v *View, keys map[groupKey]bool) []string {
	var out []string
	for i := range v.Groups {
		g := &v.Groups[i]
		if g.Leader == "" && keys[keyOf(g)] {
			out = append(out, fmt.Sprintf("%s %s", g.Kind, g.Name))
		}
	}
	return out
}

// preferredPeer picks the peer to take over g from node: a member on a
// reachable node with JetStream on, current if any is, else healthy (under
// a write load a follower is rarely at lag 0), and of those the one that
// leads least so that a hand-off spreads the leaderships. "" when there is
// none.
func preferredPeer(v *View, g Group, node string, leads map[string]int) string {
	best, bestRank := "", 0
	for _, p := range g.Peers {
		rank := 0
		switch {
		case p.Name == node || p.Leader || p.Offline || p.Pending:
		case p.Current:
			rank = 2
		case p.Healthy:
			rank = 1
		}
		if rank == 0 {
			continue
		}
		if n, ok := v.Node(p.Name); ok && (!n.Reachable || !n.JetStream) {
			continue
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

// connCache holds one connection per account for the length of one Run.
type connCache struct {
	dial  Dialer
	avoid string

	mu    sync.Mutex
	conns map[string]*nats.Conn
}

func (c *connCache) get(account string) (*nats.Conn, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if nc, ok := c.conns[account]; ok && !nc.IsClosed() {
		return nc, nil
	}
	nc, err := c.dial(account, c.avoid)
	if err != nil {
		return nil, fmt.Errorf("dial account %s avoiding %s: %w", account, c.avoid, err)
	}
	if c.conns == nil {
		c.conns = map[string]*nats.Conn{}
	}
	c.conns[account] = nc
	return nc, nil
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

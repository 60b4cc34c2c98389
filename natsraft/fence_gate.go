package natsraft

import (
	"context"
	"fmt"
	"time"
)

// The gate fence: an embedded node fenced by the in-process TCP gates in
// front of its cluster and gateway ports (gate.go), quiesced by switching
// its JetStream off in the server itself. It needs no privileges, which is
// why the embedded default and the tests use it. EmbeddedNode implements
// Fence with it.

// Fenced reports whether the node is cut off from its peers.
func (n *EmbeddedNode) Fenced() (bool, error) { return n.e.fab.isFenced(n.name), nil }

// Fence cuts every route and gateway connection to and from the node and
// refuses new ones, then returns once the cut is verified over the
// monitoring endpoints: no peer's /routez or /gatewayz lists the node any
// more and the node itself has no route or gateway connection. It is
// idempotent.
func (n *EmbeddedNode) Fence(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, embeddedOpTimeout)
	defer cancel()
	start := time.Now()
	cut := n.e.fab.fence(n.name)
	left, err := n.links().awaitCut(ctx, 5*time.Millisecond, func() (int, error) { return n.e.fab.fence(n.name), nil })
	if err != nil {
		return fmt.Errorf("fence %s: still linked to %v: %w", n.name, left, err)
	}
	n.log.Info().Int("cut", cut).Dur("took", time.Since(start)).Msg("fenced")
	return nil
}

// Unfence lifts the fence and returns once the node has its routes to every
// running, unfenced peer of its dc back (seen from both ends) and an
// outbound gateway to every other dc that has such a node. It is
// idempotent; for a stopped node it only lifts the fence.
func (n *EmbeddedNode) Unfence(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, embeddedOpTimeout)
	defer cancel()
	start := time.Now()
	n.e.fab.unfence(n.name)
	missing, err := n.links().awaitLinks(ctx, 10*time.Millisecond, func() (int, error) {
		cut := n.e.fab.fence(n.name)
		n.e.fab.unfence(n.name)
		return cut, nil
	})
	if err != nil {
		return fmt.Errorf("unfence %s: still missing %v: %w", n.name, missing, err)
	}
	n.log.Info().Dur("took", time.Since(start)).Msg("unfenced")
	return nil
}

// links returns the node's link verifier: its own monitoring endpoint
// while it runs, every other node's as peers, and the fenced peers left out
// of what it should be linked to.
func (n *EmbeddedNode) links() *linkVerifier {
	e := n.e
	return &linkVerifier{
		name:   n.name,
		client: e.monitorClient,
		local: func() string {
			if n.running() == nil {
				return ""
			}
			return n.MonitorURL()
		},
		peers: func(context.Context) ([]string, error) {
			urls := make([]string, 0, len(e.nodes)-1)
			for _, p := range e.nodes {
				if p != n {
					urls = append(urls, p.MonitorURL())
				}
			}
			return urls, nil
		},
		gateways: e.multiDC,
		skip:     func(_ context.Context, p linkedServer) bool { return e.fab.isFenced(p.Name) },
		log:      n.log,
	}
}

// moveClientsGrace bounds how long MoveClients lets clients leave on their
// own after the lame-duck notice before it disconnects the rest.
const moveClientsGrace = 2 * time.Second

// Quiesced reports whether the node's JetStream is off (a stopped node's is).
func (n *EmbeddedNode) Quiesced() bool {
	s := n.running()
	return s == nil || !s.JetStreamEnabled()
}

// Quiesce switches the node's JetStream off, keeping its meta and stream
// state on disk so that Resume rejoins the same Raft groups. A quiesced
// node stops campaigning, so an isolated follower cannot raise its term and
// depose healthy leaders when it comes back. It is idempotent. ctx is
// checked before the shutdown starts; NATS's shutdown takes no context, so
// once started it runs to its end, and a shutdown that succeeded is
// reported as such even when ctx ended meanwhile (the node is quiesced).
func (n *EmbeddedNode) Quiesce(ctx context.Context) error {
	s := n.running()
	if s == nil {
		return fmt.Errorf("quiesce %s: node is stopped", n.name)
	}
	if !s.JetStreamEnabled() {
		return nil
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("quiesce %s: %w", n.name, err)
	}
	start := time.Now()
	if err := s.ShutdownJetStream(); err != nil {
		return fmt.Errorf("quiesce %s: %w", n.name, err)
	}
	ev := n.log.Info()
	if ctx.Err() != nil {
		ev = n.log.Warn().AnErr("ctx", ctx.Err())
	}
	ev.Dur("took", time.Since(start)).Msg("JetStream quiesced")
	return nil
}

// Resume switches the node's JetStream back on by reloading its
// configuration (which has JetStream enabled, as a reload after an
// out-of-space shutdown does) and returns once JetStream runs again. It is
// idempotent.
func (n *EmbeddedNode) Resume(ctx context.Context) error {
	s := n.running()
	if s == nil {
		return fmt.Errorf("resume %s: node is stopped", n.name)
	}
	if s.JetStreamEnabled() {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, embeddedOpTimeout)
	defer cancel()
	start := time.Now()
	if err := s.Reload(); err != nil {
		return fmt.Errorf("resume %s: reload: %w", n.name, err)
	}
	if err := pollUntil(ctx, 5*time.Millisecond, s.JetStreamEnabled); err != nil {
		return fmt.Errorf("resume %s: JetStream did not come back: %w", n.name, err)
	}
	n.log.Info().Dur("took", time.Since(start)).Msg("JetStream resumed")
	return nil
}

// MoveClients sends every client of the node a lame-duck notice, so that
// clients which honour it reconnect to a peer, waits (bounded by ctx and a
// short grace) for them to leave, and disconnects those still there, which
// makes them reconnect elsewhere too.
func (n *EmbeddedNode) MoveClients(ctx context.Context) error {
	s := n.running()
	if s == nil {
		return fmt.Errorf("move clients off %s: node is stopped", n.name)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("move clients off %s: %w", n.name, err)
	}
	if err := moveClients(ctx, embeddedClients{s}, moveClientsGrace, 10*time.Millisecond, n.log); err != nil {
		return fmt.Errorf("move clients off %s: %w", n.name, err)
	}
	return nil
}

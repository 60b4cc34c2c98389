package natsraft

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats-server/v2/server"
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
	if err := n.redial(); err != nil {
		// NATS's own timer brings the routes back within a second or two.
		n.log.Warn().Err(err).Msg("unfence: could not make the node dial its routes at once")
	}
	missing, err := n.links().awaitLinks(ctx, 10*time.Millisecond, func() (int, error) {
		cut := n.e.fab.fence(n.name)
		n.e.fab.unfence(n.name)
		return cut, n.redial()
	})
	if err != nil {
		return fmt.Errorf("unfence %s: still missing %v: %w", n.name, missing, err)
	}
	n.log.Info().Dur("took", time.Since(start)).Msg("unfenced")
	return nil
}

// redial makes the node dial its routes now instead of on NATS's timer.
// The fence cut them; NATS redials a route a second after it broke and then
// every second (DEFAULT_ROUTE_RECONNECT, DEFAULT_ROUTE_CONNECT, neither
// configurable), so an unfence would wait up to a second for the next try,
// and each peer's own tries keep the same rhythm. A reload that changes the
// route URLs makes NATS drop the old ones (their retry loops end) and dial
// the new ones at once, so each unfence spells them anew (a query NATS
// ignores when it dials). A peer's retry that lands after the node's dial is
// a duplicate route, which NATS closes as it does at any cluster's start.
//
// The reload keeps JetStream as it is: a quiesced node resumes only in
// Resume, after the routes are back. It is skipped while the quiesce's
// JetStream shutdown is still in flight: NATS re-enables JetStream on every
// reload for each account whose JetStream that shutdown has already removed
// (restoring its streams and Raft groups on the JetStream going away), and
// the end of the shutdown then stops those groups and clears the JetStream,
// which left a resumed node whose groups /raftz no longer listed. NATS's
// own timer redials meanwhile.
func (n *EmbeddedNode) redial() error {
	s := n.running()
	if s == nil {
		return nil
	}
	if n.inFlight(s) != nil {
		return errShutdownInFlight
	}
	n.mu.Lock()
	n.redials++
	n.mu.Unlock()
	opts, err := n.options()
	if err != nil {
		return err
	}
	opts.JetStream = opts.JetStream && s.JetStreamEnabled()
	if err := s.ReloadOptions(opts); err != nil {
		return fmt.Errorf("reload: %w", err)
	}
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

// Quiesced reports whether the node's running server has its JetStream
// off. A stopped node is not quiesced: there is nothing to resume, it
// starts with JetStream on, and a reconciler that took it for quiesced
// tried to resume it and reported a crashed node not in maintenance as a
// failed maintenance step (the kernel fence, too, says not quiesced when
// it cannot read the server).
func (n *EmbeddedNode) Quiesced() bool {
	s := n.running()
	return s != nil && !s.JetStreamEnabled()
}

// quiesceWait bounds how long Quiesce waits for NATS's JetStream shutdown
// to end. NATS switches JetStream off (to clients, to the monitoring
// endpoints) as the shutdown begins; the rest, stopping every stream and
// Raft group, waits for each stream's monitor, and a stream restoring a
// snapshot from a leader that is out of reach stalls, asks again and
// replays the snapshot for as long as the leader stays away.
const quiesceWait = 10 * time.Second

// errShutdownInFlight is a reload not done because the quiesce's JetStream
// shutdown has not ended.
var errShutdownInFlight = errors.New("no reload while the JetStream shutdown the quiesce began goes on")

// jsShutdown is a JetStream shutdown in flight: done is closed when
// ShutdownJetStream on srv returns.
type jsShutdown struct {
	srv  *server.Server
	done chan struct{}
}

// inFlight returns the JetStream shutdown of s that has not ended yet, nil
// when there is none.
func (n *EmbeddedNode) inFlight(s *server.Server) *jsShutdown {
	n.mu.Lock()
	defer n.mu.Unlock()
	if sd := n.shutdown; sd != nil && sd.srv == s {
		select {
		case <-sd.done:
		default:
			return sd
		}
	}
	return nil
}

// Quiesce switches the node's JetStream off, keeping its meta and stream
// state on disk so that Resume rejoins the same Raft groups. A quiesced
// node stops campaigning, so an isolated follower cannot raise its term and
// depose healthy leaders when it comes back. It is idempotent. ctx is
// checked before the shutdown starts.
//
// NATS's shutdown takes no context, so it runs on a goroutine of its own:
// Quiesce waits for its end up to quiesceWait (or ctx) and then, JetStream
// being off already, returns with the rest going on in the background, as
// the kernel fence's reload does; Resume waits for it. The reconciler does
// not quiesce a node whose streams restore a snapshot unless forced (see
// HandOff.Restoring), which is what holds a shutdown that long.
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
	sd := &jsShutdown{srv: s, done: make(chan struct{})}
	n.mu.Lock()
	n.shutdown = sd
	n.mu.Unlock()
	var err error
	go func() {
		defer close(sd.done)
		err = s.ShutdownJetStream()
	}()
	wait := time.NewTimer(quiesceWait)
	defer wait.Stop()
	select {
	case <-sd.done:
		if err != nil {
			return fmt.Errorf("quiesce %s: %w", n.name, err)
		}
		ev := n.log.Info()
		if ctx.Err() != nil {
			ev = n.log.Warn().AnErr("ctx", ctx.Err())
		}
		ev.Dur("took", time.Since(start)).Msg("JetStream quiesced")
		return nil
	case <-wait.C:
	case <-ctx.Done():
	}
	if s.JetStreamEnabled() {
		return fmt.Errorf("quiesce %s: JetStream still on %s after the shutdown began", n.name, time.Since(start).Round(time.Millisecond))
	}
	n.log.Warn().Dur("took", time.Since(start)).
		Msg("JetStream off; NATS's shutdown goes on in the background (a stream waits for a catch-up)")
	go func() {
		<-sd.done
		n.log.Info().Dur("took", time.Since(start)).Msg("JetStream shutdown ended")
	}()
	return nil
}

// resumeWait bounds how long Resume waits for a JetStream shutdown still
// in flight before it restarts the server instead.
const resumeWait = 2 * time.Second

// Resume switches the node's JetStream back on by reloading its
// configuration (which has JetStream enabled, as a reload after an
// out-of-space shutdown does) and returns once JetStream runs again. It is
// idempotent.
//
// A JetStream shutdown the quiesce began that is still in flight holds on
// a stream's catch-up from a leader out of reach (see quiesceWait), which
// may last as long as that leader is away, and a reload cannot switch
// JetStream on before it ends. Resume waits for it up to resumeWait, then
// restarts the server: the shutdown of the whole server ends the catch-up
// at once, and the server starts with JetStream on, from its store. Its
// clients were moved away on entry.
func (n *EmbeddedNode) Resume(ctx context.Context) error {
	s := n.running()
	if s == nil {
		return fmt.Errorf("resume %s: node is stopped", n.name)
	}
	ctx, cancel := context.WithTimeout(ctx, embeddedOpTimeout)
	defer cancel()
	start := time.Now()
	if sd := n.inFlight(s); sd != nil {
		held := time.NewTimer(resumeWait)
		defer held.Stop()
		select {
		case <-sd.done:
		case <-ctx.Done():
			return fmt.Errorf("resume %s: the JetStream shutdown the quiesce began has not ended: %w", n.name, ctx.Err())
		case <-held.C:
			n.log.Warn().Dur("waited", time.Since(start)).
				Msg("the JetStream shutdown the quiesce began still waits for a stream's catch-up: restarting the server")
			return n.restartOn(ctx, start)
		}
	}
	if s.JetStreamEnabled() {
		return nil
	}
	if err := s.Reload(); err != nil {
		return fmt.Errorf("resume %s: reload: %w", n.name, err)
	}
	if err := pollUntil(ctx, 5*time.Millisecond, s.JetStreamEnabled); err != nil {
		return fmt.Errorf("resume %s: JetStream did not come back: %w", n.name, err)
	}
	n.log.Info().Dur("took", time.Since(start)).Msg("JetStream resumed")
	return nil
}

// restartOn stops the node's server and starts it again, with JetStream
// on as configured, and returns once JetStream runs.
func (n *EmbeddedNode) restartOn(ctx context.Context, start time.Time) error {
	n.stop()
	if err := n.start(ctx); err != nil {
		return fmt.Errorf("resume %s: restart: %w", n.name, err)
	}
	s := n.running()
	if s == nil {
		return fmt.Errorf("resume %s: restarted, then stopped", n.name)
	}
	if err := pollUntil(ctx, 5*time.Millisecond, s.JetStreamEnabled); err != nil {
		return fmt.Errorf("resume %s: restarted without JetStream: %w", n.name, err)
	}
	n.log.Info().Dur("took", time.Since(start)).Msg("JetStream resumed (server restarted)")
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

package natsraft

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/rs/zerolog"
)

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
	ctx, cancel := embeddedDeadline(ctx, embeddedOpTimeout)
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

// clientHost is a server whose clients moveClients moves.
type clientHost interface {
	// clients lists the ids of the server's client connections.
	clients(ctx context.Context) ([]uint64, error)
	// present returns those of ids still connected.
	present(ctx context.Context, ids []uint64) ([]uint64, error)
	// notify sends client id a lame-duck notice and kick disconnects it;
	// done tells whether the server did it, err (which ends the move) that
	// the request did not get through.
	notify(ctx context.Context, id uint64) (done bool, err error)
	kick(ctx context.Context, id uint64) (done bool, err error)
}

// moveClients sends every client of h a lame-duck notice, so that clients
// which honour it reconnect to a peer, waits (bounded by ctx and grace,
// looking every poll) for them to leave, and disconnects those still
// there, which makes them reconnect elsewhere too.
func moveClients(ctx context.Context, h clientHost, grace, poll time.Duration, log zerolog.Logger) error {
	ids, err := h.clients(ctx)
	if err != nil {
		return err
	}
	if len(ids) == 0 {
		return nil
	}
	start := time.Now()
	// A client may have left meanwhile, or not support the notice: the
	// disconnect below covers both.
	notified, err := forEachClient(ctx, ids, h.notify)
	if err != nil {
		return err
	}
	gctx, cancel := context.WithTimeout(ctx, grace)
	defer cancel()
	var left []uint64
	waitErr := pollUntil(gctx, poll, func() bool {
		now, err := h.present(gctx, ids)
		if err != nil {
			return false
		}
		left = now
		return len(left) == 0
	})
	kicked := 0
	if waitErr != nil {
		if kicked, err = forEachClient(ctx, left, h.kick); err != nil {
			return err
		}
	}
	log.Info().Int("clients", len(ids)).Int("notified", notified).Int("kicked", kicked).
		Dur("took", time.Since(start)).Msg("clients moved")
	return nil
}

// forEachClient applies do to every id and counts those done; the first
// error ends it.
func forEachClient(ctx context.Context, ids []uint64, do func(context.Context, uint64) (bool, error)) (int, error) {
	n := 0
	for _, id := range ids {
		done, err := do(ctx, id)
		if err != nil {
			return n, err
		}
		if done {
			n++
		}
	}
	return n, nil
}

// embeddedClients is the clientHost of an embedded server, which it asks
// directly.
type embeddedClients struct{ s *server.Server }

func (h embeddedClients) clients(context.Context) ([]uint64, error) { return clientIDs(h.s) }

func (h embeddedClients) present(_ context.Context, ids []uint64) ([]uint64, error) {
	var left []uint64
	for _, id := range ids {
		if h.s.GetClient(id) != nil {
			left = append(left, id)
		}
	}
	return left, nil
}

func (h embeddedClients) notify(_ context.Context, id uint64) (bool, error) {
	return h.s.LDMClientByID(id) == nil, nil
}

func (h embeddedClients) kick(_ context.Context, id uint64) (bool, error) {
	return h.s.DisconnectClientByID(id) == nil, nil
}

// clientIDs returns the ids of every client connection of s.
func clientIDs(s *server.Server) ([]uint64, error) {
	const page = 1024
	var ids []uint64
	for offset := 0; ; offset += page {
		cz, err := s.Connz(&server.ConnzOptions{Offset: offset, Limit: page})
		if err != nil {
			return nil, fmt.Errorf("connz: %w", err)
		}
		for _, c := range cz.Conns {
			ids = append(ids, c.Cid)
		}
		if len(cz.Conns) < page {
			return ids, nil
		}
	}
}

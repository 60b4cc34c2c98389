package natsraft

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats-server/v2/server"
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
	ids, err := clientIDs(s)
	if err != nil {
		return fmt.Errorf("move clients off %s: %w", n.name, err)
	}
	if len(ids) == 0 {
		return nil
	}
	start := time.Now()
	notified := 0
	for _, id := range ids {
		// A client may have left meanwhile, or not support the notice: the
		// disconnect below covers both.
		if s.LDMClientByID(id) == nil {
			notified++
		}
	}
	gctx, cancel := context.WithTimeout(ctx, moveClientsGrace)
	defer cancel()
	var left []uint64
	waitErr := pollUntil(gctx, 10*time.Millisecond, func() bool {
		left = left[:0]
		for _, id := range ids {
			if s.GetClient(id) != nil {
				left = append(left, id)
			}
		}
		return len(left) == 0
	})
	kicked := 0
	if waitErr != nil {
		for _, id := range left {
			if s.DisconnectClientByID(id) == nil {
				kicked++
			}
		}
	}
	n.log.Info().Int("clients", len(ids)).Int("notified", notified).Int("kicked", kicked).
		Dur("took", time.Since(start)).Msg("clients moved")
	return nil
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

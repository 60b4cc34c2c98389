package natsraft

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/rs/zerolog"
)

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

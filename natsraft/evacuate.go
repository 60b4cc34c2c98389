package natsraft

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Moving the streams of one replica off a node before its maintenance (and
// back after it), by NATS's own means: a stream of one replica cannot be
// handed off, only moved. The stream is raised to two replicas, NATS places
// the new one, the prober waits until it is current, steps the leadership
// over to it and lowers the stream to one replica again; NATS keeps the
// leader. Its consumers follow it. To go back to a given node, replicas are
// added until NATS has placed one there.

const (
	// evacuatePoll is the pause between two looks at a stream being moved.
	evacuatePoll = 100 * time.Millisecond
	// DefaultEvacuateTimeout bounds the move of one stream when ctx has no
	// earlier deadline: it copies the stream's data.
	DefaultEvacuateTimeout = 30 * time.Minute
	// evacuateRequestTimeout bounds one JetStream API request of a move: a
	// request that no server answers (a server that has just resumed its
	// JetStream and not yet found the meta leader takes it, say) is asked
	// again at the next look instead of holding the move until its end.
	evacuateRequestTimeout = 5 * time.Second
	// evacuateStepDownPause is the least time between two step-downs of a
	// stream being moved.
	evacuateStepDownPause = time.Second
)

// requestCtx bounds one JetStream API request under ctx.
func requestCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, evacuateRequestTimeout)
}

// StreamRef names a stream: its account, as the monitoring endpoints name
// it, and its name. Its text form is "<account>/<name>".
type StreamRef struct {
	Account string `json:"account"`
	Name    string `json:"name"`
}

func (s StreamRef) String() string { return s.Account + "/" + s.Name }

// ParseStreamRef parses the text form of a StreamRef.
func ParseStreamRef(s string) (StreamRef, error) {
	account, name, ok := strings.Cut(s, "/")
	if !ok || account == "" || name == "" {
		return StreamRef{}, fmt.Errorf("stream %q: not <account>/<name>", s)
	}
	return StreamRef{Account: account, Name: name}, nil
}

// Singles names the streams of one replica that live on node, from a fresh
// view: what Evacuate moves.
func (h *HandOff) Singles(ctx context.Context, node string) ([]StreamRef, error) {
	v, err := h.freshView(ctx)
	if err != nil {
		return nil, err
	}
	return singleStreams(v, node), nil
}

// singleStreams names the streams of one replica that live on node in v.
func singleStreams(v *View, node string) []StreamRef {
	var out []StreamRef
	for _, g := range v.Groups {
		if g.Kind == KindStream && len(g.Peers) == 1 && g.Unnamed() == 0 && g.Peers[0].Name == node {
			out = append(out, StreamRef{Account: g.Account, Name: g.Stream})
		}
	}
	return out
}

// Evacuate moves every stream of one replica that lives on node to another
// node, one at a time, and returns those it moved. It is idempotent: a
// stream already moved is not on node any more and is left alone.
//
// A move off raises the stream to two replicas (NATS places the second on
// another node) before it lowers it again, so one cut short (the caller
// killed, a timeout) leaves the stream of two replicas, node among them,
// and no longer of one replica: of the streams in unfinished (those a
// caller recorded as moving), such a one is moved off too. One of more
// than two replicas was changed by someone else and is left alone.
// moving, when not nil, is told of each stream before its move starts, so
// that the caller can record it first; an error from it ends the
// evacuation.
func (h *HandOff) Evacuate(ctx context.Context, node string, unfinished []StreamRef, moving func(StreamRef) error) ([]StreamRef, error) {
	v, err := h.freshView(ctx)
	if err != nil {
		return nil, err
	}
	streams := singleStreams(v, node)
	for _, g := range v.Groups {
		s := StreamRef{Account: g.Account, Name: g.Stream}
		if g.Kind == KindStream && slices.Contains(unfinished, s) && !slices.Contains(streams, s) &&
			len(g.Peers) == 2 && slices.Contains(g.PeerNames(), node) {
			h.Logger.Info().Str("node", node).Stringer("stream", s).Int("replicas", len(g.Peers)).Msg("finishing a move cut short")
			streams = append(streams, s)
		}
	}
	var moved []StreamRef
	for _, s := range streams {
		if moving != nil {
			if err := moving(s); err != nil {
				return moved, fmt.Errorf("evacuate: before stream %s moves: %w", s, err)
			}
		}
		start := time.Now()
		if err := h.move(ctx, s, node, func(peers []string) string {
			for _, p := range peers {
				if p != node {
					return p
				}
			}
			return ""
		}); err != nil {
			return moved, fmt.Errorf("evacuate stream %s: %w", s, err)
		}
		h.Logger.Info().Str("node", node).Stringer("stream", s).Dur("took", time.Since(start)).Msg("stream of one replica moved off")
		moved = append(moved, s)
	}
	return moved, nil
}

// Restore moves each stream back onto node, where Evacuate took it from,
// and returns those it restored. A stream that is gone, or that has more
// replicas than a move leaves (someone changed it meanwhile), is left
// alone and not returned; one already back is returned as restored. A move
// cut short (by a restart, say) is finished.
func (h *HandOff) Restore(ctx context.Context, node string, streams []StreamRef) ([]StreamRef, error) {
	var restored []StreamRef
	var errs []error
	for _, s := range streams {
		info, err := h.streamInfo(ctx, s)
		switch {
		case errors.Is(err, jetstream.ErrStreamNotFound):
			continue
		case err != nil:
			errs = append(errs, fmt.Errorf("restore stream %s: %w", s, err))
			continue
		case info.Config.Replicas > maxMoveReplicas:
			continue
		case info.Config.Replicas == 1 && info.Cluster != nil && info.Cluster.Leader == node:
			restored = append(restored, s)
			continue
		}
		start := time.Now()
		if err := h.move(ctx, s, "", func(peers []string) string {
			if slices.Contains(peers, node) {
				return node
			}
			return ""
		}); err != nil {
			errs = append(errs, fmt.Errorf("restore stream %s: %w", s, err))
			continue
		}
		h.Logger.Info().Str("node", node).Stringer("stream", s).Dur("took", time.Since(start)).Msg("stream of one replica moved back")
		restored = append(restored, s)
	}
	return restored, errors.Join(errs...)
}

// maxMoveReplicas is the most replicas a move raises a stream to (NATS
// allows five): NATS chooses where a new replica goes, so a move to one
// node adds replicas until one lands there.
const maxMoveReplicas = 5

// move takes stream s to one replica on the node target picks among its
// peers ("" while none will do): it adds replicas, one at a time and each
// waited for until current, until target picks one; then it steps the
// leadership over to that node and lowers the stream to one replica, which
// NATS keeps on its leader. from, when set, is the node the stream must end
// off: the connection avoids it.
func (h *HandOff) move(ctx context.Context, s StreamRef, from string, target func(peers []string) string) error {
	ctx, cancel := context.WithTimeout(ctx, DefaultEvacuateTimeout)
	defer cancel()
	avoid := h.dialAvoid(ctx, from)
	js, nc, err := h.jetStream(s.Account, avoid)
	if err != nil {
		return err
	}
	defer nc.Close()
	to := ""
	for replicas := 2; to == ""; replicas++ {
		if replicas > maxMoveReplicas {
			return fmt.Errorf("NATS placed no replica where it should go with %d replicas", maxMoveReplicas)
		}
		peers, err := h.grow(ctx, js, s, replicas)
		if err != nil {
			return err
		}
		to = target(peers)
	}
	return h.lower(ctx, js, s, to, avoid)
}

// grow sets s to n replicas (or leaves it at more, as a move cut short left
// it) and waits until every one is current; it returns the peers.
func (h *HandOff) grow(ctx context.Context, js jetstream.JetStream, s StreamRef, n int) ([]string, error) {
	var peers []string
	err := pollUntil(ctx, evacuatePoll, func() bool {
		rctx, cancel := requestCtx(ctx)
		defer cancel()
		st, err := js.Stream(rctx, s.Name)
		if err != nil {
			h.Logger.Debug().Err(err).Stringer("stream", s).Msg("stream info")
			return false
		}
		info := st.CachedInfo()
		if info.Config.Replicas < n {
			// Asked again while it has not taken: an update sent around a
			// meta leader change can be lost.
			if err := setReplicas(rctx, js, s.Name, n); err != nil {
				h.Logger.Debug().Err(err).Stringer("stream", s).Int("replicas", n).Msg("add replicas")
			}
			return false
		}
		peers = streamPeers(info)
		if len(peers) < n || !allCurrent(info) {
			return false
		}
		// The replicas' Raft logs are current; a new replica may still be
		// copying the stream's messages, and a leadership moved to it now
		// would restart that copy. Each server says when it has them all.
		for _, p := range peers[1:] {
			if err := h.streamHealthy(ctx, s, p); err != nil {
				h.Logger.Debug().Err(err).Stringer("stream", s).Str("replica", p).Msg("replica not caught up yet")
				return false
			}
		}
		return true
	})
	if err != nil {
		return nil, fmt.Errorf("waiting for %d current replicas: %w", n, err)
	}
	return peers, nil
}

// lower steps the leadership of s over to to and sets s back to one
// replica, which NATS keeps on its leader; it returns once to is the only
// peer. Its step downs go through a server other than avoid.
func (h *HandOff) lower(ctx context.Context, js jetstream.JetStream, s StreamRef, to string, avoid []string) error {
	conns := &connCache{dial: h.Dial, avoid: avoid}
	defer conns.close()
	g := Group{Kind: KindStream, Name: s.Name, Account: s.Account, Stream: s.Name}
	var stepped time.Time
	err := pollUntil(ctx, evacuatePoll, func() bool {
		rctx, cancel := requestCtx(ctx)
		defer cancel()
		st, err := js.Stream(rctx, s.Name)
		if err != nil || st.CachedInfo().Cluster == nil {
			h.Logger.Debug().Err(err).Stringer("stream", s).Msg("stream info")
			return false
		}
		info := st.CachedInfo()
		if info.Cluster.Leader != to {
			// One step-down at a time: each one answered or not starts an
			// election, and elections back to back keep the new replica
			// from ever finishing its copy.
			if time.Since(stepped) < evacuateStepDownPause {
				return false
			}
			stepped = time.Now()
			if err := h.stepDown(ctx, conns, stepDown{group: g, to: to}); err != nil {
				h.Logger.Debug().Err(err).Stringer("stream", s).Msg("step down to the new replica")
			}
			return false
		}
		if info.Config.Replicas != 1 {
			if err := setReplicas(rctx, js, s.Name, 1); err != nil {
				h.Logger.Debug().Err(err).Stringer("stream", s).Msg("lower to one replica")
			}
			return false
		}
		if peers := streamPeers(info); len(peers) != 1 || peers[0] != to {
			return false
		}
		// Lowered, the stream runs in a Raft group of its own on to: done
		// once to serves it.
		if err := h.streamHealthy(ctx, s, to); err != nil {
			h.Logger.Debug().Err(err).Stringer("stream", s).Msg("stream not served on its node yet")
			return false
		}
		return true
	})
	if err != nil {
		return fmt.Errorf("waiting for one replica on %s: %w", to, err)
	}
	return nil
}

// jetStream connects to account through a server other than avoid.
func (h *HandOff) jetStream(account string, avoid []string) (jetstream.JetStream, *nats.Conn, error) {
	nc, err := h.Dial(account, avoid...)
	if err != nil {
		return nil, nil, fmt.Errorf("dial account %s: %w", account, err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, nil, err
	}
	return js, nc, nil
}

// dialAvoid is avoidFrom on a fresh view: from, and the nodes fenced,
// quiesced or down, whose client port may accept a connection whose
// requests then go nowhere. Without a view, from alone.
func (h *HandOff) dialAvoid(ctx context.Context, from string) []string {
	v, err := h.freshView(ctx)
	if err != nil {
		v = nil
	}
	return avoidFrom(v, from)
}

// streamInfo reads the stream's info from its account.
func (h *HandOff) streamInfo(ctx context.Context, s StreamRef) (*jetstream.StreamInfo, error) {
	js, nc, err := h.jetStream(s.Account, h.dialAvoid(ctx, ""))
	if err != nil {
		return nil, err
	}
	defer nc.Close()
	rctx, cancel := requestCtx(ctx)
	defer cancel()
	st, err := js.Stream(rctx, s.Name)
	if err != nil {
		return nil, err
	}
	return st.CachedInfo(), nil
}

// setReplicas updates the stream to n replicas, its configuration as it is.
func setReplicas(ctx context.Context, js jetstream.JetStream, name string, n int) error {
	st, err := js.Stream(ctx, name)
	if err != nil {
		return err
	}
	cfg := st.CachedInfo().Config
	if cfg.Replicas == n {
		return nil
	}
	cfg.Replicas = n
	if _, err := js.UpdateStream(ctx, cfg); err != nil {
		return fmt.Errorf("set %d replicas: %w", n, err)
	}
	return nil
}

// streamHealthy asks the server named node, over the system account,
// whether its replica of s is healthy: running and caught up with the
// stream's leader (its /healthz for that one stream).
func (h *HandOff) streamHealthy(ctx context.Context, s StreamRef, node string) error {
	v, err := h.freshView(ctx)
	if err != nil {
		return err
	}
	id := ""
	for _, n := range v.Nodes {
		if n.Name == node {
			id = n.ID
		}
	}
	if id == "" {
		return fmt.Errorf("server %s: id unknown", node)
	}
	nc, err := h.Dial(SystemAccount)
	if err != nil {
		return fmt.Errorf("dial the system account: %w", err)
	}
	defer nc.Close()
	body, err := json.Marshal(server.HealthzEventOptions{HealthzOptions: server.HealthzOptions{Account: s.Account, Stream: s.Name}})
	if err != nil {
		return err
	}
	rctx, cancel := requestCtx(ctx)
	defer cancel()
	msg, err := nc.RequestWithContext(rctx, "$SYS.REQ.SERVER."+id+".HEALTHZ", body)
	if err != nil {
		return fmt.Errorf("server %s: healthz: %w", node, err)
	}
	var resp struct {
		Data  server.HealthStatus `json:"data"`
		Error *server.ApiError    `json:"error"`
	}
	if err := json.Unmarshal(msg.Data, &resp); err != nil {
		return fmt.Errorf("server %s: healthz: %w", node, err)
	}
	switch {
	case resp.Error != nil:
		return fmt.Errorf("server %s: healthz: %s", node, resp.Error.Description)
	case resp.Data.Status != "ok":
		return fmt.Errorf("server %s: %s", node, resp.Data.Error)
	}
	return nil
}

// streamPeers names the stream's peers: its leader and its replicas.
func streamPeers(info *jetstream.StreamInfo) []string {
	if info == nil || info.Cluster == nil || info.Cluster.Leader == "" {
		return nil
	}
	peers := []string{info.Cluster.Leader}
	for _, r := range info.Cluster.Replicas {
		peers = append(peers, r.Name)
	}
	return peers
}

// allCurrent reports whether every replica of the stream is current and no
// change of its peers is under way.
func allCurrent(info *jetstream.StreamInfo) bool {
	if info.Cluster == nil || info.Cluster.Leader == "" {
		return false
	}
	for _, r := range info.Cluster.Replicas {
		if !r.Current || r.Lag > 0 {
			return false
		}
	}
	return true
}

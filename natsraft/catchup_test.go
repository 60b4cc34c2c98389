package natsraft

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestCaughtUpOnView(t *testing.T) {
	nodes := []Node{
		{Name: "n0", Reachable: true, JetStream: true, Routes: []string{"n1", "n2"}},
		{Name: "n1", Reachable: true, JetStream: true, Routes: []string{"n0", "n2"}},
		{Name: "n2", Reachable: true, JetStream: true, Routes: []string{"n0", "n1"}},
	}
	heard := 200 * time.Millisecond
	group := func(kind GroupKind, name, leader string, n1 Peer) Group {
		g := Group{Kind: kind, Name: name, Leader: leader, Commit: 1000, LastSeq: 500}
		for _, p := range []Peer{{Name: "n0", Current: true, Active: heard}, n1, {Name: "n2", Current: true, Active: heard}} {
			p.Leader = p.Name == leader
			g.Peers = append(g.Peers, p)
		}
		return g
	}
	own := func() *MemberState { return &MemberState{Committed: 1000, Applied: 1000, LastSeq: 500} }
	peer := func(f func(*Peer)) Peer {
		p := Peer{Name: "n1", Current: true, Active: heard, Own: own()}
		if f != nil {
			f(&p)
		}
		return p
	}
	current := peer(nil)
	healthy := []Group{
		group(KindMeta, MetaGroupName, "n0", current),
		group(KindStream, "s", "n2", current),
	}
	stream := func(f func(*Peer)) []Group { return []Group{healthy[0], group(KindStream, "s", "n2", peer(f))} }
	many := []Group{group(KindMeta, MetaGroupName, "n0", current)}
	for i := range 12 {
		many = append(many, group(KindStream, fmt.Sprintf("s%02d", i), "n0",
			peer(func(p *Peer) { p.Current, p.Lag = false, ReadyLag+1 })))
	}
	tests := []struct {
		name       string
		nodes      []Node
		groups     []Group
		wantOK     bool
		wantDetail []string
	}{
		{name: "current everywhere", groups: healthy, wantOK: true},
		{
			name:   "leads a group",
			groups: []Group{group(KindMeta, MetaGroupName, "n1", Peer{Name: "n1"}), healthy[1]},
			wantOK: true,
		},
		{
			name: "a small lag, its own state within ReadyLag",
			groups: stream(func(p *Peer) {
				p.Current, p.Lag = false, ReadyLag
				p.Own.Committed, p.Own.Applied, p.Own.LastSeq = 1000-ReadyLag, 1000-2*ReadyLag, 500-ReadyLag
			}),
			wantOK: true,
		},
		{
			name:       "lags behind a leader",
			groups:     stream(func(p *Peer) { p.Current, p.Lag = false, ReadyLag+1 }),
			wantDetail: []string{"stream s: not current (lag 17, active 200ms, leader n2)"},
		},
		{
			name:       "not current",
			groups:     []Group{healthy[0], group(KindConsumer, "s/c", "n2", peer(func(p *Peer) { p.Current, p.Active = false, 5*time.Second }))},
			wantDetail: []string{"consumer s/c: not current (lag 0, active 5s, leader n2)"},
		},
		{
			name: "a new leader has not heard from it yet: its own state decides",
			groups: stream(func(p *Peer) {
				p.Current, p.Active, p.Lag = false, 0, 1000
			}),
			wantOK: true,
		},
		{
			name: "a new leader has not heard from it, and its own state is behind",
			groups: stream(func(p *Peer) {
				p.Current, p.Active, p.Lag = false, 0, 1000
				p.Own.Committed = 900
			}),
			wantDetail: []string{"stream s: committed 900 of the leader's 1000"},
		},
		{
			name: "never heard from, and no route to the leader",
			nodes: []Node{
				{Name: "n0", Reachable: true, JetStream: true, Routes: []string{"n1", "n2"}},
				{Name: "n1", Reachable: true, JetStream: true, Routes: []string{"n0"}},
				{Name: "n2", Reachable: true, JetStream: true, Routes: []string{"n0"}},
			},
			groups:     stream(func(p *Peer) { p.Current, p.Active = false, 0 }),
			wantDetail: []string{"stream s: never heard from by leader n2, and no route to it"},
		},
		{
			name:       "pending",
			groups:     stream(func(p *Peer) { p.Pending = true }),
			wantDetail: []string{"stream s: pending, not a Raft member yet"},
		},
		{
			name:       "no own report",
			groups:     stream(func(p *Peer) { p.Own = nil }),
			wantDetail: []string{"stream s: no Raft state of its own reported"},
		},
		{
			name:       "catching up from a snapshot",
			groups:     stream(func(p *Peer) { p.Own.CatchingUp = true }),
			wantDetail: []string{"stream s: catching up from a snapshot"},
		},
		{
			name:       "its JetStream has just resumed: no leader heard from yet",
			groups:     stream(func(p *Peer) { p.Own.NoLeaderYet = true }),
			wantDetail: []string{"stream s: not heard from leader n2 since its JetStream started"},
		},
		{
			name:       "commit behind the leader's",
			groups:     stream(func(p *Peer) { p.Own.Committed, p.Own.Applied = 1000-ReadyLag-1, 1000-ReadyLag-1 }),
			wantDetail: []string{"stream s: committed 983 of the leader's 1000"},
		},
		{
			name:       "applied behind its commit",
			groups:     stream(func(p *Peer) { p.Own.Applied = 1000 - ReadyLag - 1 }),
			wantDetail: []string{"stream s: applied 983 of 1000 committed"},
		},
		{
			name:       "stream shorter than the leader's",
			groups:     stream(func(p *Peer) { p.Own.LastSeq = 500 - ReadyLag - 1 }),
			wantDetail: []string{"stream s: stream at sequence 483 of the leader's 500"},
		},
		{
			name:       "group without leader",
			groups:     []Group{healthy[0], group(KindStream, "s", "", current)},
			wantDetail: []string{"stream s: no leader"},
		},
		{
			name:       "not a meta peer",
			groups:     []Group{healthy[1]},
			wantDetail: []string{"n1 is not a peer of the meta group yet"},
		},
		{
			name:       "unreachable",
			nodes:      []Node{{Name: "n1", Error: "connection refused"}},
			groups:     healthy,
			wantDetail: []string{"n1 is unreachable: connection refused"},
		},
		{
			name:       "JetStream off",
			nodes:      []Node{{Name: "n1", Reachable: true}},
			groups:     healthy,
			wantDetail: []string{"n1 has JetStream off"},
		},
		{
			name:       "not in the view",
			nodes:      []Node{{Name: "n0", Reachable: true, JetStream: true}},
			groups:     healthy,
			wantDetail: []string{"n1 is not in the view"},
		},
		{
			name:       "a long list is cut",
			groups:     many,
			wantDetail: []string{"stream s00: not current (lag 17", "stream s09: not current", "and 2 more"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := &View{Nodes: nodes, Groups: tt.groups}
			if tt.nodes != nil {
				v.Nodes = tt.nodes
			}
			ok, detail := v.NodeReady("n1")
			assert.Equal(t, tt.wantOK, ok, detail)
			if tt.wantOK {
				assert.Empty(t, detail)
			}
			for _, want := range tt.wantDetail {
				assert.Contains(t, detail, want)
			}
			assert.NotContains(t, detail, "s10", "only the first ten are named")
		})
	}
}

// caughtUpCluster starts a healthy embedded cluster and returns it, its
// collector, a hand-off over them and the node the tests take out: nats-2.
func caughtUpCluster(t *testing.T) (*Embedded, *Collector, *HandOff, *EmbeddedNode) {
	t.Helper()
	e, c := raftCluster(t)
	waitView(t, c, 15*time.Second, "a healthy view", healthyDemo)
	return e, c, &HandOff{Views: c, Dial: e.Dial, Logger: zerolog.Nop()}, e.Node("nats-2")
}

func TestCaughtUpEmbedded(t *testing.T) {
	e, c, h, node := caughtUpCluster(t)
	name := node.Name()

	ok, detail, err := h.CaughtUp(t.Context(), name)
	require.NoError(t, err)
	require.True(t, ok, detail)

	// Enter maintenance: hand off, quiesce, fence.
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	require.NoError(t, h.Run(ctx, name, Scope{}))
	require.NoError(t, node.Quiesce(ctx))
	require.NoError(t, node.Fence(ctx))

	// The others move on without it.
	js, closeJS := appJetStream(t, e, name)
	defer closeJS()
	// Far more than ReadyLag, so that a node declared caught up too early
	// shows in its stream.
	const published = 500
	for i := range published {
		// Right after the hand-off a publish can go unanswered while the
		// new stream leader settles: retry, with a message id so that a
		// retried publish the stream did store is not stored twice.
		var err error
		for range 20 {
			if _, err = js.Publish(ctx, fmt.Sprintf("demo.catchup.%d", i), []byte("x"),
				jetstream.WithMsgID(fmt.Sprintf("catchup-%d", i))); err == nil {
				break
			}
		}
		require.NoError(t, err)
	}
	stream, err := js.Stream(ctx, DemoStream)
	require.NoError(t, err)
	info, err := stream.Info(ctx)
	require.NoError(t, err)
	leaderSeq := info.State.LastSeq
	require.GreaterOrEqual(t, leaderSeq, uint64(published))

	tests := []struct {
		name       string
		step       func(context.Context) error
		wantDetail string
	}{
		{name: "quiesced and fenced", wantDetail: "JetStream off"},
		{name: "unfenced, still quiesced", step: node.Unfence, wantDetail: "JetStream off"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.step != nil {
				require.NoError(t, tt.step(ctx))
			}
			ok, detail, err := h.CaughtUp(t.Context(), name)
			require.NoError(t, err)
			assert.False(t, ok)
			assert.Contains(t, detail, tt.wantDetail)

			v, err := c.Sweep(t.Context())
			require.NoError(t, err)
			groups := v.GroupsOf(name)
			require.NotEmpty(t, groups, "%s is still assigned its groups", name)
			for _, g := range groups {
				p, _ := peerOf(g, name)
				assert.False(t, p.Current, "%s: %s must not look current", g.Name, name)
			}
		})
	}

	t.Run("resumed", func(t *testing.T) {
		require.NoError(t, node.Resume(ctx))
		resumed := time.Now()
		deadline := time.Now().Add(30 * time.Second)
		for {
			ok, detail, err := h.CaughtUp(t.Context(), name)
			require.NoError(t, err)
			if ok {
				// Read the node's own copy of the stream at once, from
				// the server itself: not from the view that said ok.
				seq := ownLastSeq(t, node, DemoStream)
				t.Logf("caught up at stream sequence %d of %d", seq, leaderSeq)
				assert.GreaterOrEqual(t, seq+ReadyLag, leaderSeq, "declared caught up with its stream behind")
				break
			}
			require.True(t, time.Now().Before(deadline), "not caught up after 30s: %s", detail)
			select {
			case <-t.Context().Done():
				require.FailNow(t, "test context ended")
			case <-time.After(20 * time.Millisecond):
			}
		}
		t.Logf("caught up %s after resume", time.Since(resumed).Round(time.Millisecond))

		v, err := c.Sweep(t.Context())
		require.NoError(t, err)
		assert.Len(t, v.GroupsOf(name), 3)
	})
}

// ownLastSeq is the last sequence of node's own copy of the stream, as its
// server reports it in process.
func ownLastSeq(t *testing.T, node *EmbeddedNode, stream string) uint64 {
	t.Helper()
	srv := node.Server()
	require.NotNil(t, srv, "%s is not running", node.Name())
	jsz, err := srv.Jsz(&server.JSzOptions{Account: AppAccount, Streams: true})
	require.NoError(t, err)
	for _, a := range jsz.AccountDetails {
		for _, s := range a.Streams {
			if s.Name == stream {
				return s.State.LastSeq
			}
		}
	}
	require.FailNow(t, "no stream", "%s has no stream %s", node.Name(), stream)
	return 0
}

// A maintenance in and out within the window in which callers share sweeps
// must not read as caught up from the view swept before it, nor while the
// node's resumed JetStream has not heard from its leaders yet (its log on
// disk alone is complete). Each time CaughtUp says yes, the node's own Raft
// layer, read from the server in process, knows the leader of every group.
func TestCaughtUpAfterAQuickRoundTrip(t *testing.T) {
	_, _, h, node := caughtUpCluster(t)
	name := node.Name()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	require.NoError(t, h.Run(ctx, name, Scope{}))
	ok, detail, err := h.CaughtUp(ctx, name)
	require.NoError(t, err)
	require.True(t, ok, "before the round trip: %s", detail)

	start := time.Now()
	require.NoError(t, node.Quiesce(ctx))
	require.NoError(t, node.Fence(ctx))
	require.NoError(t, node.Unfence(ctx))
	require.NoError(t, node.Resume(ctx))
	t.Logf("quiesced, fenced, unfenced and resumed in %s", time.Since(start).Round(time.Millisecond))
	looks := 0
	for {
		ok, detail, err := h.CaughtUp(ctx, name)
		require.NoError(t, err)
		looks++
		if ok {
			for _, acc := range []string{SystemAccount, AppAccount} {
				rz := node.Server().Raftz(&server.RaftzOptions{AccountFilter: acc})
				require.NotNil(t, rz)
				for _, groups := range *rz {
					for id, g := range groups {
						assert.NotEmpty(t, g.Leader, "caught up while group %s knows no leader", id)
						assert.True(t, g.EverHadLeader, "caught up while group %s never heard from a leader", id)
					}
				}
			}
			break
		}
		t.Logf("look %d: %s", looks, detail)
		select {
		case <-ctx.Done():
			require.FailNow(t, "not caught up", "after %s: %s", time.Since(start).Round(time.Millisecond), detail)
		case <-time.After(10 * time.Millisecond):
		}
	}
	t.Logf("caught up %s after the round trip began, at look %d", time.Since(start).Round(time.Millisecond), looks)
}

// sinceRecorder is a view source that records the since it is asked for.
type sinceRecorder struct {
	v     *View
	since []time.Time
}

func (r *sinceRecorder) View(context.Context) (*View, error) { return r.v, nil }

func (r *sinceRecorder) ViewSince(_ context.Context, since time.Time) (*View, error) {
	r.since = append(r.since, since)
	return r.v, nil
}

// CaughtUp asks for a view swept after the call began, never for one a
// little older that an earlier caller may have had swept: that one may
// show the node as it was before the change the caller asks about.
func TestCaughtUpSweepsAfterTheCall(t *testing.T) {
	r := &sinceRecorder{v: &View{}}
	h := &HandOff{Views: r, Logger: zerolog.Nop()}
	before := time.Now()
	_, _, err := h.CaughtUp(t.Context(), "n1")
	require.NoError(t, err)
	require.Len(t, r.since, 1)
	assert.False(t, r.since[0].Before(before), "asked for a view swept from %s, %s before the call",
		r.since[0].Format(time.StampMicro), before.Sub(r.since[0]))
}

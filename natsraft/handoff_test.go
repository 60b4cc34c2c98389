package natsraft

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// viewFunc is a ViewSource made of a function.
type viewFunc func(ctx context.Context) (*View, error)

func (f viewFunc) View(ctx context.Context) (*View, error) { return f(ctx) }

func TestStepDownRequestJSON(t *testing.T) {
	// What NATS decodes the body into (jetstream_api.go); the preferred
	// peer must survive the round trip.
	body, err := json.Marshal(server.JSApiLeaderStepdownRequest{Placement: &server.Placement{Preferred: "nats-1"}})
	require.NoError(t, err)
	assert.JSONEq(t, `{"placement":{"preferred":"nats-1"}}`, string(body))
}

func TestPreferredPeer(t *testing.T) {
	nodes := []Node{
		{Name: "n0", Reachable: true, JetStream: true},
		{Name: "n1", Reachable: true, JetStream: true},
		{Name: "n2", Reachable: true, JetStream: true},
		{Name: "n3", Reachable: true, JetStream: false},
		{Name: "n4", Reachable: false},
		{Name: "stopping", Reachable: true, JetStream: true, Stopping: true},
	}
	tests := []struct {
		name     string
		peers    []Peer
		leads    map[string]int
		avoid    []string
		draining []string
		leaving  bool
		want     string
	}{
		{
			name:  "the current peer that leads least",
			peers: []Peer{{Name: "n0", Leader: true, Current: true}, {Name: "n1", Current: true}, {Name: "n2", Current: true}},
			leads: map[string]int{"n1": 3, "n2": 1},
			want:  "n2",
		},
		{
			name:  "ties go by name",
			peers: []Peer{{Name: "n0", Leader: true, Current: true}, {Name: "n2", Current: true}, {Name: "n1", Current: true}},
			want:  "n1",
		},
		{
			name:  "not current, offline, quiesced and unreachable peers are skipped",
			peers: []Peer{{Name: "n0", Leader: true, Current: true}, {Name: "n1"}, {Name: "n2", Current: true, Offline: true}, {Name: "n3", Current: true}, {Name: "n4", Current: true}},
		},
		{
			name: "a current peer before a healthy one that leads less",
			peers: []Peer{{Name: "n0", Leader: true, Current: true}, {Name: "n1", Current: true, Healthy: true},
				{Name: "n2", Healthy: true, Lag: 5}},
			leads: map[string]int{"n1": 3},
			want:  "n1",
		},
		{
			name:  "no current peer: a healthy one",
			peers: []Peer{{Name: "n0", Leader: true, Current: true}, {Name: "n1", Lag: HealthyLag + 1}, {Name: "n2", Healthy: true, Lag: 5}},
			want:  "n2",
		},
		{
			name:  "a pending peer is skipped",
			peers: []Peer{{Name: "n0", Leader: true, Current: true}, {Name: "n1", Current: true, Healthy: true, Pending: true}},
		},
		{
			name:  "a peer the view has no node for is trusted to its leader",
			peers: []Peer{{Name: "n0", Leader: true, Current: true}, {Name: "far-away", Current: true}},
			want:  "far-away",
		},
		{
			name:  "a peer entering maintenance itself only when no other can",
			peers: []Peer{{Name: "n0", Leader: true, Current: true}, {Name: "n1", Current: true}, {Name: "n2", Healthy: true, Lag: 5}},
			avoid: []string{"n1"},
			want:  "n2",
		},
		{
			name:  "an avoided peer when it is the only one",
			peers: []Peer{{Name: "n0", Leader: true, Current: true}, {Name: "n1", Current: true}},
			avoid: []string{"n1"},
			want:  "n1",
		},
		{
			name:  "a single replica has no one to hand off to",
			peers: []Peer{{Name: "n0", Leader: true, Current: true}},
		},
		{
			// n1 leads least, but would hand it back: the two draining
			// pods would pass it back and forth.
			name:     "a drain never picks a draining peer",
			peers:    []Peer{{Name: "n0", Leader: true, Current: true}, {Name: "n1", Current: true}, {Name: "n2", Current: true}},
			leads:    map[string]int{"n2": 5},
			draining: []string{"n1"},
			want:     "n2",
		},
		{
			name:     "nor when it is the only one",
			peers:    []Peer{{Name: "n0", Leader: true, Current: true}, {Name: "n1", Current: true}, {Name: "n2", Current: true, Offline: true}},
			draining: []string{"n1"},
		},
		{
			name:     "a node that leaves takes a draining peer when no other can",
			peers:    []Peer{{Name: "n0", Leader: true, Current: true}, {Name: "n1", Current: true}, {Name: "n2", Current: true, Offline: true}},
			draining: []string{"n1"},
			leaving:  true,
			want:     "n1",
		},
		{
			name:     "and another first",
			peers:    []Peer{{Name: "n0", Leader: true, Current: true}, {Name: "n1", Current: true}, {Name: "n2", Healthy: true, Lag: 5}},
			draining: []string{"n1"},
			leaving:  true,
			want:     "n2",
		},
		{
			// n1 leads least, but its pod is being stopped.
			name:  "a peer whose pod is stopping only when no other can",
			peers: []Peer{{Name: "n0", Leader: true, Current: true}, {Name: "stopping", Current: true}, {Name: "n2", Healthy: true, Lag: 5}},
			leads: map[string]int{"n2": 5},
			want:  "n2",
		},
		{
			name:  "a stopping peer when it is the only one",
			peers: []Peer{{Name: "n0", Leader: true, Current: true}, {Name: "stopping", Current: true}},
			want:  "stopping",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := &View{Nodes: nodes, Groups: []Group{{Kind: KindStream, Name: "s", Leader: "n0", Peers: tt.peers}}}
			leads := tt.leads
			if leads == nil {
				leads = map[string]int{}
			}
			s := Scope{Avoid: tt.avoid, Draining: tt.draining, Leaving: tt.leaving}
			assert.Equal(t, tt.want, preferredPeer(v, v.Groups[0], "n0", leads, s))
		})
	}
}

// TestHandOffRefuses covers the cases Run must refuse without sending
// a single request.
func TestHandOffRefuses(t *testing.T) {
	healthy := []Node{{Name: "n0", Reachable: true, JetStream: true}, {Name: "n1", Reachable: true, JetStream: true}}
	tests := []struct {
		name    string
		node    string
		scope   Scope
		view    *View
		viewErr error
		wantErr string // "" means success
	}{
		{
			name: "leads nothing",
			view: &View{Nodes: healthy, Groups: []Group{{Kind: KindMeta, Name: MetaGroupName, Leader: "n1",
				Peers: []Peer{{Name: "n0", Current: true}, {Name: "n1", Leader: true, Current: true}}}}},
		},
		{
			name: "a group of one replica stays",
			view: &View{Nodes: healthy, Groups: []Group{{Kind: KindStream, Name: "r1", Account: "APP", Stream: "r1", Leader: "n0",
				Peers: []Peer{{Name: "n0", Leader: true, Current: true}}}}},
		},
		{
			name: "no other current peer",
			view: &View{Nodes: healthy, Groups: []Group{{Kind: KindStream, Name: "solo", Account: "APP", Stream: "solo", Leader: "n0",
				Peers: []Peer{{Name: "n0", Leader: true, Current: true}, {Name: "n1", Lag: 4}}}}},
			wantErr: "no other healthy peer to take over stream solo",
		},
		{
			name:  "leaving: a group of two replicas, the other catching up, stays",
			scope: Scope{Leaving: true},
			view: &View{Nodes: healthy, Groups: []Group{{Kind: KindStream, Name: "pair", Account: "APP", Stream: "pair", Leader: "n0",
				Peers: []Peer{{Name: "n0", Leader: true, Current: true}, {Name: "n1", Healthy: true, Lag: 3}}}}},
		},
		{
			name:  "leaving: a group of three with one member offline stays",
			scope: Scope{Leaving: true},
			view: &View{Nodes: append(healthy, Node{Name: "n2"}), Groups: []Group{{Kind: KindStream, Name: "trio", Account: "APP", Stream: "trio", Leader: "n0",
				Peers: []Peer{{Name: "n0", Leader: true, Current: true}, {Name: "n1", Current: true, Healthy: true}, {Name: "n2", Offline: true}}}}},
		},
		{
			name:  "leaving: a group of three with one member unreachable stays",
			scope: Scope{Leaving: true},
			view: &View{Nodes: append(healthy, Node{Name: "n2", Error: "connection refused"}), Groups: []Group{{Kind: KindStream, Name: "trio", Account: "APP", Stream: "trio", Leader: "n0",
				Peers: []Peer{{Name: "n0", Leader: true, Current: true}, {Name: "n1", Current: true, Healthy: true}, {Name: "n2", Current: true}}}}},
		},
		{
			name:    "node unreachable",
			view:    &View{Nodes: []Node{{Name: "n0", Error: "connection refused"}}},
			wantErr: "node n0 unreachable",
		},
		{
			name:    "node unknown",
			node:    "n9",
			view:    &View{Nodes: healthy},
			wantErr: "node n9 not in the view",
		},
		{
			name:    "no view",
			viewErr: ErrNoNodeReachable,
			wantErr: ErrNoNodeReachable.Error(),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var dials atomic.Int64
			h := &HandOff{
				Views: viewFunc(func(context.Context) (*View, error) { return tt.view, tt.viewErr }),
				Dial: func(string, ...string) (*nats.Conn, error) {
					dials.Add(1)
					return nil, errors.New("must not dial")
				},
				Logger: zerolog.Nop(),
			}
			err := h.Run(t.Context(), cmp.Or(tt.node, "n0"), tt.scope)
			if tt.wantErr == "" {
				require.NoError(t, err)
			} else {
				require.ErrorContains(t, err, tt.wantErr)
			}
			if tt.viewErr != nil {
				assert.ErrorIs(t, err, tt.viewErr)
			}
			assert.Zero(t, dials.Load())
		})
	}
}

func TestHandOffGivesUp(t *testing.T) {
	view := &View{
		Nodes: []Node{{Name: "n0", Reachable: true, JetStream: true}, {Name: "n1", Reachable: true, JetStream: true}},
		Groups: []Group{{Kind: KindStream, Name: "s", Account: "APP", Stream: "s", Leader: "n0",
			Peers: []Peer{{Name: "n0", Leader: true, Current: true}, {Name: "n1", Current: true}}}},
	}
	dialErr := errors.New("no servers available")
	var dials atomic.Int64
	var avoided []string
	h := &HandOff{
		Views: viewFunc(func(context.Context) (*View, error) { return view, nil }),
		Dial: func(account string, avoid ...string) (*nats.Conn, error) {
			dials.Add(1)
			avoided = avoid
			assert.Equal(t, "APP", account, "a stream steps down from its own account")
			return nil, dialErr
		},
		Logger: zerolog.Nop(),
	}
	err := h.Run(t.Context(), "n0", Scope{})
	require.ErrorIs(t, err, dialErr)
	assert.ErrorContains(t, err, fmt.Sprintf("stream s still led after %d step downs", maxStepDownAttempts))
	assert.EqualValues(t, maxStepDownAttempts, dials.Load())
	assert.Equal(t, []string{"n0"}, avoided, "connections avoid the node handed off")
}

// demoWriter publishes to the demo stream synchronously, one message after
// the other, and records when each was acknowledged.
type demoWriter struct {
	cancel context.CancelFunc
	done   chan struct{}

	mu   sync.Mutex
	acks []time.Time
	errs []error
}

func startDemoWriter(t *testing.T, e *Embedded) *demoWriter {
	t.Helper()
	nc, err := e.Dial(AppAccount)
	require.NoError(t, err)
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	w := &demoWriter{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(w.done)
		defer nc.Close()
		for i := 0; ctx.Err() == nil; i++ {
			// A publish in flight while its stream changes leader can go
			// unanswered; like a real client, give up on it soon and retry.
			pctx, pcancel := context.WithTimeout(ctx, 500*time.Millisecond)
			_, err := js.Publish(pctx, fmt.Sprintf("demo.w.%d", i), []byte("x"))
			pcancel()
			w.mu.Lock()
			if err == nil {
				w.acks = append(w.acks, time.Now())
			} else if ctx.Err() == nil {
				w.errs = append(w.errs, err)
			}
			w.mu.Unlock()
		}
	}()
	t.Cleanup(w.stop)
	return w
}

func (w *demoWriter) stop() {
	w.cancel()
	<-w.done
}

func (w *demoWriter) count() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.acks)
}

// maxGap is the longest time between two acknowledgements, from the
// first one after from.
func (w *demoWriter) maxGap(from time.Time) time.Duration {
	w.mu.Lock()
	defer w.mu.Unlock()
	var gap time.Duration
	var prev time.Time
	for _, at := range w.acks {
		if at.Before(from) {
			prev = at
			continue
		}
		if !prev.IsZero() {
			gap = max(gap, at.Sub(prev))
		}
		prev = at
	}
	return gap
}

// leadEverything moves every group's leadership to node, so that the
// hand-off has meta, a stream and a consumer to move.
func leadEverything(t *testing.T, c *Collector, e *Embedded, node string) {
	t.Helper()
	h := &HandOff{Views: c, Dial: e.Dial, Logger: zerolog.Nop()}
	conns := &connCache{dial: e.Dial}
	defer conns.close()
	waitView(t, c, 30*time.Second, node+" to lead every replicated group", func(v *View) bool {
		done := true
		for _, g := range v.Groups {
			if len(g.Peers) < 2 || g.Leader == node {
				continue
			}
			done = false
			if p, ok := peerOf(g, node); ok && p.Current && g.Leader != "" {
				_ = h.stepDown(t.Context(), conns, stepDown{group: g, to: node})
			}
		}
		return done
	})
}

func TestHandOffEmbedded(t *testing.T) {
	e, c := raftCluster(t)
	waitView(t, c, 15*time.Second, "a healthy view", healthyDemo)
	h := &HandOff{Views: c, Dial: e.Dial, Logger: zerolog.Nop()}
	const node = "nats-1"

	t.Run("node leading meta, stream and consumer", func(t *testing.T) {
		leadEverything(t, c, e, node)
		w := startDemoWriter(t, e)
		require.Eventually(t, func() bool { return w.count() >= 20 }, 10*time.Second, 10*time.Millisecond, "writes flow")

		ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
		defer cancel()
		start := time.Now()
		require.NoError(t, h.Run(ctx, node, Scope{Leaving: true}))
		took := time.Since(start)
		acked := w.count()

		v, err := c.Sweep(t.Context())
		require.NoError(t, err)
		n, _ := v.Node(node)
		assert.Zero(t, n.Leads)
		for _, g := range v.Groups {
			assert.NotEmpty(t, g.Leader, g.Name)
			assert.NotEqual(t, node, g.Leader, g.Name)
		}

		require.Eventually(t, func() bool { return w.count() >= acked+50 }, 10*time.Second, 10*time.Millisecond,
			"writes continue after the hand-off")
		gap := w.maxGap(start.Add(-time.Second))
		w.stop()
		t.Logf("hand-off took %s; max write gap around it %s; %d writes, %d errors",
			took.Round(time.Millisecond), gap.Round(time.Millisecond), w.count(), len(w.errs))
		assert.Less(t, took, 5*time.Second)
		assert.Less(t, gap, 2*time.Second)
	})

	t.Run("a single replica stays, everything else moves", func(t *testing.T) {
		js, closeJS := appJetStream(t, e)
		defer closeJS()
		_, err := js.CreateStream(t.Context(), jetstream.StreamConfig{Name: "solo", Subjects: []string{"solo.>"}, Replicas: 1})
		require.NoError(t, err)

		v := waitView(t, c, 15*time.Second, "solo to have a leader", func(v *View) bool {
			g, ok := lookupGroup(v, "solo")
			return ok && g.Leader != ""
		})
		owner := groupNamed(t, v, "solo").Leader
		leadEverything(t, c, e, owner)

		ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
		defer cancel()
		require.NoError(t, h.Run(ctx, owner, Scope{}), "a group of one replica has nobody to move to and does not stop the hand-off")

		v, err = c.Sweep(t.Context())
		require.NoError(t, err)
		for _, g := range v.Groups {
			if g.Name == "solo" {
				assert.Equal(t, owner, g.Leader)
			} else {
				assert.NotEqual(t, owner, g.Leader, "%s moved", g.Name)
			}
		}
	})
}

// TestHandOffDialsAroundFencedNodes: a hand-off's step downs must not go
// through a node fenced for maintenance (its client port answers, its
// routes are cut, so a request through it never reaches a leader): found
// by the walk (seed 1, step 10), a forced second pod stuck in HandingOff.
func TestHandOffDialsAroundFencedNodes(t *testing.T) {
	v := &View{Nodes: []Node{
		{Name: "nats-0", Reachable: true, JetStream: false}, // fenced and quiesced
		{Name: "nats-1", Reachable: true, JetStream: true},  // handing off
		{Name: "nats-2", Reachable: true, JetStream: true},
		{Name: "nats-3", Reachable: false},
	}}
	require.Equal(t, []string{"nats-0", "nats-3"}, outOfReach(v, "nats-1"))

	var dialled [][]string
	c := &connCache{dial: func(account string, avoid ...string) (*nats.Conn, error) {
		dialled = append(dialled, append([]string(nil), avoid...))
		return nil, errors.New("no server in this test")
	}}
	c.setAvoid(append([]string{"nats-1"}, outOfReach(v, "nats-1")...))
	_, err := c.get(AppAccount)
	require.Error(t, err)
	require.Equal(t, [][]string{{"nats-0", "nats-1", "nats-3"}}, dialled)
}

// TestLeaderlessAmongNamesOrphans: a group the hand-off moved that has no
// leader is waited for while another member can win its election, and
// orphaned once every other member is unreachable or has JetStream off
// (the rest of a forced dc maintenance quiesced meanwhile).
func TestLeaderlessAmongNamesOrphans(t *testing.T) {
	v := diagCluster()
	leaderless(v.group("s"), diagAt)
	leaderless(v.group("s/c"), diagAt)
	moved := map[groupKey]bool{keyOf(v.group("s")): true, keyOf(v.group("s/c")): true}

	electing, orphaned := leaderlessAmong(v, moved, "n0")
	assert.Equal(t, []string{"stream s", "consumer s/c"}, electing)
	assert.Empty(t, orphaned)

	v.node("n1").JetStream = false
	down(v, "n2")
	electing, orphaned = leaderlessAmong(v, moved, "n0")
	assert.Equal(t, []string{"stream s", "consumer s/c"}, electing)
	assert.Equal(t, []string{"stream s", "consumer s/c"}, orphaned)

	delete(moved, keyOf(v.group("s/c")))
	_, orphaned = leaderlessAmong(v, moved, "n0")
	assert.Equal(t, []string{"stream s"}, orphaned, "only the groups it moved")
}

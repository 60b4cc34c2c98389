package natsraft

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestGiveBackMany: a node that led many groups (a stream and sixty
// consumers, besides demo's) is handed off and then gets every one of them
// back in one GiveBack; a group that is gone and one the node is no member
// of are reported, not tried.
func TestGiveBackMany(t *testing.T) {
	e, c := raftCluster(t)
	waitView(t, c, 15*time.Second, "a healthy view", healthyDemo)
	h := &HandOff{Views: c, Dial: e.Dial, Logger: zerolog.Nop()}
	const node, consumers = "nats-1", 60

	js, closeJS := appJetStream(t, e)
	defer closeJS()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	s, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "many", Subjects: []string{"many.>"}, Replicas: 3})
	require.NoError(t, err)
	for i := range consumers {
		_, err := s.CreateConsumer(ctx, jetstream.ConsumerConfig{Durable: fmt.Sprintf("c%02d", i), AckPolicy: jetstream.AckExplicitPolicy})
		require.NoError(t, err)
	}
	// A group of one replica on another node: node is no member of it.
	other := "nats-2"
	_, err = js.CreateStream(ctx, jetstream.StreamConfig{Name: "elsewhere", Subjects: []string{"elsewhere.>"}, Replicas: 1})
	require.NoError(t, err)
	v := waitView(t, c, 30*time.Second, "every group led and every replica current", func(v *View) bool {
		return len(v.Groups) == 3+1+consumers+1 && ledAndCurrent(v)
	})
	if g := groupNamed(t, v, "elsewhere"); g.Leader == node {
		other = "" // placed on node itself: no non-member case in this run
	}

	leadEverything(t, c, e, node)
	led, err := h.Leaders(ctx, node)
	require.NoError(t, err)
	require.Len(t, led, 4+consumers, "the roles snapshot: meta, demo, demo's consumer, many and its consumers")
	require.NoError(t, h.Run(ctx, node, Scope{}))
	v, err = c.Sweep(ctx)
	require.NoError(t, err)
	for _, name := range led {
		require.NotEqual(t, node, groupNamed(t, v, name).Leader, "%s handed off", name)
	}

	asked := append(slices.Clone(led), "many/gone")
	if other != "" {
		asked = append(asked, "elsewhere")
	}
	begin := time.Now()
	given, notGiven, err := h.GiveBack(ctx, node, asked)
	require.NoError(t, err)
	t.Logf("gave %d leaderships back in %s", len(given), time.Since(begin).Round(time.Millisecond))
	assert.ElementsMatch(t, led, given)
	want := []NotGivenBack{{Group: "many/gone", Why: NotBackGone}}
	if other != "" {
		want = append(want, NotGivenBack{Group: "elsewhere", Why: NotBackNotMember})
	}
	assert.Equal(t, want, notGiven)

	v, err = c.Sweep(ctx)
	require.NoError(t, err)
	for _, name := range led {
		assert.Equal(t, node, groupNamed(t, v, name).Leader, "%s given back", name)
	}
}

// TestGiveBackLeaderlessGroup: a group with no leader (its quorum lost)
// holds the give-back up for giveBackTimeout at most, and is reported with
// why; a group the node leads already counts as given back.
func TestGiveBackLeaderlessGroup(t *testing.T) {
	defer func(d time.Duration) { giveBackTimeout = d }(giveBackTimeout)
	giveBackTimeout = 300 * time.Millisecond
	peers := func(leader string) []Peer {
		var out []Peer
		for _, n := range []string{"nats-0", "nats-1", "nats-2"} {
			out = append(out, Peer{Name: n, Leader: n == leader, Current: true, Healthy: true})
		}
		return out
	}
	v := &View{
		Nodes: []Node{
			{Name: "nats-0", Reachable: true, JetStream: true},
			{Name: "nats-1", Reachable: true, JetStream: true},
			{Name: "nats-2", Reachable: true, JetStream: true},
		},
		Groups: []Group{
			{Kind: KindStream, Name: "lost", Account: AppAccount, Stream: "lost", Peers: peers("")},
			{Kind: KindStream, Name: "mine", Account: AppAccount, Stream: "mine", Leader: "nats-1", Peers: peers("nats-1")},
		},
	}
	looks := 0
	h := &HandOff{Views: viewFunc(func(context.Context) (*View, error) { looks++; return v, nil }), Logger: zerolog.Nop(),
		Dial: func(string, ...string) (*nats.Conn, error) { return nil, errors.New("no step down expected") }}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	given, notGiven, err := h.GiveBack(ctx, "nats-1", []string{"lost", "mine"})
	require.NoError(t, err)
	assert.Equal(t, []string{"mine"}, given)
	require.Len(t, notGiven, 1)
	assert.Equal(t, "lost", notGiven[0].Group)
	assert.Contains(t, notGiven[0].Why, "has had no leader")
	assert.NoError(t, ctx.Err(), "gave up on the group, not on the caller's deadline")
	assert.Greater(t, looks, 2, "looked again while waiting for a leader")
}

// TestGiveBackRounds drives GiveBack over scripted views, one per look:
// after a lost sweep it looks again rather than step the groups down a
// second time on the view it acted on, and a node that stops serving gets
// nothing more back.
func TestGiveBackRounds(t *testing.T) {
	defer func(d time.Duration) { giveBackTimeout = d }(giveBackTimeout)
	giveBackTimeout = 2 * time.Second
	peers := []Peer{{Name: "nats-0", Current: true, Healthy: true}, {Name: "nats-1", Current: true, Healthy: true},
		{Name: "nats-2", Current: true, Healthy: true}}
	view := func(leader string, serving bool) *View {
		return &View{
			Nodes: []Node{
				{Name: "nats-0", Reachable: true, JetStream: true},
				{Name: "nats-1", Reachable: serving, JetStream: serving},
				{Name: "nats-2", Reachable: true, JetStream: true},
			},
			Groups: []Group{{Kind: KindStream, Name: "s", Account: AppAccount, Stream: "s", Leader: leader, Peers: peers}},
		}
	}
	for _, tc := range []struct {
		name      string
		looks     []*View // nil: a lost sweep
		given     []string
		why       string
		stepDowns int
	}{
		{"a lost sweep is swept again", []*View{view("nats-0", true), nil, nil, view("nats-1", true)}, []string{"s"}, "", 1},
		{"a node that stops serving", []*View{view("nats-0", true), view("nats-0", false)}, nil, NotBackNotHealthy, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			looks, dials := 0, 0
			h := &HandOff{Logger: zerolog.Nop(),
				Views: viewFunc(func(context.Context) (*View, error) {
					v := tc.looks[min(looks, len(tc.looks)-1)]
					looks++
					if v == nil {
						return nil, errors.New("a peer did not answer")
					}
					return v, nil
				}),
				// Every step down fails at the dial: what the test counts.
				Dial: func(string, ...string) (*nats.Conn, error) { dials++; return nil, errors.New("no server in this test") }}
			ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
			defer cancel()
			given, notGiven, err := h.GiveBack(ctx, "nats-1", []string{"s"})
			require.NoError(t, err)
			assert.Equal(t, tc.given, given)
			if tc.why != "" {
				assert.Equal(t, []NotGivenBack{{Group: "s", Why: tc.why}}, notGiven)
			} else {
				assert.Empty(t, notGiven)
			}
			assert.Equal(t, tc.stepDowns, dials, "step downs")
			assert.NoError(t, ctx.Err())
		})
	}
}

// TestLeaderMovesDialAroundFencedNodes: a balance's move, a give-back and
// an evacuation's stream moves send their requests through a connection
// that avoids a node fenced or quiesced for maintenance, whose client port
// may accept it while its routes are cut (every request would go nowhere).
func TestLeaderMovesDialAroundFencedNodes(t *testing.T) {
	v := diagCluster()
	v.node("n2").JetStream = false // n2 fenced and quiesced
	var mu sync.Mutex
	var dialled [][]string
	dial := func(account string, avoid ...string) (*nats.Conn, error) {
		mu.Lock()
		defer mu.Unlock()
		dialled = append(dialled, slices.Clone(avoid))
		return nil, errors.New("no server in this test")
	}
	h := &HandOff{Views: viewFunc(func(context.Context) (*View, error) { return v, nil }), Dial: dial, Logger: zerolog.Nop()}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	account := v.group("s").Account
	assert.Error(t, h.MoveLeader(ctx, LeaderMove{Group: "s", Kind: KindStream, Account: account, From: "n0", To: "n1"}))
	_, _, err := h.GiveBack(ctx, "n1", []string{"s"})
	require.NoError(t, err)
	_, err = h.Restore(ctx, "n1", []StreamRef{{Account: account, Name: "s"}})
	assert.Error(t, err)
	mu.Lock()
	defer mu.Unlock()
	require.GreaterOrEqual(t, len(dialled), 3)
	for _, avoid := range dialled {
		assert.Equal(t, []string{"n2"}, avoid, "only the fenced n2 is avoided")
	}
}

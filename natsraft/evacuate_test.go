package natsraft

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseStreamRef(t *testing.T) {
	s, err := ParseStreamRef("APP/orders")
	require.NoError(t, err)
	assert.Equal(t, StreamRef{Account: "APP", Name: "orders"}, s)
	assert.Equal(t, "APP/orders", s.String())
	for _, bad := range []string{"", "APP", "/orders", "APP/"} {
		_, err := ParseStreamRef(bad)
		assert.Error(t, err, bad)
	}
}

// evacuateCluster starts a real cluster with a healthy view and returns
// its collector, a HandOff over it, a JetStream client of the APP account
// and a context bounding the test.
func evacuateCluster(t *testing.T) (*Collector, *HandOff, jetstream.JetStream, context.Context) {
	t.Helper()
	e, c := raftCluster(t)
	waitView(t, c, 15*time.Second, "a healthy view", healthyDemo)
	h := &HandOff{Views: c, Dial: e.Dial, Logger: zerolog.Nop()}
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	t.Cleanup(cancel)
	js, closeJS := appJetStream(t, e)
	t.Cleanup(closeJS)
	return c, h, js, ctx
}

// afterCreate are the options of a publish right after the stream's
// creation: until the new leader's subscription has reached the server of
// the connection over the routes, a publish meets no responders, and
// nats.go's two retries 250 ms apart are not always enough on a loaded
// machine ("nats: no response from stream").
var afterCreate = []jetstream.PublishOpt{jetstream.WithRetryWait(10 * time.Millisecond), jetstream.WithRetryAttempts(200)}

// TestEvacuateAndRestore moves a stream of one replica, with its messages
// and its durable consumer, off its node and back, on a real cluster.
func TestEvacuateAndRestore(t *testing.T) {
	c, h, js, ctx := evacuateCluster(t)
	st, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "solo", Subjects: []string{"solo.>"}, Replicas: 1})
	require.NoError(t, err)
	const n = 500
	for i := range n {
		_, err := js.Publish(ctx, "solo.x", []byte{byte(i)}, afterCreate...)
		require.NoError(t, err)
	}
	_, err = st.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{Durable: "reader", AckPolicy: jetstream.AckExplicitPolicy})
	require.NoError(t, err)
	v := waitView(t, c, 15*time.Second, "solo led", func(v *View) bool {
		g, ok := lookupGroup(v, "solo")
		return ok && g.Leader != ""
	})
	owner := groupNamed(t, v, "solo").Leader

	singles, err := h.Singles(ctx, owner)
	require.NoError(t, err)
	assert.Contains(t, singles, StreamRef{Account: AppAccount, Name: "solo"})

	moved, err := h.Evacuate(ctx, owner, nil, nil)
	require.NoError(t, err)
	assert.Equal(t, []StreamRef{{Account: AppAccount, Name: "solo"}}, moved)
	info, err := js.Stream(ctx, "solo")
	require.NoError(t, err)
	require.NotNil(t, info.CachedInfo().Cluster)
	away := info.CachedInfo().Cluster.Leader
	assert.NotEqual(t, owner, away, "moved off")
	assert.Equal(t, 1, info.CachedInfo().Config.Replicas, "one replica again")
	assert.Equal(t, uint64(n), info.CachedInfo().State.Msgs, "every message moved with it")
	again, err := h.Evacuate(ctx, owner, nil, nil)
	require.NoError(t, err)
	assert.Empty(t, again, "nothing left to move: idempotent")

	restored, err := h.Restore(ctx, owner, moved)
	require.NoError(t, err)
	assert.Equal(t, moved, restored)
	info, err = js.Stream(ctx, "solo")
	require.NoError(t, err)
	assert.Equal(t, owner, info.CachedInfo().Cluster.Leader, "back where it was")
	assert.Equal(t, 1, info.CachedInfo().Config.Replicas)
	assert.Equal(t, uint64(n), info.CachedInfo().State.Msgs)
	cons, err := st.Consumer(ctx, "reader")
	require.NoError(t, err)
	ci, err := cons.Info(ctx)
	require.NoError(t, err)
	assert.Equal(t, uint64(n), ci.NumPending, "the durable consumer followed its stream")

	gone, err := h.Restore(ctx, owner, []StreamRef{{Account: AppAccount, Name: "no-such-stream"}})
	require.NoError(t, err)
	assert.Empty(t, gone, "a stream that is gone is not restored")
}

// TestEvacuateFinishesAMoveCutShort checks a move cut short after it
// raised the stream's replicas (the caller killed): the stream is no
// longer of one replica, so only the caller's record names it, and an
// evacuation told of it (unfinished) moves it off.
func TestEvacuateFinishesAMoveCutShort(t *testing.T) {
	c, h, js, ctx := evacuateCluster(t)
	_, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "cut", Subjects: []string{"cut.>"}, Replicas: 1})
	require.NoError(t, err)
	for i := range 50 {
		_, err := js.Publish(ctx, "cut.x", []byte{byte(i)}, afterCreate...)
		require.NoError(t, err)
	}
	v := waitView(t, c, 15*time.Second, "cut led", func(v *View) bool {
		g, ok := lookupGroup(v, "cut")
		return ok && g.Leader != ""
	})
	owner := groupNamed(t, v, "cut").Leader
	s := StreamRef{Account: AppAccount, Name: "cut"}
	_, err = h.grow(ctx, js, s, 2) // the first half of a move, then the caller is gone
	require.NoError(t, err)
	waitView(t, c, 15*time.Second, "cut seen with two replicas", func(v *View) bool {
		g, ok := lookupGroup(v, "cut")
		return ok && len(g.Peers) == 2
	})

	moved, err := h.Evacuate(ctx, owner, nil, nil)
	require.NoError(t, err)
	assert.NotContains(t, moved, s, "not a stream of one replica any more: unknown without the record")

	// demo, of three replicas, is recorded too (as if someone had raised a
	// recorded stream meanwhile): that is no move cut short, and it stays.
	demo := StreamRef{Account: AppAccount, Name: DemoStream}
	var told []StreamRef
	moved, err = h.Evacuate(ctx, owner, []StreamRef{s, demo}, func(r StreamRef) error {
		told = append(told, r)
		return nil
	})
	require.NoError(t, err)
	assert.Contains(t, moved, s)
	assert.NotContains(t, moved, demo)
	assert.Equal(t, []StreamRef{s}, told, "told before its move")
	info, err := js.Stream(ctx, "cut")
	require.NoError(t, err)
	require.NotNil(t, info.CachedInfo().Cluster)
	assert.NotEqual(t, owner, info.CachedInfo().Cluster.Leader, "moved off")
	assert.Equal(t, 1, info.CachedInfo().Config.Replicas, "one replica again")
	assert.Equal(t, uint64(50), info.CachedInfo().State.Msgs)
}

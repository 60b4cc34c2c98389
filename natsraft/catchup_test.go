package natsraft

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestCaughtUpOnView(t *testing.T) {
	nodes := []Node{
		{Name: "n0", Reachable: true, JetStream: true},
		{Name: "n1", Reachable: true, JetStream: true},
		{Name: "n2", Reachable: true, JetStream: true},
	}
	group := func(kind GroupKind, name, leader string, n1 Peer) Group {
		g := Group{Kind: kind, Name: name, Leader: leader}
		for _, p := range []Peer{{Name: "n0", Current: true}, n1, {Name: "n2", Current: true}} {
			p.Leader = p.Name == leader
			g.Peers = append(g.Peers, p)
		}
		return g
	}
	current := Peer{Name: "n1", Current: true}
	healthy := []Group{
		group(KindMeta, MetaGroupName, "n0", current),
		group(KindStream, "s", "n2", current),
	}
	many := []Group{group(KindMeta, MetaGroupName, "n0", current)}
	for i := range 12 {
		many = append(many, group(KindStream, fmt.Sprintf("s%02d", i), "n0", Peer{Name: "n1", Current: true, Lag: 1}))
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
			name:       "lags behind a leader",
			groups:     []Group{healthy[0], group(KindStream, "s", "n2", Peer{Name: "n1", Current: true, Lag: 3})},
			wantDetail: []string{"stream s: lag 3 (leader n2)"},
		},
		{
			name:       "not current",
			groups:     []Group{healthy[0], group(KindConsumer, "s/c", "n2", Peer{Name: "n1", Active: 5 * time.Second})},
			wantDetail: []string{"consumer s/c: not current (active 5s, lag 0, leader n2)"},
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
			wantDetail: []string{"stream s00: lag 1 (leader n0)", "stream s09: lag 1", "and 2 more"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := &View{Nodes: nodes, Groups: tt.groups}
			if tt.nodes != nil {
				v.Nodes = tt.nodes
			}
			ok, detail := caughtUp(v, "n1")
			assert.Equal(t, tt.wantOK, ok)
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

func TestCaughtUpEmbedded(t *testing.T) {
	e, c := raftCluster(t)
	waitView(t, c, 15*time.Second, "a healthy view", healthyDemo)
	h := &HandOff{Views: c, Dial: e.Dial, Logger: zerolog.Nop()}
	const name = "nats-2"
	node := e.Node(name)

	ok, detail, err := h.CaughtUp(t.Context(), name)
	require.NoError(t, err)
	require.True(t, ok, detail)

	// Enter maintenance: hand off, quiesce, fence.
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	require.NoError(t, h.Run(ctx, name))
	require.NoError(t, node.Quiesce(ctx))
	require.NoError(t, node.Fence(ctx))

	// The others move on without it.
	nc, err := e.Dial(AppAccount, name)
	require.NoError(t, err)
	defer nc.Close()
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	for i := range 100 {
		_, err := js.Publish(ctx, fmt.Sprintf("demo.catchup.%d", i), []byte("x"))
		require.NoError(t, err)
	}

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
			for _, g := range v.GroupsOf(name) {
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

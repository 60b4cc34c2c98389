package natsraft

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestKernelFenceQuiescedNeedsTheInclude: a server whose JetStream is off
// while the included file says "on" — as in lame-duck mode while its pod
// terminates, where the server shuts JetStream down itself — is not
// quiesced; only JetStream off through the "off" file is.
func TestKernelFenceQuiescedNeedsTheInclude(t *testing.T) {
	opts := &server.Options{
		Host: "127.0.0.1", Port: -1, HTTPHost: "127.0.0.1", HTTPPort: -1,
		JetStream: true, StoreDir: t.TempDir(), NoLog: true, NoSigs: true,
	}
	s, err := server.NewServer(opts)
	require.NoError(t, err)
	go s.Start()
	t.Cleanup(s.Shutdown)
	require.True(t, s.ReadyForConnections(10*time.Second))
	require.Eventually(t, s.JetStreamEnabled, 10*time.Second, 10*time.Millisecond)

	include := filepath.Join(t.TempDir(), "jetstream.conf")
	f := NewKernelFence(KernelFenceOptions{
		ConfigInclude: include,
		MonitorURL:    fmt.Sprintf("http://127.0.0.1:%d", s.MonitorAddr().Port),
		Reload:        func(context.Context) error { return nil },
		Logger:        zerolog.Nop(),
	})
	require.NoError(t, f.EnsureInclude())
	assert.False(t, f.Quiesced(), "JetStream on, the file on")

	require.NoError(t, os.WriteFile(include, []byte(quiesceIncludeOff), 0o644))
	assert.False(t, f.Quiesced(), "the file off but JetStream still on (the reload has not happened)")

	// JetStream off by the server itself, as lame-duck mode does.
	require.NoError(t, s.DisableJetStream())
	require.NoError(t, os.WriteFile(include, []byte(quiesceIncludeOn), 0o644))
	assert.False(t, f.Quiesced(), "JetStream off, but not through the file: nothing to resume")

	require.NoError(t, os.WriteFile(include, []byte(quiesceIncludeOff), 0o644))
	assert.True(t, f.Quiesced(), "JetStream off through the file")

	require.NoError(t, os.Remove(include))
	assert.False(t, f.Quiesced(), "no file")
}

// TestHandOffRestoring: the streams a node restores a snapshot of are
// those of which its own /raftz says the group's apply is paused; another
// member's restore does not count.
func TestHandOffRestoring(t *testing.T) {
	restoring := true
	view := func(context.Context) (*View, error) {
		return &View{
			Nodes: []Node{{Name: "n0", Reachable: true, JetStream: true}, {Name: "n1", Reachable: true, JetStream: true}},
			Groups: []Group{
				{Kind: KindStream, Name: "s", Account: "APP", Stream: "s", Leader: "n0", Peers: []Peer{
					{Name: "n0", Leader: true, Current: true, Own: &MemberState{Committed: 9, Applied: 9}},
					{Name: "n1", Current: true, Own: &MemberState{Committed: 9, Applied: 5, Restoring: restoring}}}},
				{Kind: KindStream, Name: "t", Account: "APP", Stream: "t", Leader: "n1", Peers: []Peer{
					{Name: "n0", Current: true, Own: &MemberState{Committed: 3, Applied: 3, Restoring: true}},
					{Name: "n1", Leader: true, Current: true, Own: &MemberState{Committed: 3, Applied: 3}}}},
				{Kind: KindStream, Name: "u", Account: "APP", Stream: "u", Leader: "n0", Peers: []Peer{
					{Name: "n0", Leader: true, Current: true, Own: &MemberState{Committed: 3, Applied: 3}},
					{Name: "n1", Current: true}}},
			},
		}, nil
	}
	m := NewMember("n1", nil, &HandOff{Views: viewFunc(view), Logger: zerolog.Nop()})
	got, err := m.Restoring(t.Context())
	require.NoError(t, err)
	assert.Equal(t, []string{"stream s"}, got)

	restoring = false
	got, err = m.Restoring(t.Context())
	require.NoError(t, err)
	assert.Empty(t, got)
}

// TestEmbeddedResumeRestartsAHeldShutdown: a JetStream shutdown the
// quiesce began that is still held (a stream waiting for a catch-up from a
// leader out of reach; here, one that never reports its end) does not keep
// the node from resuming: Resume restarts the server, which comes back with
// JetStream on and rejoins its groups.
func TestEmbeddedResumeRestartsAHeldShutdown(t *testing.T) {
	e, c := raftCluster(t)
	waitView(t, c, 15*time.Second, "a healthy view", healthyDemo)
	node := e.Node("nats-2")
	old := node.running()
	require.NoError(t, old.ShutdownJetStream())
	node.mu.Lock()
	node.shutdown = &jsShutdown{srv: old, done: make(chan struct{})} // never ends
	node.mu.Unlock()
	require.True(t, node.Quiesced())

	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	require.NoError(t, node.Resume(ctx))
	assert.NotSame(t, old, node.running(), "the server was restarted")
	assert.False(t, node.Quiesced())
	require.NoError(t, node.Resume(ctx), "idempotent")
	waitView(t, c, 30*time.Second, "healthy again", healthyDemo)
}

// TestEmbeddedUnfenceLeavesAShutdownInFlightAlone: NATS switches JetStream
// off as its shutdown begins and clears it only at the end, and a config
// reload in between enables JetStream again for each account whose
// JetStream the shutdown has already removed, on the JetStream going away
// (restoring its streams and Raft groups), which the end of the shutdown
// then stops. A node whose shutdown a stream's catch-up held came back from
// maintenance with groups that /raftz no longer listed, and stayed
// catching up. So the unfence, which reloads to make the node dial its
// routes at once, does not reload while the shutdown goes on. Here the
// shutdown is the meta leader's, which steps down and waits two seconds for
// the transfer before it stops anything.
func TestEmbeddedUnfenceLeavesAShutdownInFlightAlone(t *testing.T) {
	e, c := raftCluster(t)
	waitView(t, c, 15*time.Second, "a healthy view", healthyDemo)
	node := e.Node(e.MetaLeader())
	s := node.running()
	loaded := s.ConfigTime()
	quiesced := make(chan error, 1)
	go func() { quiesced <- node.Quiesce(t.Context()) }()
	require.Eventually(t, func() bool { return node.inFlight(s) != nil && !s.JetStreamEnabled() },
		10*time.Second, time.Millisecond, "the shutdown began")

	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	require.NoError(t, node.Unfence(ctx))
	require.NotNil(t, node.inFlight(s), "the shutdown still goes on")
	assert.Equal(t, loaded, s.ConfigTime(), "no reload while the shutdown goes on")
	assert.ErrorIs(t, node.redial(), errShutdownInFlight)

	require.NoError(t, <-quiesced)
	require.True(t, node.Quiesced())
	require.NoError(t, node.redial(), "a reload once the shutdown has ended")
	assert.NotEqual(t, loaded, s.ConfigTime())
	require.NoError(t, node.Resume(ctx))
	assert.Same(t, s, node.running(), "resumed without a restart")
	waitView(t, c, 30*time.Second, "healthy again", healthyDemo)
}

package natsraft

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestKernelFenceUnfenceBesideFencedPeers runs five real servers, puts two
// into maintenance (quiesced and fenced) and brings one back: its unfence
// waits for the routes to the three peers that can have them, not for one
// to the peer that is still fenced, as R5 with two pods in maintenance
// and one leaving (or a dc leaving while one of its pods stays for its own
// entry) has it.
func TestKernelFenceUnfenceBesideFencedPeers(t *testing.T) {
	lab := newNetLab(t, 5)
	c := startNATSLab(t, lab, buildNATSServer(t))
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	fences := map[string]*KernelFence{}
	for _, p := range c.procs[3:] {
		f := c.fence(p, SignalReload(p.pidFile), nil, zerolog.Nop())
		f.o.Timeout = 20 * time.Second
		fences[p.name] = f
		require.NoError(t, f.Quiesce(ctx), p.name)
		require.NoError(t, f.Fence(ctx), p.name)
		c.assertIsolated(t, p)
	}
	kept, leaving := c.procs[3], c.procs[4]

	f := fences[leaving.name]
	require.NoError(t, f.Unfence(ctx), "unfence beside the fenced %s", kept.name)
	require.NoError(t, f.Resume(ctx))
	require.Eventually(t, func() bool {
		return len(c.routes(leaving)) == 3
	}, 15*time.Second, 50*time.Millisecond, "routed to the three peers that are not fenced")
	assert.Empty(t, c.routes(kept), "%s stays fenced", kept.name)

	require.NoError(t, fences[kept.name].Unfence(ctx))
	require.NoError(t, fences[kept.name].Resume(ctx))
	c.assertMesh(t)
}

// TestKernelFenceChecksTheLocalName checks that the fence refuses to act
// on a local server that is not its pod's: server_name must be the pod's
// name, or the fence would verify (and reload) another server.
func TestKernelFenceChecksTheLocalName(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = json.NewEncoder(w).Encode(map[string]any{"server_id": "NABC", "server_name": "nats-7"})
	}))
	t.Cleanup(srv.Close)
	f := NewKernelFence(KernelFenceOptions{Name: "nats-0", MonitorURL: srv.URL,
		ConfigInclude: filepath.Join(t.TempDir(), "quiesce.conf"), Logger: zerolog.Nop()})
	err := f.MoveClients(context.Background())
	require.Error(t, err)
	assert.Contains(t, err.Error(), `calls itself "nats-7", not "nats-0"`)
	assert.Contains(t, f.links.linked(context.Background()), err.Error()[len("move clients: "):])
}

// TestKernelFenceTimeoutUnderALaterDeadline checks that a fence step ends
// by its own timeout even when its caller allows longer (a reconciler's
// step allows minutes), so that a stuck step is reported and retried.
func TestKernelFenceTimeoutUnderALaterDeadline(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-r.Context().Done() // a monitoring endpoint that never answers
	}))
	t.Cleanup(srv.Close)
	f := NewKernelFence(KernelFenceOptions{Name: "nats-0", MonitorURL: srv.URL, Timeout: 200 * time.Millisecond,
		ConfigInclude: filepath.Join(t.TempDir(), "quiesce.conf"), Reload: func(context.Context) error { return nil },
		HTTPClient: &http.Client{}, Logger: zerolog.Nop()})
	caller, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	err := f.Quiesce(caller)
	require.Error(t, err)
	assert.True(t, errors.Is(err, context.DeadlineExceeded), "%v", err)
	assert.NoError(t, caller.Err(), "ended by the fence's own timeout, the caller's deadline still far")
}

// TestKernelFenceHoldAtBoot deletes the network namespace and the NATS
// process of a node in maintenance, as a pod deleted on a node drain loses
// them, and starts it again the way a recreated pod does: the sidecar holds
// it at boot (the "off" include and the nftables table) before NATS
// starts. The server must come up quiesced and never join its peers, and
// leave maintenance cleanly.
func TestKernelFenceHoldAtBoot(t *testing.T) {
	lab := newNetLab(t, 3)
	c := startNATSLab(t, lab, buildNATSServer(t))
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	x := c.procs[2]
	f := c.fence(x, SignalReload(x.pidFile), nil, zerolog.Nop())
	require.NoError(t, f.Quiesce(ctx))
	require.NoError(t, f.Fence(ctx))
	c.assertIsolated(t, x)

	// The pod is deleted: its processes and its namespace go.
	require.NoError(t, x.cmd.Process.Kill())
	<-x.exited
	lab.recreate(2)

	// The new pod's sidecar, before NATS starts: the folder it shares
	// with NATS is new (an emptyDir), so it writes the file NATS includes
	// afresh, then holds the node.
	require.NoError(t, os.Remove(x.include))
	f = c.fence(x, SignalReload(x.pidFile), nil, zerolog.Nop())
	// The container's restart: the server stops on SIGTERM, and starts
	// again.
	restarts := 0
	f.o.Restart = func(ctx context.Context) error {
		if err := SignalRestart(x.pidFile)(ctx); err != nil {
			return err
		}
		select {
		case <-x.exited:
		case <-ctx.Done():
			return ctx.Err()
		}
		restarts++
		x.exited = make(chan struct{})
		c.start(t, x)
		return nil
	}
	require.NoError(t, f.EnsureInclude())
	require.NoError(t, f.HoldAtBoot())
	assert.True(t, isFenced(t, f), "the table is up before the server starts")
	x.exited = make(chan struct{})
	c.start(t, x)
	require.Eventually(t, func() bool {
		var varz varzDoc
		return c.get(x, "/varz", &varz) == nil
	}, 30*time.Second, 50*time.Millisecond, "the server starts")
	assert.True(t, f.Quiesced(), "booted with JetStream off")
	linked := func() bool {
		if len(c.routes(x)) > 0 {
			return true
		}
		for _, p := range c.procs[:2] {
			if slices.Contains(c.routes(p), x.name) {
				return true
			}
		}
		return false
	}
	assert.Never(t, linked, 3*time.Second, 100*time.Millisecond, "a server held at boot never joins its peers")

	var before varzDoc
	require.NoError(t, c.get(x, "/varz", &before))
	require.NoError(t, f.Unfence(ctx))
	require.NoError(t, f.Resume(ctx))
	assert.Equal(t, 1, restarts, "a server that started quiesced is restarted, not reloaded, to resume")
	var after varzDoc
	require.NoError(t, c.get(x, "/varz", &after))
	assert.True(t, after.Start.After(before.Start), "started again: %v -> %v", before.Start, after.Start)
	assert.False(t, f.Quiesced(), "JetStream on")
	c.assertMesh(t)
	assert.Eventually(t, func() bool { return c.metaLeader(x) != "" }, 30*time.Second, 50*time.Millisecond,
		"back in the meta group")

	// Leading the meta group, it knows itself: its /jsz names it as the
	// leader (a server switched on by a reload names nobody, and leaves
	// itself out of stream placement).
	sys := c.connect(t, procSysUser, c.procs[:2], nats.IgnoreDiscoveredServers())
	body := []byte(`{"placement":{"preferred":"` + x.name + `"}}`)
	require.Eventually(t, func() bool {
		if c.metaLeader(c.procs[0]) != x.name {
			_, _ = sys.Request(metaStepDownSubject, body, 2*time.Second)
		}
		return c.metaLeader(x) == x.name
	}, time.Minute, 500*time.Millisecond, "%s leads the meta group and its /jsz says so", x.name)
	require.NoError(t, f.Resume(ctx))
	assert.Equal(t, 1, restarts, "a server already resumed is left alone")
}

// TestKernelFenceWhileRoutesCarryTraffic fences a server that writes on
// its routes the whole time (a client of it publishes what a client of
// each peer subscribes to), as a server does right after its quiesce
// sends its unsubscriptions. A write that meets the table before the
// sockets are destroyed must not close the local socket quietly: the
// peers would keep listing the route, idle and half open, until their
// next ping, minutes later, and the fence would never be verified. Each
// round fences and unfences; every fence must be seen done from the
// peers' side.
func TestKernelFenceWhileRoutesCarryTraffic(t *testing.T) {
	lab := newNetLab(t, 3)
	c := startNATSLab(t, lab, buildNATSServer(t))
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	x := c.procs[2]
	for _, p := range c.procs[:2] {
		sub := c.connect(t, procAppUser, []*natsProc{p}, nats.IgnoreDiscoveredServers())
		_, err := sub.Subscribe("traffic.>", func(*nats.Msg) {})
		require.NoError(t, err)
		require.NoError(t, sub.Flush())
	}
	c.assertMesh(t)
	pub := c.connect(t, procAppUser, []*natsProc{x}, nats.IgnoreDiscoveredServers())
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		payload := make([]byte, 512)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			_ = pub.Publish("traffic."+strconv.Itoa(i%64), payload)
		}
	}()
	t.Cleanup(func() { close(stop); <-done })

	f := c.fence(x, SignalReload(x.pidFile), nil, zerolog.Nop())
	f.o.Timeout = 20 * time.Second
	for round := range 8 {
		require.NoError(t, f.Fence(ctx), "fence, round %d", round)
		c.assertIsolated(t, x)
		require.NoError(t, f.Unfence(ctx), "unfence, round %d", round)
	}
}

package app_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/prober-dev/prober/maintenance"
	"github.com/prober-dev/prober/natsraft"
	"github.com/prober-dev/prober/prober"
)

// TestAppGroupsOfOneReplica covers what used to strand a maintenance: an
// ordered consumer (ephemeral, one replica) is a warning, not a reason to
// refuse; a stream of one replica refuses an ordinary request, a forced one
// completes with the stream named as down, and an evacuating one moves the
// stream off and back.
func TestAppGroupsOfOneReplica(t *testing.T) {
	running := startApp(t, t.TempDir(), nil)
	c := running.Cluster()
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	nc, err := c.Dial(natsraft.AppAccount)
	require.NoError(t, err)
	defer nc.Close()
	js, err := jetstream.New(nc)
	require.NoError(t, err)

	// An ordered consumer on demo, as `nats stream view` and KV watchers
	// make, consuming; once demo is led and its replicas current (the app
	// answers before its streams are: one run waited here, with nothing to
	// say why, until the test's deadline), and within a bound of its own.
	waitGroup(t, running, "demo led, every replica current", func(g natsraft.Group) bool {
		if g.Kind != natsraft.KindStream || g.Name != natsraft.DemoStream || g.Leader == "" {
			return false
		}
		for _, p := range g.Peers {
			if !p.Current {
				return false
			}
		}
		return true
	})
	octx, ocancel := context.WithTimeout(ctx, 30*time.Second)
	oc, err := js.OrderedConsumer(octx, natsraft.DemoStream, jetstream.OrderedConsumerConfig{})
	ocancel()
	require.NoError(t, err, "an ordered consumer on %s", natsraft.DemoStream)
	cc, err := oc.Consume(func(jetstream.Msg) {})
	require.NoError(t, err)
	defer cc.Stop()
	ephemeral := waitGroup(t, running, "the ordered consumer", func(g natsraft.Group) bool {
		return g.Kind == natsraft.KindConsumer && g.Stream == natsraft.DemoStream && g.Ephemeral && g.Leader != ""
	})
	t.Run("an ordered consumer is a warning, not a violation", func(t *testing.T) {
		var dr prober.DryRunResponse
		running.call(http.MethodPut, "/pods/"+ephemeral.Leader+"?dryRun=true", "", http.StatusOK, &dr)
		assert.True(t, dr.Safe, "%+v", dr.Violations)
		require.Len(t, dr.Warnings, 1)
		assert.Equal(t, ephemeral.Name, dr.Warnings[0].Group)
		assert.Contains(t, dr.Warnings[0].Reason, "ephemeral consumer")
	})

	_, err = js.CreateStream(ctx, jetstream.StreamConfig{Name: "r1b", Subjects: []string{"r1b.>"}, Replicas: 1})
	require.NoError(t, err)
	for i := range 100 {
		_, err := js.Publish(ctx, "r1b.x", []byte(fmt.Sprint(i)),
			jetstream.WithRetryWait(10*time.Millisecond), jetstream.WithRetryAttempts(200))
		require.NoError(t, err)
	}
	owner := waitGroup(t, running, "r1b", func(g natsraft.Group) bool { return g.Name == "r1b" && g.Leader != "" }).Leader

	t.Run("a stream of one replica refuses an ordinary request", func(t *testing.T) {
		b := running.call(http.MethodPut, "/pods/"+owner, `{"reason":"disk"}`, http.StatusConflict, nil)
		assert.Contains(t, string(b), "r1b")
		assert.Contains(t, string(b), "lives only on "+owner)
	})

	t.Run("forced, it completes and names the stream as down", func(t *testing.T) {
		var out prober.PodChange
		running.call(http.MethodPut, "/pods/"+owner+"?wait=60s", `{"reason":"disk replaced","force":true}`, http.StatusOK, &out)
		assert.Equal(t, maintenance.PhaseInMaintenance, out.Phase)
		assert.True(t, out.Forced)
		assert.Contains(t, groupsOf(out.Violations), "r1b", "the answer names it")
		assert.NotContains(t, out.Message, "hand off "+owner+": hand off")
		waitFor(t, 30*time.Second, "/raft names r1b in maintenance", func() (bool, string) {
			var raft prober.RaftResponse
			running.call(http.MethodGet, "/raft", "", http.StatusOK, &raft)
			for _, f := range raft.Findings {
				for _, g := range f.Groups {
					if g.Name == "r1b" {
						return f.Cause == natsraft.CauseMaintenance, string(f.Cause)
					}
				}
			}
			return false, "no finding names r1b"
		})
		running.call(http.MethodDelete, "/pods/"+owner+"?wait=60s", "", http.StatusOK, &out)
		assert.Equal(t, maintenance.PhaseActive, out.Phase)
	})

	t.Run("evacuated: moved off, and back on the way out", func(t *testing.T) {
		var out prober.PodChange
		begin := time.Now()
		running.call(http.MethodPut, "/pods/"+owner+"?wait=120s", `{"reason":"disk","evacuate":true}`, http.StatusOK, &out)
		t.Logf("evacuated and fenced in %.2fs", time.Since(begin).Seconds())
		assert.Equal(t, maintenance.PhaseInMaintenance, out.Phase)
		assert.False(t, out.Forced, "nothing to force: the stream moved")
		assert.Equal(t, []string{natsraft.AppAccount + "/r1b"}, running.pod(owner).Evacuated)
		st, err := js.Stream(ctx, "r1b")
		require.NoError(t, err)
		assert.NotEqual(t, owner, st.CachedInfo().Cluster.Leader, "moved off the pod")
		assert.Equal(t, uint64(100), st.CachedInfo().State.Msgs)

		begin = time.Now()
		running.call(http.MethodDelete, "/pods/"+owner+"?wait=120s", "", http.StatusOK, &out)
		t.Logf("unfenced, caught up and moved back in %.2fs", time.Since(begin).Seconds())
		assert.Equal(t, maintenance.PhaseActive, out.Phase)
		st, err = js.Stream(ctx, "r1b")
		require.NoError(t, err)
		assert.Equal(t, owner, st.CachedInfo().Cluster.Leader, "back on the pod")
		assert.Equal(t, 1, st.CachedInfo().Config.Replicas)
		assert.Equal(t, uint64(100), st.CachedInfo().State.Msgs)
	})
}

// waitGroup waits for a group of the API's /raft that matches and returns
// it.
func waitGroup(t *testing.T, a *liveApp, what string, match func(natsraft.Group) bool) natsraft.Group {
	t.Helper()
	var found natsraft.Group
	waitFor(t, 30*time.Second, what, func() (bool, string) {
		var raft prober.RaftResponse
		_, _, b := a.do(http.MethodGet, "/raft", "")
		if err := json.Unmarshal(b, &raft); err != nil || raft.View == nil {
			return false, string(b)
		}
		for _, g := range raft.Groups {
			if match(g) {
				found = g
				return true, ""
			}
		}
		return false, fmt.Sprintf("%d groups", len(raft.Groups))
	})
	return found
}

func groupsOf(vs []maintenance.Violation) []string {
	var out []string
	for _, v := range vs {
		out = append(out, v.Group)
	}
	return out
}

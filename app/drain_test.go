package app_test

import (
	"context"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/prober-dev/prober/maintenance"
	"github.com/prober-dev/prober/natsraft"
	"github.com/prober-dev/prober/prober"
)

// drainDeadline is how soon a drain must have moved a leadership off:
// the reconciler looks every DefaultDrainPoll, a hand-off takes ~0.1s.
const drainDeadline = 2 * time.Second

// TestDrainGiveBackBalance runs the leadership-only maintenance on the
// embedded default, one app for every step: a drain moves every
// leadership off and keeps it off through a forced election, the exit
// gives the roles snapshot back (or not, when asked), and a balance evens
// out a skewed cluster while its dry run changes nothing.
func TestDrainGiveBackBalance(t *testing.T) {
	running := startApp(t, t.TempDir(), nil)
	c := running.Cluster()
	col := natsraft.NewCollector(natsraft.CollectorOptions{Endpoints: c.Endpoints(), Logger: zerolog.Nop()})
	mover := &natsraft.HandOff{Views: col, Dial: c.Dial, Logger: zerolog.Nop()}
	const pod = "nats-1"

	t.Run("drain moves every leadership off and keeps it off", func(t *testing.T) {
		running.requireClean()
		leadAll(t, mover, col, pod)
		waitSafe(t, running, pod, `{"mode":"drain"}`)

		begin := time.Now()
		var in prober.PodChange
		running.call(http.MethodPut, "/pods/"+pod, `{"mode":"drain","reason":"leader-free"}`, http.StatusAccepted, &in)
		assert.Equal(t, maintenance.ModeDrain, in.Mode)
		took := waitFor(t, 30*time.Second, pod+" leads nothing", func() (bool, string) {
			return leadsNone(c, pod)
		})
		t.Logf("drain: every leadership off %s %.2fs after the PUT", pod, time.Since(begin).Seconds())
		assert.LessOrEqual(t, took, drainDeadline, "leaderships moved off in %s", took)

		pv := waitPhase(t, running, pod, maintenance.PhaseInMaintenance)
		assert.Equal(t, maintenance.ModeDrain, pv.Mode)
		assert.ElementsMatch(t, demoGroups, pv.Leaders, "the roles snapshot")
		// Still routed, serving and ready.
		requireLinked(t, c, pod)
		assert.True(t, c.Node(pod).Server().JetStreamEnabled())
		code, _, body := running.do(http.MethodGet, "/readyz?pod="+pod, "")
		assert.Equal(t, http.StatusOK, code, "%s", body)
		var raft prober.RaftResponse
		running.call(http.MethodGet, "/raft", "", http.StatusOK, &raft)
		assert.Equal(t, []string{pod}, raft.Draining)
		// A drain is no fault. The elections this test forced (leadAll,
		// then the drain's own hand-off) may count as term inflation in a
		// group: that one finding is about the test, not the drain.
		for _, f := range raft.Findings {
			assert.Equal(t, natsraft.CauseTermInflation, f.Cause, "a drain is no fault: %+v", f)
		}

		// A forced election that picks the drained pod: it leaves again.
		v, err := col.Sweep(context.Background())
		require.NoError(t, err)
		g := groupNamed(t, v, natsraft.DemoStream)
		require.NoError(t, moveUntilSeen(mover, g, pod))
		left := waitFor(t, 30*time.Second, pod+" leads nothing again", func() (bool, string) {
			return leadsNone(c, pod)
		})
		t.Logf("drain: a regained leadership left %s %.2fs after the election was seen", pod, left.Seconds())
		assert.LessOrEqual(t, left, drainDeadline)
	})

	t.Run("exit gives the roles snapshot back", func(t *testing.T) {
		var out prober.PodChange
		running.call(http.MethodDelete, "/pods/"+pod+"?wait=60s", "", http.StatusOK, &out)
		assert.Equal(t, maintenance.PhaseActive, out.Phase)
		assert.ElementsMatch(t, demoGroups, out.GivenBack, "given back: %+v, not: %+v", out.GivenBack, out.NotGivenBack)
		assert.Empty(t, out.NotGivenBack)
		led := groupsFromLeaders(c)
		for _, name := range demoGroups {
			assert.Equal(t, pod, led[name].Leader, "group %s", name)
		}
		assert.Equal(t, maintenance.PhaseActive, running.config().Status[pod].Phase)
	})

	t.Run("restoreLeaders=false keeps them away", func(t *testing.T) {
		waitSafe(t, running, pod, `{"mode":"drain"}`)
		running.call(http.MethodPut, "/pods/"+pod+"?wait=30s", `{"mode":"drain"}`, http.StatusOK, nil)
		var out prober.PodChange
		running.call(http.MethodDelete, "/pods/"+pod+"?wait=60s&restoreLeaders=false", "", http.StatusOK, &out)
		assert.Empty(t, out.GivenBack)
		var why []string
		for _, n := range out.NotGivenBack {
			why = append(why, n.Group+": "+n.Why)
		}
		want := []string{}
		for _, g := range demoGroups {
			want = append(want, g+": "+natsraft.NotBackNotAsked)
		}
		assert.ElementsMatch(t, want, why)
		ok, detail := leadsNone(c, pod)
		assert.True(t, ok, detail)
	})

	t.Run("balance evens out a skewed cluster; a dry run changes nothing", func(t *testing.T) {
		// NATS itself may hold an election meanwhile (on a loaded machine a
		// heartbeat comes late): a round whose leaders moved by themselves is
		// set up again. A dry run that moved something would never pass.
		var dry, done maintenance.BalanceResult
		waitFor(t, 2*time.Minute, "a balance of a cluster skewed to nats-0", func() (bool, string) {
			leadAll(t, mover, col, "nats-0")
			waitSafe(t, running, pod, `{"mode":"drain"}`)
			before := leadersByJsz(c)
			if before["nats-0"] != len(demoGroups) {
				return false, fmt.Sprintf("not skewed: %v", before)
			}
			running.call(http.MethodPost, "/balance?dc=dc1&dryRun=true", "", http.StatusOK, &dry)
			if got := leadersByJsz(c); !maps.Equal(got, before) {
				return false, fmt.Sprintf("leaders moved across the dry run: %v -> %v", before, got)
			}
			// The balance judges on the prober's latest sweep, which may
			// predate the last move of leadAll.
			if dry.SkewBefore != len(demoGroups) {
				return false, fmt.Sprintf("the dry run's view was not skewed yet: %v", dry.LeadersBefore)
			}
			running.call(http.MethodPost, "/balance?dc=dc1", "", http.StatusOK, &done)
			after := leadersByJsz(c)
			skew := natsraft.Skew(map[string]int{"nats-0": after["nats-0"], "nats-1": after["nats-1"], "nats-2": after["nats-2"]})
			return done.SkewBefore == len(demoGroups) && done.SkewAfter <= 1 && skew <= 1,
				fmt.Sprintf("balanced to %v (answer %v -> %v)", after, done.LeadersBefore, done.LeadersAfter)
		})
		t.Logf("dry run: %+v", dry)
		assert.True(t, dry.DryRun)
		assert.Equal(t, 3, dry.SkewBefore)
		assert.LessOrEqual(t, dry.SkewAfter, 1)
		assert.NotEmpty(t, dry.Moves)
		assert.False(t, done.DryRun)
		assert.Equal(t, 3, done.SkewBefore)
		assert.NotEmpty(t, done.Moves)
		for _, m := range done.Moves {
			assert.Empty(t, m.Error, "move %+v", m)
		}

		code, _, b := running.do(http.MethodPost, "/balance?dc=dc9", "")
		assert.Equal(t, http.StatusNotFound, code, "%s", b)
		code, _, b = running.do(http.MethodPost, "/balance?dryRun=maybe", "")
		assert.Equal(t, http.StatusBadRequest, code, "%s", b)
	})

	t.Run("balance to a pod moves only to it, until it leads its share", func(t *testing.T) {
		var done maintenance.BalanceResult
		waitFor(t, 2*time.Minute, "a share taken by nats-2 from a cluster skewed to nats-0", func() (bool, string) {
			leadAll(t, mover, col, "nats-0")
			waitSafe(t, running, pod, `{"mode":"drain"}`)
			before := leadersByJsz(c)
			if before["nats-0"] != len(demoGroups) {
				return false, fmt.Sprintf("not skewed: %v", before)
			}
			running.call(http.MethodPost, "/balance?to=nats-2", "", http.StatusOK, &done)
			after := leadersByJsz(c)
			return after["nats-1"] == 0 && after["nats-2"] == len(demoGroups)/2 && after["nats-0"] == len(demoGroups)-len(demoGroups)/2,
				fmt.Sprintf("%v -> %v (answer %+v)", before, after, done)
		})
		assert.Equal(t, "nats-2", done.To)
		require.NotEmpty(t, done.Moves)
		for _, m := range done.Moves {
			assert.Equal(t, "nats-2", m.To, "%+v", m)
			assert.Equal(t, "nats-0", m.From, "%+v", m)
			assert.Empty(t, m.Error, "move %+v", m)
		}
		for _, tc := range []struct {
			query string
			code  int
		}{
			{"to=", http.StatusBadRequest},
			{"to=Not_A_Pod", http.StatusBadRequest},
			{"to=nats-9", http.StatusNotFound},
			{"to=nats-2&dc=dc9", http.StatusNotFound},
		} {
			code, _, b := running.do(http.MethodPost, "/balance?"+tc.query, "")
			assert.Equal(t, tc.code, code, "%s: %s", tc.query, b)
		}
	})
}

// leadAll moves the leadership of every demo group to pod.
func leadAll(t *testing.T, mover *natsraft.HandOff, col *natsraft.Collector, pod string) {
	t.Helper()
	v, err := col.Sweep(context.Background())
	require.NoError(t, err)
	for _, name := range demoGroups {
		g := groupNamed(t, v, name)
		require.NoError(t, mover.MoveLeader(context.Background(),
			natsraft.LeaderMove{Group: g.Name, Kind: g.Kind, Account: g.Account, From: g.Leader, To: pod}))
	}
}

// moveUntilSeen steps g down with pod preferred until pod is seen leading
// it: a drained pod may lose it again before a sweep sees it.
func moveUntilSeen(mover *natsraft.HandOff, g natsraft.Group, pod string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return mover.MoveLeader(ctx, natsraft.LeaderMove{Group: g.Name, Kind: g.Kind, Account: g.Account, To: pod})
}

func groupNamed(t *testing.T, v *natsraft.View, name string) natsraft.Group {
	t.Helper()
	i := slices.IndexFunc(v.Groups, func(g natsraft.Group) bool { return g.Name == name })
	require.GreaterOrEqual(t, i, 0, "group %s in the view", name)
	return v.Groups[i]
}

// leadersByJsz counts the demo groups each pod leads, by every leader's Jsz.
func leadersByJsz(c *natsraft.Embedded) map[string]int {
	out := map[string]int{}
	for _, g := range groupsFromLeaders(c) {
		out[g.Leader]++
	}
	return out
}

// leadsNone reports whether pod leads no demo group, by every leader's Jsz.
func leadsNone(c *natsraft.Embedded, pod string) (bool, string) {
	for name, g := range groupsFromLeaders(c) {
		if g.Leader == pod {
			return false, fmt.Sprintf("%s still leads %s", pod, name)
		}
	}
	return true, ""
}

// waitSafe polls the dry run of PUT /pods/{pod} with body until it is
// safe: right after a leadership moved, its new leader has not heard from
// every follower yet and the safety rule rightly counts them as not current.
func waitSafe(t *testing.T, running *liveApp, pod, body string) {
	t.Helper()
	waitFor(t, 30*time.Second, "a safe dry run for "+pod, func() (bool, string) {
		var dr prober.DryRunResponse
		running.call(http.MethodPut, "/pods/"+pod+"?dryRun=true", body, http.StatusOK, &dr)
		return dr.Safe, fmt.Sprintf("%+v", dr.Violations)
	})
}

// waitPhase polls GET /pods/{pod} until it shows phase.
func waitPhase(t *testing.T, running *liveApp, pod string, phase maintenance.Phase) maintenance.PodView {
	t.Helper()
	var pv maintenance.PodView
	waitFor(t, 30*time.Second, pod+" "+string(phase), func() (bool, string) {
		pv = running.pod(pod)
		return pv.Phase == phase, fmt.Sprintf("%s: %s", pv.Phase, pv.Message)
	})
	return pv
}

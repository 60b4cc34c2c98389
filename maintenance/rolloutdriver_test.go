package maintenance_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/prober-dev/prober/maintenance"
	"github.com/prober-dev/prober/natsraft"
)

// fakeRestarter records each Restart and answers as set.
type fakeRestarter struct {
	mu    sync.Mutex
	calls []string
	back  bool
	err   error
}

func (r *fakeRestarter) Restart(_ context.Context, pod string, _ time.Time) (bool, string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, pod)
	return r.back, "waiting for pod " + pod + " to be recreated", r.err
}

func (r *fakeRestarter) set(back bool, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.back, r.err = back, err
}

func (r *fakeRestarter) called() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.calls...)
}

// switchView is a ViewSource whose view can be replaced.
type switchView struct {
	mu sync.Mutex
	v  *natsraft.View
}

func (s *switchView) View(context.Context) (*natsraft.View, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.v, nil
}

func (s *switchView) set(v *natsraft.View) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.v = v
}

// seedRestartTurn stores a rollout "r" that restarts its pods in mode,
// its turn of n0 Entering with its entry written and n0 reported
// InMaintenance.
func seedRestartTurn(t *testing.T, f *fixture, mode string) {
	t.Helper()
	entered := f.clock()
	f.seed(t, func(d *maintenance.Document) {
		d.Rollouts = map[string]maintenance.Rollout{"r": {
			Spec: maintenance.RolloutSpec{Mode: mode, Restart: true}, Created: entered, State: maintenance.RolloutRunning,
			Pods: []maintenance.RolloutPod{{Pod: "n0", Step: maintenance.StepEntering, Entered: &entered}, {Pod: "n1", Step: maintenance.StepPending}},
		}}
		d.Pods["n0"] = maintenance.Entry{Reason: "rollout r", RequestedBy: "rollout r", Since: entered, Mode: mode}
		statusMode := mode
		if mode == maintenance.ModeFence {
			statusMode = ""
		}
		d.Status["n0"] = maintenance.Status{Phase: maintenance.PhaseInMaintenance, Mode: statusMode,
			ObservedAt: entered, PhaseSince: entered, Entry: "pod.n0"}
	})
}

// TestRolloutDrainRestartJudgedAtTheRestart checks that a drain rollout
// that restarts its pods judges the restart by the quorum rule when it
// comes: the pod serves until it is deleted, and a peer lost while it
// drained (n2 here) makes deleting it cost the groups their quorum. The
// rollout pauses with the reason, deletes nothing, and goes on once n2 is
// back.
func TestRolloutDrainRestartJudgedAtTheRestart(t *testing.T) {
	down := offline(threeNodes(), "n2")
	down.Nodes[2].Reachable = false
	require.NotEmpty(t, maintenance.CheckSafety(down, []string{"n0"}, nil), "taking n0 out now is unsafe")
	views := &switchView{v: down}
	f := newFixture(t, views)
	rs := &fakeRestarter{}
	f.svc.Restarter = rs
	seedRestartTurn(t, f, maintenance.ModeDrain)
	drv := maintenance.NewRolloutDriver(maintenance.RolloutDriverOptions{Service: f.svc, ID: "p0"})
	ctx := context.Background()
	for range 3 {
		require.NoError(t, drv.Sync(ctx))
	}
	ro := f.doc(t).Rollouts["r"]
	assert.Empty(t, rs.called(), "n0 is not restarted while that costs its groups their quorum")
	assert.Equal(t, maintenance.StepEntering, ro.Pods[0].Step)
	assert.Equal(t, maintenance.RolloutPaused, ro.State)
	assert.Contains(t, ro.PauseReason, "unsafe: restarting n0 now would cost")

	views.set(threeNodes())
	require.NoError(t, drv.Sync(ctx))
	require.NoError(t, drv.Sync(ctx))
	ro = f.doc(t).Rollouts["r"]
	assert.Equal(t, maintenance.StepRestarting, ro.Pods[0].Step)
	assert.Equal(t, maintenance.RolloutRunning, ro.State)
	assert.Empty(t, ro.PauseReason)
	assert.Equal(t, []string{"n0"}, rs.called(), "restarted once n2 is back")

	// Lost again before the pod's old instance is gone: not asked again.
	views.set(down)
	require.NoError(t, drv.Sync(ctx))
	assert.Equal(t, []string{"n0"}, rs.called())
	assert.Equal(t, maintenance.RolloutPaused, f.doc(t).Rollouts["r"].State)

	// A fence turn's pod is out already: its restart is not judged again.
	f2 := newFixture(t, staticView(down))
	rs2 := &fakeRestarter{}
	f2.svc.Restarter = rs2
	seedRestartTurn(t, f2, maintenance.ModeFence)
	drv2 := maintenance.NewRolloutDriver(maintenance.RolloutDriverOptions{Service: f2.svc, ID: "p0"})
	require.NoError(t, drv2.Sync(ctx))
	require.NoError(t, drv2.Sync(ctx))
	assert.Equal(t, []string{"n0"}, rs2.called())
}

// TestRolloutRestartFailureShown checks that a restart that keeps failing
// (the Role may not delete pods, say) is shown with the turn, tried again,
// and that the driver keeps its lease meanwhile; once it works the turn
// goes on.
func TestRolloutRestartFailureShown(t *testing.T) {
	f := newFixture(t, staticView(threeNodes()))
	rs := &fakeRestarter{err: errors.New(`pods "n0" is forbidden`)}
	f.svc.Restarter = rs
	seedRestartTurn(t, f, maintenance.ModeFence)
	drv := maintenance.NewRolloutDriver(maintenance.RolloutDriverOptions{Service: f.svc, ID: "p0", Lease: 10 * time.Second})
	ctx := context.Background()
	require.NoError(t, drv.Sync(ctx)) // Entering -> Restarting
	for range 3 {
		f.advance(6 * time.Second)
		require.NoError(t, drv.Sync(ctx))
	}
	v, err := f.svc.Rollout(ctx, "r")
	require.NoError(t, err)
	assert.Equal(t, maintenance.StepRestarting, v.Pods[0].Step)
	assert.Equal(t, `restart failed, trying again: pods "n0" is forbidden`, v.Waiting)
	assert.Len(t, rs.called(), 3)
	ro := f.doc(t).Rollouts["r"]
	assert.Equal(t, "p0", ro.Driver)
	assert.True(t, ro.LeaseUntil.After(f.clock()), "the lease is renewed while the restart fails")

	rs.set(false, nil)
	require.NoError(t, drv.Sync(ctx))
	v, err = f.svc.Rollout(ctx, "r")
	require.NoError(t, err)
	assert.Equal(t, "waiting for pod n0 to be recreated", v.Waiting)
	rs.set(true, nil)
	require.NoError(t, drv.Sync(ctx))
	ro = f.doc(t).Rollouts["r"]
	assert.Equal(t, maintenance.StepExiting, ro.Pods[0].Step)
	assert.Empty(t, ro.Pods[0].Restart)
	assert.NotContains(t, f.doc(t).Pods, "n0", "the turn exits")
}

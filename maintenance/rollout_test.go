package maintenance

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestRolloutSpecValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		spec RolloutSpec
		want RolloutSpec
		err  string
	}{
		{"fence is the default, spelled empty", RolloutSpec{Mode: ModeFence, Hold: "300s"}, RolloutSpec{Hold: "5m0s"}, ""},
		{"drain is kept", RolloutSpec{Mode: ModeDrain, Restart: true}, RolloutSpec{Mode: ModeDrain, Restart: true}, ""},
		{"an unknown mode", RolloutSpec{Mode: "cut", Hold: "5m"}, RolloutSpec{}, `invalid mode "cut"`},
		{"nothing to do on a turn", RolloutSpec{}, RolloutSpec{}, `say what to do on each pod's turn`},
		{"hold and restart", RolloutSpec{Hold: "5m", Restart: true}, RolloutSpec{}, "hold and restart exclude each other"},
		{"dc and pods", RolloutSpec{DC: "a", Pods: []string{"a1"}, Hold: "5m"}, RolloutSpec{}, "dc and pods exclude each other"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.spec.Validate()
			if tc.err != "" {
				require.Error(t, err)
				assert.Equal(t, EInvalid, ErrorCode(err))
				assert.Contains(t, err.Error(), tc.err)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.want, got)
		})
	}
}

// TestRolloutTurnJudgedByItsMode checks that a drain rollout's entries are
// drains and that its turns are judged by the drain rule: with b1 in
// maintenance, a fence of a1 costs the R3 stream its quorum, a drain of a1
// only needs c1 to take the leadership.
func TestRolloutTurnJudgedByItsMode(t *testing.T) {
	now := time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
	view := safetyView(safetyMeta("a1", "b1", "c1"), safetyStream("orders", "a1", "b1", "c1"))
	d := NewDocument()
	d.Pods["b1"] = Entry{Reason: "disk", Since: now}

	fence := &Rollout{Spec: RolloutSpec{Hold: "5m"}}
	assert.Empty(t, fence.entry("r", now).Mode)
	assert.Contains(t, turnBlocked("r", fence, "a1", d, view, now), "would cost 2 Raft group(s) their quorum")

	assert.True(t, fence.entry("r", now).RestoresLeaders())
	keep := false
	assert.False(t, (&Rollout{Spec: RolloutSpec{Hold: "5m", RestoreLeaders: &keep}}).entry("r", now).RestoresLeaders())
	assert.True(t, RolloutSpec{}.equal(RolloutSpec{RestoreLeaders: new(bool(true))}))
	assert.False(t, RolloutSpec{}.equal(RolloutSpec{RestoreLeaders: &keep}))

	drain := &Rollout{Spec: RolloutSpec{Mode: ModeDrain, Hold: "5m"}}
	assert.True(t, drain.entry("r", now).Drain())
	assert.Empty(t, turnBlocked("r", drain, "a1", d, view, now))

	// c1 draining too leaves no member to lead.
	d.Pods["c1"] = Entry{Reason: "drain", Since: now, Mode: ModeDrain}
	assert.Contains(t, turnBlocked("r", drain, "a1", d, view, now), "every member that can lead")

	// A group of one replica is a drain rollout's structural refusal.
	err := neverSafe(safetyView(safetyStream("single", "a1")), []string{"a1"}, true)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "every member that can lead even with every other peer healthy: ")
}

// TestRolloutRestartTurnJudgedByQuorum checks that a drain rollout which
// restarts its pods is judged by the quorum rule: the restart stops the
// pod, whatever its entry's mode. With b1 in maintenance, a1's turn would
// leave the R3 stream one member; the drain rule alone would let it go.
// While its turn lasts, the pod counts as out of service for every other
// request.
func TestRolloutRestartTurnJudgedByQuorum(t *testing.T) {
	now := time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
	view := safetyView(safetyMeta("a1", "b1", "c1"), safetyStream("orders", "a1", "b1", "c1"))
	d := NewDocument()
	d.Pods["b1"] = Entry{Reason: "disk", Since: now}

	ro := &Rollout{Spec: RolloutSpec{Mode: ModeDrain, Restart: true}, State: RolloutRunning,
		Pods: []RolloutPod{{Pod: "a1", Step: StepPending}, {Pod: "c1", Step: StepPending}}}
	assert.True(t, ro.entry("r", now).Drain(), "the entry is still a drain")
	assert.Contains(t, turnBlocked("r", ro, "a1", d, view, now), "would cost 2 Raft group(s) their quorum")

	// A stream of two replicas can never have a restart turn.
	err := neverSafe(safetyView(safetyStream("pair", "a1", "b1")), []string{"a1"}, !ro.Spec.takesOut())
	require.Error(t, err)
	assert.Contains(t, err.Error(), "their quorum even with every other peer healthy")

	delete(d.Pods, "b1")
	require.Empty(t, turnBlocked("r", ro, "a1", d, view, now))
	require.True(t, advance("r", ro, d, view, now, restartOutcome{}))
	require.Equal(t, StepEntering, ro.Pods[0].Step)
	d.Rollouts = map[string]Rollout{"r": *ro}
	assert.True(t, OutOfService(view, d, now)["a1"], "entering a restart turn")
	ro.Pods[0].Step = StepRestarting
	d.Rollouts["r"] = *ro
	assert.True(t, OutOfService(view, d, now)["a1"], "restarting")
	assert.False(t, OutOfService(view, d, now)["c1"])

	hold := &Rollout{Spec: RolloutSpec{Mode: ModeDrain, Hold: "5m"}, State: RolloutRunning,
		Pods: []RolloutPod{{Pod: "a1", Step: StepHolding}}}
	d.Rollouts = map[string]Rollout{"h": *hold}
	assert.False(t, OutOfService(view, d, now)["a1"], "a drain that only holds stays in service")
}

// TestRolloutTurnEndsWithItsEntry checks that a turn whose entry was
// removed (DELETE /pods/<pod>) or taken over ends in every step, not only
// while entering: a hold is not sat out, and a pod whose restart was not
// asked for yet is not restarted.
func TestRolloutTurnEndsWithItsEntry(t *testing.T) {
	now := time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
	view := safetyView(safetyMeta("a1", "b1", "c1"))
	for _, tc := range []struct {
		step  RolloutStep
		spec  RolloutSpec
		entry *Entry
	}{
		{StepHolding, RolloutSpec{Hold: "1h"}, nil},
		{StepHolding, RolloutSpec{Hold: "1h"}, &Entry{Reason: "mine now", RequestedBy: "ops"}},
		{StepRestarting, RolloutSpec{Restart: true}, nil},
	} {
		ro := &Rollout{Spec: tc.spec, State: RolloutRunning,
			Pods: []RolloutPod{{Pod: "a1", Step: tc.step, Entered: &now, InMaintenance: &now, Restarted: &now}}}
		d := NewDocument()
		if tc.entry != nil {
			d.Pods["a1"] = *tc.entry
		}
		require.True(t, advance("r", ro, d, view, now.Add(time.Second), restartOutcome{}), "%s", tc.step)
		assert.Equal(t, StepExiting, ro.Pods[0].Step, "%s", tc.step)
		if tc.entry != nil {
			assert.Equal(t, *tc.entry, d.Pods["a1"], "an entry taken over is not the rollout's to remove")
		}
	}

	// The entry still the rollout's: the hold goes on.
	ro := &Rollout{Spec: RolloutSpec{Hold: "1h"}, State: RolloutRunning,
		Pods: []RolloutPod{{Pod: "a1", Step: StepHolding, InMaintenance: &now}}}
	d := NewDocument()
	d.Pods["a1"] = ro.entry("r", now)
	assert.False(t, advance("r", ro, d, view, now.Add(time.Second), restartOutcome{}))
	assert.Equal(t, StepHolding, ro.Pods[0].Step)
}

// TestRolloutStopsWhenItsPodIsGone checks a rollout stopping while the pod
// having its turn has left the cluster (scaled down): it stops instead of
// waiting for ever for the pod to be back, which would block every other
// rollout. A pod still in the cluster is waited for, and the view says
// what for.
func TestRolloutStopsWhenItsPodIsGone(t *testing.T) {
	now := time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
	view := safetyView(safetyMeta("a1", "b1", "c1"))
	ro := &Rollout{Spec: RolloutSpec{Hold: "1h"}, State: RolloutStopping,
		Pods: []RolloutPod{{Pod: "gone-0", Step: StepExiting, Exited: &now}, {Pod: "a1", Step: StepPending}}}
	d := NewDocument()
	require.True(t, advance("r", ro, d, view, now, restartOutcome{}))
	assert.Equal(t, RolloutStopped, ro.State)

	ro = &Rollout{Spec: RolloutSpec{Hold: "1h"}, State: RolloutStopping,
		Pods: []RolloutPod{{Pod: "a1", Step: StepExiting, Exited: &now}}}
	d.Status["a1"] = Status{Phase: PhaseCatchingUp, Message: "catching up"}
	assert.False(t, advance("r", ro, d, view, now, restartOutcome{}))
	assert.Equal(t, RolloutStopping, ro.State)
	v := rolloutView("r", *ro, d, view, now)
	assert.Equal(t, "a1", v.Current)
	assert.Equal(t, "pod a1 is CatchingUp", v.Waiting)
}

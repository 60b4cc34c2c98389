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

package maintenance

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/prober-dev/prober/natsraft"
)

// TestJudgeDrain checks the drain rule: a drain needs, for every group of
// a requested pod, one other member that can lead, and nothing more.
func TestJudgeDrain(t *testing.T) {
	r3 := safetyStream("orders", "a1", "b1", "c1")
	for _, tc := range []struct {
		name                         string
		view                         *natsraft.View
		requested, inMaint, draining []string
		want                         []string // reasons
	}{
		{"R3 with healthy peers", safetyView(safetyMeta("a1", "b1", "c1"), r3), []string{"a1"}, nil, nil, nil},
		{"R3 with one peer in maintenance: quorum lost for a fence, fine for a drain",
			safetyView(r3), []string{"a1"}, []string{"b1"}, nil, nil},
		{"R3 whose other peers are in maintenance and draining", safetyView(r3), []string{"a1"}, []string{"b1"}, []string{"c1"},
			[]string{"stream orders of account APP (R3) would keep no peer to take its leadership: a1 requested, b1 in maintenance, c1 draining"}},
		{"R3 whose other peers are not current", safetyView(safetyPeer(safetyPeer(r3, "b1", safetyNotCurrent), "c1", safetyOffline)),
			[]string{"a1"}, nil, nil,
			[]string{"stream orders of account APP (R3) would keep no peer to take its leadership: a1 requested, b1 not current, c1 offline"}},
		{"R1 on the pod cannot move", safetyView(safetyStream("single", "a1")), []string{"a1"}, nil, nil,
			[]string{"stream single of account APP (R1) lives only on a1 requested: its leadership cannot move"}},
		{"a pod already draining is not judged again", safetyView(safetyStream("single", "a1")), []string{"a1"}, nil, []string{"a1"}, nil},
		{"a dc drain", safetyView(safetyStream("local", "a1", "a2"), r3), []string{"a1", "a2"}, nil, nil,
			[]string{"stream local of account APP (R2) would keep no peer to take its leadership: a1 requested, a2 requested"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := JudgeDrain(tc.view, tc.requested, tc.inMaint, tc.draining)
			if tc.want == nil {
				assert.Empty(t, got.Violations)
			} else {
				assert.Equal(t, tc.want, reasons(got.Violations))
			}
			for _, v := range got.Violations {
				assert.Equal(t, 1, v.Quorum)
			}
		})
	}
	// A draining peer still counts for a fence's quorum: it is a voter.
	assert.Empty(t, Judge(safetyView(r3), []string{"a1"}, nil).Violations)
}

// TestDrainIsNotOutOfService checks that a drain keeps the pod in service
// (for the safety rule and the diagnosis) while Draining names it.
func TestDrainIsNotOutOfService(t *testing.T) {
	v := safetyView()
	d := NewDocument()
	d.Pods["a1"] = Entry{Since: docT0, Mode: ModeDrain}
	d.Pods["b1"] = Entry{Since: docT0}
	d.Status["c1"] = Status{Phase: PhaseCatchingUp, Mode: ModeDrain}
	assert.Equal(t, map[string]bool{"b1": true}, OutOfService(v, d, docT0))
	assert.Equal(t, map[string]bool{"a1": true, "c1": true}, Draining(v, d, docT0))
	_, held := d.HeldAtBoot("a1", "a", docT0)
	assert.False(t, held, "a drained pod boots serving")
}

// leading sets each group's leader to its first peer, as safetyGroup marks it.
func leading(v *natsraft.View) *natsraft.View {
	for i := range v.Groups {
		v.Groups[i].Leader = v.Groups[i].Peers[0].Name
	}
	return v
}

// TestPlanBalance checks that the plan evens out a skewed cluster, moves
// only to healthy peers and leaves a balanced one alone.
func TestPlanBalance(t *testing.T) {
	pods := []string{"a1", "b1", "c1"}
	skewed := leading(safetyView(safetyMeta("a1", "b1", "c1"), safetyStream("s1", "a1", "b1", "c1"),
		safetyStream("s2", "a1", "b1", "c1"), safetyStream("s3", "a1", "b1", "c1")))
	moves, after := natsraft.PlanBalance(skewed, pods)
	assert.Equal(t, 4, natsraft.Skew(natsraft.LeaderCounts(skewed, pods)))
	assert.LessOrEqual(t, natsraft.Skew(after), 1, "after %v", after)
	assert.Len(t, moves, 2)
	for _, m := range moves {
		assert.Equal(t, "a1", m.From)
	}

	sick := leading(safetyView(safetyPeer(safetyPeer(safetyStream("s1", "a1", "b1", "c1"), "b1", safetyNotCurrent), "c1", safetyOffline),
		safetyStream("s2", "a1", "b1", "c1"), safetyStream("s3", "a1", "b1", "c1")))
	moves, _ = natsraft.PlanBalance(sick, pods)
	assert.NotEmpty(t, moves)
	for _, m := range moves {
		assert.NotEqual(t, "s1", m.Group, "s1 has no healthy peer to move to")
	}

	balanced := leading(safetyView(safetyStream("s1", "a1", "b1"), safetyStream("s2", "b1", "c1"), safetyStream("s3", "c1", "a1")))
	moves, _ = natsraft.PlanBalance(balanced, pods)
	assert.Empty(t, moves)
}

// TestPlanBalanceTo checks that a balance toward one pod (a pod back from
// a restart, leading nothing) moves only to it, from the pods leading the
// most, until it leads its share, and that it moves nothing for a pod not
// among those that can lead.
func TestPlanBalanceTo(t *testing.T) {
	pods := []string{"a1", "b1", "c1"}
	// a1 leads 4, b1 leads 2, c1 (restarted) leads nothing.
	v := leading(safetyView(safetyMeta("a1", "b1", "c1"), safetyStream("s1", "a1", "b1", "c1"),
		safetyStream("s2", "a1", "b1", "c1"), safetyStream("s3", "a1", "b1", "c1"),
		safetyStream("s4", "b1", "a1", "c1"), safetyStream("s5", "b1", "a1", "c1")))
	moves, after := natsraft.PlanBalanceTo(v, pods, "c1")
	assert.Equal(t, map[string]int{"a1": 4, "b1": 2, "c1": 0}, natsraft.LeaderCounts(v, pods))
	assert.Equal(t, map[string]int{"a1": 2, "b1": 2, "c1": 2}, after)
	require.Len(t, moves, 2)
	for _, m := range moves {
		assert.Equal(t, "c1", m.To, "%+v", m)
		assert.Equal(t, "a1", m.From, "from the pod leading the most: %+v", m)
	}

	// Toward a pod that already has its share, nothing moves, though the
	// plain balance would move to b1, which leads nothing.
	shared := leading(safetyView(safetyStream("s1", "a1", "b1", "c1"), safetyStream("s2", "a1", "b1", "c1"),
		safetyStream("s3", "a1", "b1", "c1"), safetyStream("s4", "c1", "a1", "b1"), safetyStream("s5", "c1", "a1", "b1")))
	moves, _ = natsraft.PlanBalanceTo(shared, pods, "c1")
	assert.Empty(t, moves, "c1 leads 2, a1 3")
	moves, _ = natsraft.PlanBalance(shared, pods)
	assert.NotEmpty(t, moves)

	// A pod that cannot lead (not among pods: out of service, draining,
	// JetStream off) takes nothing.
	moves, after = natsraft.PlanBalanceTo(v, []string{"a1", "b1"}, "c1")
	assert.Empty(t, moves)
	assert.Equal(t, map[string]int{"a1": 4, "b1": 2}, after)

	// Not to a peer that is not current.
	sick := leading(safetyView(safetyPeer(safetyStream("s1", "a1", "b1", "c1"), "c1", safetyNotCurrent),
		safetyStream("s2", "a1", "b1", "c1"), safetyStream("s3", "a1", "b1", "c1")))
	moves, _ = natsraft.PlanBalanceTo(sick, pods, "c1")
	require.Len(t, moves, 1)
	assert.NotEqual(t, "s1", moves[0].Group)
}

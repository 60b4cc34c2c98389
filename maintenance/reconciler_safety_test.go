package maintenance_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/prober-dev/prober/filestore"
	"github.com/prober-dev/prober/maintenance"
	"github.com/prober-dev/prober/natsraft"
)

// recCluster is a cluster view a test changes while a reconciler reads it:
// nats-0..2 in recDC, an R3 meta group and an R3 stream.
type recCluster struct {
	mu      sync.Mutex
	offline map[string]bool
	// streams adds that many R3 streams S000, S001, … on the three nodes.
	streams int
}

func (c *recCluster) set(name string, down bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.offline == nil {
		c.offline = map[string]bool{}
	}
	c.offline[name] = down
}

func (c *recCluster) View(context.Context) (*natsraft.View, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	v := &natsraft.View{
		At:    time.Now(),
		Nodes: []natsraft.Node{node("nats-0", recDC), node(recPod, recDC), node("nats-2", recDC)},
		Groups: []natsraft.Group{
			group(natsraft.KindMeta, natsraft.MetaGroupName, "nats-0", recPod, "nats-2"),
			group(natsraft.KindStream, "ORDERS", "nats-0", recPod, "nats-2"),
		},
	}
	for i := range c.streams {
		v.Groups = append(v.Groups, group(natsraft.KindStream, fmt.Sprintf("S%03d", i), "nats-0", recPod, "nats-2"))
	}
	for name, down := range c.offline {
		if down {
			offline(v, name)
		}
	}
	return v, nil
}

// recNats2Down returns the options of the local pod's reconciler, driving
// node, over a cluster whose nats-2 is offline: taking the pod out then
// costs the meta group and ORDERS their quorum.
func recNats2Down(t *testing.T, node *recNode) (*filestore.Store, *recCluster, maintenance.ReconcilerOptions) {
	t.Helper()
	fs := recFileStore(t)
	cluster := &recCluster{}
	cluster.set("nats-2", true)
	return fs, cluster, maintenance.ReconcilerOptions{Store: fs, Node: node, Views: cluster, Resync: time.Second, SafetyPoll: 10 * time.Millisecond}
}

// recStartNats2Down runs the local pod's reconciler over that cluster.
func recStartNats2Down(t *testing.T) (*filestore.Store, *recNode, *recCluster, *maintenance.Reconciler) {
	t.Helper()
	node := &recNode{}
	fs, cluster, opts := recNats2Down(t, node)
	r, _ := recStart(t, opts)
	return fs, node, cluster, r
}

// TestReconcilerHeldBackBySafety checks that the safety rule is judged
// again for the local pod at each step that takes it away: a peer lost
// after the request was accepted holds the pod back at Requested, still
// ready, until the peer is back; a forced entry is not held.
func TestReconcilerHeldBackBySafety(t *testing.T) {
	fs, node, cluster, r := recStartNats2Down(t)
	recUpdate(t, fs, func(d *maintenance.Document) {
		d.Pods[recPod] = maintenance.Entry{Reason: "accepted while nats-2 was up", Since: time.Now()}
	})
	recWaitFor(t, "held back", func() bool {
		st, ok := recStatus(t, fs)
		return ok && st.Phase == maintenance.PhaseRequested && strings.Contains(st.Message, "held back")
	})
	st, _ := recStatus(t, fs)
	assert.Contains(t, st.Message, natsraft.MetaGroupName)
	assert.Contains(t, st.Message, "ORDERS")
	assert.Contains(t, st.Message, "nats-2 offline")
	assert.Empty(t, node.Calls(), "nothing is done to a held node")
	ready, why := r.Ready()
	assert.True(t, ready, "a held node still serves: %s", why)
	assert.Contains(t, why, "held back")

	cluster.set("nats-2", false)
	recWaitPhase(t, r, fs, maintenance.PhaseInMaintenance)
	assert.Equal(t, recEnterCalls, node.Calls(), "goes on by itself once safe")
}

// TestReconcilerHeldBackBeforeFence checks the last look before the fence:
// a node already quiesced when the cluster turns unsafe gets its JetStream
// back and waits, ready again once it has caught up.
func TestReconcilerHeldBackBeforeFence(t *testing.T) {
	fs := recFileStore(t)
	cluster := &recCluster{}
	var caught atomic.Bool
	node := &recNode{caughtUp: func(int) (bool, string) {
		if caught.Load() {
			return true, ""
		}
		return false, "meta _meta_: not heard from leader nats-0 since its JetStream started"
	}}
	node.before = func(_ context.Context, op string, n int) error {
		if op == recOpMoveClients && n == 1 {
			cluster.set("nats-0", true) // lost while the pod was on its way
		}
		return nil
	}
	r, _ := recStart(t, maintenance.ReconcilerOptions{Store: fs, Node: node, Views: cluster, Resync: time.Second, SafetyPoll: 10 * time.Millisecond})
	recUpdate(t, fs, func(d *maintenance.Document) { d.Pods[recPod] = maintenance.Entry{Since: time.Now()} })
	recWaitFor(t, "resumed and held back", func() bool {
		st, ok := recStatus(t, fs)
		return ok && st.Phase == maintenance.PhaseRequested && strings.Contains(st.Message, "held back") && node.count(recOpResume) == 1
	})
	assert.Zero(t, node.count(recOpFence), "never fenced while unsafe")
	assert.False(t, node.Quiesced(), "JetStream back on")
	recWaitFor(t, "not ready while catching up", func() bool {
		ready, why := r.Ready()
		return !ready && strings.Contains(why, "not heard from leader")
	})
	caught.Store(true)
	recWaitFor(t, "ready once caught up, still held back", func() bool {
		ready, why := r.Ready()
		return ready && strings.Contains(why, "held back")
	})

	cluster.set("nats-0", false)
	recWaitPhase(t, r, fs, maintenance.PhaseInMaintenance)
	assert.Equal(t, 2, node.count(recOpHandOff), "the second attempt hands off again")
}

// TestReconcilerForcedIsNotHeld checks that a forced entry goes on over the
// safety rule, as the request did.
func TestReconcilerForcedIsNotHeld(t *testing.T) {
	fs, node, _, r := recStartNats2Down(t)
	recUpdate(t, fs, func(d *maintenance.Document) {
		d.Pods[recPod] = maintenance.Entry{Reason: "disk replaced", Force: true, Since: time.Now()}
	})
	recWaitPhase(t, r, fs, maintenance.PhaseInMaintenance)
	assert.Equal(t, recEnterCalls, node.Calls())
}

// recInForcedByDC gives the pod an entry of its own, not forced, and its
// dc a forced one, and waits until the pod is in maintenance.
func recInForcedByDC(t *testing.T, fs *filestore.Store, r *maintenance.Reconciler) {
	t.Helper()
	recUpdate(t, fs, func(d *maintenance.Document) {
		d.Pods[recPod] = maintenance.Entry{Reason: "accepted while nats-2 was up", Since: time.Now()}
		d.DCs[recDC] = maintenance.Entry{Reason: "whole dc, forced", Force: true, Since: time.Now()}
	})
	recWaitPhase(t, r, fs, maintenance.PhaseInMaintenance)
}

// TestReconcilerForcedByItsDC checks that a pod whose own entry is not
// forced goes on over the safety rule when its dc's forced entry wants it
// out too: the own entry wins for what it says, not to hold back what the
// dc's request forced.
func TestReconcilerForcedByItsDC(t *testing.T) {
	fs, node, _, r := recStartNats2Down(t)
	recInForcedByDC(t, fs, r)
	assert.Equal(t, recEnterCalls, node.Calls())
	st, _ := recStatus(t, fs)
	assert.Contains(t, st.Message, "pod."+recPod, "the pod's own entry is the one in force")
}

// TestReconcilerBackWhenForceEnds checks a forced entry that ends while
// one that is not forced still wants the pod out: the entry left keeps the
// pod out only if the rule allows it. Here it does not (nats-2 is offline),
// so the pod comes back, caught up, and waits at Requested, held back; once
// nats-2 is back it goes in again on the entry left.
func TestReconcilerBackWhenForceEnds(t *testing.T) {
	fs, node, cluster, r := recStartNats2Down(t)
	recInForcedByDC(t, fs, r)
	require.Equal(t, recEnterCalls, node.Calls())

	recUpdate(t, fs, func(d *maintenance.Document) { delete(d.DCs, recDC) })
	recWaitFor(t, "back and held back", func() bool {
		st, ok := recStatus(t, fs)
		return ok && st.Phase == maintenance.PhaseRequested && strings.Contains(st.Message, "held back")
	})
	assert.Equal(t, append(slices.Clone(recEnterCalls), recOpUnfence, recOpResume, recOpCaughtUp), node.Calls(),
		"unfenced, resumed and caught up before it waits")
	assert.False(t, node.Quiesced(), "JetStream back on")
	fenced, err := node.Fenced()
	require.NoError(t, err)
	assert.False(t, fenced)
	ready, why := r.Ready()
	assert.True(t, ready, "a held node serves: %s", why)

	cluster.set("nats-2", false)
	recWaitPhase(t, r, fs, maintenance.PhaseInMaintenance)
	st, _ := recStatus(t, fs)
	assert.Contains(t, st.Message, "pod."+recPod, "in again on its own entry")
}

// TestReconcilerBackWhenForceEndsAfterRestart checks the same with the
// prober restarted while the pod was in under the forced entry: the status
// says so (inByForce), and the new reconciler judges the entry left as the
// old one would have.
func TestReconcilerBackWhenForceEndsAfterRestart(t *testing.T) {
	node := &recNode{}
	fs, _, opts := recNats2Down(t, node)
	r, stop := recStart(t, opts)
	recInForcedByDC(t, fs, r)
	st, _ := recStatus(t, fs)
	require.True(t, st.InByForce, "stored: in under a forced entry")
	stop()

	recUpdate(t, fs, func(d *maintenance.Document) { delete(d.DCs, recDC) })
	recStart(t, opts)
	recWaitFor(t, "back and held back", func() bool {
		st, ok := recStatus(t, fs)
		return ok && st.Phase == maintenance.PhaseRequested && strings.Contains(st.Message, "held back")
	})
	assert.Equal(t, append(slices.Clone(recEnterCalls), recOpUnfence, recOpResume, recOpCaughtUp), node.Calls(),
		"unfenced, resumed and caught up before it waits")
	st, _ = recStatus(t, fs)
	assert.False(t, st.InByForce)
}

// TestReconcilerBackWhenRestartedOnTheWay checks a prober restarted while
// the pod comes back because the forced entry ended (here: its unfence
// hangs until the reconciler stops): the status still says inByForce, so
// the new reconciler judges again and brings the pod back instead of
// keeping it in on the entry left.
func TestReconcilerBackWhenRestartedOnTheWay(t *testing.T) {
	unfencing := make(chan struct{})
	var hang atomic.Bool
	hang.Store(true)
	node := &recNode{before: func(ctx context.Context, op string, _ int) error {
		if op == recOpUnfence && hang.Load() {
			close(unfencing)
			<-ctx.Done()
			return ctx.Err()
		}
		return nil
	}}
	fs, _, opts := recNats2Down(t, node)
	r, stop := recStart(t, opts)
	recInForcedByDC(t, fs, r)
	recUpdate(t, fs, func(d *maintenance.Document) { delete(d.DCs, recDC) })
	recWaitClosed(t, unfencing, "the pod starting back")
	stop()
	st, _ := recStatus(t, fs)
	require.Equal(t, maintenance.PhaseUnfencing, st.Phase)
	require.True(t, st.InByForce, "still stored while the pod comes back")
	require.True(t, node.isFenced())

	hang.Store(false)
	recStart(t, opts)
	recWaitFor(t, "back and held back", func() bool {
		st, ok := recStatus(t, fs)
		return ok && st.Phase == maintenance.PhaseRequested && strings.Contains(st.Message, "held back")
	})
	assert.False(t, node.isFenced())
	assert.False(t, node.Quiesced())
	st, _ = recStatus(t, fs)
	assert.False(t, st.InByForce)
}

// TestReconcilerStaysWhenForceEndsSafely checks the same end of a forced
// entry when the entry left may keep the pod out: it stays in maintenance.
func TestReconcilerStaysWhenForceEndsSafely(t *testing.T) {
	fs := recFileStore(t)
	node := &recNode{}
	r, _ := recStart(t, maintenance.ReconcilerOptions{Store: fs, Node: node, Views: &recCluster{}, Resync: 50 * time.Millisecond})
	recInForcedByDC(t, fs, r)
	recUpdate(t, fs, func(d *maintenance.Document) { delete(d.DCs, recDC) })
	ended := time.Now()
	recWaitFor(t, "two passes in maintenance after the forced entry ended", func() bool {
		st, ok := recStatus(t, fs)
		return ok && st.Phase == maintenance.PhaseInMaintenance && st.ObservedAt.After(ended.Add(100*time.Millisecond))
	})
	assert.Equal(t, recEnterCalls, node.Calls(), "nothing undone")
	st, _ := recStatus(t, fs)
	assert.False(t, st.InByForce, "judged once: in on the entry left")
}

// TestReconcilerHandOffScope checks what the hand-off is told of the
// other pods: to avoid those out of service as the document says, so that
// a leadership is not moved twice, and which are draining, which a drain
// never moves a leadership to (two pods draining at once would hand the
// groups they share back and forth).
func TestReconcilerHandOffScope(t *testing.T) {
	for _, tc := range []struct {
		name              string
		other, self       maintenance.Entry
		otherStatus       maintenance.Phase
		avoided, draining []string
		leaving           bool
	}{
		{name: "a fence avoids a pod on its way in",
			other: maintenance.Entry{Reason: "forced earlier", Force: true}, otherStatus: maintenance.PhaseFencing,
			self: maintenance.Entry{Reason: "also", Force: true}, avoided: []string{"nats-0"}, leaving: true},
		{name: "a drain knows the other drains",
			other: maintenance.Entry{Reason: "drain too", Mode: maintenance.ModeDrain},
			self:  maintenance.Entry{Reason: "drain", Mode: maintenance.ModeDrain}, draining: []string{"nats-0"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fs := recFileStore(t)
			node := &recNode{leads: leadsOnce("stream ORDERS")}
			r, _ := recStart(t, maintenance.ReconcilerOptions{Store: fs, Node: node, Views: &recCluster{}, Resync: time.Second})
			recUpdate(t, fs, func(d *maintenance.Document) {
				now := time.Now()
				tc.other.Since, tc.self.Since = now, now
				d.Pods["nats-0"] = tc.other
				if tc.otherStatus != "" {
					d.Status["nats-0"] = maintenance.Status{Phase: tc.otherStatus, ObservedAt: now, PhaseSince: now}
				}
				d.Pods[recPod] = tc.self
			})
			recWaitPhase(t, r, fs, maintenance.PhaseInMaintenance)
			node.mu.Lock()
			defer node.mu.Unlock()
			require.NotEmpty(t, node.avoided)
			assert.Equal(t, tc.avoided, node.avoided[0])
			assert.Equal(t, tc.draining, node.draining[0])
			assert.Equal(t, tc.leaving, node.leaving[0], "a fence's hand-off is told the node is leaving, a drain's not")
		})
	}
}

// TestReconcilerHandOffScopeByMode checks what each mode tells the
// hand-off: a fence that the node is leaving (a group that loses its
// quorum with the node whoever leads it stays put), a drain that it is not
// (the node stays routed, so every leadership moves).
func TestReconcilerHandOffScopeByMode(t *testing.T) {
	for _, mode := range []string{maintenance.ModeFence, maintenance.ModeDrain} {
		t.Run(mode, func(t *testing.T) {
			fs := recFileStore(t)
			node := &recNode{leads: leadsOnce("stream ORDERS")}
			r, _ := recStart(t, maintenance.ReconcilerOptions{Store: fs, Node: node, Resync: time.Second})
			recUpdate(t, fs, func(d *maintenance.Document) { d.Pods[recPod] = maintenance.Entry{Since: time.Now(), Mode: mode} })
			recWaitPhase(t, r, fs, maintenance.PhaseInMaintenance)
			node.mu.Lock()
			defer node.mu.Unlock()
			require.NotEmpty(t, node.leaving)
			for _, leaving := range node.leaving {
				assert.Equal(t, mode == maintenance.ModeFence, leaving)
			}
		})
	}
}

// TestReconcilerDrainFailureKeepsReady checks that a drain whose hand-off
// fails leaves the pod ready (a drain takes it out of nothing), Failed
// and retried when the entry is not forced, and, when it is (its peers
// are down: what one forces for), in maintenance but for what no peer can
// take.
func TestReconcilerDrainFailureKeepsReady(t *testing.T) {
	for _, force := range []bool{false, true} {
		t.Run(fmt.Sprintf("force %v", force), func(t *testing.T) {
			fs := recFileStore(t)
			node := &recNode{
				leads: func() []string { return []string{"stream ORDERS"} },
				before: func(_ context.Context, op string, _ int) error {
					if op == recOpHandOff {
						return errors.New("no other healthy peer to take over stream ORDERS")
					}
					return nil
				},
			}
			r, _ := recStart(t, maintenance.ReconcilerOptions{Store: fs, Node: node, Resync: time.Second})
			recUpdate(t, fs, func(d *maintenance.Document) {
				d.Pods[recPod] = maintenance.Entry{Reason: "peers down", Force: force, Since: time.Now(), Mode: maintenance.ModeDrain}
			})
			want, msg := maintenance.PhaseFailed, "hand off nats-1: no other healthy peer to take over stream ORDERS"
			if force {
				want, msg = maintenance.PhaseInMaintenance, "drained but for what no healthy peer can take: "+msg
			}
			recWaitFor(t, "the drain's "+string(want), func() bool {
				st, ok := recStatus(t, fs)
				return ok && st.Phase == want && strings.HasPrefix(st.Message, msg)
			})
			// The next attempts fail the same way.
			recWaitFor(t, "another hand-off", func() bool {
				n := 0
				for _, c := range node.Calls() {
					if c == recOpHandOff {
						n++
					}
				}
				return n >= 2
			})
			ready, why := r.Ready()
			assert.True(t, ready, why)
			assert.Contains(t, why, "draining")
		})
	}
}

// TestReconcilerHandsOffAgainBeforeQuiesce checks that a node quiesces
// only once it leads nothing: a leadership regained after the hand-off is
// handed off again first.
func TestReconcilerHandsOffAgainBeforeQuiesce(t *testing.T) {
	fs := recFileStore(t)
	node := &recNode{leads: leadsOnce("stream ORDERS")}
	r, _ := recStart(t, maintenance.ReconcilerOptions{Store: fs, Node: node, Resync: time.Second})
	recUpdate(t, fs, func(d *maintenance.Document) { d.Pods[recPod] = maintenance.Entry{Since: time.Now()} })
	recWaitPhase(t, r, fs, maintenance.PhaseInMaintenance)
	assert.Equal(t, []string{recOpHandOff, recOpHandOff, recOpQuiesce, recOpMoveClients, recOpFence}, node.Calls())
}

// leadsOnce is a recNode.leads that names groups on its first call and
// nothing after: a leadership regained once.
func leadsOnce(groups ...string) func() []string {
	var once sync.Once
	return func() []string {
		var out []string
		once.Do(func() { out = groups })
		return out
	}
}

// TestReconcilerFenceUnreadable checks that a fence whose state cannot be
// read is a failure reported as such, and the node is left as it is: no
// guess either way.
func TestReconcilerFenceUnreadable(t *testing.T) {
	for _, desired := range []bool{true, false} {
		name := "leaving"
		if desired {
			name = "entering"
		}
		t.Run(name, func(t *testing.T) {
			fs := recFileStore(t)
			node := &recNode{fenced: true, quiesced: true, fenceErr: errors.New("netlink: permission denied")}
			if desired {
				recUpdate(t, fs, func(d *maintenance.Document) { d.Pods[recPod] = maintenance.Entry{Since: time.Now()} })
			}
			r, _ := recStart(t, maintenance.ReconcilerOptions{Store: fs, Node: node, Resync: time.Second})
			recWaitPhase(t, r, fs, maintenance.PhaseFailed)
			st, _ := recStatus(t, fs)
			assert.Contains(t, st.Message, "read the fence of "+recPod)
			assert.Contains(t, st.Message, "permission denied")
			assert.Empty(t, node.Calls(), "nothing done on a guess")
			ready, _ := r.Ready()
			assert.False(t, ready)
		})
	}
}

// TestReconcilerRecordsTheEntryInForce checks that the status names the
// entry the node is in maintenance for, which a recreated pod reads before
// its server can tell its dc.
func TestReconcilerRecordsTheEntryInForce(t *testing.T) {
	fs := recFileStore(t)
	node := &recNode{}
	r, _ := recStart(t, maintenance.ReconcilerOptions{Store: fs, Node: node, Resync: time.Second})
	recUpdate(t, fs, func(d *maintenance.Document) { d.DCs[recDC] = maintenance.Entry{Since: time.Now()} })
	recWaitPhase(t, r, fs, maintenance.PhaseInMaintenance)
	st, _ := recStatus(t, fs)
	assert.Equal(t, "dc."+recDC, st.Entry)
	d, err := fs.Get(context.Background())
	require.NoError(t, err)
	key, ok := d.HeldAtBoot(recPod, "", time.Now())
	assert.True(t, ok, "held at boot though the pod has no dc label")
	assert.Equal(t, "dc."+recDC, key)
}

// TestReconcilerEvacuates checks the order of an evacuating entry: the
// streams of one replica are moved off first, recorded in the status, and
// moved back once the node has caught up on its way out, unless the entry
// says to keep them where they went.
func TestReconcilerEvacuates(t *testing.T) {
	for _, keep := range []bool{false, true} {
		name := "moved back"
		if keep {
			name = "kept where they went"
		}
		t.Run(name, func(t *testing.T) {
			fs := recFileStore(t)
			node := &recNode{singles: []string{"APP/solo", "APP/scratch"}}
			r, _ := recStart(t, maintenance.ReconcilerOptions{Store: fs, Node: node, Views: &recCluster{}, Resync: time.Second})
			recUpdate(t, fs, func(d *maintenance.Document) {
				d.Pods[recPod] = maintenance.Entry{Since: time.Now(), Evacuate: true, KeepEvacuated: keep}
			})
			recWaitPhase(t, r, fs, maintenance.PhaseInMaintenance)
			assert.Equal(t, append([]string{recOpEvacuate}, recEnterCalls...), node.Calls())
			st, _ := recStatus(t, fs)
			if keep {
				assert.Empty(t, st.Evacuated)
			} else {
				assert.Equal(t, []string{"APP/solo", "APP/scratch"}, st.Evacuated)
			}

			recUpdate(t, fs, func(d *maintenance.Document) { delete(d.Pods, recPod) })
			recWaitPhase(t, r, fs, maintenance.PhaseActive)
			node.mu.Lock()
			defer node.mu.Unlock()
			if keep {
				assert.NotContains(t, node.calls, recOpRestore)
				assert.Empty(t, node.restored)
			} else {
				assert.Equal(t, []string{"APP/solo", "APP/scratch"}, node.restored)
				assert.Equal(t, recOpRestore, node.calls[len(node.calls)-1], "after the catch-up")
			}
		})
	}
}

// Before the node quiesces, its status records the groups that will have
// no member serving (Status.Dark): here the whole dc is going out, so the
// meta group and ORDERS, whose other members are on their way out too. A
// node whose peers stay in service records nothing.
func TestReconcilerRecordsDarkGroups(t *testing.T) {
	for _, tc := range []struct {
		name string
		seed func(d *maintenance.Document)
		want []maintenance.GroupRef
	}{
		{
			name: "the whole dc, forced",
			seed: func(d *maintenance.Document) {
				d.DCs[recDC] = maintenance.Entry{Reason: "power", Since: time.Now(), Force: true}
			},
			want: []maintenance.GroupRef{
				{Kind: natsraft.KindMeta, Group: natsraft.MetaGroupName, Peers: []string{"nats-0", recPod, "nats-2"}},
				{Kind: natsraft.KindStream, Account: "APP", Group: "ORDERS", Peers: []string{"nats-0", recPod, "nats-2"}},
			},
		},
		{
			name: "one pod",
			seed: func(d *maintenance.Document) { d.Pods[recPod] = maintenance.Entry{Reason: "disk", Since: time.Now()} },
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fs := recFileStore(t)
			node := &recNode{}
			recUpdate(t, fs, tc.seed)
			r, _ := recStart(t, maintenance.ReconcilerOptions{Store: fs, Node: node, Views: &recCluster{}, Resync: time.Second, SafetyPoll: 10 * time.Millisecond})
			recWaitPhase(t, r, fs, maintenance.PhaseInMaintenance)
			st, ok := recStatus(t, fs)
			require.True(t, ok)
			assert.ElementsMatch(t, tc.want, st.Dark)
		})
	}
}

// darkCluster is recCluster until dark is set; then, while node is
// quiesced, no server reports a group and no node has JetStream on: every
// member is out of service (nats-0 and nats-2 are not driven here).
type darkCluster struct {
	recCluster
	node *recNode
	dark atomic.Bool
}

func (c *darkCluster) View(ctx context.Context) (*natsraft.View, error) {
	v, err := c.recCluster.View(ctx)
	if err == nil && c.dark.Load() && c.node.Quiesced() {
		v.Groups = nil
		for i := range v.Nodes {
			v.Nodes[i].JetStream = false
		}
	}
	return v, err
}

// TestReconcilerBackWhenForceEndsOnDarkGroups checks the judgement made
// when the forced entry ends on groups no server reports any more: the
// pod recorded them as it quiesced (its peers were on their way out with
// the dc), so the rule still sees that the entry left would keep them
// below their quorum, and the pod comes back.
func TestReconcilerBackWhenForceEndsOnDarkGroups(t *testing.T) {
	fs := recFileStore(t)
	node := &recNode{}
	cluster := &darkCluster{node: node}
	cluster.set("nats-2", true) // and nats-2 is down once the others are back
	r, _ := recStart(t, maintenance.ReconcilerOptions{Store: fs, Node: node, Views: cluster, Resync: time.Second, SafetyPoll: 10 * time.Millisecond})
	recInForcedByDC(t, fs, r)
	st, _ := recStatus(t, fs)
	require.Len(t, st.Dark, 2, "the meta group and ORDERS had no other member serving")

	cluster.dark.Store(true)
	recUpdate(t, fs, func(d *maintenance.Document) { delete(d.DCs, recDC) })
	recWaitFor(t, "back and held back", func() bool {
		st, ok := recStatus(t, fs)
		return ok && st.Phase == maintenance.PhaseRequested && strings.Contains(st.Message, "held back")
	})
	st, _ = recStatus(t, fs)
	assert.Contains(t, st.Message, natsraft.MetaGroupName)
	assert.Contains(t, st.Message, "ORDERS")
	assert.Empty(t, st.Dark, "back: the record went with the maintenance it belonged to")
}

// TestReconcilerDrainClearsInByForce checks a pod in under a forced entry
// whose own entry then asks for a drain: the node comes back into service
// (unfenced, resumed) to drain, so nothing a force took in is left, and
// the status must not go on saying inByForce.
func TestReconcilerDrainClearsInByForce(t *testing.T) {
	fs, node, _, r := recStartNats2Down(t)
	recInForcedByDC(t, fs, r)
	st, _ := recStatus(t, fs)
	require.True(t, st.InByForce, "stored: in under a forced entry")

	recUpdate(t, fs, func(d *maintenance.Document) {
		e := d.Pods[recPod]
		e.Mode = maintenance.ModeDrain
		e.Force = true
		d.Pods[recPod] = e
	})
	recWaitFor(t, "drained", func() bool {
		st, ok := recStatus(t, fs)
		return ok && st.Phase == maintenance.PhaseInMaintenance && st.Mode == maintenance.ModeDrain
	})
	assert.False(t, node.isFenced())
	assert.False(t, node.Quiesced())
	st, _ = recStatus(t, fs)
	assert.False(t, st.InByForce, "draining: routed and serving, nothing in by force")
}

// TestReconcilerInAgainAfterReleaseIsANewAttempt checks a pod that comes
// back because the forced entry ended (the entry left would cost a quorum)
// and goes in again once that is safe: the way back gave its leaderships
// and streams back, so the way in again takes a roles snapshot and moves
// its streams of one replica off anew, and its final exit gives the
// leaderships back again.
func TestReconcilerInAgainAfterReleaseIsANewAttempt(t *testing.T) {
	node := &recNode{leaders: func() []string { return []string{"stream APP/ORDERS"} }}
	fs, cluster, opts := recNats2Down(t, node)
	r, _ := recStart(t, opts)
	recUpdate(t, fs, func(d *maintenance.Document) {
		d.Pods[recPod] = maintenance.Entry{Reason: "accepted while nats-2 was up", Since: time.Now(), Evacuate: true}
		d.DCs[recDC] = maintenance.Entry{Reason: "whole dc, forced", Force: true, Since: time.Now()}
	})
	recWaitPhase(t, r, fs, maintenance.PhaseInMaintenance)

	recUpdate(t, fs, func(d *maintenance.Document) { delete(d.DCs, recDC) })
	recWaitFor(t, "back and held back", func() bool {
		st, ok := recStatus(t, fs)
		return ok && st.Phase == maintenance.PhaseRequested && strings.Contains(st.Message, "held back")
	})
	cluster.set("nats-2", false)
	recWaitPhase(t, r, fs, maintenance.PhaseInMaintenance)
	st, _ := recStatus(t, fs)
	assert.Equal(t, []string{"stream APP/ORDERS"}, st.Leaders, "a roles snapshot of the new attempt")
	assert.Equal(t, 2, countOf(node.Calls(), recOpEvacuate),
		"moved off on each way in: %v", node.Calls())

	recUpdate(t, fs, func(d *maintenance.Document) { delete(d.Pods, recPod) })
	recWaitFor(t, "back", func() bool {
		st, ok := recStatus(t, fs)
		return ok && st.Phase == maintenance.PhaseActive
	})
	node.mu.Lock()
	defer node.mu.Unlock()
	assert.Equal(t, [][]string{{"stream APP/ORDERS"}, {"stream APP/ORDERS"}}, node.givenBack,
		"given back on the way back and on the final exit")
}

// TestReconcilerForcedAgainWhileComingBack checks a pod coming back
// because its forced entry ended, forced again on the way: it goes in
// from where it got to instead of waiting to finish the way back (here it
// never catches up).
func TestReconcilerForcedAgainWhileComingBack(t *testing.T) {
	node := &recNode{caughtUp: func(int) (bool, string) { return false, "behind" }}
	fs, _, opts := recNats2Down(t, node)
	r, _ := recStart(t, opts)
	recInForcedByDC(t, fs, r)
	recUpdate(t, fs, func(d *maintenance.Document) { delete(d.DCs, recDC) })
	recWaitFor(t, "catching up on the way back", func() bool {
		st, ok := recStatus(t, fs)
		return ok && st.Phase == maintenance.PhaseCatchingUp
	})
	recUpdate(t, fs, func(d *maintenance.Document) {
		e := d.Pods[recPod]
		e.Force, e.Reason = true, "forced again"
		d.Pods[recPod] = e
	})
	recWaitPhase(t, r, fs, maintenance.PhaseInMaintenance)
	assert.True(t, node.isFenced())
	assert.True(t, node.Quiesced())
	assert.NotContains(t, node.Calls(), recOpGiveBack)
	st, _ := recStatus(t, fs)
	assert.True(t, st.InByForce)
}

func countOf(s []string, v string) int {
	n := 0
	for _, x := range s {
		if x == v {
			n++
		}
	}
	return n
}

// TestReconcilerDrainAfterFenceWaitsForCatchUp checks an entry that turns
// from a fence into a drain: the node is brought back (unfenced, resumed)
// and is ready again only once it has caught up, as on any way back.
func TestReconcilerDrainAfterFenceWaitsForCatchUp(t *testing.T) {
	var caught atomic.Bool
	node := &recNode{caughtUp: func(int) (bool, string) {
		if caught.Load() {
			return true, ""
		}
		return false, "stream ORDERS: committed 3 of the leader's 9"
	}}
	fs := recFileStore(t)
	r, _ := recStart(t, maintenance.ReconcilerOptions{Store: fs, Node: node, Views: &recCluster{}, Resync: time.Second})
	recUpdate(t, fs, func(d *maintenance.Document) {
		d.Pods[recPod] = maintenance.Entry{Reason: "disk", Since: time.Now()}
	})
	recWaitPhase(t, r, fs, maintenance.PhaseInMaintenance)
	recUpdate(t, fs, func(d *maintenance.Document) {
		e := d.Pods[recPod]
		e.Mode = maintenance.ModeDrain
		d.Pods[recPod] = e
	})
	recWaitFor(t, "back from the fence, catching up", func() bool {
		_, why := r.Ready()
		return !node.isFenced() && !node.Quiesced() && strings.Contains(why, "catching up")
	})
	ready, why := r.Ready()
	assert.False(t, ready, "not ready before caught up: %s", why)
	assert.Contains(t, why, "committed 3 of the leader's 9")

	caught.Store(true)
	recWaitFor(t, "drained and ready", func() bool {
		st, ok := recStatus(t, fs)
		ready, _ := r.Ready()
		return ok && ready && st.Phase == maintenance.PhaseInMaintenance && st.Mode == maintenance.ModeDrain
	})
}

// TestReconcilerRecordsEachEvacuatedStream checks that each stream moved
// off is recorded before its move starts, not when the whole evacuation
// ends: a prober killed during a long evacuation (here: stopped while the
// second stream moves) still knows, on restart, to move the first back,
// and hands the second to the next evacuation, which finishes its move.
func TestReconcilerRecordsEachEvacuatedStream(t *testing.T) {
	fs := recFileStore(t)
	moving := make(chan struct{})
	node := &recNode{singles: []string{"APP/solo", "APP/scratch"}}
	node.hold = func(ctx context.Context, stream string) error {
		if stream != "APP/scratch" {
			return nil
		}
		close(moving)
		<-ctx.Done()
		return ctx.Err()
	}
	opts := maintenance.ReconcilerOptions{Store: fs, Node: node, Views: &recCluster{}, Resync: time.Second}
	_, stop := recStart(t, opts)
	recUpdate(t, fs, func(d *maintenance.Document) {
		d.Pods[recPod] = maintenance.Entry{Since: time.Now(), Evacuate: true}
	})
	recWaitClosed(t, moving, "the second stream moving")
	st, _ := recStatus(t, fs)
	assert.Equal(t, []string{"APP/solo", "APP/scratch"}, st.Evacuated, "the first moved, the second moving")
	stop()

	node.hold = nil
	r, _ := recStart(t, opts)
	recWaitPhase(t, r, fs, maintenance.PhaseInMaintenance)
	st, _ = recStatus(t, fs)
	assert.Equal(t, []string{"APP/solo", "APP/scratch"}, st.Evacuated)
	recUpdate(t, fs, func(d *maintenance.Document) { delete(d.Pods, recPod) })
	recWaitPhase(t, r, fs, maintenance.PhaseActive)
	node.mu.Lock()
	defer node.mu.Unlock()
	assert.Equal(t, []string{"APP/solo", "APP/scratch"}, node.restored, "both moved back")
	require.Len(t, node.unfinished, 2)
	assert.Empty(t, node.unfinished[0])
	assert.Equal(t, []string{"APP/solo", "APP/scratch"}, node.unfinished[1], "the restarted evacuation is told what was moving")
}

// TestReconcilerGiveBackIsShownWhileItRuns: the give-back's status
// ("giving leaderships back: …") is written as the step starts, even right
// after a catch-up detail, which alone is written at most once a second.
func TestReconcilerGiveBackIsShownWhileItRuns(t *testing.T) {
	var shown atomic.Bool
	fs := recFileStore(t)
	node := &recNode{
		leaders:  func() []string { return []string{"stream APP/ORDERS"} },
		caughtUp: func(n int) (bool, string) { return n > 1, "stream APP/ORDERS behind by 3" },
	}
	node.before = func(ctx context.Context, op string, n int) error {
		if op == recOpGiveBack {
			st, ok := recStatus(t, fs)
			shown.Store(ok && st.Phase == maintenance.PhaseCatchingUp &&
				strings.HasPrefix(st.Message, "giving leaderships back: stream APP/ORDERS"))
		}
		return nil
	}
	r, _ := recStart(t, maintenance.ReconcilerOptions{Store: fs, Node: node, Resync: time.Second, CatchUpPoll: 10 * time.Millisecond})
	recUpdate(t, fs, func(d *maintenance.Document) { d.Pods[recPod] = maintenance.Entry{Since: time.Now()} })
	recWaitPhase(t, r, fs, maintenance.PhaseInMaintenance)
	recUpdate(t, fs, func(d *maintenance.Document) { delete(d.Pods, recPod) })
	recWaitFor(t, "given back", func() bool {
		st, ok := recStatus(t, fs)
		return ok && st.Phase == maintenance.PhaseActive && len(st.GivenBack) == 1
	})
	assert.True(t, shown.Load(), "the status said what the give-back does while it ran")
}

// TestReconcilerHeldMessageIsBounded: a pod held back by many groups names
// the first ten in its status, stored for every pod in one ConfigMap, and
// counts the rest.
func TestReconcilerHeldMessageIsBounded(t *testing.T) {
	node := &recNode{}
	fs, cluster, opts := recNats2Down(t, node)
	cluster.streams = 200
	recStart(t, opts)
	recUpdate(t, fs, func(d *maintenance.Document) { d.Pods[recPod] = maintenance.Entry{Since: time.Now()} })
	recWaitFor(t, "held back", func() bool {
		st, ok := recStatus(t, fs)
		return ok && st.Phase == maintenance.PhaseRequested && strings.Contains(st.Message, "held back")
	})
	st, _ := recStatus(t, fs)
	assert.Contains(t, st.Message, "cost 202 Raft group(s)", "counts every group: %s", st.Message)
	assert.Contains(t, st.Message, "and 192 more", "%s", st.Message)
	assert.Less(t, len(st.Message), 2048, "%s", st.Message)
}

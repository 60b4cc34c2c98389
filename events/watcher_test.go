package events_test

import (
	"context"
	"encoding/json"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/prober-dev/prober/events"
	"github.com/prober-dev/prober/filestore"
	"github.com/prober-dev/prober/maintenance"
	"github.com/prober-dev/prober/natsraft"
)

// fakeCluster is a settable cluster view and diagnosis.
type fakeCluster struct {
	mu       sync.Mutex
	view     *natsraft.View
	findings []natsraft.Finding
}

func (c *fakeCluster) latest() *natsraft.View {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.view
}

func (c *fakeCluster) diagnose(*natsraft.View, *maintenance.Document, time.Time) []natsraft.Finding {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.findings
}

// sweep replaces the view with one led by leader, findings as given.
func (c *fakeCluster) sweep(leader string, findings ...natsraft.Finding) {
	c.mu.Lock()
	defer c.mu.Unlock()
	at := time.Now()
	if c.view != nil && !at.After(c.view.At) {
		at = c.view.At.Add(time.Millisecond)
	}
	var nodes []natsraft.Node
	for _, n := range []string{"nats-0", "nats-1", "nats-2"} {
		nodes = append(nodes, natsraft.Node{Name: n, DC: "dc1", Reachable: true, JetStream: true})
	}
	c.view = &natsraft.View{At: at, Nodes: nodes, Groups: []natsraft.Group{
		{Kind: natsraft.KindMeta, Name: "_meta_", Leader: leader, Term: 3},
		{Kind: natsraft.KindStream, Account: "APP", Name: "ORDERS", Leader: "nats-2"},
	}}
	c.findings = findings
}

type watcherEnv struct {
	store   *filestore.Store
	cluster *fakeCluster
	hub     *events.Hub
	w       *events.Watcher
	sub     *events.Subscription
}

func newWatcherEnv(t *testing.T) *watcherEnv {
	t.Helper()
	store, err := filestore.Open(filepath.Join(t.TempDir(), "maintenance.json"), filestore.Options{PollInterval: 20 * time.Millisecond})
	require.NoError(t, err)
	t.Cleanup(func() { assert.NoError(t, store.Close()) })
	e := &watcherEnv{store: store, cluster: &fakeCluster{}, hub: events.NewHub(events.HubOptions{})}
	e.cluster.sweep("nats-0")
	e.w = events.NewWatcher(events.WatcherOptions{
		Hub: e.hub, Store: store, Latest: e.cluster.latest, Diagnose: e.cluster.diagnose, Logger: zerolog.Nop(),
	})
	e.w.Step(context.Background()) // the baseline
	e.sub = e.hub.Subscribe(0, false)
	t.Cleanup(e.sub.Close)
	return e
}

func (e *watcherEnv) update(t *testing.T, fn func(d *maintenance.Document)) {
	t.Helper()
	_, err := e.store.Update(context.Background(), func(d *maintenance.Document) error {
		fn(d)
		return nil
	})
	require.NoError(t, err)
}

func (e *watcherEnv) setPhase(t *testing.T, pod string, p maintenance.Phase, msg string) {
	t.Helper()
	e.update(t, func(d *maintenance.Document) {
		if d.Status == nil {
			d.Status = map[string]maintenance.Status{}
		}
		d.Status[pod] = maintenance.Status{Phase: p, Message: msg, ObservedAt: time.Now(), PhaseSince: time.Now()}
	})
}

// drain returns the events published so far.
func (e *watcherEnv) drain() []events.Event {
	var out []events.Event
	for {
		select {
		case ev := <-e.sub.C():
			out = append(out, ev)
		default:
			return out
		}
	}
}

func decode[T any](t *testing.T, ev events.Event) T {
	t.Helper()
	var v T
	require.NoError(t, json.Unmarshal(ev.Data, &v), "%s: %s", ev.Type, ev.Data)
	return v
}

func ofType(evs []events.Event, typ string) []events.Event {
	var out []events.Event
	for _, ev := range evs {
		if ev.Type == typ {
			out = append(out, ev)
		}
	}
	return out
}

func TestEventsWatcherBaselineIsQuiet(t *testing.T) {
	e := newWatcherEnv(t)
	e.w.Step(context.Background())
	assert.Empty(t, e.drain(), "nothing changed")
}

// TestEventsWatcherFirstViewIsBaseline starts a watcher the way a prober
// starts: nats-1 stored in maintenance, a finding standing, and no cluster
// view at the first look (the collector has not swept yet). The phases'
// baseline is the document's, the findings' the first view's: what stood
// before is not published as news, what changed since the first look is
// (nats-2 requested before the first sweep).
func TestEventsWatcherFirstViewIsBaseline(t *testing.T) {
	store, err := filestore.Open(filepath.Join(t.TempDir(), "maintenance.json"), filestore.Options{PollInterval: 20 * time.Millisecond})
	require.NoError(t, err)
	t.Cleanup(func() { assert.NoError(t, store.Close()) })
	ctx := context.Background()
	_, err = store.Update(ctx, func(d *maintenance.Document) error {
		d.Pods = map[string]maintenance.Entry{"nats-1": {Reason: "kernel", Since: time.Now()}}
		d.Status = map[string]maintenance.Status{"nats-1": {Phase: maintenance.PhaseInMaintenance, Message: "fenced", ObservedAt: time.Now(), PhaseSince: time.Now()}}
		return nil
	})
	require.NoError(t, err)
	cluster := &fakeCluster{}
	hub := events.NewHub(events.HubOptions{})
	w := events.NewWatcher(events.WatcherOptions{Hub: hub, Store: store, Latest: cluster.latest, Diagnose: cluster.diagnose, Logger: zerolog.Nop()})
	w.Step(ctx) // no view yet
	sub := hub.Subscribe(0, false)
	t.Cleanup(sub.Close)

	_, err = store.Update(ctx, func(d *maintenance.Document) error {
		d.Pods["nats-2"] = maintenance.Entry{Reason: "disk", Since: time.Now()}
		return nil
	})
	require.NoError(t, err)
	cluster.sweep("nats-0", natsraft.Finding{Cause: "maintenance", Nodes: []string{"nats-1"}, Summary: "nats-1 is in maintenance"})
	w.Step(ctx) // the first view
	w.Step(ctx)
	var phases []events.PhaseChange
	var types []string
	for len(sub.C()) > 0 {
		ev := <-sub.C()
		types = append(types, ev.Type)
		if ev.Type == events.TypePhase {
			phases = append(phases, decode[events.PhaseChange](t, ev))
		}
	}
	assert.Equal(t, []string{events.TypeState, events.TypePhase}, types, "no event for what stood before")
	require.Len(t, phases, 1)
	assert.Equal(t, "nats-2", phases[0].Pod)
	assert.Equal(t, maintenance.PhaseRequested, phases[0].Phase)
	assert.Equal(t, maintenance.PhaseActive, phases[0].Previous)
	var got []string

	// What changes after the first view is news again.
	cluster.sweep("nats-2")
	w.Step(ctx)
	for len(sub.C()) > 0 {
		got = append(got, (<-sub.C()).Type)
	}
	assert.ElementsMatch(t, []string{events.TypeLeader, events.TypeFinding}, got, "the meta leader moved, the finding cleared")
}

// TestEventsWatcherStateSections checks that a state event names the
// sections of the document that changed, and a status refreshed alone
// names the status only.
func TestEventsWatcherStateSections(t *testing.T) {
	e := newWatcherEnv(t)
	ctx := context.Background()
	changed := func() []string {
		t.Helper()
		e.w.Step(ctx)
		states := ofType(e.drain(), events.TypeState)
		require.Len(t, states, 1)
		return decode[events.StateChange](t, states[0]).Changed
	}
	e.update(t, func(d *maintenance.Document) {
		d.Pods = map[string]maintenance.Entry{"nats-1": {Reason: "kernel", Since: time.Now()}}
	})
	assert.Equal(t, []string{events.SectionPods}, changed())
	e.setPhase(t, "nats-1", maintenance.PhaseInMaintenance, "")
	assert.Equal(t, []string{events.SectionStatus}, changed())
	e.update(t, func(d *maintenance.Document) {
		st := d.Status["nats-1"]
		st.ObservedAt = st.ObservedAt.Add(5 * time.Second)
		d.Status["nats-1"] = st
	})
	assert.Equal(t, []string{events.SectionStatus}, changed(), "a refresh of observedAt")
	e.update(t, func(d *maintenance.Document) {
		ttl := time.Now().Add(time.Hour)
		d.Pods["nats-1"] = maintenance.Entry{Reason: "kernel 6.12", Since: d.Pods["nats-1"].Since, ExpiresAt: &ttl}
		d.DCs = map[string]maintenance.Entry{"dc2": {Reason: "rack", Since: time.Now()}}
	})
	assert.Equal(t, []string{events.SectionPods, events.SectionDCs}, changed(), "an entry put again with a new reason, and a dc")
}

// TestEventsWatcherPhasesInOrder walks two pods through their phases,
// interleaved, and checks that each pod's events come in its order, each
// naming the phase before, and that the ids increase.
func TestEventsWatcherPhasesInOrder(t *testing.T) {
	e := newWatcherEnv(t)
	ctx := context.Background()
	e.update(t, func(d *maintenance.Document) {
		d.Pods = map[string]maintenance.Entry{"nats-1": {Reason: "kernel", Since: time.Now()}, "nats-2": {Reason: "disk", Since: time.Now()}}
	})
	e.w.Step(ctx)
	steps := []struct {
		pod   string
		phase maintenance.Phase
		msg   string
	}{
		{"nats-1", maintenance.PhaseHandingOff, ""},
		{"nats-2", maintenance.PhaseHandingOff, ""},
		{"nats-1", maintenance.PhaseFencing, ""},
		{"nats-1", maintenance.PhaseFailed, "fence: routes still up"},
		{"nats-2", maintenance.PhaseFencing, ""},
		{"nats-1", maintenance.PhaseFencing, ""},
		{"nats-1", maintenance.PhaseInMaintenance, ""},
		{"nats-2", maintenance.PhaseInMaintenance, ""},
	}
	for _, s := range steps {
		e.setPhase(t, s.pod, s.phase, s.msg)
		e.w.Step(ctx)
	}
	evs := e.drain()
	for i := 1; i < len(evs); i++ {
		assert.Equal(t, evs[i-1].ID+1, evs[i].ID, "ids increase by one")
	}
	states := ofType(evs, events.TypeState)
	assert.Len(t, states, len(steps)+1, "one state event per write")
	for i, ev := range states {
		sc := decode[events.StateChange](t, ev)
		assert.NotEqual(t, sc.Previous, sc.ResourceVersion)
		if i > 0 {
			assert.Equal(t, decode[events.StateChange](t, states[i-1]).ResourceVersion, sc.Previous)
		}
	}

	got := map[string][]events.PhaseChange{}
	for _, ev := range ofType(evs, events.TypePhase) {
		pc := decode[events.PhaseChange](t, ev)
		got[pc.Pod] = append(got[pc.Pod], pc)
	}
	want := map[string][]events.PhaseChange{
		"nats-1": {
			{Pod: "nats-1", DC: "dc1", Phase: maintenance.PhaseRequested, Previous: maintenance.PhaseActive, InMaintenance: true, Via: maintenance.SourcePod},
			{Pod: "nats-1", DC: "dc1", Phase: maintenance.PhaseHandingOff, Previous: maintenance.PhaseRequested, InMaintenance: true, Via: maintenance.SourcePod},
			{Pod: "nats-1", DC: "dc1", Phase: maintenance.PhaseFencing, Previous: maintenance.PhaseHandingOff, InMaintenance: true, Via: maintenance.SourcePod},
			{Pod: "nats-1", DC: "dc1", Phase: maintenance.PhaseFailed, Previous: maintenance.PhaseFencing, Message: "fence: routes still up", InMaintenance: true, Via: maintenance.SourcePod},
			{Pod: "nats-1", DC: "dc1", Phase: maintenance.PhaseFencing, Previous: maintenance.PhaseFailed, InMaintenance: true, Via: maintenance.SourcePod},
			{Pod: "nats-1", DC: "dc1", Phase: maintenance.PhaseInMaintenance, Previous: maintenance.PhaseFencing, InMaintenance: true, Via: maintenance.SourcePod},
		},
		"nats-2": {
			{Pod: "nats-2", DC: "dc1", Phase: maintenance.PhaseRequested, Previous: maintenance.PhaseActive, InMaintenance: true, Via: maintenance.SourcePod},
			{Pod: "nats-2", DC: "dc1", Phase: maintenance.PhaseHandingOff, Previous: maintenance.PhaseRequested, InMaintenance: true, Via: maintenance.SourcePod},
			{Pod: "nats-2", DC: "dc1", Phase: maintenance.PhaseFencing, Previous: maintenance.PhaseHandingOff, InMaintenance: true, Via: maintenance.SourcePod},
			{Pod: "nats-2", DC: "dc1", Phase: maintenance.PhaseInMaintenance, Previous: maintenance.PhaseFencing, InMaintenance: true, Via: maintenance.SourcePod},
		},
	}
	assert.Equal(t, want, got)
	assert.NotContains(t, got, "nats-0", "a pod that did not move has no event")
}

func TestEventsWatcherLeadersAndFindings(t *testing.T) {
	e := newWatcherEnv(t)
	ctx := context.Background()
	partition := natsraft.Finding{Cause: natsraft.Cause("network partition"), Severity: "critical", Nodes: []string{"nats-2", "nats-1"}, Summary: "cut"}

	e.cluster.sweep("nats-1", partition)
	e.w.Step(ctx)
	evs := e.drain()
	require.Len(t, evs, 2, "%v", evs)
	assert.Equal(t, events.TypeLeader, evs[0].Type)
	assert.Equal(t, events.LeaderChange{Group: "_meta_", Kind: natsraft.KindMeta, OldLeader: "nats-0", NewLeader: "nats-1", Term: 3},
		decode[events.LeaderChange](t, evs[0]))
	assert.Equal(t, events.TypeFinding, evs[1].Type)
	fc := decode[events.FindingChange](t, evs[1])
	assert.Equal(t, events.FindingRaised, fc.Change)
	assert.Equal(t, "network partition/nats-1,nats-2", fc.Key)
	assert.Equal(t, "cut", fc.Finding.Summary)

	e.cluster.sweep("nats-1", partition)
	e.w.Step(ctx)
	assert.Empty(t, e.drain(), "the same leader and finding again")

	e.cluster.sweep("")
	e.w.Step(ctx)
	evs = e.drain()
	require.Len(t, evs, 2, "%v", evs)
	assert.Equal(t, events.LeaderChange{Group: "_meta_", Kind: natsraft.KindMeta, OldLeader: "nats-1", NewLeader: "", Term: 3},
		decode[events.LeaderChange](t, evs[0]))
	fc = decode[events.FindingChange](t, evs[1])
	assert.Equal(t, events.FindingCleared, fc.Change)
	assert.Equal(t, "network partition/nats-1,nats-2", fc.Key)
}

// TestEventsWatcherRun follows the store's changes without being stepped.
func TestEventsWatcherRun(t *testing.T) {
	e := newWatcherEnv(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.w.Run(ctx) }()
	e.setPhase(t, "nats-0", maintenance.PhaseFailed, "boom")
	deadline := time.After(5 * time.Second)
	for {
		select {
		case ev := <-e.sub.C():
			if ev.Type != events.TypePhase {
				continue
			}
			pc := decode[events.PhaseChange](t, ev)
			assert.Equal(t, maintenance.PhaseFailed, pc.Phase)
			assert.Equal(t, "boom", pc.Message)
			cancel()
			select {
			case err := <-done:
				assert.NoError(t, err)
			case <-time.After(5 * time.Second):
				t.Fatal("the watcher did not stop")
			}
			return
		case <-deadline:
			t.Fatal("no phase event")
		}
	}
}

// TestEventsWatcherDCs: with the pods' dc labels, a dc's entry moves the
// pods of that dc as the maintenance service sees them, not of the NATS
// cluster name.
func TestEventsWatcherDCs(t *testing.T) {
	e := newWatcherEnv(t)
	w := events.NewWatcher(events.WatcherOptions{
		Hub: e.hub, Store: e.store, Latest: e.cluster.latest, Logger: zerolog.Nop(),
		DCs: func() map[string]string { return map[string]string{"nats-1": "east"} },
	})
	ctx := context.Background()
	w.Step(ctx)
	e.update(t, func(d *maintenance.Document) {
		d.DCs = map[string]maintenance.Entry{"east": {Reason: "rack", Since: time.Now()}}
	})
	w.Step(ctx)
	phases := ofType(e.drain(), events.TypePhase)
	require.Len(t, phases, 1)
	assert.Equal(t, events.PhaseChange{Pod: "nats-1", DC: "east", Phase: maintenance.PhaseRequested, Previous: maintenance.PhaseActive,
		InMaintenance: true, Via: maintenance.SourceDC}, decode[events.PhaseChange](t, phases[0]))
}

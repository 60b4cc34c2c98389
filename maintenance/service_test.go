package maintenance_test

import (
	"context"
	"errors"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/prober-dev/prober/filestore"
	"github.com/prober-dev/prober/maintenance"
	"github.com/prober-dev/prober/natsraft"
)

// viewFunc is a ViewSource made of a function.
type viewFunc func(ctx context.Context) (*natsraft.View, error)

func (f viewFunc) View(ctx context.Context) (*natsraft.View, error) { return f(ctx) }

func staticView(v *natsraft.View) maintenance.ViewSource {
	return viewFunc(func(context.Context) (*natsraft.View, error) { return v, nil })
}

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func node(name, dc string) natsraft.Node {
	return natsraft.Node{Name: name, DC: dc, Reachable: true, JetStream: true}
}

// group builds a healthy group led by its first peer.
func group(kind natsraft.GroupKind, name string, peers ...string) natsraft.Group {
	g := natsraft.Group{Kind: kind, Name: name, Account: "APP", Leader: peers[0], Term: 3}
	if kind == natsraft.KindMeta {
		g.Account = ""
	}
	for i, p := range peers {
		g.Peers = append(g.Peers, natsraft.Peer{Name: p, Leader: i == 0, Current: true, Healthy: true})
	}
	return g
}

// threeNodes is one dc of three nodes with an R3 meta group, an R3 stream
// led by n1 and an R1 stream on n2.
func threeNodes() *natsraft.View {
	return &natsraft.View{
		At:    t0,
		Nodes: []natsraft.Node{node("n0", "east"), node("n1", "east"), node("n2", "east")},
		Groups: []natsraft.Group{
			group(natsraft.KindMeta, natsraft.MetaGroupName, "n0", "n1", "n2"),
			group(natsraft.KindStream, "ORDERS", "n1", "n0", "n2"),
			group(natsraft.KindConsumer, "ORDERS/C1", "n1", "n2", "n0"),
			group(natsraft.KindStream, "SCRATCH", "n2"),
		},
	}
}

// sixNodes is a meta group of six over three dcs (east: e0..e2, west: w0,
// w1, and "east-2": x0, whose name contains "east") with an R3 stream in
// east.
func sixNodes() *natsraft.View {
	return &natsraft.View{
		At: t0,
		Nodes: []natsraft.Node{
			node("e0", "east"), node("e1", "east"), node("e2", "east"),
			node("w0", "west"), node("w1", "west"), node("x0", "east-2"),
		},
		Groups: []natsraft.Group{
			group(natsraft.KindMeta, natsraft.MetaGroupName, "e0", "e1", "e2", "w0", "w1", "x0"),
			group(natsraft.KindStream, "ORDERS", "e0", "e1", "e2"),
		},
	}
}

// offline marks peer name as not current in every group of v.
func offline(v *natsraft.View, name string) *natsraft.View {
	for gi := range v.Groups {
		for pi := range v.Groups[gi].Peers {
			if v.Groups[gi].Peers[pi].Name == name {
				v.Groups[gi].Peers[pi].Current = false
				v.Groups[gi].Peers[pi].Healthy = false
				v.Groups[gi].Peers[pi].Offline = true
			}
		}
	}
	return v
}

type fixture struct {
	svc   *maintenance.Service
	store *filestore.Store
	now   time.Time
	mu    sync.Mutex
}

func (f *fixture) clock() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.now
}

func (f *fixture) advance(d time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.now = f.now.Add(d)
}

// seed writes entries and statuses into the store.
func (f *fixture) seed(t *testing.T, fn func(d *maintenance.Document)) {
	t.Helper()
	_, err := f.store.Update(context.Background(), func(d *maintenance.Document) error {
		if d.Pods == nil {
			d.Pods = map[string]maintenance.Entry{}
		}
		if d.DCs == nil {
			d.DCs = map[string]maintenance.Entry{}
		}
		if d.Status == nil {
			d.Status = map[string]maintenance.Status{}
		}
		fn(d)
		return nil
	})
	require.NoError(t, err)
}

func (f *fixture) doc(t *testing.T) *maintenance.Document {
	t.Helper()
	d, err := f.store.Get(context.Background())
	require.NoError(t, err)
	return d
}

func newFixture(t *testing.T, views maintenance.ViewSource) *fixture {
	t.Helper()
	store, err := filestore.Open(filepath.Join(t.TempDir(), "maintenance.json"), filestore.Options{})
	require.NoError(t, err)
	t.Cleanup(func() { assert.NoError(t, store.Close()) })
	f := &fixture{store: store, now: t0}
	f.svc = &maintenance.Service{Store: store, Views: views, Now: f.clock, Logger: zerolog.Nop()}
	return f
}

func requireCode(t *testing.T, err error, code string) *maintenance.Error {
	t.Helper()
	require.Error(t, err)
	var e *maintenance.Error
	require.True(t, errors.As(err, &e), "error %v is not a *maintenance.Error", err)
	require.Equal(t, code, e.Code, "error: %v", err)
	return e
}

func violationGroups(v []maintenance.Violation) []string {
	var names []string
	for _, x := range v {
		names = append(names, x.Group)
	}
	return names
}

func TestServicePod(t *testing.T) {
	v := threeNodes()
	v.Groups[1].Peers[2].Lag = 42 // n2 is 42 behind in ORDERS
	v.Groups[1].Peers[2].Current = false
	v.Groups[1].Peers[2].Healthy = false
	f := newFixture(t, staticView(v))
	ctx := context.Background()

	t.Run("raft standing", func(t *testing.T) {
		n1, err := f.svc.Pod(ctx, "n1")
		require.NoError(t, err)
		assert.Equal(t, "east", n1.DC)
		assert.Equal(t, maintenance.PhaseActive, n1.Phase)
		assert.False(t, n1.InMaintenance)
		assert.Empty(t, n1.Via)
		assert.ElementsMatch(t, []string{"ORDERS", "ORDERS/C1"}, n1.Raft.Leads)
		assert.Equal(t, 3, n1.Raft.Groups)
		assert.True(t, n1.Raft.Current)
		assert.True(t, n1.Raft.Reachable)

		n2, err := f.svc.Pod(ctx, "n2")
		require.NoError(t, err)
		assert.Equal(t, []string{"SCRATCH"}, n2.Raft.Leads)
		assert.Equal(t, 4, n2.Raft.Groups)
		assert.Equal(t, uint64(42), n2.Raft.Lag)
		assert.False(t, n2.Raft.Current)
	})

	t.Run("phases", func(t *testing.T) {
		f.seed(t, func(d *maintenance.Document) {
			d.Pods["n0"] = maintenance.Entry{Reason: "disk", RequestedBy: "alice", Since: t0}
			d.Pods["n1"] = maintenance.Entry{Reason: "kernel", Since: t0}
			d.Status["n1"] = maintenance.Status{Phase: maintenance.PhaseFencing, Message: "cutting routes", ObservedAt: t0}
			d.Status["n2"] = maintenance.Status{Phase: maintenance.PhaseCatchingUp, ObservedAt: t0}
		})
		for _, tc := range []struct {
			pod     string
			phase   maintenance.Phase
			inMaint bool
			message string
		}{
			{"n0", maintenance.PhaseRequested, true, ""},
			{"n1", maintenance.PhaseFencing, true, "cutting routes"},
			{"n2", maintenance.PhaseCatchingUp, false, ""},
		} {
			t.Run(tc.pod, func(t *testing.T) {
				pv, err := f.svc.Pod(ctx, tc.pod)
				require.NoError(t, err)
				assert.Equal(t, tc.phase, pv.Phase)
				assert.Equal(t, tc.inMaint, pv.InMaintenance)
				assert.Equal(t, tc.message, pv.Message)
			})
		}
		n0, err := f.svc.Pod(ctx, "n0")
		require.NoError(t, err)
		assert.Equal(t, "pod", n0.Via)
		assert.Equal(t, "disk", n0.Reason)
		assert.Equal(t, "alice", n0.RequestedBy)
		require.NotNil(t, n0.Since)
		assert.True(t, n0.Since.Equal(t0))
	})

	t.Run("errors", func(t *testing.T) {
		for _, tc := range []struct {
			pod, code string
		}{
			{"Nats_1", maintenance.EInvalid},
			{"", maintenance.EInvalid},
			{"n9", maintenance.ENotFound},
		} {
			_, err := f.svc.Pod(ctx, tc.pod)
			requireCode(t, err, tc.code)
		}
	})

	t.Run("view unavailable", func(t *testing.T) {
		g := newFixture(t, viewFunc(func(context.Context) (*natsraft.View, error) {
			return nil, errors.New("no sweep yet")
		}))
		_, err := g.svc.Pod(ctx, "n0")
		e := requireCode(t, err, maintenance.EUnavailable)
		assert.NotContains(t, e.Message, "no sweep yet")
	})
}

func TestServiceDC(t *testing.T) {
	f := newFixture(t, staticView(sixNodes()))
	ctx := context.Background()
	f.seed(t, func(d *maintenance.Document) {
		d.DCs["west"] = maintenance.Entry{Reason: "rack move", Since: t0}
		d.Pods["w1"] = maintenance.Entry{Reason: "disk", Since: t0}
	})

	east, err := f.svc.DC(ctx, "east")
	require.NoError(t, err)
	var names []string
	for _, pv := range east {
		names = append(names, pv.Pod)
		assert.False(t, pv.InMaintenance)
	}
	assert.Equal(t, []string{"e0", "e1", "e2"}, names, "membership is exact: x0 of east-2 is not in east")

	west, err := f.svc.DC(ctx, "west")
	require.NoError(t, err)
	require.Len(t, west, 2)
	assert.Equal(t, "dc", west[0].Via)
	assert.Equal(t, "rack move", west[0].Reason)
	assert.Equal(t, "pod", west[1].Via, "a pod entry wins over the dc entry")

	_, err = f.svc.DC(ctx, "eas")
	requireCode(t, err, maintenance.ENotFound)
	_, err = f.svc.DC(ctx, "East")
	requireCode(t, err, maintenance.ENotFound) // membership is exact: East is not east
	_, err = f.svc.DC(ctx, "east/1")
	requireCode(t, err, maintenance.EInvalid)
}

func TestServiceEnterPod(t *testing.T) {
	ttl := 30 * time.Minute
	for _, tc := range []struct {
		name    string
		view    func() *natsraft.View
		seed    func(d *maintenance.Document)
		pod     string
		req     maintenance.Request
		code    string   // expected error code, "" for success
		groups  []string // expected violations (refused, forced or dry run)
		changed bool
		stored  bool // whether the pod has an entry afterwards
	}{
		{
			name: "safe", view: threeNodes, pod: "n0",
			req:     maintenance.Request{Reason: "kernel", TTL: ttl, RequestedBy: "alice"},
			changed: true, stored: true,
		},
		{
			name: "second pod of an R3 group", view: threeNodes, pod: "n1",
			seed: func(d *maintenance.Document) { d.Pods["n0"] = maintenance.Entry{Since: t0} },
			code: maintenance.EUnsafe, groups: []string{natsraft.MetaGroupName, "ORDERS", "ORDERS/C1"},
		},
		{
			name: "peer still catching up after its own maintenance", view: threeNodes, pod: "n1",
			seed: func(d *maintenance.Document) {
				d.Status["n0"] = maintenance.Status{Phase: maintenance.PhaseCatchingUp, ObservedAt: t0}
			},
			code: maintenance.EUnsafe, groups: []string{natsraft.MetaGroupName, "ORDERS", "ORDERS/C1"},
		},
		{
			name: "a peer offline", view: func() *natsraft.View { return offline(threeNodes(), "n2") }, pod: "n0",
			code: maintenance.EUnsafe, groups: []string{natsraft.MetaGroupName, "ORDERS", "ORDERS/C1"},
		},
		{
			name: "R1 stream only on the pod", view: threeNodes, pod: "n2",
			code: maintenance.EUnsafe, groups: []string{"SCRATCH"},
		},
		{
			name: "forced with a reason", view: threeNodes, pod: "n2",
			req:    maintenance.Request{Reason: "hardware dead", Force: true},
			groups: []string{"SCRATCH"}, changed: true, stored: true,
		},
		{
			name: "dry run unsafe writes nothing", view: threeNodes, pod: "n2",
			req:    maintenance.Request{DryRun: true},
			groups: []string{"SCRATCH"}, changed: true,
		},
		{
			name: "dry run safe writes nothing", view: threeNodes, pod: "n0",
			req: maintenance.Request{DryRun: true}, changed: true,
		},
		{
			name: "a second pod of a meta group of six", view: sixNodes, pod: "w1",
			seed:    func(d *maintenance.Document) { d.Pods["w0"] = maintenance.Entry{Since: t0} },
			changed: true, stored: true,
		},
		{
			name: "pod already in maintenance through its dc is not checked again",
			view: func() *natsraft.View { return offline(threeNodes(), "n2") }, pod: "n0",
			seed: func(d *maintenance.Document) {
				d.DCs["east"] = maintenance.Entry{Since: t0, Reason: "rack move"}
			},
			changed: true, stored: true,
		},
		// Once the forced dc entry ends, the pod's own entry alone keeps it
		// out: that entry is judged as if the pod were entering.
		{
			name: "pod held only by its dc's forced entry is judged",
			view: func() *natsraft.View { return offline(threeNodes(), "n2") }, pod: "n0",
			seed: func(d *maintenance.Document) {
				d.DCs["east"] = maintenance.Entry{Since: t0, Force: true, Reason: "all down"}
			},
			code: maintenance.EUnsafe, groups: []string{"_meta_", "ORDERS", "ORDERS/C1"},
		},
		{
			name: "pod held only by its dc's forced entry, forced too",
			view: func() *natsraft.View { return offline(threeNodes(), "n2") }, pod: "n0",
			seed: func(d *maintenance.Document) {
				d.DCs["east"] = maintenance.Entry{Since: t0, Force: true, Reason: "all down"}
			},
			req:    maintenance.Request{Force: true, Reason: "disk swap after the outage"},
			groups: []string{"_meta_", "ORDERS", "ORDERS/C1"}, changed: true, stored: true,
		},
		{
			name: "a forced pod entry is not judged again when it changes",
			view: func() *natsraft.View { return offline(threeNodes(), "n2") }, pod: "n0",
			seed: func(d *maintenance.Document) {
				d.DCs["east"] = maintenance.Entry{Since: t0, Force: true, Reason: "all down"}
				d.Pods["n0"] = maintenance.Entry{Since: t0, Force: true, Reason: "disk"}
			},
			req:     maintenance.Request{Force: true, Reason: "disk swap"},
			changed: true, stored: true,
		},
		{name: "force without reason", view: threeNodes, pod: "n0", req: maintenance.Request{Force: true}, code: maintenance.EInvalid},
		{name: "ttl below 1s", view: threeNodes, pod: "n0", req: maintenance.Request{TTL: 500 * time.Millisecond}, code: maintenance.EInvalid},
		{name: "negative ttl", view: threeNodes, pod: "n0", req: maintenance.Request{TTL: -time.Minute}, code: maintenance.EInvalid},
		{name: "bad name", view: threeNodes, pod: "Nats_1", code: maintenance.EInvalid},
		{name: "unknown pod", view: threeNodes, pod: "n9", code: maintenance.ENotFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, staticView(tc.view()))
			if tc.seed != nil {
				f.seed(t, tc.seed)
			}
			before := f.doc(t)
			res, err := f.svc.EnterPod(context.Background(), tc.pod, tc.req)
			after := f.doc(t)
			if tc.code != "" {
				e := requireCode(t, err, tc.code)
				if tc.code == maintenance.EUnsafe {
					v, ok := e.Details.([]maintenance.Violation)
					require.True(t, ok, "details are %T", e.Details)
					assert.ElementsMatch(t, tc.groups, violationGroups(v))
					for _, g := range tc.groups {
						assert.Contains(t, e.Message, g)
					}
				}
				assert.Equal(t, before, after, "a refused request writes nothing")
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.changed, res.Changed)
			assert.Equal(t, tc.req.DryRun, res.DryRun)
			assert.ElementsMatch(t, tc.groups, violationGroups(res.Violations))
			assert.Equal(t, tc.req.Force && len(tc.groups) > 0, res.Forced)
			require.Len(t, res.Pods, 1)
			assert.Equal(t, tc.pod, res.Pods[0].Pod)
			e, ok := after.Pods[tc.pod]
			require.Equal(t, tc.stored, ok)
			if tc.req.DryRun {
				assert.Equal(t, before, after, "a dry run writes nothing")
			}
			if !ok {
				return
			}
			assert.True(t, res.Pods[0].InMaintenance)
			assert.Equal(t, "pod", res.Pods[0].Via)
			assert.Equal(t, maintenance.PhaseRequested, res.Pods[0].Phase)
			assert.Equal(t, tc.req.Reason, e.Reason)
			assert.Equal(t, tc.req.RequestedBy, e.RequestedBy)
			assert.Equal(t, tc.req.Force, e.Force)
			assert.True(t, e.Since.Equal(t0))
			if tc.req.TTL > 0 {
				require.NotNil(t, e.ExpiresAt)
				assert.True(t, e.ExpiresAt.Equal(t0.Add(tc.req.TTL)))
			} else {
				assert.Nil(t, e.ExpiresAt)
			}
		})
	}
}

func TestServiceEnterIdempotent(t *testing.T) {
	f := newFixture(t, staticView(threeNodes()))
	ctx := context.Background()
	req := maintenance.Request{Reason: "kernel", RequestedBy: "alice"}

	first, err := f.svc.EnterPod(ctx, "n0", req)
	require.NoError(t, err)
	require.True(t, first.Changed)
	rv := f.doc(t).ResourceVersion

	f.advance(time.Minute)
	for _, tc := range []struct {
		name    string
		req     maintenance.Request
		changed bool
		reason  string
	}{
		{"same request", req, false, "kernel"},
		{"bare repeat keeps the reason", maintenance.Request{RequestedBy: "bob"}, false, "kernel"},
		{"new reason", maintenance.Request{Reason: "kernel 6.12", RequestedBy: "bob"}, true, "kernel 6.12"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res, err := f.svc.EnterPod(ctx, "n0", tc.req)
			require.NoError(t, err)
			assert.Equal(t, tc.changed, res.Changed)
			d := f.doc(t)
			if !tc.changed {
				assert.Equal(t, rv, d.ResourceVersion, "nothing written")
			}
			rv = d.ResourceVersion
			assert.Equal(t, tc.reason, d.Pods["n0"].Reason)
			assert.True(t, d.Pods["n0"].Since.Equal(t0), "since is kept")
		})
	}

	t.Run("ttl renews the expiry", func(t *testing.T) {
		res, err := f.svc.EnterPod(ctx, "n0", maintenance.Request{TTL: time.Hour})
		require.NoError(t, err)
		assert.True(t, res.Changed)
		require.NotNil(t, res.Pods[0].ExpiresAt)
		assert.True(t, res.Pods[0].ExpiresAt.Equal(f.clock().Add(time.Hour)))
	})

	t.Run("an expired entry is replaced", func(t *testing.T) {
		f.advance(2 * time.Hour)
		pv, err := f.svc.Pod(ctx, "n0")
		require.NoError(t, err)
		assert.False(t, pv.InMaintenance, "expired")
		res, err := f.svc.EnterPod(ctx, "n0", maintenance.Request{Reason: "again"})
		require.NoError(t, err)
		assert.True(t, res.Changed)
		require.NotNil(t, res.Pods[0].Since)
		assert.True(t, res.Pods[0].Since.Equal(f.clock()), "a new maintenance starts now")
		assert.Nil(t, res.Pods[0].ExpiresAt)
	})
}

func TestServiceEnterDC(t *testing.T) {
	for _, tc := range []struct {
		name   string
		dc     string
		seed   func(d *maintenance.Document)
		req    maintenance.Request
		code   string
		groups []string
		pods   []string
	}{
		{name: "west: meta keeps 4 of 6", dc: "west", pods: []string{"w0", "w1"}},
		{name: "east-2 is not east", dc: "east-2", pods: []string{"x0"}},
		{
			name: "east: one check over the whole set", dc: "east",
			code: maintenance.EUnsafe, groups: []string{natsraft.MetaGroupName, "ORDERS"},
		},
		{
			name: "west while an east pod is in maintenance", dc: "west",
			seed: func(d *maintenance.Document) { d.Pods["e0"] = maintenance.Entry{Since: t0} },
			code: maintenance.EUnsafe, groups: []string{natsraft.MetaGroupName},
		},
		{
			name: "east forced", dc: "east", req: maintenance.Request{Reason: "power work", Force: true},
			groups: []string{natsraft.MetaGroupName, "ORDERS"}, pods: []string{"e0", "e1", "e2"},
		},
		{name: "unknown dc", dc: "north", code: maintenance.ENotFound},
		{name: "bad dc name", dc: "east 1", code: maintenance.EInvalid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, staticView(sixNodes()))
			if tc.seed != nil {
				f.seed(t, tc.seed)
			}
			res, err := f.svc.EnterDC(context.Background(), tc.dc, tc.req)
			if tc.code != "" {
				e := requireCode(t, err, tc.code)
				if tc.code == maintenance.EUnsafe {
					assert.ElementsMatch(t, tc.groups, violationGroups(e.Details.([]maintenance.Violation)))
				}
				_, ok := f.doc(t).DCs[tc.dc]
				assert.False(t, ok)
				return
			}
			require.NoError(t, err)
			assert.True(t, res.Changed)
			assert.ElementsMatch(t, tc.groups, violationGroups(res.Violations))
			var pods []string
			for _, pv := range res.Pods {
				pods = append(pods, pv.Pod)
				assert.True(t, pv.InMaintenance)
				assert.Equal(t, "dc", pv.Via)
			}
			assert.Equal(t, tc.pods, pods)
			e, ok := f.doc(t).DCs[tc.dc]
			require.True(t, ok)
			assert.Equal(t, tc.req.Force, e.Force)
		})
	}
}

func TestServiceExit(t *testing.T) {
	ctx := context.Background()

	t.Run("pod", func(t *testing.T) {
		f := newFixture(t, staticView(threeNodes()))
		f.seed(t, func(d *maintenance.Document) {
			d.Pods["n0"] = maintenance.Entry{Reason: "kernel", Since: t0}
			d.Status["n0"] = maintenance.Status{Phase: maintenance.PhaseInMaintenance, ObservedAt: t0}
		})
		res, err := f.svc.ExitPod(ctx, "n0", "alice")
		require.NoError(t, err)
		assert.True(t, res.Changed)
		require.Len(t, res.Pods, 1)
		assert.False(t, res.Pods[0].InMaintenance)
		assert.Equal(t, maintenance.PhaseInMaintenance, res.Pods[0].Phase, "the reconciler has not moved yet")
		_, ok := f.doc(t).Pods["n0"]
		assert.False(t, ok)

		res, err = f.svc.ExitPod(ctx, "n0", "alice")
		require.NoError(t, err)
		assert.False(t, res.Changed, "idempotent")
		res, err = f.svc.ExitPod(ctx, "n1", "alice")
		require.NoError(t, err)
		assert.False(t, res.Changed, "a pod never in maintenance")
		assert.Equal(t, maintenance.PhaseActive, res.Pods[0].Phase)
	})

	t.Run("pod covered by its dc", func(t *testing.T) {
		f := newFixture(t, staticView(threeNodes()))
		f.seed(t, func(d *maintenance.Document) {
			d.DCs["east"] = maintenance.Entry{Since: t0}
			d.Pods["n1"] = maintenance.Entry{Since: t0}
		})
		for _, pod := range []string{"n0", "n1"} {
			_, err := f.svc.ExitPod(ctx, pod, "alice")
			e := requireCode(t, err, maintenance.EConflict)
			assert.Contains(t, e.Message, "/dcs/east")
		}
		_, ok := f.doc(t).Pods["n1"]
		assert.True(t, ok, "nothing written")
	})

	t.Run("errors", func(t *testing.T) {
		f := newFixture(t, staticView(threeNodes()))
		_, err := f.svc.ExitPod(ctx, "n9", "alice")
		requireCode(t, err, maintenance.ENotFound)
		_, err = f.svc.ExitPod(ctx, "Nats_1", "alice")
		requireCode(t, err, maintenance.EInvalid)
		_, err = f.svc.ExitDC(ctx, "north", "alice")
		requireCode(t, err, maintenance.ENotFound)
		_, err = f.svc.ExitDC(ctx, "east!", "alice")
		requireCode(t, err, maintenance.EInvalid)
	})

	t.Run("without a cluster view", func(t *testing.T) {
		f := newFixture(t, viewFunc(func(context.Context) (*natsraft.View, error) {
			return nil, errors.New("collector down")
		}))
		f.seed(t, func(d *maintenance.Document) {
			d.Pods["gone"] = maintenance.Entry{Since: t0}
			d.DCs["east"] = maintenance.Entry{Since: t0}
		})
		res, err := f.svc.ExitPod(ctx, "gone", "alice")
		require.NoError(t, err)
		assert.True(t, res.Changed)
		res, err = f.svc.ExitDC(ctx, "east", "alice")
		require.NoError(t, err)
		assert.True(t, res.Changed)
		d := f.doc(t)
		assert.Empty(t, d.Pods)
		assert.Empty(t, d.DCs)
		_, err = f.svc.ExitPod(ctx, "n0", "alice")
		requireCode(t, err, maintenance.EUnavailable)
	})

	t.Run("dc keeps pod entries", func(t *testing.T) {
		f := newFixture(t, staticView(sixNodes()))
		f.seed(t, func(d *maintenance.Document) {
			d.DCs["west"] = maintenance.Entry{Since: t0}
			d.Pods["w1"] = maintenance.Entry{Reason: "disk", Since: t0}
		})
		res, err := f.svc.ExitDC(ctx, "west", "alice")
		require.NoError(t, err)
		assert.True(t, res.Changed)
		require.Len(t, res.Pods, 2)
		assert.False(t, res.Pods[0].InMaintenance)
		assert.True(t, res.Pods[1].InMaintenance)
		assert.Equal(t, "pod", res.Pods[1].Via)

		res, err = f.svc.ExitDC(ctx, "west", "alice")
		require.NoError(t, err)
		assert.False(t, res.Changed, "idempotent")
	})
}

// TestServiceConcurrentEnter puts two different pods of an R3 cluster into
// maintenance at once: the check inside the store's update must let exactly
// one through.
func TestServiceConcurrentEnter(t *testing.T) {
	for i := range 20 {
		f := newFixture(t, staticView(threeNodes()))
		var wg sync.WaitGroup
		errs := make([]error, 2)
		for j, pod := range []string{"n0", "n1"} {
			wg.Go(func() {
				_, errs[j] = f.svc.EnterPod(context.Background(), pod, maintenance.Request{Reason: "race"})
			})
		}
		wg.Wait()
		ok := 0
		for _, err := range errs {
			if err == nil {
				ok++
				continue
			}
			requireCode(t, err, maintenance.EUnsafe)
		}
		require.Equal(t, 1, ok, "round %d: %v", i, errs)
		assert.Len(t, f.doc(t).Pods, 1)
	}
}

func TestServiceConfig(t *testing.T) {
	f := newFixture(t, staticView(threeNodes()))
	_, err := f.svc.EnterPod(context.Background(), "n0", maintenance.Request{Reason: "kernel"})
	require.NoError(t, err)
	d, err := f.svc.Config(context.Background())
	require.NoError(t, err)
	assert.Equal(t, "kernel", d.Pods["n0"].Reason)
	assert.NotEmpty(t, d.ResourceVersion)
}

func TestGoal(t *testing.T) {
	in := maintenance.PodView{Pod: "a", InMaintenance: true, Via: maintenance.SourcePod, Phase: maintenance.PhaseInMaintenance}
	inViaDC := maintenance.PodView{Pod: "b", InMaintenance: true, Via: maintenance.SourceDC, Phase: maintenance.PhaseInMaintenance}
	fencing := maintenance.PodView{Pod: "c", InMaintenance: true, Via: maintenance.SourcePod, Phase: maintenance.PhaseFencing}
	catching := maintenance.PodView{Pod: "d", Phase: maintenance.PhaseCatchingUp}
	active := maintenance.PodView{Pod: "e", Phase: maintenance.PhaseActive}
	for _, tc := range []struct {
		name string
		goal maintenance.Goal
		pods []maintenance.PodView
		want bool
	}{
		{"enter: in maintenance", maintenance.Goal{Enter: true}, []maintenance.PodView{in}, true},
		{"enter: still fencing", maintenance.Goal{Enter: true}, []maintenance.PodView{in, fencing}, false},
		{"leave: active", maintenance.Goal{}, []maintenance.PodView{active}, true},
		{"leave: catching up", maintenance.Goal{}, []maintenance.PodView{active, catching}, false},
		{"leave pod: its own entry holds it", maintenance.Goal{}, []maintenance.PodView{in}, false},
		{"leave dc: a pod with its own entry does not hold the dc back", maintenance.Goal{DC: true}, []maintenance.PodView{in, active}, true},
		{"leave dc: a pod still held by the dc does", maintenance.Goal{DC: true}, []maintenance.PodView{inViaDC, active}, false},
		{"empty set is never done", maintenance.Goal{}, nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.want, tc.goal.All(tc.pods))
		})
	}
}

// TestEnterEvacuating checks the safety rule for an entry that moves the
// streams of one replica off first: they are warnings saying so, not
// violations, and the entry is stored with what to do on the way back.
func TestEnterEvacuating(t *testing.T) {
	v := threeNodes()
	reader := group(natsraft.KindConsumer, "SCRATCH/reader", "n2")
	reader.Stream, reader.Consumer = "SCRATCH", "reader"
	v.Groups = append(v.Groups, reader)
	f := newFixture(t, staticView(v))
	ctx := context.Background()

	_, err := f.svc.EnterPod(ctx, "n2", maintenance.Request{Reason: "disk"})
	e := requireCode(t, err, maintenance.EUnsafe)
	assert.Contains(t, e.Message, "SCRATCH")

	res, err := f.svc.EnterPod(ctx, "n2", maintenance.Request{Reason: "disk", Evacuate: true, DryRun: true})
	require.NoError(t, err)
	assert.Empty(t, res.Violations, "moved, not lost")
	assert.Equal(t, []string{"SCRATCH", "SCRATCH/reader"}, violationGroups(res.Warnings))
	for _, w := range res.Warnings {
		assert.Contains(t, w.Reason, "evacuate moves it to another node first")
	}

	res, err = f.svc.EnterPod(ctx, "n2", maintenance.Request{Reason: "disk", Evacuate: true, KeepEvacuated: true})
	require.NoError(t, err)
	assert.True(t, res.Changed)
	e2 := f.doc(t).Pods["n2"]
	assert.True(t, e2.Evacuate)
	assert.True(t, e2.KeepEvacuated)
}

// A group whose members are all out of service is reported by no server.
// The statuses record it (Status.Dark, written as the last member serving
// quiesces), and a request judged for a pod that a forced entry holds is
// judged on it from there: once the forced entry ends, the new one alone
// would keep the group below its quorum. A member restarted in maintenance
// reports its groups before it is quiesced again, with no leader and none
// of their peers (its Raft nodes have not started): the record completes
// them.
func TestServiceJudgesDarkGroups(t *testing.T) {
	for _, tc := range []struct {
		name string
		seen func(dark []natsraft.Group) []natsraft.Group
	}{
		{"no group seen", func([]natsraft.Group) []natsraft.Group { return nil }},
		{"n2 restarted reports its groups alone", func(dark []natsraft.Group) []natsraft.Group {
			var out []natsraft.Group
			for _, g := range dark {
				if slices.Contains(g.PeerNames(), "n2") {
					out = append(out, natsraft.Group{Kind: g.Kind, Account: g.Account, Name: g.Name,
						Peers: []natsraft.Peer{{Name: "n2"}}})
				}
			}
			return out
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// Every node of east quiesced under a forced dc entry.
			view := threeNodes()
			dark := view.Groups
			view.Groups = tc.seen(dark)
			for i := range view.Nodes {
				view.Nodes[i].JetStream = len(view.Groups) > 0 && view.Nodes[i].Name == "n2"
			}
			judgesDarkGroups(t, view, dark)
		})
	}
}

// TestServiceJudgesHalfSeenGroups: a prober that has just started, with no
// earlier view and no record, sees n2 (just restarted) report ORDERS and
// its consumer alone and with no leader, n1 down and n0 back from
// maintenance with its JetStream not yet resumed. n0 is named by no report,
// but the groups' configured replicas say two members are missing, and n0
// could hold one: putting it back into maintenance is refused, and a pod
// that serves JetStream and is not named is not.
func TestServiceJudgesHalfSeenGroups(t *testing.T) {
	view := threeNodes()
	var groups []natsraft.Group
	for _, g := range view.Groups[1:3] {
		groups = append(groups, natsraft.Group{Kind: g.Kind, Account: g.Account, Name: g.Name, Stream: "ORDERS",
			Replicas: len(g.Peers), Peers: []natsraft.Peer{{Name: "n2"}}})
	}
	view.Groups = append(groups, view.Groups[3])
	view.Nodes[0].JetStream = false
	view.Nodes[1].Reachable, view.Nodes[1].JetStream = false, false
	f := newFixture(t, staticView(view))
	ctx := context.Background()

	before := f.doc(t)
	_, err := f.svc.EnterPod(ctx, "n0", maintenance.Request{Reason: "disk"})
	ue := requireCode(t, err, maintenance.EUnsafe)
	v, ok := ue.Details.([]maintenance.Violation)
	require.True(t, ok, "details are %T", ue.Details)
	assert.Equal(t, []string{"ORDERS", "ORDERS/C1"}, violationGroups(v))
	for _, x := range v {
		assert.Equal(t, []string{"n0"}, x.MayHold, x.Group)
		assert.Equal(t, 2, x.Unnamed, x.Group)
		assert.Contains(t, x.Reason, "(R3) would keep 0 of 3 peers, needs 2: n2 not current; no report names 2 of its members, and n0 may hold one")
	}
	assert.Equal(t, before, f.doc(t), "a refused request writes nothing")

	// A pod that serves JetStream would report the groups if it held them.
	view.Nodes = append(view.Nodes, node("n3", "east"))
	_, err = f.svc.EnterPod(ctx, "n3", maintenance.Request{Reason: "disk"})
	require.NoError(t, err)
}

// judgesDarkGroups judges requests on view, with every group of dark
// recorded as dark in the statuses of east, all in under a forced entry.
func judgesDarkGroups(t *testing.T, view *natsraft.View, dark []natsraft.Group) {
	t.Helper()
	f := newFixture(t, staticView(view))
	ctx := context.Background()
	f.seed(t, func(d *maintenance.Document) {
		d.DCs["east"] = maintenance.Entry{Since: t0, Force: true, Reason: "power work"}
		for _, n := range []string{"n0", "n1", "n2"} {
			st := maintenance.Status{Phase: maintenance.PhaseInMaintenance, ObservedAt: t0, PhaseSince: t0, Entry: "dc.east", InByForce: true}
			for _, g := range dark {
				if slices.Contains(g.PeerNames(), n) {
					peers := g.PeerNames()
					slices.Sort(peers)
					st.Dark = append(st.Dark, maintenance.GroupRef{Kind: g.Kind, Account: g.Account, Group: g.Name, Peers: peers})
				}
			}
			d.Status[n] = st
		}
	})

	before := f.doc(t)
	_, err := f.svc.EnterPod(ctx, "n0", maintenance.Request{Reason: "disk"})
	ue := requireCode(t, err, maintenance.EUnsafe)
	v, ok := ue.Details.([]maintenance.Violation)
	require.True(t, ok, "details are %T", ue.Details)
	assert.ElementsMatch(t, []string{natsraft.MetaGroupName, "ORDERS", "ORDERS/C1"}, violationGroups(v), "SCRATCH is n2's alone")
	for _, x := range v {
		if x.Group == "ORDERS" {
			assert.Contains(t, x.Reason, "n0 requested")
			assert.Contains(t, x.Reason, "n1 in maintenance")
		}
	}
	assert.Equal(t, before, f.doc(t), "a refused request writes nothing")

	res, err := f.svc.EnterPod(ctx, "n2", maintenance.Request{Reason: "disk", DryRun: true})
	require.NoError(t, err)
	assert.ElementsMatch(t, []string{natsraft.MetaGroupName, "ORDERS", "ORDERS/C1", "SCRATCH"}, violationGroups(res.Violations))

	res, err = f.svc.EnterPod(ctx, "n0", maintenance.Request{Reason: "disk", Force: true})
	require.NoError(t, err)
	assert.True(t, res.Forced)
	assert.ElementsMatch(t, []string{natsraft.MetaGroupName, "ORDERS", "ORDERS/C1"}, violationGroups(res.Violations))
}

// TestStopRolloutTwice checks the way out of a rollout that stops while
// the pod having its turn does not come back: a second DELETE stops it at
// once and removes the rollout's entry of the pod, so that another
// rollout can start. A stopped rollout asked again is deleted.
func TestStopRolloutTwice(t *testing.T) {
	f := newFixture(t, staticView(threeNodes()))
	ctx := context.Background()
	entered := t0
	f.seed(t, func(d *maintenance.Document) {
		d.Pods["n0"] = maintenance.Entry{Reason: "rolling", Since: t0, RequestedBy: "rollout weekly"}
		d.Status["n0"] = maintenance.Status{Phase: maintenance.PhaseFailed, Message: "fence failed", ObservedAt: t0, PhaseSince: t0}
		d.Rollouts = map[string]maintenance.Rollout{"weekly": {
			Spec: maintenance.RolloutSpec{Hold: "5m0s"}, Created: t0, State: maintenance.RolloutRunning,
			Pods: []maintenance.RolloutPod{
				{Pod: "n0", Step: maintenance.StepEntering, Entered: &entered},
				{Pod: "n1", Step: maintenance.StepPending},
			},
		}}
	})
	v, err := f.svc.StopRollout(ctx, "weekly", "ops")
	require.NoError(t, err)
	assert.Equal(t, maintenance.RolloutStopping, v.State)
	assert.Equal(t, "n0", v.Current)
	assert.Equal(t, "pod n0 is Failed: fence failed", v.Waiting)

	assert.False(t, v.Deleted)

	v, err = f.svc.StopRollout(ctx, "weekly", "ops")
	require.NoError(t, err)
	assert.Equal(t, maintenance.RolloutStopped, v.State)
	assert.Empty(t, v.Current)
	assert.False(t, v.Deleted, "stopped at once, the record kept")
	d := f.doc(t)
	assert.NotContains(t, d.Pods, "n0", "the rollout's entry goes")
	assert.Equal(t, maintenance.StepExiting, d.Rollouts["weekly"].Pods[0].Step)
	assert.Equal(t, maintenance.StepPending, d.Rollouts["weekly"].Pods[1].Step)

	v, err = f.svc.StopRollout(ctx, "weekly", "ops")
	require.NoError(t, err)
	assert.True(t, v.Deleted)
	assert.NotContains(t, f.doc(t).Rollouts, "weekly")
	_, err = f.svc.StopRollout(ctx, "weekly", "ops")
	requireCode(t, err, maintenance.ENotFound)
}

// TestServiceJudgesAPodInAfterItsForceEnded checks a request for a pod
// still out under a forced entry that has ended (deleted or expired; the
// status still says inByForce): it is judged as if the pod were entering,
// since nothing else has judged it, and refused when the pod's absence
// costs a quorum.
func TestServiceJudgesAPodInAfterItsForceEnded(t *testing.T) {
	f := newFixture(t, staticView(offline(threeNodes(), "n2")))
	ctx := context.Background()
	f.seed(t, func(d *maintenance.Document) {
		d.Status["n0"] = maintenance.Status{Phase: maintenance.PhaseInMaintenance, ObservedAt: t0, PhaseSince: t0,
			Entry: "pod.n0", InByForce: true}
	})
	before := f.doc(t)
	_, err := f.svc.EnterPod(ctx, "n0", maintenance.Request{Reason: "disk"})
	ue := requireCode(t, err, maintenance.EUnsafe)
	v, ok := ue.Details.([]maintenance.Violation)
	require.True(t, ok, "details are %T", ue.Details)
	assert.Contains(t, violationGroups(v), "ORDERS")
	assert.Equal(t, before, f.doc(t), "a refused request writes nothing")

	// Not in by force: a pod already out is not judged again.
	f.seed(t, func(d *maintenance.Document) {
		st := d.Status["n0"]
		st.InByForce = false
		d.Status["n0"] = st
	})
	res, err := f.svc.EnterPod(ctx, "n0", maintenance.Request{Reason: "disk"})
	require.NoError(t, err)
	assert.True(t, res.Changed)
}

// TestServiceDrainAndEvacuateDoNotMix checks that a fence entry asking to
// evacuate, turned into a drain, does not keep evacuate (a drain keeps the
// streams where they are), and that a request to evacuate a pod whose
// entry is a drain, naming no mode, is refused rather than stored.
func TestServiceDrainAndEvacuateDoNotMix(t *testing.T) {
	f := newFixture(t, staticView(threeNodes()))
	ctx := context.Background()
	_, err := f.svc.EnterPod(ctx, "n0", maintenance.Request{Reason: "disk", Evacuate: true, KeepEvacuated: true})
	require.NoError(t, err)
	_, err = f.svc.EnterPod(ctx, "n0", maintenance.Request{Mode: maintenance.ModeDrain})
	require.NoError(t, err)
	e := f.doc(t).Pods["n0"]
	assert.True(t, e.Drain())
	assert.False(t, e.Evacuate)
	assert.False(t, e.KeepEvacuated)

	before := f.doc(t)
	_, err = f.svc.EnterPod(ctx, "n0", maintenance.Request{Evacuate: true})
	e2 := requireCode(t, err, maintenance.EInvalid)
	assert.Contains(t, e2.Message, `"mode": "fence"`)
	_, err = f.svc.EnterPod(ctx, "n0", maintenance.Request{Evacuate: true, DryRun: true})
	requireCode(t, err, maintenance.EInvalid)
	assert.Equal(t, before, f.doc(t))

	_, err = f.svc.EnterPod(ctx, "n0", maintenance.Request{Evacuate: true, Mode: maintenance.ModeFence})
	require.NoError(t, err)
	e = f.doc(t).Pods["n0"]
	assert.False(t, e.Drain())
	assert.True(t, e.Evacuate)
}

// TestExitPodHeldByItsDCWithoutAView checks DELETE /pods/<pod> of a pod
// its dc's entry keeps in while no cluster view can be had: the pod's
// status names the dc entry, and the answer is the same 409 as with a
// view, nothing removed.
func TestExitPodHeldByItsDCWithoutAView(t *testing.T) {
	f := newFixture(t, viewFunc(func(context.Context) (*natsraft.View, error) {
		return nil, errors.New("no NATS server answers")
	}))
	f.seed(t, func(d *maintenance.Document) {
		d.DCs["east"] = maintenance.Entry{Since: t0, Reason: "power"}
		d.Status["n0"] = maintenance.Status{Phase: maintenance.PhaseInMaintenance, ObservedAt: t0, PhaseSince: t0, Entry: "dc.east"}
	})
	before := f.doc(t)
	_, err := f.svc.ExitPod(context.Background(), "n0", "ops")
	e := requireCode(t, err, maintenance.EConflict)
	assert.Contains(t, e.Message, "DELETE /dcs/east")
	assert.Equal(t, before, f.doc(t))
}

// TestBalanceNamesFirst checks that a balance refuses a bad dc or pod name
// (400) before it needs a leader mover or a cluster view (503).
func TestBalanceNamesFirst(t *testing.T) {
	f := newFixture(t, viewFunc(func(context.Context) (*natsraft.View, error) {
		return nil, errors.New("no view yet")
	}))
	ctx := context.Background()
	for _, r := range []maintenance.BalanceRequest{{DC: "bad dc"}, {To: "Bad_Pod"}, {To: "Bad_Pod", DryRun: true}} {
		_, err := f.svc.Balance(ctx, r)
		requireCode(t, err, maintenance.EInvalid)
	}
	_, err := f.svc.Balance(ctx, maintenance.BalanceRequest{To: "n0", DryRun: true})
	requireCode(t, err, maintenance.EUnavailable)
}

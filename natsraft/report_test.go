package natsraft

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// sharedRig is one collector per node of a real cluster, as the sidecars
// have them with shared sweeps: each reads its own server and serves its
// report; reads[k][i] counts the monitoring requests collector k sent to
// node i's server (each collector reaches each server through a proxy of
// its own).
type sharedRig struct {
	collectors []*Collector
	reports    []*httptest.Server
	reads      [][]*atomic.Int64
}

func newSharedRig(t *testing.T, e *Embedded, base CollectorOptions) *sharedRig {
	t.Helper()
	eps := e.Endpoints()
	n := len(eps)
	rig := &sharedRig{reads: make([][]*atomic.Int64, n)}
	for k := range n {
		rig.reads[k] = make([]*atomic.Int64, n)
		for i := range n {
			rig.reads[k][i] = new(atomic.Int64)
		}
	}
	// The report servers first, so that every collector knows every URL.
	handlers := make([]http.HandlerFunc, n)
	for i := range n {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { handlers[i](w, r) }))
		t.Cleanup(srv.Close)
		rig.reports = append(rig.reports, srv)
	}
	for k := range n {
		own := make([]Endpoint, n)
		for i, ep := range eps {
			target, err := url.Parse(ep.MonitorURL)
			require.NoError(t, err)
			proxy := httputil.NewSingleHostReverseProxy(target)
			count := rig.reads[k][i]
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				count.Add(1)
				proxy.ServeHTTP(w, r)
			}))
			t.Cleanup(srv.Close)
			own[i] = Endpoint{Name: ep.Name, DC: ep.DC, MonitorURL: srv.URL, ReportURL: rig.reports[i].URL + "/local/report"}
		}
		o := base
		o.Endpoints, o.Self, o.Timeout, o.Logger = own, eps[k].Name, 2*time.Second, zerolog.Nop()
		c := NewCollector(o)
		rig.collectors = append(rig.collectors, c)
		handlers[k] = func(w http.ResponseWriter, r *http.Request) {
			maxAge, err := time.ParseDuration(r.URL.Query().Get("maxAge"))
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			b, err := c.LocalReport(r.Context(), maxAge)
			if err != nil {
				http.Error(w, err.Error(), http.StatusServiceUnavailable)
				return
			}
			_, _ = w.Write(b)
		}
	}
	return rig
}

// total returns the requests collector k sent to node i's server so far.
func (r *sharedRig) total(k, i int) int64 { return r.reads[k][i].Load() }

// TestSharedSweeps checks the sweeps of sidecars that share their reads:
// every server is read by its own collector only, every collector still
// sees the whole cluster as one that reads every server does, a view that
// must be fresh makes each peer read its server again, and a peer whose
// sidecar does not answer is read directly.
func TestSharedSweeps(t *testing.T) {
	e, direct := raftCluster(t)
	want := waitView(t, direct, 15*time.Second, "a healthy view", healthyDemo)
	rig := newSharedRig(t, e, CollectorOptions{})
	n := len(rig.collectors)

	t.Run("each server read by its own sidecar only", func(t *testing.T) {
		for round := range 3 {
			for k, c := range rig.collectors {
				v, err := c.sweepWithin(t.Context(), time.Minute)
				require.NoError(t, err, "collector %d, round %d", k, round)
				require.True(t, healthyDemo(v), "collector %d sees a healthy cluster", k)
				assert.Equal(t, groupNames(want), groupNames(v))
				for _, g := range v.Groups {
					assert.Equal(t, groupNamed(t, want, g.Name).Leader, g.Leader, g.Name)
				}
				for _, node := range v.Nodes {
					assert.True(t, node.Reachable, node.Name)
					assert.Len(t, node.Routes, n-1, node.Name)
				}
			}
		}
		for k := range n {
			for i := range n {
				if k == i {
					assert.Positive(t, rig.total(k, i), "collector %d reads its own server", k)
				} else {
					assert.Zero(t, rig.total(k, i), "collector %d never reads server %d", k, i)
				}
			}
			shared, directs := rig.collectors[k].SharedStats()
			assert.Equal(t, int64(3*(n-1)), shared, "collector %d got every peer's report from its sidecar", k)
			assert.Zero(t, directs)
		}
	})

	t.Run("a fresh view makes every peer read again", func(t *testing.T) {
		before := make([]int64, n)
		for i := range n {
			before[i] = rig.total(i, i)
		}
		since := time.Now()
		v, err := rig.collectors[0].ViewSince(t.Context(), since)
		require.NoError(t, err)
		assert.True(t, healthyDemo(v))
		for i := range n {
			assert.Greater(t, rig.total(i, i), before[i], "server %d read again by its sidecar for a view since %s", i, since)
		}
		// Within the max age, the peers' reads are reused.
		for i := range n {
			before[i] = rig.total(i, i)
		}
		_, err = rig.collectors[0].sweepWithin(t.Context(), time.Minute)
		require.NoError(t, err)
		for i := 1; i < n; i++ {
			assert.Equal(t, before[i], rig.total(i, i), "server %d not read again for a report a minute may be old", i)
		}
	})

	t.Run("a peer whose sidecar does not answer is read directly", func(t *testing.T) {
		rig.reports[2].Close()
		v, err := rig.collectors[0].Sweep(t.Context())
		require.NoError(t, err)
		assert.True(t, healthyDemo(v))
		node, ok := v.Node(e.Endpoints()[2].Name)
		require.True(t, ok)
		assert.True(t, node.Reachable)
		assert.Positive(t, rig.total(0, 2), "server 2 read by collector 0 itself")
		_, directs := rig.collectors[0].SharedStats()
		assert.Equal(t, int64(1), directs)
	})
}

// TestSharedWatch checks the sidecars' watch between two sweeps: each
// looks only at its own server's routes, and when they change (a peer's
// server stopped, or back) sweeps at once. The sweep interval is an hour,
// so every view here comes from the watch.
func TestSharedWatch(t *testing.T) {
	e, direct := raftCluster(t)
	waitView(t, direct, 15*time.Second, "a healthy view", healthyDemo)
	rig := newSharedRig(t, e, CollectorOptions{Interval: time.Hour, WatchInterval: 50 * time.Millisecond})
	n := len(rig.collectors)
	ctx, cancel := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	for _, c := range rig.collectors {
		wg.Go(func() { _ = c.Run(ctx) })
	}
	// The first look of each is no change: wait until each has looked.
	require.Eventually(t, func() bool {
		for k := range n {
			if rig.total(k, k) < 2 {
				return false
			}
		}
		return true
	}, 10*time.Second, 10*time.Millisecond, "each sidecar looks at its own server")
	for k, c := range rig.collectors {
		assert.Nil(t, c.Latest(), "collector %d has not swept: the routes did not change", k)
	}

	stopped := e.Endpoints()[2].Name
	require.NoError(t, e.StopNode(stopped))
	for k := range n - 1 {
		c := rig.collectors[k]
		require.Eventually(t, func() bool {
			v := c.Latest()
			if v == nil {
				return false
			}
			node, ok := v.Node(stopped)
			return ok && !node.Reachable
		}, 10*time.Second, 10*time.Millisecond, "collector %d sees %s down without waiting for its hourly sweep", k, stopped)
	}

	back := time.Now()
	require.NoError(t, e.RestartNode(t.Context(), stopped))
	for k, c := range rig.collectors {
		require.Eventually(t, func() bool {
			v := c.Latest()
			if v == nil || v.At.Before(back) {
				return false
			}
			node, ok := v.Node(stopped)
			return ok && node.Reachable && len(node.Routes) == n-1
		}, 20*time.Second, 10*time.Millisecond, "collector %d sees %s back with its routes", k, stopped)
	}
	for k := range n {
		for i := range n {
			if k != i {
				assert.Zero(t, rig.total(k, i), "collector %d never reads server %d: the watch looks at its own", k, i)
			}
		}
	}
}

// TestLocalReportMaxAge checks that the local server is read again
// unless its latest read started within the max age asked for, and that a
// collector without its node among its endpoints says so.
func TestLocalReportMaxAge(t *testing.T) {
	eps := synthCluster(t, 10)
	var reads atomic.Int64
	target, err := url.Parse(eps[0].MonitorURL)
	require.NoError(t, err)
	proxy := httputil.NewSingleHostReverseProxy(target)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/varz" {
			reads.Add(1)
		}
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	eps[0].MonitorURL = srv.URL
	c := NewCollector(CollectorOptions{Endpoints: eps, Self: eps[0].Name, Logger: zerolog.Nop()})
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()

	for i := range 2 {
		_, err := c.LocalReport(ctx, 0)
		require.NoError(t, err)
		assert.Equal(t, int64(i+1), reads.Load(), "max age 0 always reads")
	}
	b, err := c.LocalReport(ctx, time.Minute)
	require.NoError(t, err)
	assert.Equal(t, int64(2), reads.Load(), "a read younger than the max age is reused")
	assert.Regexp(t, `^\{"age":\d+,"name":"n0",`, string(b))
	var d reportDoc
	require.NoError(t, decodeDoc(b, &d))
	r := d.report(eps[0])
	require.NoError(t, r.err)
	assert.Equal(t, "n0", r.varz.Name)
	assert.NotEmpty(t, r.jsz.Accounts)
	assert.NotEmpty(t, r.raft)

	none := NewCollector(CollectorOptions{Endpoints: eps, Self: "n9", Logger: zerolog.Nop()})
	_, err = none.LocalReport(ctx, 0)
	require.ErrorIs(t, err, ErrNoLocalNode)

	// A pre-stop: the next report, read anew whatever its max age, says
	// the server is being stopped, and a view built from it too.
	c.SetStopping(true)
	b, err = c.LocalReport(ctx, time.Minute)
	require.NoError(t, err)
	assert.Equal(t, int64(3), reads.Load(), "stopping reads again")
	require.NoError(t, decodeDoc(b, &d))
	assert.True(t, d.Stopping)
	assert.True(t, buildView(time.Now(), []*nodeReport{d.report(eps[0])}).Nodes[0].Stopping)
	c.SetStopping(false)
	b, err = c.LocalReport(ctx, time.Minute)
	require.NoError(t, err)
	d = reportDoc{}
	require.NoError(t, decodeDoc(b, &d))
	assert.False(t, d.Stopping)
}

func groupNames(v *View) []string {
	out := make([]string, len(v.Groups))
	for i, g := range v.Groups {
		out[i] = g.Name
	}
	return out
}

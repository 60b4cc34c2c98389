package prober_test

import (
	"context"
	"encoding/json"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/prober-dev/prober/natsraft"
	"github.com/prober-dev/prober/prober"
)

func withReadiness(r prober.Readiness) serverOption {
	return func(o *prober.Options, _ *testServer) { o.Readiness = r }
}

// localReady is a settable reconciler verdict.
type localReady struct {
	mu  sync.Mutex
	ok  bool
	why string
}

func (l *localReady) set(ok bool, why string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.ok, l.why = ok, why
}

func (l *localReady) Ready() (bool, string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.ok, l.why
}

func TestReadyzPerPod(t *testing.T) {
	v := meshed()
	// n2 is behind in ORDERS: not current, far behind.
	for i := range v.Groups[1].Peers {
		if p := &v.Groups[1].Peers[i]; p.Name == "n2" {
			p.Current, p.Healthy, p.Lag = false, false, 5000
		}
	}
	locals := map[string]*localReady{}
	readiness := &prober.ViewReadiness{Local: map[string]func() (bool, string){}, Views: staticView(v)}
	for _, n := range v.Nodes {
		l := &localReady{ok: true}
		locals[n.Name] = l
		readiness.Local[n.Name] = l.Ready
	}
	locals["n1"].set(false, "in maintenance (pod.n1)")
	ts := mustOpenServer(t, withViews(staticView(v)), withReadiness(readiness))

	tests := []struct {
		name    string
		path    string
		status  int
		message string
		pods    map[string]string
	}{
		{name: "ready pod", path: "/readyz?pod=n0", status: http.StatusOK},
		{name: "pod in maintenance", path: "/readyz?pod=n1", status: http.StatusServiceUnavailable,
			message: "n1 is not ready: in maintenance (pod.n1)"},
		{name: "pod not caught up", path: "/readyz?pod=n2", status: http.StatusServiceUnavailable,
			message: "n2 is not ready: stream ORDERS: not current (lag 5000"},
		{name: "unknown pod", path: "/readyz?pod=n9", status: http.StatusNotFound, message: "pod n9 is not one this prober serves"},
		{name: "every pod", path: "/readyz", status: http.StatusServiceUnavailable,
			message: "not ready: n1: in maintenance (pod.n1); n2: stream ORDERS: not current",
			pods: map[string]string{"n0": "ready", "w0": "ready", "n1": "in maintenance (pod.n1)",
				"n2": "stream ORDERS: not current (lag 5000, active 100ms, leader n1)"}},
		{name: "liveness stays", path: "/livez", status: http.StatusOK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, b := ts.do(t, http.MethodGet, tt.path, "")
			require.Equal(t, tt.status, resp.StatusCode, "%s", b)
			if tt.status == http.StatusOK {
				var pr prober.ProbeResponse
				require.NoError(t, json.Unmarshal(b, &pr))
				assert.Contains(t, []string{"ready", "ok"}, pr.Status)
				return
			}
			e := decodeError(t, b)
			assert.Contains(t, e.Message, tt.message)
			if tt.pods != nil {
				details, err := json.Marshal(e.Details)
				require.NoError(t, err)
				var pods map[string]string
				require.NoError(t, json.Unmarshal(details, &pods))
				assert.Equal(t, tt.pods, pods)
			}
		})
	}

	t.Run("all ready", func(t *testing.T) {
		locals["n1"].set(true, "")
		for i := range v.Groups[1].Peers {
			if p := &v.Groups[1].Peers[i]; p.Name == "n2" {
				p.Current, p.Healthy, p.Lag = true, true, 0
			}
		}
		resp, b := ts.do(t, http.MethodGet, "/readyz", "")
		require.Equal(t, http.StatusOK, resp.StatusCode, "%s", b)
		var pr prober.ProbeResponse
		require.NoError(t, json.Unmarshal(b, &pr))
		assert.Equal(t, prober.ProbeResponse{Status: "ready", Pods: map[string]string{
			"n0": "ready", "n1": "ready", "n2": "ready", "w0": "ready"}}, pr)
		resp, b = ts.do(t, http.MethodGet, "/readyz?pod=n2", "")
		require.Equal(t, http.StatusOK, resp.StatusCode, "%s", b)
		var one prober.ProbeResponse
		require.NoError(t, json.Unmarshal(b, &one))
		assert.Equal(t, prober.ProbeResponse{Status: "ready", Pod: "n2"}, one)
	})
}

func TestViewReadinessWithoutView(t *testing.T) {
	r := &prober.ViewReadiness{
		Local: map[string]func() (bool, string){"n0": func() (bool, string) { return true, "" }},
		Views: viewFunc(func(context.Context) (*natsraft.View, error) { return nil, natsraft.ErrNoNodeReachable }),
	}
	ok, why := r.PodReady(t.Context(), "n0")
	assert.False(t, ok)
	assert.Contains(t, why, "no cluster view")
	ok, why = r.PodReady(t.Context(), "n7")
	assert.False(t, ok)
	assert.Equal(t, "unknown pod n7", why)
	assert.Equal(t, []string{"n0"}, r.Pods())
}

// sweptViews keeps a latest view and answers ViewSince with the next one,
// as the collector does: the latest view, then one swept after it.
type sweptViews struct {
	latest, next *natsraft.View
	mu           sync.Mutex
	since        []time.Time
}

func (s *sweptViews) View(context.Context) (*natsraft.View, error) { return s.latest, nil }
func (s *sweptViews) Latest() *natsraft.View                       { return s.latest }
func (s *sweptViews) ViewSince(_ context.Context, since time.Time) (*natsraft.View, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.since = append(s.since, since)
	return s.next, nil
}

func TestViewReadinessConfirmsNotReadyOnANewerView(t *testing.T) {
	now := time.Now()
	ready := meshed()
	ready.At = now
	// A sweep taken in the middle of a hand-off: the meta group has no
	// leader and n0's own Raft state was not read.
	midHandOff := meshed()
	midHandOff.At = now.Add(-time.Second)
	midHandOff.Groups[0].Leader = ""
	for i := range midHandOff.Groups[0].Peers {
		midHandOff.Groups[0].Peers[i].Leader, midHandOff.Groups[0].Peers[i].Own = false, nil
	}
	behind := meshed()
	behind.At = now
	for i := range behind.Groups[1].Peers {
		if p := &behind.Groups[1].Peers[i]; p.Name == "n0" {
			p.Current, p.Healthy, p.Lag = false, false, 5000
		}
	}
	local := map[string]func() (bool, string){"n0": func() (bool, string) { return true, "" }}

	tests := []struct {
		name       string
		latest     *natsraft.View
		next       *natsraft.View
		wantReady  bool
		wantSweeps int
		wantWhy    string
	}{
		{name: "ready on the latest view: no second look", latest: ready, next: behind, wantReady: true},
		{name: "not ready on the latest, ready on a newer one", latest: midHandOff, next: ready, wantReady: true, wantSweeps: 1},
		{name: "not ready on both: the newer one's reason", latest: midHandOff, next: behind, wantSweeps: 1, wantWhy: "not current"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			views := &sweptViews{latest: tt.latest, next: tt.next}
			r := &prober.ViewReadiness{Local: local, Views: views}
			ok, why := r.PodReady(t.Context(), "n0")
			assert.Equal(t, tt.wantReady, ok, why)
			assert.Contains(t, why, tt.wantWhy)
			require.Len(t, views.since, tt.wantSweeps)
			for _, s := range views.since {
				assert.Equal(t, tt.latest.At, s, "the second look is swept after the first")
			}
		})
	}
}

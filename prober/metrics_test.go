package prober_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/prober-dev/prober/maintenance"
	"github.com/prober-dev/prober/natsraft"
	"github.com/prober-dev/prober/prober"
)

// meshed is cluster() with every node routed to the others of its dc, as
// /routez reports them.
func meshed() *natsraft.View {
	v := cluster()
	for i := range v.Nodes {
		for _, p := range v.Nodes {
			if p.Name != v.Nodes[i].Name && p.DC == v.Nodes[i].DC {
				v.Nodes[i].Routes = append(v.Nodes[i].Routes, p.Name)
			}
		}
	}
	// Every member heard from recently and reporting its own Raft state,
	// in step with its leader.
	for gi := range v.Groups {
		g := &v.Groups[gi]
		for pi := range g.Peers {
			p := &g.Peers[pi]
			if !p.Leader && p.Active == 0 {
				p.Active = 100 * time.Millisecond
			}
			p.Own = &natsraft.MemberState{Committed: g.Commit, Applied: g.Commit, LastSeq: g.LastSeq}
		}
	}
	return v
}

// sickCluster is meshed() with n2 down: ORDERS runs degraded (n2 is 40
// entries behind as last seen) and a second stream, EVENTS, on n0 and
// n2 only, has been leaderless for 3 s.
func sickCluster() *natsraft.View {
	v := meshed()
	for i := range v.Nodes {
		if v.Nodes[i].Name == "n2" {
			v.Nodes[i] = natsraft.Node{Name: "n2", DC: "east", Error: "connection refused", Routes: []string{}}
		}
		v.Nodes[i].Routes = slices.DeleteFunc(v.Nodes[i].Routes, func(r string) bool { return r == "n2" })
	}
	for gi := range v.Groups {
		for pi := range v.Groups[gi].Peers {
			if p := &v.Groups[gi].Peers[pi]; p.Name == "n2" {
				p.Current, p.Healthy, p.Offline, p.Lag = false, false, true, 40
			}
		}
	}
	since := v.At.Add(-3 * time.Second)
	v.Groups = append(v.Groups, natsraft.Group{
		Kind: natsraft.KindStream, Name: "EVENTS", Account: "APP", Stream: "EVENTS", Term: 9,
		LeaderlessSince: &since, QuorumLostSince: &since, TermChangesPerMinute: 4,
		Peers: []natsraft.Peer{{Name: "n0"}, {Name: "n2", Offline: true}},
	})
	return v
}

// scrape reads /metrics into metric families.
func scrape(t *testing.T, ts *testServer) map[string]*dto.MetricFamily {
	t.Helper()
	resp, b := ts.do(t, http.MethodGet, "/metrics", "")
	require.Equal(t, http.StatusOK, resp.StatusCode, "%s", b)
	assert.Contains(t, resp.Header.Get("Content-Type"), "text/plain")
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(b))
	require.NoError(t, err)
	return fams
}

// sample returns the value of the family's metric with exactly these
// labels, and whether there is one.
func sample(fams map[string]*dto.MetricFamily, name string, labels map[string]string) (float64, bool) {
	f, ok := fams[name]
	if !ok {
		return 0, false
	}
	for _, m := range f.GetMetric() {
		if len(m.GetLabel()) != len(labels) {
			continue
		}
		match := true
		for _, l := range m.GetLabel() {
			if labels[l.GetName()] != l.GetValue() {
				match = false
				break
			}
		}
		if !match {
			continue
		}
		switch {
		case m.GetGauge() != nil:
			return m.GetGauge().GetValue(), true
		case m.GetCounter() != nil:
			return m.GetCounter().GetValue(), true
		case m.GetHistogram() != nil:
			return float64(m.GetHistogram().GetSampleCount()), true
		}
	}
	return 0, false
}

func labelSets(fams map[string]*dto.MetricFamily, name string) []string {
	var out []string
	for _, m := range fams[name].GetMetric() {
		var parts []string
		for _, l := range m.GetLabel() {
			parts = append(parts, l.GetName()+"="+l.GetValue())
		}
		out = append(out, strings.Join(parts, ","))
	}
	sort.Strings(out)
	return out
}

func TestMetrics(t *testing.T) {
	v := sickCluster()
	ts := mustOpenServer(t, withViews(staticView(v)))
	ts.seed(t, func(d *maintenance.Document) {
		now := time.Now()
		d.Pods["n1"] = maintenance.Entry{Reason: "kernel", Since: now}
		d.Status["n1"] = maintenance.Status{Phase: maintenance.PhaseFencing, ObservedAt: now, PhaseSince: now}
		d.Pods["w0"] = maintenance.Entry{Reason: "disk", Since: now}
	})

	// Requests to count, by route template.
	for _, path := range []string{"/livez", "/livez", "/pods/n0", "/pods/n1", "/nope"} {
		ts.do(t, http.MethodGet, path, "")
	}
	// Made-up methods share one label value, so no caller can grow the registry.
	for _, m := range []string{"FOO1", "FOO2", "BAR"} {
		ts.do(t, m, "/livez", "")
	}
	fams := scrape(t, ts)

	counts := []struct {
		labels map[string]string
		want   float64
	}{
		{map[string]string{"method": "GET", "route": "/livez", "code": "200"}, 2},
		{map[string]string{"method": "GET", "route": "/pods/{pod}", "code": "200"}, 2},
		{map[string]string{"method": "GET", "route": "unmatched", "code": "404"}, 1},
		{map[string]string{"method": "other", "route": "/livez", "code": "405"}, 3},
	}
	for _, c := range counts {
		got, ok := sample(fams, "prober_http_requests_total", c.labels)
		assert.True(t, ok, "%v in %v", c.labels, labelSets(fams, "prober_http_requests_total"))
		assert.Equal(t, c.want, got, "%v", c.labels)
	}
	got, ok := sample(fams, "prober_http_request_duration_seconds", map[string]string{"method": "GET", "route": "/pods/{pod}"})
	assert.True(t, ok)
	assert.Equal(t, 2.0, got, "observations of GET /pods/{pod}")

	gauges := []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"prober_raft_view_up", nil, 1},
		{"prober_raft_groups", map[string]string{"state": "leaderless"}, 1},
		{"prober_raft_groups", map[string]string{"state": "quorum_lost"}, 0},
		{"prober_raft_groups", map[string]string{"state": "degraded"}, 2},
		{"prober_raft_groups", map[string]string{"state": "healthy"}, 0},
		{"prober_raft_replica_lag", map[string]string{"kind": "stream", "account": "APP", "group": "ORDERS", "peer": "n2"}, 40},
		{"prober_raft_group_term_changes_per_minute", map[string]string{"kind": "stream", "account": "APP", "group": "EVENTS"}, 4},
		{"prober_raft_findings", map[string]string{"cause": "too few nodes available", "severity": "critical"}, 1},
		{"prober_nats_node_up", map[string]string{"node": "n2", "dc": "east"}, 0},
		{"prober_nats_node_up", map[string]string{"node": "n0", "dc": "east"}, 1},
		{"prober_maintenance_phase", map[string]string{"pod": "n1", "phase": "Fencing"}, 1},
		{"prober_maintenance_phase", map[string]string{"pod": "n1", "phase": "Active"}, 0},
		{"prober_maintenance_phase", map[string]string{"pod": "w0", "phase": "Requested"}, 1},
		{"prober_maintenance_phase", map[string]string{"pod": "n0", "phase": "Active"}, 1},
		{"prober_maintenance_phase", map[string]string{"pod": "n0", "phase": "InMaintenance"}, 0},
	}
	for _, g := range gauges {
		got, ok := sample(fams, g.name, g.labels)
		if assert.True(t, ok, "%s%v in %v", g.name, g.labels, labelSets(fams, g.name)) {
			assert.Equal(t, g.want, got, "%s%v", g.name, g.labels)
		}
	}
	leaderless, ok := sample(fams, "prober_raft_group_leaderless_seconds", map[string]string{"kind": "stream", "account": "APP", "group": "EVENTS"})
	assert.True(t, ok, "%v", labelSets(fams, "prober_raft_group_leaderless_seconds"))
	assert.GreaterOrEqual(t, leaderless, 3.0)
	assert.Len(t, fams["prober_raft_group_leaderless_seconds"].GetMetric(), 1, "only groups without a working leader")
	assert.Contains(t, fams, "go_goroutines")
}

func TestMetricsWithoutView(t *testing.T) {
	ts := mustOpenServer(t, withViews(viewFunc(func(ctx context.Context) (*natsraft.View, error) {
		return nil, natsraft.ErrNoNodeReachable
	})))
	fams := scrape(t, ts)
	up, ok := sample(fams, "prober_raft_view_up", nil)
	assert.True(t, ok)
	assert.Zero(t, up)
	assert.NotContains(t, fams, "prober_raft_groups")
}

func TestRaftFindings(t *testing.T) {
	tests := []struct {
		name   string
		seed   func(d *maintenance.Document)
		causes []natsraft.Cause
	}{
		{name: "node down", causes: []natsraft.Cause{natsraft.CauseNodeDown}},
		{name: "node down in maintenance", seed: func(d *maintenance.Document) {
			now := time.Now()
			d.Pods["n2"] = maintenance.Entry{Reason: "reboot", Since: now}
			d.Status["n2"] = maintenance.Status{Phase: maintenance.PhaseInMaintenance, ObservedAt: now, PhaseSince: now}
		}, causes: []natsraft.Cause{natsraft.CauseMaintenance}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := sickCluster()
			v.Groups = v.Groups[:2] // without EVENTS: n2's loss costs no quorum
			ts := mustOpenServer(t, withViews(staticView(v)))
			if tt.seed != nil {
				ts.seed(t, tt.seed)
			}
			resp, b := ts.do(t, http.MethodGet, "/raft", "")
			require.Equal(t, http.StatusOK, resp.StatusCode, "%s", b)
			var got prober.RaftResponse
			require.NoError(t, json.Unmarshal(b, &got))
			var causes []natsraft.Cause
			for _, f := range got.Findings {
				causes = append(causes, f.Cause)
				assert.Equal(t, []string{"n2"}, f.Nodes)
				assert.NotEmpty(t, f.Remedy)
				assert.NotEmpty(t, f.Evidence)
			}
			assert.Equal(t, tt.causes, causes)
			assert.Len(t, got.Groups, 2)
		})
	}

	t.Run("healthy: an empty list", func(t *testing.T) {
		ts := mustOpenServer(t, withViews(staticView(meshed())))
		resp, b := ts.do(t, http.MethodGet, "/raft", "")
		require.Equal(t, http.StatusOK, resp.StatusCode, "%s", b)
		assert.Contains(t, string(b), `"findings": []`)
	})
}

// TestMetricsUseTheServiceDCs checks that a node's dc in /metrics, and
// what is desired for it, come from Options.DCs (the pods' dc labels in
// Kubernetes mode), not the NATS cluster name, while /raft keeps the NATS
// names.
func TestMetricsUseTheServiceDCs(t *testing.T) {
	labels := map[string]string{"n0": "eu-1", "n1": "eu-1", "n2": "eu-2"}
	ts := mustOpenServer(t, withViews(staticView(meshed())), func(o *prober.Options, _ *testServer) {
		o.DCs = func() map[string]string { return labels }
	})
	ts.seed(t, func(d *maintenance.Document) {
		d.DCs["eu-2"] = maintenance.Entry{Reason: "rack", Since: time.Now()}
	})
	fams := scrape(t, ts)
	gauges := []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"prober_nats_node_up", map[string]string{"node": "n0", "dc": "eu-1"}, 1},
		{"prober_nats_node_up", map[string]string{"node": "n2", "dc": "eu-2"}, 1},
		{"prober_nats_node_up", map[string]string{"node": "w0", "dc": "west"}, 1},
		{"prober_maintenance_phase", map[string]string{"pod": "n2", "phase": "Requested"}, 1},
		{"prober_maintenance_phase", map[string]string{"pod": "n1", "phase": "Active"}, 1},
	}
	for _, g := range gauges {
		got, ok := sample(fams, g.name, g.labels)
		if assert.True(t, ok, "%s%v in %v", g.name, g.labels, labelSets(fams, g.name)) {
			assert.Equal(t, g.want, got, "%s%v", g.name, g.labels)
		}
	}

	resp, b := ts.do(t, http.MethodGet, "/raft", "")
	require.Equal(t, http.StatusOK, resp.StatusCode, "%s", b)
	var got prober.RaftResponse
	require.NoError(t, json.Unmarshal(b, &got))
	for _, n := range got.Nodes {
		assert.Contains(t, []string{"east", "west"}, n.DC, "/raft shows NATS cluster names")
	}
}

// TestRaftRemedyNamesTheClusterPort checks that /raft's remedies name the
// route port the server is configured with, not NATS's default.
func TestRaftRemedyNamesTheClusterPort(t *testing.T) {
	v := meshed()
	// n2 answers but routes to nobody, and nobody to it: cut off.
	for i := range v.Nodes {
		if v.Nodes[i].Name == "n2" {
			v.Nodes[i].Routes = nil
			continue
		}
		v.Nodes[i].Routes = slices.DeleteFunc(slices.Clone(v.Nodes[i].Routes), func(r string) bool { return r == "n2" })
	}
	ts := mustOpenServer(t, withViews(staticView(v)), func(o *prober.Options, _ *testServer) { o.ClusterPort = 7333 })
	resp, b := ts.do(t, http.MethodGet, "/raft", "")
	require.Equal(t, http.StatusOK, resp.StatusCode, "%s", b)
	var got prober.RaftResponse
	require.NoError(t, json.Unmarshal(b, &got))
	require.NotEmpty(t, got.Findings, "a node cut off from its peers is diagnosed")
	remedies := ""
	for _, f := range got.Findings {
		remedies += strings.Join(f.Remedy, "\n")
	}
	assert.Contains(t, remedies, "7333")
	assert.NotContains(t, remedies, "6222")
}

// TestMetricsWithDuplicateNodeNames checks that two endpoints reporting the
// same server name (a misconfiguration the collector reports, not hides)
// still give a scrape: Prometheus refuses a metric twice with one label set.
func TestMetricsWithDuplicateNodeNames(t *testing.T) {
	v := meshed()
	v.Nodes = append(v.Nodes, v.Nodes[0])
	ts := mustOpenServer(t, withViews(staticView(v)))
	resp, b := ts.do(t, http.MethodGet, "/metrics", "")
	require.Equal(t, http.StatusOK, resp.StatusCode, "%s", b)
	fams := scrape(t, ts)
	up, ok := sample(fams, "prober_nats_node_up", map[string]string{"node": v.Nodes[0].Name, "dc": v.Nodes[0].DC})
	assert.True(t, ok)
	assert.Equal(t, 1.0, up)
}

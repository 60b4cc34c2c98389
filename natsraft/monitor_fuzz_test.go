package natsraft

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"maps"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// monitorDir holds the monitoring documents of a healthy 3-node embedded
// cluster with the demo stream and consumer, one directory per node, as
// the collector asks for them; `go test -run TestMonitorDocs -update`
// captures them again.
const monitorDir = "testdata/monitor"

// monitorDocs names the documents of one node, in the order of the
// arguments of FuzzMonitorDocs.
var monitorDocs = []string{"varz", "routez", "gatewayz", "jsz", "raftz", "healthz"}

// nodeDocs is what one node's monitoring endpoint answered in one sweep,
// by the names of monitorDocs; /healthz answered with healthzStatus.
type nodeDocs struct {
	docs          map[string][]byte
	healthzStatus int
}

// report decodes the documents of node into its report, as fetchNode does
// with what its requests read: a node whose /varz, /routez or /jsz does not
// decode is unreachable, a /gatewayz or /raftz that does not decode is left
// out. /raftz is one document over every account.
func (d nodeDocs) report(node string) *nodeReport {
	r := &nodeReport{ep: Endpoint{Name: node, MonitorURL: "http://" + node + ":8222"}}
	r.healthz = healthzVerdict(d.healthzStatus, bytes.NewReader(d.docs["healthz"]))
	var rz routezDoc
	var gz gatewayzDoc
	if err := errors.Join(decodeDoc(d.docs["varz"], &r.varz), decodeDoc(d.docs["routez"], &rz),
		decodeDoc(d.docs["jsz"], &r.jsz)); err != nil {
		r.err = err
		return r
	}
	if err := decodeDoc(d.docs["gatewayz"], &gz); err != nil {
		gz = gatewayzDoc{}
	}
	r.setLinks(rz, gz)
	if r.jsz.Disabled {
		return r
	}
	raft := newRaftFetch([]string{""})
	if err := decodeDoc(d.docs["raftz"], &raft.docs[0]); err != nil {
		raft.docs[0] = nil
	}
	r.raft = raft.groups()
	return r
}

// readMonitorDocs reads the captured documents of every node.
func readMonitorDocs(tb testing.TB) map[string]nodeDocs {
	tb.Helper()
	out := map[string]nodeDocs{}
	for _, node := range []string{"nats-0", "nats-1", "nats-2"} {
		d := nodeDocs{docs: map[string][]byte{}, healthzStatus: http.StatusOK}
		for _, name := range monitorDocs {
			b, err := os.ReadFile(filepath.Join(monitorDir, node, name+".json"))
			require.NoError(tb, err, "capture them with: go test ./natsraft -run TestMonitorDocs -update")
			d.docs[name] = b
		}
		out[node] = d
	}
	return out
}

// capturedAt is when the documents were captured, by nats-0's /varz: the
// clock of the sweeps that read them.
func capturedAt(tb testing.TB, nodes map[string]nodeDocs) time.Time {
	tb.Helper()
	var varz struct {
		Now time.Time `json:"now"`
	}
	require.NoError(tb, json.Unmarshal(nodes["nats-0"].docs["varz"], &varz))
	require.False(tb, varz.Now.IsZero())
	return varz.Now
}

// fuzzCollector is a collector with a clock the caller moves and a
// resolver that knows no name, as the sweeps of the fuzz target have no
// network to ask.
func fuzzCollector(now *time.Time) *Collector {
	return NewCollector(CollectorOptions{
		Now:      func() time.Time { return *now },
		Resolver: &fakeResolver{},
		Logger:   zerolog.Nop(),
	})
}

// recordSweep builds the view of one sweep of the nodes' documents.
func recordSweep(tb testing.TB, c *Collector, from time.Time, nodes map[string]nodeDocs) (*View, error) {
	tb.Helper()
	reports := map[string]*nodeReport{}
	for n, d := range nodes {
		reports[n] = d.report(n)
	}
	return recordReports(tb, c, from, reports)
}

// recordReports builds the view of one sweep of the nodes' reports, each
// a copy: buildView names the meta group's Raft group in the report.
func recordReports(tb testing.TB, c *Collector, from time.Time, reports map[string]*nodeReport) (*View, error) {
	tb.Helper()
	list := make([]*nodeReport, 0, len(reports))
	for _, n := range slices.Sorted(maps.Keys(reports)) {
		r := *reports[n]
		if r.jsz.Meta != nil {
			meta := *r.jsz.Meta
			r.jsz.Meta = &meta
		}
		list = append(list, &r)
	}
	return c.record(tb.Context(), from, list)
}

// TestMonitorDocs checks that the monitoring documents of a healthy
// cluster, as NATS wrote them, decode into a healthy view: three
// reachable nodes routed to each other, meta, the demo stream and its
// consumer each led with three current peers, and nothing to diagnose.
// With -update it first captures them from an embedded cluster.
func TestMonitorDocs(t *testing.T) {
	if *updateGolden {
		captureMonitorDocs(t)
	}
	docs := readMonitorDocs(t)
	now := capturedAt(t, docs)
	c := fuzzCollector(&now)
	v, err := recordSweep(t, c, now, docs)
	require.NoError(t, err)
	require.Len(t, v.Nodes, 3)
	for _, n := range v.Nodes {
		assert.True(t, n.Serving(), "%s: %s", n.Name, n.Error)
		assert.Len(t, n.Routes, 2, n.Name)
		assert.Equal(t, "ok", n.Healthz, n.Name)
		assert.Empty(t, v.MissingRoutes(n.Name), n.Name)
	}
	assert.True(t, healthyDemo(v), "meta, stream and consumer each led, three current peers: %+v", v.Groups)
	for _, g := range v.Groups {
		assert.NotZero(t, g.Term, g.Name)
		assert.Equal(t, StateHealthy, g.State(), g.Name)
	}
	assert.Empty(t, Diagnose(v, DiagnoseOptions{Now: now}))
}

// captureMonitorDocs writes the documents of a fresh embedded cluster
// into monitorDir, once the collector sees it healthy.
func captureMonitorDocs(t *testing.T) {
	e, c := raftCluster(t)
	v := waitView(t, c, 30*time.Second, "a healthy cluster", healthyDemo)
	for _, ep := range e.Endpoints() {
		dir := filepath.Join(monitorDir, ep.Name)
		require.NoError(t, os.MkdirAll(dir, 0o755))
		get := func(path string, q url.Values, into any) {
			require.NoError(t, getJSON(t.Context(), http.DefaultClient, monitorURL(ep.MonitorURL, path, q), into), path)
		}
		raft := map[string]json.RawMessage{}
		for _, acc := range []string{"", AppAccount} {
			var q url.Values
			if acc != "" {
				q = url.Values{"acc": {acc}}
			}
			var doc map[string]json.RawMessage
			get("/raftz", q, &doc)
			for k, g := range doc {
				raft[k] = g
			}
		}
		docs := map[string]any{"raftz": raft}
		for _, d := range []struct {
			name string
			q    url.Values
		}{
			{"varz", nil}, {"routez", nil}, {"gatewayz", nil}, {"healthz", nil},
			{"jsz", url.Values{"accounts": {"true"}, "streams": {"true"}, "consumers": {"true"}, "config": {"true"},
				"raft": {"true"}, "limit": {strconv.Itoa(jszPageSize)}}},
		} {
			var doc json.RawMessage
			get("/"+d.name, d.q, &doc)
			docs[d.name] = doc
		}
		for name, doc := range docs {
			b, err := json.MarshalIndent(doc, "", "  ")
			require.NoError(t, err)
			require.NoError(t, os.WriteFile(filepath.Join(dir, name+".json"), append(b, '\n'), 0o644))
		}
	}
	t.Logf("captured the documents of %d nodes (%d groups)", len(v.Nodes), len(v.Groups))
}

// FuzzMonitorDocs gives the collector arbitrary monitoring documents for
// nats-1 (/varz, /routez, /gatewayz, /jsz, /raftz and /healthz, this one
// answered 200 or 503) beside the real ones of nats-0 and nats-2, in a
// sweep after one of the real documents of all three (so that the
// collector's memory compares them) and in one after it again. Decoding
// them and turning them into the health model never panics: the view has
// one node per endpoint, sorted, each group's leader among its peers; the
// diagnosis, readiness and missing routes answer; and the view and the
// findings encode as /raft serves them.
//
// The seeds are in testdata/fuzz/FuzzMonitorDocs; `make fuzz` runs it.
func FuzzMonitorDocs(f *testing.F) {
	real := readMonitorDocs(f)
	at := capturedAt(f, real)
	causes := Causes()
	// The real documents are decoded once: decoding is most of the time
	// of a sweep, and only nats-1's documents change.
	reports := map[string]*nodeReport{}
	for n, d := range real {
		reports[n] = d.report(n)
	}
	f.Fuzz(func(t *testing.T, varz, routez, gatewayz, jsz, raftz, healthz []byte, healthy bool) {
		fuzzed := nodeDocs{docs: map[string][]byte{
			"varz": varz, "routez": routez, "gatewayz": gatewayz, "jsz": jsz, "raftz": raftz, "healthz": healthz,
		}, healthzStatus: http.StatusServiceUnavailable}
		if healthy {
			fuzzed.healthzStatus = http.StatusOK
		}
		sweeps := []map[string]*nodeReport{
			reports,
			{"nats-0": reports["nats-0"], "nats-1": fuzzed.report("nats-1"), "nats-2": reports["nats-2"]},
			reports,
		}
		now := at
		c := fuzzCollector(&now)
		for i, nodes := range sweeps {
			now = now.Add(time.Duration(i) * time.Minute)
			v, err := recordReports(t, c, now, nodes)
			if err != nil {
				require.ErrorIs(t, err, ErrNoNodeReachable)
			}
			require.NotNil(t, v)
			checkView(t, v, now, causes)
		}
	})
}

// checkView checks what FuzzMonitorDocs asks of every view.
func checkView(t *testing.T, v *View, now time.Time, causes []Cause) {
	t.Helper()
	require.Len(t, v.Nodes, 3)
	assert.True(t, slices.IsSortedFunc(v.Nodes, func(a, b Node) int { return cmp.Compare(a.Name, b.Name) }))
	for _, g := range v.Groups {
		if g.Leader != "" {
			assert.Contains(t, g.PeerNames(), g.Leader, "group %s", g.Name)
		}
		assert.Contains(t, []GroupState{StateHealthy, StateAtRisk, StateDegraded, StateQuorumLost, StateLeaderless}, g.State())
		assert.LessOrEqual(t, g.HealthyCount(), len(g.Peers))
		_ = g.WorkingLeaderSince()
	}
	for _, n := range v.Nodes {
		ready, why := v.NodeReady(n.Name)
		assert.True(t, ready || why != "", "%s not ready without a reason", n.Name)
		_ = v.MissingRoutes(n.Name)
	}
	findings := Diagnose(v, DiagnoseOptions{Now: now, Maintenance: []string{"nats-2"}})
	for _, fd := range findings {
		assert.Contains(t, causes, fd.Cause)
		assert.Contains(t, Severities, fd.Severity)
		assert.NotEmpty(t, fd.Summary)
		assert.LessOrEqual(t, len(fd.Groups), MaxFindingGroups)
	}
	_, err := json.Marshal(v)
	require.NoError(t, err, "the view encodes as /raft serves it")
	_, err = json.Marshal(findings)
	require.NoError(t, err)
}

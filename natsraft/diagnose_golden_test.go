package natsraft

import (
	"encoding/json"
	"flag"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var updateGolden = flag.Bool("update", false, "rewrite the golden files of the diagnosis")

// goldenDiagnosis is where TestDiagnoseGolden keeps the findings word for
// word.
var goldenDiagnosis = filepath.Join("testdata", "diagnose.golden.json")

// goldenCases are situations where several causes meet, beyond those of
// diagnoseCases.
func goldenCases() []diagnoseCase {
	return []diagnoseCase{
		{name: "a cut-off leader campaigns alone", mutate: func(v *View) {
			isolate(v, "n1")
			setPeer(v.group("s/c"), "n0", notHealthy)
			setPeer(v.group("s/c"), "n2", notHealthy)
			v.group("s/c").MemberTerms = map[string]uint64{"n1": 9}
			v.group("s").MemberTerms = map[string]uint64{"n1": 8}
		}},
		{name: "an election with a member ahead", mutate: func(v *View) {
			leaderless(v.group("s"), diagAt.Add(-3*time.Second))
			v.group("s").MemberTerms = map[string]uint64{"n1": 9}
		}},
		{name: "a stale member in a leaderless group", mutate: func(v *View) {
			leaderless(v.group("s"), diagAt.Add(-12*time.Second))
			v.node("n2").RaftRegressions = []RaftRegression{
				{Kind: KindStream, Account: "APP", Group: "s", RaftGroup: "R-s",
					DetectedAt: diagAt.Add(-time.Minute), TermBefore: 5, TermAfter: 2, IndexBefore: 900, IndexAfter: 10},
				{Kind: KindStream, Account: "APP", Group: "gone", RaftGroup: "R-gone",
					DetectedAt: diagAt.Add(-time.Minute), TermBefore: 4, TermAfter: 1, IndexBefore: 90, IndexAfter: 1},
			}
		}},
		{name: "a member the view does not know", mutate: func(v *View) {
			g := v.group("s")
			g.Peers = append(g.Peers, Peer{Name: "n9", Offline: true})
		}},
		{name: "every node in maintenance and stopped", opts: DiagnoseOptions{Maintenance: []string{"n0", "n1", "n2"}},
			mutate: func(v *View) {
				down(v, "n0")
				down(v, "n1")
				down(v, "n2")
			}},
		{name: "slow consumers on a node of lost groups", mutate: func(v *View) {
			r := v.node("n0").Resources
			r.SlowConsumers, r.SlowConsumersLastMinute = 3, 3
			down(v, "n1")
			down(v, "n2")
		}},
		{name: "DNS between two nodes of the main part", mutate: func(v *View) {
			cut(v, "n0", "n2")
			v.node("n2").RouteErrors = []RouteError{{Route: "n0.nats:6222", Error: "lookup n0.nats: no such host"}}
			setPeer(v.group("s"), "n2", notHealthy)
		}},
		{name: "a member without a route to its stopped leader", mutate: func(v *View) {
			down(v, "n0")
			setPeer(v.group("s"), "n1", notHealthy)
		}},
		{name: "a lagging replica in a group that lost its quorum", mutate: func(v *View) {
			setPeer(v.group("s"), "n1", func(p *Peer) { p.Current, p.Healthy, p.Lag = false, false, 5000 })
			down(v, "n2")
		}},
		{name: "a node in maintenance that campaigns, beside a partition", opts: DiagnoseOptions{Maintenance: []string{"n2"}},
			mutate: func(v *View) {
				isolate(v, "n2")
				isolate(v, "n1")
				v.group("s").MemberTerms = map[string]uint64{"n1": 9, "n2": 9}
			}},
		{name: "a partition and wrong routes on cluster port 7422", opts: DiagnoseOptions{ClusterPort: 7422},
			mutate: func(v *View) {
				isolate(v, "n1")
				isolate(v, "n2")
				v.node("n2").ConfiguredRoutes = []string{"n0.other:7422"}
			}},
		{name: "leaderless seconds measured to Now", opts: DiagnoseOptions{Now: diagAt.Add(time.Second)},
			mutate: func(v *View) {
				down(v, "n1")
				down(v, "n2")
				leaderless(v.group("s"), diagAt.Add(-4*time.Second))
			}},
	}
}

// TestDiagnoseGolden pins every word of the findings, their order and
// their numbers: go test -run DiagnoseGolden -update rewrites the file
// after a deliberate change.
func TestDiagnoseGolden(t *testing.T) {
	got := map[string][]Finding{}
	for _, tc := range append(diagnoseCases(), goldenCases()...) {
		v := diagCluster()
		if tc.mutate != nil {
			tc.mutate(v)
		}
		require.NotContains(t, got, tc.name)
		got[tc.name] = Diagnose(v, tc.opts)
	}
	b, err := json.MarshalIndent(got, "", "  ")
	require.NoError(t, err)
	b = append(b, '\n')
	if *updateGolden {
		require.NoError(t, os.MkdirAll(filepath.Dir(goldenDiagnosis), 0o755))
		require.NoError(t, os.WriteFile(goldenDiagnosis, b, 0o644))
	}
	raw, err := os.ReadFile(goldenDiagnosis)
	require.NoError(t, err)
	var want map[string]json.RawMessage
	require.NoError(t, json.Unmarshal(raw, &want))
	assert.Equal(t, slices.Sorted(maps.Keys(want)), slices.Sorted(maps.Keys(got)), "the situations of %s", goldenDiagnosis)
	for name, fs := range got {
		b, err := json.Marshal(fs)
		require.NoError(t, err)
		assert.JSONEq(t, string(want[name]), string(b), name)
	}
}

package natsraft

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var diagAt = time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)

// diagNodes is a healthy dc1 of the named nodes: reachable, JetStream on,
// fully routed, each configured with routes to the others' cluster ports.
func diagNodes(names ...string) []Node {
	out := make([]Node, len(names))
	for i, n := range names {
		node := Node{Name: n, DC: "dc1", Reachable: true, JetStream: true, ClientPort: 4222 + i, ClusterPort: 6222,
			Resources: &Resources{Cores: 2, CPU: 10, Mem: 100 << 20}}
		for _, p := range names {
			if p != n {
				node.Routes = append(node.Routes, p)
				node.ConfiguredRoutes = append(node.ConfiguredRoutes, p+".nats:6222")
			}
		}
		out[i] = node
	}
	return out
}

// diagGroup is a healthy group led by leader with the given members.
func diagGroup(kind GroupKind, name, leader string, members ...string) Group {
	g := Group{Kind: kind, Name: name, Leader: leader, Term: 5, RaftGroup: "R-" + name}
	switch kind {
	case KindStream:
		g.Account, g.Stream = "APP", name
	case KindConsumer:
		stream, consumer, _ := strings.Cut(name, "/")
		g.Account, g.Stream, g.Consumer = "APP", stream, consumer
	}
	for _, m := range members {
		g.Peers = append(g.Peers, Peer{Name: m, Leader: m == leader, Current: true, Healthy: true, Active: 200 * time.Millisecond,
			Own: &MemberState{}})
	}
	return g
}

// diagCluster is a healthy 3-node cluster: n0 leads meta and s, n1 s/c.
func diagCluster() *View {
	all := []string{"n0", "n1", "n2"}
	return &View{At: diagAt, Nodes: diagNodes(all...), Groups: []Group{
		diagGroup(KindMeta, MetaGroupName, "n0", all...),
		diagGroup(KindStream, "s", "n0", all...),
		diagGroup(KindConsumer, "s/c", "n1", all...),
	}}
}

func (v *View) node(name string) *Node {
	for i := range v.Nodes {
		if v.Nodes[i].Name == name {
			return &v.Nodes[i]
		}
	}
	panic("no node " + name)
}

func (v *View) group(name string) *Group {
	for i := range v.Groups {
		if v.Groups[i].Name == name {
			return &v.Groups[i]
		}
	}
	panic("no group " + name)
}

// down makes a node unreachable, as the collector sees a stopped node.
func down(v *View, name string) {
	n := v.node(name)
	*n = Node{Name: name, DC: n.DC, Routes: []string{}, Error: "connection refused"}
	for i := range v.Nodes {
		v.Nodes[i].Routes = slices.DeleteFunc(v.Nodes[i].Routes, func(r string) bool { return r == name })
	}
	for i := range v.Groups {
		setPeer(&v.Groups[i], name, func(p *Peer) { p.Current, p.Healthy, p.Offline = false, false, true })
	}
}

// cut removes the routes between a and b.
func cut(v *View, a, b string) {
	v.node(a).Routes = slices.DeleteFunc(v.node(a).Routes, func(r string) bool { return r == b })
	v.node(b).Routes = slices.DeleteFunc(v.node(b).Routes, func(r string) bool { return r == a })
}

// isolate cuts name off every peer and marks it not current where others lead.
func isolate(v *View, name string) {
	for _, n := range v.Nodes {
		if n.Name != name {
			cut(v, name, n.Name)
		}
	}
	for i := range v.Groups {
		if v.Groups[i].Leader != name {
			setPeer(&v.Groups[i], name, notHealthy)
		}
	}
}

func notHealthy(p *Peer) { p.Current, p.Healthy = false, false }

func setPeer(g *Group, name string, f func(*Peer)) {
	for i := range g.Peers {
		if g.Peers[i].Name == name {
			f(&g.Peers[i])
		}
	}
}

func leaderless(g *Group, since time.Time) {
	g.Leader = ""
	for i := range g.Peers {
		g.Peers[i].Leader, g.Peers[i].Current, g.Peers[i].Healthy = false, false, false
	}
	g.LeaderlessSince, g.QuorumLostSince = &since, &since
}

func findingOf(fs []Finding, c Cause) (Finding, bool) {
	for _, f := range fs {
		if f.Cause == c {
			return f, true
		}
	}
	return Finding{}, false
}

func causes(fs []Finding) []Cause {
	var out []Cause
	for _, f := range fs {
		out = append(out, f.Cause)
	}
	return out
}

// diagnoseCase is one situation of diagCluster and what its diagnosis
// says.
type diagnoseCase struct {
	name     string
	mutate   func(v *View)
	opts     DiagnoseOptions
	want     []Cause // every finding's cause, in order
	cause    Cause   // the finding looked at closely
	severity Severity
	nodes    []string
	groups   []string
	states   map[string]GroupState
	evidence []string
}

// diagnoseCases are the situations TestDiagnose checks one by one and
// TestDiagnoseGolden word for word.
func diagnoseCases() []diagnoseCase {
	all3 := []string{MetaGroupName, "s", "s/c"}
	return []diagnoseCase{
		{name: "healthy cluster"},
		{
			name:     "one node down, quorum kept",
			mutate:   func(v *View) { down(v, "n2") },
			want:     []Cause{CauseNodeDown},
			cause:    CauseNodeDown,
			severity: SeverityWarning,
			nodes:    []string{"n2"},
			groups:   all3,
			states:   map[string]GroupState{"s": StateDegraded},
			evidence: []string{"n2 does not answer on its monitoring port: connection refused", "3 group(s) affected: 3 degraded"},
		},
		{
			name: "two nodes down: too few nodes",
			mutate: func(v *View) {
				down(v, "n1")
				down(v, "n2")
				leaderless(v.group("s/c"), diagAt.Add(-1500*time.Millisecond))
				since := diagAt.Add(-time.Second)
				v.group("s").QuorumLostSince = &since
				v.group(MetaGroupName).QuorumLostSince = &since
			},
			want:     []Cause{CauseTooFewNodes},
			cause:    CauseTooFewNodes,
			severity: SeverityCritical,
			nodes:    []string{"n1", "n2"},
			groups:   all3,
			states:   map[string]GroupState{"s/c": StateLeaderless, "s": StateQuorumLost},
			evidence: []string{"consumer s/c: leaderless for 1.5 s, 0 of 3 members healthy, quorum 2",
				"stream s: quorum lost for 1.0 s, 1 of 3 members healthy, quorum 2, leader n0 still claims leadership"},
		},
		{
			name: "no node answers",
			mutate: func(v *View) {
				down(v, "n0")
				down(v, "n1")
				down(v, "n2")
				v.Groups = nil
			},
			want:     []Cause{CauseTooFewNodes},
			cause:    CauseTooFewNodes,
			severity: SeverityCritical,
			nodes:    []string{"n0", "n1", "n2"},
			evidence: []string{"not one node answers"},
		},
		{
			name: "JetStream off counts as unavailable",
			mutate: func(v *View) {
				v.node("n2").JetStream = false
				for i := range v.Groups {
					setPeer(&v.Groups[i], "n2", notHealthy)
				}
			},
			want:     []Cause{CauseNodeDown},
			cause:    CauseNodeDown,
			nodes:    []string{"n2"},
			groups:   all3,
			evidence: []string{"n2 answers but has JetStream off"},
		},
		{
			name: "maintenance is expected",
			mutate: func(v *View) {
				isolate(v, "n2")
				v.node("n2").JetStream = false
			},
			opts:     DiagnoseOptions{Maintenance: []string{"n2"}},
			want:     []Cause{CauseMaintenance},
			cause:    CauseMaintenance,
			severity: SeverityInfo,
			nodes:    []string{"n2"},
			groups:   all3,
			evidence: []string{"n2 is in maintenance: JetStream off, 0 route(s)"},
		},
		{
			name: "partition: config right, routes gone",
			mutate: func(v *View) {
				isolate(v, "n2")
				v.group("s").MemberTerms = map[string]uint64{"n2": 9}
			},
			want:     []Cause{CausePartition},
			cause:    CausePartition,
			severity: SeverityWarning,
			nodes:    []string{"n2"},
			groups:   all3,
			evidence: []string{"n2 is reachable but has no route to n0, n1 (routes it has: none)",
				"n2 campaigns alone in stream s: its term is 9, the group's 5"},
		},
		{
			name: "partition of a leader that still claims",
			mutate: func(v *View) {
				isolate(v, "n1")
				setPeer(v.group("s/c"), "n0", notHealthy)
				setPeer(v.group("s/c"), "n2", notHealthy)
			},
			want:     []Cause{CausePartition},
			cause:    CausePartition,
			severity: SeverityCritical,
			nodes:    []string{"n1"},
			groups:   all3,
			states:   map[string]GroupState{"s/c": StateQuorumLost, "s": StateDegraded},
		},
		{
			name: "wrong routes: nothing in common",
			mutate: func(v *View) {
				isolate(v, "n2")
				v.node("n2").ConfiguredRoutes = []string{"nats-a.other:6222", "nats-b.other:6222"}
			},
			want:     []Cause{CauseWrongRoutes},
			cause:    CauseWrongRoutes,
			nodes:    []string{"n2"},
			groups:   all3,
			evidence: []string{"not one in common"},
		},
		{
			name: "wrong routes: a client port",
			mutate: func(v *View) {
				isolate(v, "n2")
				v.node("n2").ConfiguredRoutes = []string{"n0.nats:4222", "n1.nats:6222"}
			},
			want:     []Cause{CauseWrongRoutes},
			cause:    CauseWrongRoutes,
			nodes:    []string{"n2"},
			evidence: []string{"route n0.nats:4222 of n2 points at a client port (that of n0), not a cluster port"},
		},
		{
			name: "wrong routes: none configured",
			mutate: func(v *View) {
				isolate(v, "n2")
				v.node("n2").ConfiguredRoutes = nil
			},
			want:     []Cause{CauseWrongRoutes},
			cause:    CauseWrongRoutes,
			evidence: []string{"n2 has no routes configured"},
		},
		{
			name: "DNS",
			mutate: func(v *View) {
				isolate(v, "n2")
				v.node("n2").RouteErrors = []RouteError{{Route: "n0.nats:6222", Error: "lookup n0.nats: no such host"}}
			},
			want:     []Cause{CauseDNS},
			cause:    CauseDNS,
			nodes:    []string{"n2"},
			groups:   all3,
			evidence: []string{"route n0.nats:6222 of n2 does not resolve: lookup n0.nats: no such host"},
		},
		{
			name: "a route missing between two nodes of the main part",
			mutate: func(v *View) {
				cut(v, "n0", "n2")
				setPeer(v.group("s"), "n2", notHealthy)
			},
			want:     []Cause{CausePartition},
			cause:    CausePartition,
			nodes:    []string{"n0", "n2"},
			groups:   []string{"s"},
			evidence: []string{"n0 and n2 have no route with each other"},
		},
		{
			name:     "election under way",
			mutate:   func(v *View) { leaderless(v.group("s"), diagAt.Add(-3*time.Second)) },
			want:     []Cause{CauseElection},
			cause:    CauseElection,
			severity: SeverityWarning,
			nodes:    []string{"n0", "n1", "n2"},
			groups:   []string{"s"},
			evidence: []string{"stream s has no leader for 3.0 s, with 3 of 3 members available (quorum 2), term 5"},
		},
		{
			name:     "election failing",
			mutate:   func(v *View) { leaderless(v.group("s"), diagAt.Add(-ElectionGrace)) },
			want:     []Cause{CauseElection},
			cause:    CauseElection,
			severity: SeverityCritical,
		},
		{
			name: "leaderless with a rising term: term inflation",
			mutate: func(v *View) {
				leaderless(v.group("s"), diagAt.Add(-20*time.Second))
				v.group("s").TermChangesPerMinute = 6
			},
			want:     []Cause{CauseTermInflation},
			cause:    CauseTermInflation,
			severity: SeverityCritical,
			groups:   []string{"s"},
		},
		{
			name:     "a healthy group whose term keeps moving",
			mutate:   func(v *View) { v.group("s/c").TermChangesPerMinute = TermInflationPerMinute },
			want:     []Cause{CauseTermInflation},
			cause:    CauseTermInflation,
			severity: SeverityWarning,
			groups:   []string{"s/c"},
			evidence: []string{"consumer s/c: term rose by 3 in the last minute, now 5"},
		},
		{
			name: "lagging replica",
			mutate: func(v *View) {
				setPeer(v.group("s"), "n1", func(p *Peer) { p.Current, p.Healthy, p.Lag = false, false, 5000 })
			},
			want:     []Cause{CauseLagging},
			cause:    CauseLagging,
			nodes:    []string{"n1"},
			groups:   []string{"s"},
			evidence: []string{"stream s: n1 is 5000 entries behind leader n0"},
		},
		{
			name: "lagging replica restoring a snapshot",
			mutate: func(v *View) {
				setPeer(v.group("s"), "n1", func(p *Peer) {
					p.Current, p.Healthy, p.Lag = false, false, 5000
					p.Own = &MemberState{Committed: 100, Applied: 40, Restoring: true}
				})
			},
			want:     []Cause{CauseLagging},
			cause:    CauseLagging,
			nodes:    []string{"n1"},
			groups:   []string{"s"},
			evidence: []string{"stream s: n1 is 5000 entries behind leader n0, restoring a snapshot from it"},
		},
		{
			name:   "a small lag is no finding",
			mutate: func(v *View) { setPeer(v.group("s"), "n1", func(p *Peer) { p.Current, p.Lag = false, 3 }) },
		},
		{
			name: "stale Raft state",
			mutate: func(v *View) {
				v.node("n2").RaftRegressions = []RaftRegression{{Kind: KindStream, Account: "APP", Group: "s", RaftGroup: "R-s",
					DetectedAt: diagAt.Add(-time.Minute), TermBefore: 5, TermAfter: 2, IndexBefore: 900, IndexAfter: 10}}
			},
			want:     []Cause{CauseStaleState},
			cause:    CauseStaleState,
			severity: SeverityWarning,
			nodes:    []string{"n2"},
			groups:   []string{"s"},
			states:   map[string]GroupState{"s": StateAtRisk},
			evidence: []string{"n2 restarted with older state for stream s: term 2 (had 5), last log index 10 (had 900)"},
		},
		{
			name: "slow consumers",
			mutate: func(v *View) {
				r := v.node("n1").Resources
				r.SlowConsumers, r.SlowConsumersLastMinute, r.SlowConsumerKinds.Routes = 7, 2, 1
			},
			want:     []Cause{CauseResources},
			cause:    CauseResources,
			nodes:    []string{"n1"},
			groups:   all3,
			states:   map[string]GroupState{"s": StateAtRisk},
			evidence: []string{"n1 dropped 2 slow consumer(s) in the last minute (7 since start: clients 0, routes 1, gateways 0, leafs 0)"},
		},
		{
			name: "memory, storage, GOMEMLIMIT and CPU at their limits",
			mutate: func(v *View) {
				r := v.node("n0").Resources
				r.JetStreamMemory, r.JetStreamMaxMemory = 950, 1000
				r.JetStreamStore, r.JetStreamMaxStore = 9<<30, 10<<30
				r.Mem, r.MemLimit = 1900<<20, 2000<<20
				r.CPU = 195
			},
			want:  []Cause{CauseResources},
			cause: CauseResources,
			nodes: []string{"n0"},
			evidence: []string{
				"n0 uses 950 B of JetStream memory, 95% of its max_memory_store 1000 B",
				"n0 uses 9.0 GiB of JetStream file storage, 90% of its max_file_store 10.0 GiB",
				"n0 has 1.9 GiB resident, 95% of its GOMEMLIMIT 2.0 GiB",
				"n0 uses 195% CPU of 2 cores",
			},
		},
		{
			name: "usage below the limits is no finding",
			mutate: func(v *View) {
				r := v.node("n0").Resources
				r.JetStreamMemory, r.JetStreamMaxMemory = 800, 1000
				r.SlowConsumers = 5
			},
		},
	}
}

func TestDiagnose(t *testing.T) {
	for _, tt := range diagnoseCases() {
		t.Run(tt.name, func(t *testing.T) {
			v := diagCluster()
			if tt.mutate != nil {
				tt.mutate(v)
			}
			fs := Diagnose(v, tt.opts)
			require.Equal(t, tt.want, causes(fs), "%s", findingsText(fs))
			if tt.cause == "" {
				return
			}
			f, _ := findingOf(fs, tt.cause)
			if tt.severity != "" {
				assert.Equal(t, tt.severity, f.Severity)
			}
			if tt.nodes != nil {
				assert.Equal(t, tt.nodes, f.Nodes)
			}
			if tt.groups != nil {
				assert.Equal(t, sortedCopy(tt.groups), affectedNames(f))
				assert.Equal(t, len(tt.groups), f.GroupCount)
			}
			for name, state := range tt.states {
				i := slices.IndexFunc(f.Groups, func(g AffectedGroup) bool { return g.Name == name })
				require.GreaterOrEqual(t, i, 0, name)
				assert.Equal(t, state, f.Groups[i].State, name)
			}
			text := strings.Join(f.Evidence, "\n")
			for _, e := range tt.evidence {
				assert.Contains(t, text, e)
			}
			assert.NotEmpty(t, f.Summary)
			assert.NotEmpty(t, f.Remedy)
		})
	}
}

func TestDiagnoseLeaderlessSeconds(t *testing.T) {
	v := diagCluster()
	down(v, "n1")
	down(v, "n2")
	leaderless(v.group("s"), diagAt.Add(-4*time.Second))
	fs := Diagnose(v, DiagnoseOptions{Now: diagAt.Add(time.Second)})
	f, ok := findingOf(fs, CauseTooFewNodes)
	require.True(t, ok, findingsText(fs))
	require.Equal(t, "s", f.Groups[0].Name, "leaderless groups come first")
	assert.Equal(t, 5.0, f.Groups[0].LeaderlessSeconds)
	assert.Equal(t, StateLeaderless, f.Groups[0].State)
}

func TestDiagnoseBoundsGroups(t *testing.T) {
	all := []string{"n0", "n1", "n2"}
	v := &View{At: diagAt, Nodes: diagNodes(all...)}
	for i := range 250 {
		v.Groups = append(v.Groups, diagGroup(KindStream, fmt.Sprintf("s%03d", i), "n0", all...))
	}
	down(v, "n2")
	fs := Diagnose(v, DiagnoseOptions{})
	f, ok := findingOf(fs, CauseNodeDown)
	require.True(t, ok)
	assert.Len(t, f.Groups, MaxFindingGroups)
	assert.Equal(t, 250, f.GroupCount)
	assert.Contains(t, f.Evidence, "250 group(s) affected: 100 degraded (of the 100 listed)")
}

// TestDiagnoseClusterPort checks that the remedies name the cluster port
// the nodes listen on, NATS's default when none is configured.
func TestDiagnoseClusterPort(t *testing.T) {
	for _, port := range []int{0, 7422} {
		want := fmt.Sprint(cmp.Or(port, DefaultClusterPort))
		for _, tc := range []struct {
			cause  Cause
			mutate func(v *View)
			remedy string
		}{
			{CausePartition, func(v *View) { isolate(v, "n2") }, "Check the cluster port (" + want + ") between n2"},
			{CauseWrongRoutes, func(v *View) {
				isolate(v, "n2")
				v.node("n2").ConfiguredRoutes = nil
			}, "nats-route://<pod>.<headless service>:" + want + " "},
		} {
			t.Run(fmt.Sprintf("%s on %s", tc.cause, want), func(t *testing.T) {
				v := diagCluster()
				tc.mutate(v)
				fs := Diagnose(v, DiagnoseOptions{ClusterPort: port})
				f, ok := findingOf(fs, tc.cause)
				require.True(t, ok, findingsText(fs))
				remedy := strings.Join(f.Remedy, "\n")
				assert.Contains(t, remedy, tc.remedy)
				if port != 0 {
					assert.NotContains(t, remedy, fmt.Sprint(DefaultClusterPort))
				}
			})
		}
	}
}

func TestMissingRoutes(t *testing.T) {
	v := diagCluster()
	assert.Empty(t, v.MissingRoutes("n0"))
	cut(v, "n0", "n2")
	assert.Equal(t, []string{"n2"}, v.MissingRoutes("n0"))
	// A route one way only is missing too.
	v.node("n0").Routes = append(v.node("n0").Routes, "n2")
	assert.Equal(t, []string{"n0"}, v.MissingRoutes("n2"))
	// Unreachable peers and other dcs are not expected to route.
	down(v, "n1")
	v.node("n2").DC = "dc2"
	assert.Empty(t, v.MissingRoutes("n0"))
}

// TestTrackHealth follows the collector's memory over synthetic sweeps.
func TestTrackHealth(t *testing.T) {
	var c *Collector
	t0 := diagAt
	started := t0.Add(-time.Hour)
	sweep := func(at time.Time, mutate func(rs map[string]*nodeReport)) *View {
		rs := synthHealthy()
		for _, r := range rs {
			r.varz.Start = started
		}
		if mutate != nil {
			mutate(rs)
		}
		reports := reportList(rs)
		v := buildView(at, reports)
		c.mu.Lock()
		defer c.mu.Unlock()
		c.trackLeaderless(v)
		c.trackHealth(v, reports)
		return v
	}
	lose := func(rs map[string]*nodeReport) {
		rs["n1"].err = errors.New("refused")
		rs["n2"].err = errors.New("refused")
	}

	t.Run("quorum lost since", func(t *testing.T) {
		c = NewCollector(CollectorOptions{Logger: zerolog.Nop()})
		v := sweep(t0, nil)
		assert.Nil(t, groupNamed(t, v, "s").QuorumLostSince)
		v = sweep(t0.Add(time.Second), lose)
		s := groupNamed(t, v, "s")
		require.Equal(t, "n0", s.Leader, "the leader still claims")
		require.NotNil(t, s.QuorumLostSince)
		assert.Equal(t, t0.Add(time.Second), *s.QuorumLostSince)
		v = sweep(t0.Add(2*time.Second), lose)
		assert.Equal(t, t0.Add(time.Second), *groupNamed(t, v, "s").QuorumLostSince)
		s = groupNamed(t, v, "s")
		assert.Equal(t, t0.Add(time.Second), *s.WorkingLeaderSince())
		v = sweep(t0.Add(3*time.Second), nil)
		assert.Nil(t, groupNamed(t, v, "s").QuorumLostSince)
	})

	t.Run("term changes per minute", func(t *testing.T) {
		c = NewCollector(CollectorOptions{Logger: zerolog.Nop()})
		setTerm := func(term uint64) func(rs map[string]*nodeReport) {
			return func(rs map[string]*nodeReport) {
				for _, r := range rs {
					r.raft["S-1"] = raftzGroupDoc{Term: term, Committed: 10, Applied: 10}
				}
			}
		}
		base := t0.Add(time.Hour)
		sweep(base, setTerm(10))
		v := sweep(base.Add(10*time.Second), setTerm(12))
		assert.Equal(t, uint64(2), groupNamed(t, v, "s").TermChangesPerMinute)
		v = sweep(base.Add(40*time.Second), setTerm(13))
		assert.Equal(t, uint64(3), groupNamed(t, v, "s").TermChangesPerMinute)
		v = sweep(base.Add(80*time.Second), setTerm(13))
		assert.Equal(t, uint64(1), groupNamed(t, v, "s").TermChangesPerMinute, "the first change left the window")
		v = sweep(base.Add(110*time.Second), setTerm(13))
		assert.Zero(t, groupNamed(t, v, "s").TermChangesPerMinute)
		assert.Equal(t, map[string]uint64(nil), groupNamed(t, v, "s").MemberTerms)
	})

	t.Run("slow consumers in the last minute", func(t *testing.T) {
		c = NewCollector(CollectorOptions{Logger: zerolog.Nop()})
		base := t0.Add(2 * time.Hour)
		slow := func(n int64, start time.Time) func(rs map[string]*nodeReport) {
			return func(rs map[string]*nodeReport) {
				rs["n1"].varz.SlowConsumers = n
				rs["n1"].varz.Start = start
			}
		}
		res := func(v *View) *Resources { n, _ := v.Node("n1"); return n.Resources }
		assert.Zero(t, res(sweep(base, slow(4, started))).SlowConsumersLastMinute, "counted before we watched")
		assert.Equal(t, int64(3), res(sweep(base.Add(30*time.Second), slow(7, started))).SlowConsumersLastMinute)
		assert.Equal(t, int64(3), res(sweep(base.Add(60*time.Second), slow(7, started))).SlowConsumersLastMinute)
		assert.Zero(t, res(sweep(base.Add(91*time.Second), slow(7, started))).SlowConsumersLastMinute)
		restarted := base.Add(100 * time.Second)
		assert.Equal(t, int64(2), res(sweep(base.Add(101*time.Second), slow(2, restarted))).SlowConsumersLastMinute,
			"a restarted server's count is all recent")
	})

	t.Run("raft regression after a restart", func(t *testing.T) {
		c = NewCollector(CollectorOptions{Logger: zerolog.Nop()})
		base := t0.Add(3 * time.Hour)
		pos := func(term, index uint64, start time.Time) func(rs map[string]*nodeReport) {
			return func(rs map[string]*nodeReport) {
				r := rs["n2"]
				r.varz.Start = start
				r.raft[metaRaftGroup] = raftzGroupDoc{Term: term, PIndex: index}
				r.raft["S-R3F-x"] = raftzGroupDoc{Term: term, PIndex: index}
				r.raft["S-R3M-y"] = raftzGroupDoc{Term: 9, PIndex: index}
				r.raft["S-1"] = raftzGroupDoc{Term: 5, PIndex: 10}
			}
		}
		v := sweep(base, pos(8, 500, started))
		n, _ := v.Node("n2")
		assert.Empty(t, n.RaftRegressions)
		// A normal restart keeps what the node had.
		v = sweep(base.Add(time.Second), pos(8, 500, base))
		n, _ = v.Node("n2")
		assert.Empty(t, n.RaftRegressions)
		// A restart from older state: the file-backed groups regress in
		// term and index, the memory group only in index (not counted).
		restart := base.Add(2 * time.Second)
		v = sweep(restart.Add(time.Second), pos(3, 20, restart))
		n, _ = v.Node("n2")
		require.Len(t, n.RaftRegressions, 2)
		byGroup := map[string]RaftRegression{}
		for _, rg := range n.RaftRegressions {
			byGroup[rg.RaftGroup] = rg
		}
		assert.Equal(t, RaftRegression{Kind: KindMeta, Group: MetaGroupName, RaftGroup: metaRaftGroup, DetectedAt: restart.Add(time.Second),
			TermBefore: 8, TermAfter: 3, IndexBefore: 500, IndexAfter: 20}, byGroup[metaRaftGroup])
		assert.Equal(t, uint64(3), byGroup["S-R3F-x"].TermAfter)
		// Reported for RegressionMemory, then forgotten.
		v = sweep(restart.Add(RegressionMemory), pos(9, 600, restart))
		n, _ = v.Node("n2")
		assert.Len(t, n.RaftRegressions, 2)
		v = sweep(restart.Add(RegressionMemory+2*time.Second), pos(9, 600, restart))
		n, _ = v.Node("n2")
		assert.Empty(t, n.RaftRegressions)
	})

	t.Run("a wiped store is fresh, not stale", func(t *testing.T) {
		c = NewCollector(CollectorOptions{Logger: zerolog.Nop()})
		base := t0.Add(4 * time.Hour)
		pos := func(term, index uint64, start time.Time) func(rs map[string]*nodeReport) {
			return func(rs map[string]*nodeReport) {
				r := rs["n2"]
				r.varz.Start = start
				r.raft[metaRaftGroup] = raftzGroupDoc{Term: term, PIndex: index}
				r.raft["S-R3F-x"] = raftzGroupDoc{Term: term, PIndex: index}
			}
		}
		sweep(base, pos(8, 500, started))
		restart := base.Add(time.Second)
		v := sweep(restart.Add(time.Second), pos(0, 0, restart))
		n, _ := v.Node("n2")
		assert.Empty(t, n.RaftRegressions, "term 0, index 0: a fresh store")
		// Caught up from its peers: nothing left to compare with.
		v = sweep(restart.Add(2*time.Second), pos(9, 20, restart))
		n, _ = v.Node("n2")
		assert.Empty(t, n.RaftRegressions)
	})
}

// fakeResolver resolves the names it knows and counts lookups.
type fakeResolver struct {
	known   map[string][]string
	mu      sync.Mutex
	lookups int
}

func (r *fakeResolver) LookupHost(_ context.Context, host string) ([]string, error) {
	r.mu.Lock()
	r.lookups++
	r.mu.Unlock()
	if a, ok := r.known[host]; ok {
		return a, nil
	}
	return nil, fmt.Errorf("lookup %s: no such host", host)
}

func TestCheckRoutes(t *testing.T) {
	res := &fakeResolver{known: map[string][]string{"n0.nats": {"10.0.0.1"}}}
	now := diagAt
	c := NewCollector(CollectorOptions{Resolver: res, Now: func() time.Time { return now }, Logger: zerolog.Nop()})
	v := diagCluster()
	c.checkRoutes(t.Context(), v)
	assert.Zero(t, res.lookups, "routed nodes are not looked up")

	v = diagCluster()
	isolate(v, "n2")
	v.node("n2").ConfiguredRoutes = []string{"n0.nats:6222", "n1.nats:6222", "127.0.0.1:6222", "bad"}
	c.checkRoutes(t.Context(), v)
	assert.Equal(t, []RouteError{
		{Route: "n1.nats:6222", Error: "lookup n1.nats: no such host"},
		{Route: "bad", Error: "address bad: missing port in address"},
	}, v.node("n2").RouteErrors)
	lookups := res.lookups

	v = diagCluster()
	isolate(v, "n2")
	v.node("n2").ConfiguredRoutes = []string{"n1.nats:6222"}
	c.checkRoutes(t.Context(), v)
	assert.Len(t, v.node("n2").RouteErrors, 1)
	assert.Equal(t, lookups, res.lookups, "answers are cached")
	now = now.Add(dnsTTL + time.Second)
	c.checkRoutes(t.Context(), v)
	assert.Greater(t, res.lookups, lookups, "and looked up again after the TTL")
}

// hangingResolver answers only when its context ends, as a DNS server
// that does not answer.
type hangingResolver struct{}

func (hangingResolver) LookupHost(ctx context.Context, host string) ([]string, error) {
	<-ctx.Done()
	return nil, fmt.Errorf("lookup %s: %w", host, ctx.Err())
}

func TestCheckRoutesBounded(t *testing.T) {
	c := NewCollector(CollectorOptions{Resolver: hangingResolver{}, Logger: zerolog.Nop()})
	v := diagCluster()
	isolate(v, "n2")
	isolate(v, "n1")
	for _, n := range []string{"n1", "n2"} {
		v.node(n).ConfiguredRoutes = []string{"a.nats:6222", "b.nats:6222", "c.nats:6222"}
	}
	start := time.Now()
	c.checkRoutes(t.Context(), v)
	took := time.Since(start)
	assert.Less(t, took, 2*dnsTimeout, "six hanging lookups share one timeout")
	assert.Len(t, v.node("n2").RouteErrors, 3)
	assert.Contains(t, v.node("n2").RouteErrors[0].Error, "deadline exceeded")
}

package natsraft

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The fault-injection tests: each cause the diagnosis knows that one
// process can produce is injected into a real embedded cluster, and the
// test asserts the finding, its nodes and its groups.

// faultSweep is the collector interval of the fault tests.
const faultSweep = 100 * time.Millisecond

// demoGroups are the names of the demo's Raft groups.
var demoGroups = []string{MetaGroupName, DemoStream, DemoStream + "/" + DemoConsumer}

// faultCluster starts a 3-node cluster with the demo and a collector that
// sweeps it every faultSweep until the test ends.
func faultCluster(t *testing.T) (*Embedded, *Collector) {
	t.Helper()
	e := embeddedForTest(t, EmbeddedOptions{Demo: true})
	c := NewCollector(CollectorOptions{Endpoints: e.Endpoints(), Timeout: time.Second, Interval: faultSweep, Logger: zerolog.Nop()})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		assert.NoError(t, <-done)
	})
	waitHealthy(t, c)
	return e, c
}

// waitHealthy waits until every demo group has a leader and three current
// members and no finding is critical.
func waitHealthy(t *testing.T, c *Collector) *View {
	t.Helper()
	var last []Finding
	var v *View
	require.Eventually(t, func() bool {
		v = c.Latest()
		if v == nil || !healthyDemo(v) {
			return false
		}
		last = Diagnose(v, DiagnoseOptions{})
		return !slices.ContainsFunc(last, func(f Finding) bool { return f.Severity == SeverityCritical })
	}, 30*time.Second, 20*time.Millisecond, "cluster not healthy; findings %+v", last)
	return v
}

// waitFinding waits for a view whose diagnosis has a finding of cause for
// which ok holds, and returns both.
func waitFinding(t *testing.T, c *Collector, timeout time.Duration, cause Cause, ok func(Finding) bool) (Finding, *View) {
	t.Helper()
	var found Finding
	var v *View
	var last []Finding
	require.Eventually(t, func() bool {
		v = c.Latest()
		if v == nil {
			return false
		}
		last = Diagnose(v, DiagnoseOptions{})
		for _, f := range last {
			if f.Cause == cause && (ok == nil || ok(f)) {
				found = f
				return true
			}
		}
		return false
	}, timeout, 10*time.Millisecond, "no %q finding; last findings: %s", cause, findingsText(last))
	return found, v
}

func findingsText(fs []Finding) string {
	var b strings.Builder
	for _, f := range fs {
		fmt.Fprintf(&b, "\n  [%s] %s nodes=%v groups=%v evidence=%q", f.Severity, f.Cause, f.Nodes, affectedNames(f), f.Evidence)
	}
	return b.String()
}

// affectedNames returns the names of a finding's groups, sorted.
func affectedNames(f Finding) []string {
	out := make([]string, len(f.Groups))
	for i, g := range f.Groups {
		out[i] = g.Name
	}
	slices.Sort(out)
	return out
}

func sortedCopy(s []string) []string { return slices.Sorted(slices.Values(s)) }

// followerOf returns a node that leads neither the meta group nor the demo
// stream in v.
func followerOf(t *testing.T, v *View) string {
	t.Helper()
	leaders := map[string]bool{}
	for _, g := range v.Groups {
		if g.Kind != KindConsumer {
			leaders[g.Leader] = true
		}
	}
	for _, n := range v.Nodes {
		if !leaders[n.Name] {
			return n.Name
		}
	}
	require.FailNow(t, "every node leads something")
	return ""
}

func TestFaultNodesStopped(t *testing.T) {
	e, c := faultCluster(t)
	v := waitHealthy(t, c)
	first := followerOf(t, v)
	var second string
	for _, n := range v.Nodes {
		if n.Name != first {
			second = n.Name
			break
		}
	}

	t.Run("one node stopped: quorum kept", func(t *testing.T) {
		require.NoError(t, e.StopNode(first))
		// A group that first led is leaderless until its election ends;
		// then it too runs degraded.
		f, v := waitFinding(t, c, 15*time.Second, CauseNodeDown, func(f Finding) bool {
			return len(f.Groups) == len(demoGroups)
		})
		assert.Equal(t, SeverityWarning, f.Severity)
		assert.Equal(t, []string{first}, f.Nodes)
		assert.Equal(t, sortedCopy(demoGroups), affectedNames(f))
		for _, g := range f.Groups {
			assert.Equal(t, StateDegraded, g.State, g.Name)
			assert.Equal(t, 2, g.Healthy, g.Name)
			assert.Zero(t, g.LeaderlessSeconds, g.Name)
		}
		for _, other := range Diagnose(v, DiagnoseOptions{}) {
			assert.NotEqual(t, SeverityCritical, other.Severity, "%s", findingsText([]Finding{other}))
		}
		assert.NotEmpty(t, f.Remedy)
	})

	t.Run("two nodes stopped: quorum lost", func(t *testing.T) {
		require.NoError(t, e.StopNode(second))
		stopped := time.Now()
		f, v := waitFinding(t, c, 10*time.Second, CauseTooFewNodes, func(f Finding) bool {
			return len(f.Groups) == len(demoGroups)
		})
		took := v.At.Sub(stopped)
		t.Logf("quorum loss reported %s after the stop: %s", took.Round(time.Millisecond), f.Summary)
		assert.Less(t, took, 2*time.Second, "a leaderless group is reported within 2 s of losing quorum")
		assert.Equal(t, SeverityCritical, f.Severity)
		assert.Equal(t, sortedCopy([]string{first, second}), f.Nodes)
		assert.Equal(t, sortedCopy(demoGroups), affectedNames(f))
		for _, g := range f.Groups {
			assert.Contains(t, []GroupState{StateLeaderless, StateQuorumLost}, g.State, g.Name)
			assert.LessOrEqual(t, g.Healthy, 1, g.Name)
			assert.Equal(t, 2, g.Quorum, g.Name)
		}

		// It stays reported, with a growing leaderless time, until quorum
		// is back.
		later, _ := waitFinding(t, c, 5*time.Second, CauseTooFewNodes, func(f Finding) bool {
			return len(f.Groups) > 0 && f.Groups[0].LeaderlessSeconds >= 0.5
		})
		assert.Equal(t, sortedCopy(demoGroups), affectedNames(later))
	})

	t.Run("restarted nodes are ready only once caught up", func(t *testing.T) {
		// One node back: quorum is back.
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		require.NoError(t, e.RestartNode(ctx, second))
		publishDemo(t, e, 20, first)

		// The other comes back cut off, so it cannot catch up yet: it
		// must not be ready although it runs with JetStream on.
		require.NoError(t, e.StartFaulty(ctx, first, NodeFault{Unreachable: true}))
		var why string
		v := waitViewLatest(t, c, 20*time.Second, first+" answering with JetStream on", func(v *View) bool {
			n, ok := v.Node(first)
			var ready bool
			ready, why = v.NodeReady(first)
			return ok && n.Serving() && !ready
		})
		assert.NotEmpty(t, why)
		t.Logf("%s not ready while cut off: %s", first, why)
		_, groupsWhy := v.NodeReady(first)
		assert.NotContains(t, groupsWhy, "unreachable")

		require.NoError(t, e.ClearFault(ctx, first))
		waitViewLatest(t, c, 30*time.Second, first+" ready after catching up", func(v *View) bool {
			ready, _ := v.NodeReady(first)
			return ready
		})
		v = waitHealthy(t, c)
		for _, n := range v.Nodes {
			ready, why := v.NodeReady(n.Name)
			assert.True(t, ready, "%s: %s", n.Name, why)
		}
	})
}

// waitViewLatest waits for the background collector's latest view to
// satisfy cond.
func waitViewLatest(t *testing.T, c *Collector, timeout time.Duration, what string, cond func(*View) bool) *View {
	t.Helper()
	var v *View
	require.Eventually(t, func() bool {
		v = c.Latest()
		return v != nil && cond(v)
	}, timeout, 10*time.Millisecond, "waiting for %s", what)
	return v
}

// TestFaultRoutes cuts one node off its peers three ways — the network,
// wrong routes, unresolvable route hosts — and expects each to be told
// apart.
func TestFaultRoutes(t *testing.T) {
	e, c := faultCluster(t)
	v := waitHealthy(t, c)
	x := followerOf(t, v)
	var peers []string
	var clientAddrs []string
	for _, n := range e.Nodes() {
		if n.Name() != x {
			peers = append(peers, n.Name())
			clientAddrs = append(clientAddrs, strings.TrimPrefix(n.ClientURL(), "nats://"))
		}
	}

	tests := []struct {
		name     string
		inject   func(ctx context.Context) error
		heal     func(ctx context.Context) error
		cause    Cause
		evidence string
	}{
		{
			name:     "partition",
			inject:   e.Node(x).Fence,
			heal:     e.Node(x).Unfence,
			cause:    CausePartition,
			evidence: "has no route to " + strings.Join(peers, ", "),
		},
		{
			name: "wrong routes: the peers' client ports",
			inject: func(ctx context.Context) error {
				return e.StartFaulty(ctx, x, NodeFault{Routes: clientAddrs, Unreachable: true})
			},
			heal:     func(ctx context.Context) error { return e.ClearFault(ctx, x) },
			cause:    CauseWrongRoutes,
			evidence: "points at a client port",
		},
		{
			name: "route host names that do not resolve",
			inject: func(ctx context.Context) error {
				// An empty namespace in a templated name: Go's resolver
				// refuses it without asking a DNS server.
				return e.StartFaulty(ctx, x, NodeFault{Routes: []string{peers[0] + ".nats..svc:6222", peers[1] + ".nats..svc:6222"}, Unreachable: true})
			},
			heal:     func(ctx context.Context) error { return e.ClearFault(ctx, x) },
			cause:    CauseDNS,
			evidence: "does not resolve",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			require.NoError(t, tt.inject(ctx))
			f, v := waitFinding(t, c, 20*time.Second, tt.cause, func(f Finding) bool {
				return len(f.Groups) == len(demoGroups)
			})
			t.Logf("%s: %s\n%s", tt.name, f.Summary, strings.Join(f.Evidence, "\n"))
			assert.Equal(t, []string{x}, f.Nodes)
			assert.Equal(t, sortedCopy(demoGroups), affectedNames(f))
			assert.Contains(t, strings.Join(f.Evidence, "\n"), tt.evidence)
			assert.NotEmpty(t, f.Remedy)
			for _, other := range Diagnose(v, DiagnoseOptions{}) {
				for _, wrong := range []Cause{CausePartition, CauseWrongRoutes, CauseDNS, CauseTooFewNodes} {
					if wrong != tt.cause {
						assert.NotEqual(t, wrong, other.Cause, "%s", findingsText([]Finding{other}))
					}
				}
			}
			require.NoError(t, tt.heal(ctx))
			waitHealthy(t, c)
		})
	}
}

func TestFaultStaleState(t *testing.T) {
	e, c := faultCluster(t)
	v := waitHealthy(t, c)
	x := followerOf(t, v)
	publishDemo(t, e, 20)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	// A backup of x's store, taken while it is stopped.
	backup := filepath.Join(t.TempDir(), "backup")
	require.NoError(t, e.StopNode(x))
	require.NoError(t, e.CopyStore(x, backup))
	require.NoError(t, e.RestartNode(ctx, x))
	before := waitHealthy(t, c)

	// Life goes on: elections raise every group's term, writes the logs.
	stepDownAll(t, e)
	publishDemo(t, e, 50)
	after := waitViewLatest(t, c, 30*time.Second, "terms raised and x current", func(v *View) bool {
		if !healthyDemo(v) {
			return false
		}
		for _, name := range demoGroups {
			g, _ := lookupGroup(v, name)
			b, _ := lookupGroup(before, name)
			if g.Term <= b.Term || g.MemberTerms[x] != 0 {
				return false
			}
		}
		return true
	})
	for _, name := range demoGroups {
		g, _ := lookupGroup(after, name)
		t.Logf("%s: term %d, commit %d", name, g.Term, g.Commit)
	}

	// x comes back from the old backup.
	require.NoError(t, e.StopNode(x))
	require.NoError(t, e.ReplaceStore(x, backup))
	require.NoError(t, e.RestartNode(ctx, x))
	f, _ := waitFinding(t, c, 30*time.Second, CauseStaleState, func(f Finding) bool {
		return len(f.Groups) == len(demoGroups)
	})
	t.Logf("%s\n%s", f.Summary, strings.Join(f.Evidence, "\n"))
	assert.Equal(t, []string{x}, f.Nodes)
	assert.Equal(t, sortedCopy(demoGroups), affectedNames(f))
	n, _ := c.Latest().Node(x)
	for _, rg := range n.RaftRegressions {
		assert.True(t, rg.TermAfter < rg.TermBefore || rg.IndexAfter < rg.IndexBefore, "%+v", rg)
	}
	// It catches up (healthy first, then ready: readiness is the stricter
	// of the two), and the finding stays as a warning for a while.
	waitHealthy(t, c)
	waitViewLatest(t, c, 30*time.Second, x+" ready", func(v *View) bool {
		ready, _ := v.NodeReady(x)
		return ready
	})
	f, _ = waitFinding(t, c, 5*time.Second, CauseStaleState, nil)
	assert.Equal(t, SeverityWarning, f.Severity)
}

// stepDownAll makes the demo stream, its consumer and the meta group each
// elect a new leader, and waits for them.
func stepDownAll(t *testing.T, e *Embedded) {
	t.Helper()
	app, err := e.Dial(AppAccount)
	require.NoError(t, err)
	defer app.Close()
	sys, err := e.Dial(SystemAccount)
	require.NoError(t, err)
	defer sys.Close()
	for _, step := range []struct {
		nc      *nats.Conn
		subject string
	}{
		{app, streamStepDownSubject + DemoStream},
		{app, consumerStepDownSubject + DemoStream + "." + DemoConsumer},
		{sys, metaStepDownSubject},
	} {
		require.Eventually(t, func() bool {
			msg, err := step.nc.Request(step.subject, nil, 2*time.Second)
			return err == nil && strings.Contains(string(msg.Data), `"success":true`)
		}, 20*time.Second, 200*time.Millisecond, step.subject)
	}
}

// TestFaultResources exhausts a node's resources in the ways /varz shows:
// slow consumers, and JetStream memory at its limit.
func TestFaultResources(t *testing.T) {
	e, c := faultCluster(t)
	v := waitHealthy(t, c)
	x := followerOf(t, v)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	t.Run("slow consumer", func(t *testing.T) {
		require.NoError(t, e.StartFaulty(ctx, x, NodeFault{MaxPending: 256 * 1024}))
		waitHealthy(t, c)
		makeSlowConsumer(t, e.Node(x))
		f, _ := waitFinding(t, c, 20*time.Second, CauseResources, nil)
		t.Logf("%s\n%s", f.Summary, strings.Join(f.Evidence, "\n"))
		assert.Equal(t, []string{x}, f.Nodes)
		assert.Equal(t, sortedCopy(demoGroups), affectedNames(f), "the groups with a member on the node are at risk")
		assert.Contains(t, strings.Join(f.Evidence, "\n"), "slow consumer")
		require.NoError(t, e.ClearFault(ctx, x))
	})

	t.Run("JetStream memory at its limit", func(t *testing.T) {
		const limit = 1 << 20
		require.NoError(t, e.StartFaulty(ctx, x, NodeFault{MaxMemoryStore: limit}))
		waitHealthy(t, c)
		js, closeJS := appJetStream(t, e)
		defer closeJS()
		require.Eventually(t, func() bool {
			rctx, rcancel := context.WithTimeout(ctx, 3*time.Second)
			defer rcancel()
			_, err := js.CreateOrUpdateStream(rctx, jetstream.StreamConfig{
				Name: "mem", Subjects: []string{"mem.>"}, Storage: jetstream.MemoryStorage, Replicas: 3,
			})
			return err == nil
		}, 20*time.Second, 100*time.Millisecond)
		payload := make([]byte, 1000)
		var used uint64
		for i := 0; used < limit*95/100; i++ {
			_, err := js.Publish(ctx, fmt.Sprintf("mem.%d", i), payload, afterCreate...)
			require.NoError(t, err)
			if i%50 == 0 {
				used = jetStreamMemory(t, e.Node(x))
			}
		}
		f, _ := waitFinding(t, c, 20*time.Second, CauseResources, func(f Finding) bool {
			return slices.Contains(f.Nodes, x) && strings.Contains(strings.Join(f.Evidence, "\n"), "max_memory_store")
		})
		t.Logf("%s\n%s", f.Summary, strings.Join(f.Evidence, "\n"))
		assert.Equal(t, []string{x}, f.Nodes)
		assert.Contains(t, affectedNames(f), "mem")
	})
}

// jetStreamMemory is the JetStream memory node n uses.
func jetStreamMemory(t *testing.T, n *EmbeddedNode) uint64 {
	t.Helper()
	vz, err := n.Server().Varz(nil)
	require.NoError(t, err)
	if vz.JetStream.Stats == nil {
		return 0
	}
	return vz.JetStream.Stats.Memory
}

// makeSlowConsumer subscribes on n with a raw client that never reads and
// publishes to it until n drops it as a slow consumer.
func makeSlowConsumer(t *testing.T, n *EmbeddedNode) {
	t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(n.ClientURL(), "nats://"))
	require.NoError(t, err)
	defer conn.Close()
	if tc, ok := conn.(*net.TCPConn); ok {
		require.NoError(t, tc.SetReadBuffer(4096))
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(line, "INFO "), line)
	_, err = fmt.Fprintf(conn, "CONNECT {\"verbose\":false,\"user\":%q,\"pass\":%q}\r\nSUB slow.> 1\r\nPING\r\n",
		embeddedUsers[AppAccount][0], embeddedUsers[AppAccount][1])
	require.NoError(t, err)

	pub := connectTo(t, n, nats.UserInfo(embeddedUsers[AppAccount][0], embeddedUsers[AppAccount][1]))
	defer pub.Close()
	payload := make([]byte, 16*1024)
	start := func() int64 {
		vz, err := n.Server().Varz(nil)
		require.NoError(t, err)
		return vz.SlowConsumers
	}()
	require.Eventually(t, func() bool {
		for range 64 {
			if err := pub.Publish("slow.x", payload); err != nil {
				return false
			}
		}
		_ = pub.Flush()
		vz, err := n.Server().Varz(nil)
		return err == nil && vz.SlowConsumers > start
	}, 20*time.Second, 10*time.Millisecond, "no slow consumer on %s", n.Name())
}

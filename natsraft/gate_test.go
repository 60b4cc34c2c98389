package natsraft

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// fenceDeadline bounds how long isolation may take; the design expects
// well under a second.
const fenceDeadline = 2 * time.Second

// unfenceDeadline bounds how long routes may take to come back: the servers
// retry an explicit route about every second.
const unfenceDeadline = 10 * time.Second

func opCtx(tb testing.TB, d time.Duration) context.Context {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	tb.Cleanup(cancel)
	return ctx
}

// peerSeesNode reports whether peer has a route or a gateway connection to n,
// read from peer's own Routez and Gatewayz.
func peerSeesNode(peer, n *EmbeddedNode) bool {
	s := peer.running()
	if s == nil {
		return false
	}
	if slices.Contains(routesOf(s), n.Name()) {
		return true
	}
	id := n.Server().ID()
	for _, g := range gatewayConnsOf(s) {
		if g.serverID == id {
			return true
		}
	}
	return false
}

// hasGatewayTo reports whether s has any gateway connection (either
// direction) with dc.
func hasGatewayTo(s *server.Server, dc string) bool {
	for _, g := range gatewayConnsOf(s) {
		if g.remote == dc {
			return true
		}
	}
	return false
}

func TestConnectServerID(t *testing.T) {
	tests := []struct {
		line    string
		want    string
		wantErr bool
	}{
		{line: "CONNECT {\"echo\":true,\"name\":\"NABC\",\"cluster\":\"dc1\"}\r\n", want: "NABC"},
		{line: "CONNECT {\"name\":\"NGW\",\"gateway\":\"dc2\"}\r\n", want: "NGW"},
		{line: "INFO {\"server_id\":\"X\"}\r\n", wantErr: true},
		{line: "CONNECT {\"cluster\":\"dc1\"}\r\n", wantErr: true},
		{line: "CONNECT {not json\r\n", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(strings.TrimSpace(tt.line), func(t *testing.T) {
			got, err := connectServerID([]byte(tt.line))
			if tt.wantErr {
				assert.Error(t, err)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want, got)
		})
	}
}

func TestGateFenceSingleDC(t *testing.T) {
	e := embeddedForTest(t, EmbeddedOptions{})
	for _, n := range e.Nodes() {
		require.Eventually(t, func() bool { return len(n.missingLinks()) == 0 }, 10*time.Second, 10*time.Millisecond)
	}
	for _, name := range []string{"nats-0", "nats-1", "nats-2"} {
		t.Run(name, func(t *testing.T) {
			n := e.Node(name)
			var peers []*EmbeddedNode
			for _, p := range e.Nodes() {
				if p != n {
					peers = append(peers, p)
					require.True(t, peerSeesNode(p, n), "%s routes to %s before the fence", p.Name(), name)
				}
			}

			start := time.Now()
			require.NoError(t, n.Fence(opCtx(t, fenceDeadline)))
			isolated := time.Since(start)
			t.Logf("%s isolated in %s", name, isolated.Round(time.Microsecond))
			assert.Less(t, isolated, fenceDeadline)
			assert.True(t, isFenced(t, n))
			assert.Empty(t, routesOf(n.Server()), "the fenced node has no route")
			for _, p := range peers {
				assert.False(t, peerSeesNode(p, n), "%s still routes to %s", p.Name(), name)
				assert.False(t, isFenced(t, p))
				// The peers keep their route to each other.
				for _, q := range peers {
					if q != p {
						assert.Contains(t, routesOf(p.Server()), q.Name())
					}
				}
			}
			// The servers retry a lost explicit route about every second: the
			// gates must keep refusing in both directions.
			assert.Never(t, func() bool {
				if len(routesOf(n.Server())) > 0 {
					return true
				}
				for _, p := range peers {
					if peerSeesNode(p, n) {
						return true
					}
				}
				return false
			}, 2500*time.Millisecond, 25*time.Millisecond, "a route came back through the fence")
			require.NoError(t, n.Fence(opCtx(t, fenceDeadline)), "fence is idempotent")

			start = time.Now()
			require.NoError(t, n.Unfence(opCtx(t, unfenceDeadline)))
			t.Logf("%s routes back in %s", name, time.Since(start).Round(time.Millisecond))
			assert.False(t, isFenced(t, n))
			for _, p := range peers {
				assert.True(t, peerSeesNode(p, n), "%s routes to %s again", p.Name(), name)
				assert.Contains(t, routesOf(n.Server()), p.Name())
			}
			require.NoError(t, n.Unfence(opCtx(t, time.Second)), "unfence is idempotent")
		})
	}
}

func TestGateRefusesFencedDialer(t *testing.T) {
	e := embeddedForTest(t, EmbeddedOptions{})
	fenced, open, other := e.Node("nats-0"), e.Node("nats-1"), e.Node("nats-2")
	require.NoError(t, fenced.Fence(opCtx(t, fenceDeadline)))

	tests := []struct {
		name    string
		gate    *gate
		dialer  *EmbeddedNode
		refused bool
	}{
		{name: "fenced dialer to open node", gate: open.route, dialer: fenced, refused: true},
		{name: "open dialer to fenced node", gate: fenced.route, dialer: open, refused: true},
		{name: "unknown dialer to open node", gate: open.route, dialer: nil, refused: true},
		{name: "open dialer to open node", gate: open.route, dialer: other, refused: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			conn, err := net.DialTimeout("tcp", tt.gate.addr(), time.Second)
			require.NoError(t, err)
			defer conn.Close()
			id := "NUNKNOWN"
			if tt.dialer != nil {
				id = tt.dialer.Server().ID()
			}
			// Writing may already fail when the gate refused at accept.
			_, _ = fmt.Fprintf(conn, "CONNECT {\"name\":%q,\"cluster\":\"dc1\"}\r\n", id)
			require.NoError(t, conn.SetReadDeadline(time.Now().Add(3*time.Second)))
			owner := e.Node(tt.gate.owner)
			if !tt.refused {
				// The gate forwards the dialer to the node, whose INFO comes
				// back through it.
				line, err := bufio.NewReader(conn).ReadString('\n')
				require.NoError(t, err, "the gate must let the dialer through")
				assert.True(t, strings.HasPrefix(line, "INFO "), "first line %q", line)
				assert.Contains(t, line, owner.Server().ID(), "the INFO comes from the gate's node")
				// The real route between the two open nodes is up both ways.
				assert.Eventually(t, func() bool { return peerSeesNode(owner, tt.dialer) && peerSeesNode(tt.dialer, owner) },
					unfenceDeadline, 10*time.Millisecond, "%s and %s route to each other", owner.Name(), tt.dialer.Name())
				return
			}
			// The gate closes the connection before the node says a word:
			// not even the node's INFO reaches a refused route dialer.
			got, err := io.ReadAll(conn)
			var ne net.Error
			if errors.As(err, &ne) {
				assert.False(t, ne.Timeout(), "the gate must close the connection")
			}
			assert.Empty(t, string(got))
		})
	}
}

func TestGateFenceSupercluster(t *testing.T) {
	e := embeddedForTest(t, EmbeddedOptions{Topology: []int{2, 2, 2}})
	for _, n := range e.Nodes() {
		require.Eventually(t, func() bool { return len(n.missingLinks()) == 0 }, 15*time.Second, 10*time.Millisecond,
			"%s: %v", n.Name(), n.missingLinks())
	}
	tests := []struct {
		name  string
		fence []string
	}{
		{name: "one node", fence: []string{"nats-dc2-0"}},
		{name: "whole dc1", fence: []string{"nats-dc1-0", "nats-dc1-1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Before the fence, each node has an outbound gateway to every other
			// dc, which the remote side lists as inbound under the node's id.
			for _, name := range tt.fence {
				n := e.Node(name)
				seenFrom := 0
				for _, p := range e.Nodes() {
					if p.DC() != n.DC() && peerSeesNode(p, n) {
						seenFrom++
					}
				}
				assert.GreaterOrEqual(t, seenFrom, len(e.DCs())-1, "%s is seen over gateways", name)
			}
			start := time.Now()
			for _, name := range tt.fence {
				require.NoError(t, e.Node(name).Fence(opCtx(t, fenceDeadline)))
			}
			t.Logf("%v isolated in %s", tt.fence, time.Since(start).Round(time.Microsecond))
			for _, name := range tt.fence {
				n := e.Node(name)
				assert.Empty(t, routesOf(n.Server()), name)
				assert.Empty(t, gatewayConnsOf(n.Server()), name)
				for _, p := range e.Nodes() {
					if !slices.Contains(tt.fence, p.Name()) {
						assert.False(t, peerSeesNode(p, n), "%s still sees %s", p.Name(), name)
					}
				}
			}
			// A whole dc fenced: no other dc keeps a gateway to it.
			wholeDC := ""
			if dcNodes := e.NodesOf(e.Node(tt.fence[0]).DC()); len(dcNodes) == len(tt.fence) {
				wholeDC = dcNodes[0].DC()
			}
			if wholeDC != "" {
				for _, p := range e.Nodes() {
					if p.DC() != wholeDC {
						assert.False(t, hasGatewayTo(p.Server(), wholeDC), "%s keeps a gateway to %s", p.Name(), wholeDC)
					}
				}
			}
			// The rest of the supercluster stays linked (a gateway that went to
			// a fenced node is re-established to another node of its dc).
			for _, p := range e.Nodes() {
				if !slices.Contains(tt.fence, p.Name()) {
					assert.Eventually(t, func() bool { return len(p.missingLinks()) == 0 }, unfenceDeadline, 10*time.Millisecond,
						"%s: %v", p.Name(), p.missingLinks())
				}
			}

			start = time.Now()
			for _, name := range tt.fence {
				require.NoError(t, e.Node(name).Unfence(opCtx(t, unfenceDeadline)))
			}
			t.Logf("%v links back in %s", tt.fence, time.Since(start).Round(time.Millisecond))
			for _, p := range e.Nodes() {
				require.Eventually(t, func() bool { return len(p.missingLinks()) == 0 }, unfenceDeadline, 10*time.Millisecond,
					"%s: %v", p.Name(), p.missingLinks())
			}
			if wholeDC != "" {
				for _, p := range e.Nodes() {
					if p.DC() != wholeDC {
						assert.Eventually(t, func() bool { return hasGatewayTo(p.Server(), wholeDC) }, unfenceDeadline, 10*time.Millisecond,
							"%s has a gateway to %s again", p.Name(), wholeDC)
					}
				}
			}
		})
	}
}

// groupLagging returns, for every Raft group of the demo (meta, stream,
// consumer), why name is not a current member as the group's leader sees
// it; empty once name is current everywhere.
func groupLagging(e *Embedded, name string) []string {
	var out []string
	leader := e.Node(e.MetaLeader())
	if leader == nil {
		return []string{"meta: no leader"}
	}
	jsz, err := leader.Server().Jsz(&server.JSzOptions{})
	if err != nil || jsz.Meta == nil {
		return []string{"meta: no jsz"}
	}
	if leader.Name() != name && !peerCurrent(jsz.Meta.Replicas, name) {
		out = append(out, "meta")
	}
	streamLeader, consumerLeader := "", ""
	for _, n := range e.Nodes() {
		s := n.running()
		if s == nil {
			continue
		}
		d, err := s.Jsz(&server.JSzOptions{Accounts: true, Streams: true, Consumer: true})
		if err != nil {
			continue
		}
		for _, a := range d.AccountDetails {
			for _, st := range a.Streams {
				if st.Name != DemoStream || st.Cluster == nil {
					continue
				}
				if st.Cluster.Leader == n.Name() {
					streamLeader = n.Name()
					if n.Name() != name && !peerCurrent(st.Cluster.Replicas, name) {
						out = append(out, "stream "+DemoStream)
					}
				}
				for _, c := range st.Consumer {
					if c.Name == DemoConsumer && c.Cluster != nil && c.Cluster.Leader == n.Name() {
						consumerLeader = n.Name()
						if n.Name() != name && !peerCurrent(c.Cluster.Replicas, name) {
							out = append(out, "consumer "+DemoConsumer)
						}
					}
				}
			}
		}
	}
	if streamLeader == "" {
		out = append(out, "stream: no leader")
	}
	if consumerLeader == "" {
		out = append(out, "consumer: no leader")
	}
	return out
}

func peerCurrent(peers []*server.PeerInfo, name string) bool {
	for _, p := range peers {
		if p.Name == name {
			return p.Current && !p.Offline
		}
	}
	return false
}

// demoLeaders returns the meta and stream leaders.
func demoLeaders(t *testing.T, e *Embedded) (meta, stream string) {
	t.Helper()
	return e.MetaLeader(), demoStreamInfo(t, e).Cluster.Leader
}

// moveConsumerLeaderOff steps the demo consumer's leadership down to
// another node if x holds it, so that quiescing x costs no election.
func moveConsumerLeaderOff(t *testing.T, e *Embedded, x *EmbeddedNode) {
	t.Helper()
	js, closeJS := appJetStream(t, e)
	defer closeJS()
	leader := func() string {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		c, err := js.Consumer(ctx, DemoStream, DemoConsumer)
		if err != nil || c.CachedInfo().Cluster == nil {
			return ""
		}
		return c.CachedInfo().Cluster.Leader
	}
	var other string
	for _, n := range e.Nodes() {
		if n != x {
			other = n.Name()
			break
		}
	}
	body := []byte(fmt.Sprintf(`{"placement":{"preferred":%q}}`, other))
	// Step down only while x is known to lead: a request during the
	// transition would depose the new leader again.
	require.Eventually(t, func() bool {
		switch leader() {
		case "":
			return false
		case x.Name():
			_, _ = js.Conn().Request("$JS.API.CONSUMER.LEADER.STEPDOWN."+DemoStream+"."+DemoConsumer, body, time.Second)
			return false
		default:
			return true
		}
	}, 20*time.Second, 100*time.Millisecond)
}

func TestQuiesceFenceResumeCatchesUp(t *testing.T) {
	e := embeddedForTest(t, EmbeddedOptions{Demo: true})
	publishDemo(t, e, 10)
	meta, stream := demoLeaders(t, e)
	// A node that leads neither meta nor the stream, so writes go on at once
	// (leadership hand-off is not this test's business).
	var x *EmbeddedNode
	for _, n := range e.Nodes() {
		if n.Name() != meta && n.Name() != stream {
			x = n
			break
		}
	}
	require.NotNil(t, x)
	moveConsumerLeaderOff(t, e, x)
	requireStreamHasOn(t, x, 10)

	ended, cancel := context.WithCancel(t.Context())
	cancel()
	require.ErrorIs(t, x.Quiesce(ended), context.Canceled, "an ended context starts no shutdown")
	require.False(t, x.Quiesced())

	start := time.Now()
	require.NoError(t, x.Quiesce(opCtx(t, 10*time.Second)))
	t.Logf("quiesce %s took %s", x.Name(), time.Since(start).Round(time.Microsecond))
	assert.True(t, x.Quiesced())
	assert.False(t, x.Server().JetStreamEnabled())
	require.NoError(t, x.Quiesce(opCtx(t, time.Second)), "quiesce is idempotent")

	start = time.Now()
	require.NoError(t, x.Fence(opCtx(t, fenceDeadline)))
	t.Logf("fence %s took %s", x.Name(), time.Since(start).Round(time.Microsecond))

	// The peers keep quorum and take writes while x is out.
	publishDemo(t, e, 25, x.Name())
	assert.Equal(t, uint64(35), demoStreamInfo(t, e, x.Name()).State.Msgs)

	start = time.Now()
	require.NoError(t, x.Unfence(opCtx(t, unfenceDeadline)))
	unfenced := time.Since(start)
	start = time.Now()
	require.NoError(t, x.Resume(opCtx(t, 10*time.Second)))
	resumed := time.Since(start)
	assert.False(t, x.Quiesced())
	require.NoError(t, x.Resume(opCtx(t, time.Second)), "resume is idempotent")

	start = time.Now()
	var lagging []string
	require.Eventually(t, func() bool {
		lagging = groupLagging(e, x.Name())
		return len(lagging) == 0
	}, 20*time.Second, 20*time.Millisecond, "%s not current in %v", x.Name(), lagging)
	caughtUp := time.Since(start)
	requireStreamHasOn(t, x, 35)
	t.Logf("%s: routes back in %s, resume in %s, current in every group %s later",
		x.Name(), unfenced.Round(time.Millisecond), resumed.Round(time.Millisecond), caughtUp.Round(time.Millisecond))
}

func TestMoveClients(t *testing.T) {
	e := embeddedForTest(t, EmbeddedOptions{})
	x := e.Node("nats-2")
	tests := []struct {
		name string
		opts []nats.Option
	}{
		{name: "honours lame duck", opts: []nats.Option{nats.LameDuckModeHandler(func(nc *nats.Conn) { _ = nc.ForceReconnect() })}},
		{name: "ignores lame duck"},
	}
	conns := make([]*nats.Conn, len(tests))
	for i, tt := range tests {
		conns[i] = connectTo(t, x, tt.opts...)
		require.Equal(t, x.Name(), conns[i].ConnectedServerName())
		// Let the client learn the other servers from the cluster's INFO.
		require.Eventually(t, func() bool { return len(conns[i].DiscoveredServers()) >= 2 }, 5*time.Second, 10*time.Millisecond)
	}
	start := time.Now()
	require.NoError(t, x.MoveClients(opCtx(t, 10*time.Second)))
	t.Logf("move clients took %s", time.Since(start).Round(time.Millisecond))
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Eventually(t, func() bool {
				return conns[i].IsConnected() && conns[i].ConnectedServerName() != x.Name()
			}, 10*time.Second, 10*time.Millisecond)
		})
	}
	ids, err := clientIDs(x.Server())
	require.NoError(t, err)
	assert.Empty(t, ids)
	require.NoError(t, x.MoveClients(opCtx(t, time.Second)), "no clients left: nothing to do")
}

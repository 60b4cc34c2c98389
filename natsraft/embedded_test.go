package natsraft

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// embeddedForTest starts an embedded cluster that is closed when the test ends.
func embeddedForTest(tb testing.TB, o EmbeddedOptions) *Embedded {
	tb.Helper()
	o.Logger = zerolog.Nop()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	start := time.Now()
	e, err := StartEmbedded(ctx, o)
	require.NoError(tb, err)
	tb.Logf("embedded %v ready in %s", o.Topology, time.Since(start).Round(time.Millisecond))
	tb.Cleanup(func() { assert.NoError(tb, e.Close()) })
	return e
}

// demoStreamInfo reads the demo stream's info through the app account.
func demoStreamInfo(tb testing.TB, e *Embedded, avoid ...string) *jetstream.StreamInfo {
	tb.Helper()
	js, closeJS := appJetStream(tb, e, avoid...)
	defer closeJS()
	// A request right after a leader change can go unanswered: retry.
	var info *jetstream.StreamInfo
	var last error
	require.Eventually(tb, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		st, err := js.Stream(ctx, DemoStream)
		if err == nil {
			info, err = st.Info(ctx)
		}
		last = err
		return err == nil && info.Cluster != nil && info.Cluster.Leader != ""
	}, 15*time.Second, 50*time.Millisecond, "demo stream info: %v", last)
	return info
}

// appJetStream connects to e as a user of the app account (avoiding the
// named servers) and returns the JetStream API over that connection, and a
// func that closes it.
func appJetStream(tb testing.TB, e *Embedded, avoid ...string) (jetstream.JetStream, func()) {
	tb.Helper()
	nc, err := e.Dial(AppAccount, avoid...)
	require.NoError(tb, err)
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
	}
	require.NoError(tb, err)
	return js, nc.Close
}

// publishDemo publishes n messages to the demo stream and returns their sequence numbers.
func publishDemo(tb testing.TB, e *Embedded, n int, avoid ...string) []uint64 {
	tb.Helper()
	js, closeJS := appJetStream(tb, e, avoid...)
	defer closeJS()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	// A publish right after a leader change can fail or go unanswered: retry
	// with a message id, which the stream deduplicates.
	batch := nuid.Next()
	seqs := make([]uint64, 0, n)
	for i := range n {
		var ack *jetstream.PubAck
		var err error
		for ack == nil && ctx.Err() == nil {
			actx, acancel := context.WithTimeout(ctx, 2*time.Second)
			ack, err = js.Publish(actx, fmt.Sprintf("demo.%d", i), []byte(fmt.Sprintf("m%d", i)),
				jetstream.WithMsgID(fmt.Sprintf("%s-%d", batch, i)))
			acancel()
			if err != nil {
				tb.Logf("publish %d: %v (retrying)", i, err)
			}
		}
		require.NoError(tb, err)
		require.NotNil(tb, ack)
		seqs = append(seqs, ack.Sequence)
	}
	return seqs
}

func httpStatus(tb testing.TB, url string) int {
	tb.Helper()
	resp, err := http.Get(url)
	require.NoError(tb, err)
	defer resp.Body.Close()
	return resp.StatusCode
}

func TestEmbeddedTopologies(t *testing.T) {
	tests := []struct {
		name      string
		opts      EmbeddedOptions
		wantNodes []string
		wantDCs   []string
	}{
		{
			name:      "default single dc",
			opts:      EmbeddedOptions{Demo: true},
			wantNodes: []string{"nats-0", "nats-1", "nats-2"},
			wantDCs:   []string{"dc1"},
		},
		{
			name:      "supercluster 2,2,2",
			opts:      EmbeddedOptions{Topology: []int{2, 2, 2}, Demo: true},
			wantNodes: []string{"nats-dc1-0", "nats-dc1-1", "nats-dc2-0", "nats-dc2-1", "nats-dc3-0", "nats-dc3-1"},
			wantDCs:   []string{"dc1", "dc2", "dc3"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := embeddedForTest(t, tt.opts)
			assert.Equal(t, tt.wantDCs, e.DCs())
			var names []string
			for _, n := range e.Nodes() {
				names = append(names, n.Name())
				assert.Same(t, n, e.Node(n.Name()))
				assert.Equal(t, n.Name(), n.Server().Name())
				assert.Equal(t, n.DC(), n.Server().ClusterName())
				assert.True(t, n.Server().JetStreamEnabled(), n.Name())
				assert.False(t, isFenced(t, n))
				assert.False(t, n.Quiesced())
				// /healthz turns 200 once the node's JetStream has caught up
				// with the meta leader, which may trail the start a little.
				assert.Eventually(t, func() bool {
					return httpStatus(t, n.MonitorURL()+"/healthz") == http.StatusOK
				}, 15*time.Second, 20*time.Millisecond, "%s /healthz", n.Name())
			}
			assert.Equal(t, tt.wantNodes, names)
			assert.Nil(t, e.Node("nats-x"))
			require.Len(t, e.Endpoints(), len(tt.wantNodes))
			require.Len(t, e.ClientURLs(), len(tt.wantNodes))
			for i, ep := range e.Endpoints() {
				assert.Equal(t, tt.wantNodes[i], ep.Name)
				assert.Equal(t, e.Nodes()[i].DC(), ep.DC)
				assert.Equal(t, e.Nodes()[i].MonitorURL(), ep.MonitorURL)
			}
			assert.NotEmpty(t, e.MetaLeader())

			// Every node routes to every other node of its dc, through the gates.
			for _, n := range e.Nodes() {
				require.Eventually(t, func() bool { return len(n.missingLinks()) == 0 }, 10*time.Second, 10*time.Millisecond,
					"%s: %v", n.Name(), n.missingLinks())
			}

			info := demoStreamInfo(t, e)
			wantReplicas := min(3, len(e.NodesOf(e.DCs()[0])))
			assert.Equal(t, wantReplicas, info.Config.Replicas)
			assert.Equal(t, e.DCs()[0], info.Cluster.Name)
			require.NotEmpty(t, info.Cluster.Leader)
			placed := []string{info.Cluster.Leader}
			for _, r := range info.Cluster.Replicas {
				placed = append(placed, r.Name)
			}
			for _, name := range placed {
				assert.Equal(t, e.DCs()[0], e.Node(name).DC(), "replica %s", name)
			}
			assert.Len(t, placed, wantReplicas)

			seqs := publishDemo(t, e, 5)
			assert.Equal(t, []uint64{1, 2, 3, 4, 5}, seqs)
		})
	}
}

func TestEmbeddedDial(t *testing.T) {
	e := embeddedForTest(t, EmbeddedOptions{})
	tests := []struct {
		account string
		avoid   []string
		wantAcc string
		wantErr bool
	}{
		{account: AppAccount, wantAcc: AppAccount},
		{account: SystemAccount, wantAcc: SystemAccount},
		{account: "$SYS", wantAcc: SystemAccount},
		{account: AppAccount, avoid: []string{"nats-0", "nats-1"}, wantAcc: AppAccount},
		{account: "OTHER", wantErr: true},
		{account: AppAccount, avoid: []string{"nats-0", "nats-1", "nats-2"}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%s avoid %v", tt.account, tt.avoid), func(t *testing.T) {
			nc, err := e.Dial(tt.account, tt.avoid...)
			if tt.wantErr {
				require.Error(t, err)
				return
			}
			require.NoError(t, err)
			defer nc.Close()
			assert.NotContains(t, tt.avoid, nc.ConnectedServerName())
			srv := e.Node(nc.ConnectedServerName()).Server()
			cid, err := nc.GetClientID()
			require.NoError(t, err)
			cz, err := srv.Connz(&server.ConnzOptions{CID: cid, Username: true})
			require.NoError(t, err)
			require.Len(t, cz.Conns, 1)
			assert.Equal(t, tt.wantAcc, cz.Conns[0].Account)
		})
	}
}

func TestEmbeddedFixedPorts(t *testing.T) {
	// Find a run of free ports well away from the usual ones.
	base := 0
	for try := 41000; try < 60000 && base == 0; try += 97 {
		if portsFree(try, 3) && portsFree(try+10, 3) {
			base = try
		}
	}
	require.NotZero(t, base, "no free port range")
	e := embeddedForTest(t, EmbeddedOptions{ClientPort: base, MonitorPort: base + 10})
	for i, n := range e.Nodes() {
		assert.Equal(t, fmt.Sprintf("nats://127.0.0.1:%d", base+i), n.ClientURL())
		assert.Equal(t, fmt.Sprintf("http://127.0.0.1:%d", base+10+i), n.MonitorURL())
	}
	_, err := StartEmbedded(context.Background(), EmbeddedOptions{Topology: []int{0}})
	assert.Error(t, err)
	_, err = StartEmbedded(context.Background(), EmbeddedOptions{ClientPort: 65534})
	assert.Error(t, err)

	// A client port in use is said as such, not as a start that timed out.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	_, err = StartEmbedded(context.Background(), EmbeddedOptions{Topology: []int{1},
		ClientPort: l.Addr().(*net.TCPAddr).Port, Logger: zerolog.Nop()})
	require.Error(t, err)
	assert.ErrorContains(t, err, "address already in use")
}

func TestEmbeddedRestartKeepsState(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	e, err := StartEmbedded(ctx, EmbeddedOptions{DataDir: dir, Demo: true, Logger: zerolog.Nop()})
	require.NoError(t, err)
	publishDemo(t, e, 10)
	before := demoStreamInfo(t, e)
	require.NoError(t, e.Close())
	require.DirExists(t, dir+"/nats-0", "a caller's DataDir survives Close")

	start := time.Now()
	e2, err := StartEmbedded(ctx, EmbeddedOptions{DataDir: dir, Demo: true, Logger: zerolog.Nop()})
	require.NoError(t, err)
	t.Logf("restart on the same data dir ready in %s", time.Since(start).Round(time.Millisecond))
	defer e2.Close()
	after := demoStreamInfo(t, e2)
	assert.Equal(t, uint64(10), after.State.Msgs)
	assert.Equal(t, before.State.LastSeq, after.State.LastSeq)
	assert.Equal(t, before.Created.UTC(), after.Created.UTC(), "the same stream, not a new one")
	seqs := publishDemo(t, e2, 1)
	assert.Equal(t, []uint64{11}, seqs)
}

func TestEmbeddedStopRestartNode(t *testing.T) {
	e := embeddedForTest(t, EmbeddedOptions{Demo: true})
	publishDemo(t, e, 3)
	victim := e.Node("nats-1")
	clientURL, monitorURL := victim.ClientURL(), victim.MonitorURL()

	require.NoError(t, e.StopNode("nats-1"))
	assert.False(t, victim.Running())
	assert.False(t, victim.Quiesced(), "a stopped node is not quiesced: nothing to resume")
	require.Error(t, e.StopNode("nats-9"))
	require.Error(t, e.RestartNode(context.Background(), "nats-9"))
	require.Eventually(t, func() bool {
		return !hasRoute(e.Node("nats-0"), "nats-1") && !hasRoute(e.Node("nats-2"), "nats-1")
	}, 10*time.Second, 10*time.Millisecond)
	// The cluster keeps its quorum and takes writes.
	publishDemo(t, e, 2, "nats-1")

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	start := time.Now()
	require.NoError(t, e.RestartNode(ctx, "nats-1"))
	t.Logf("restart node ready in %s", time.Since(start).Round(time.Millisecond))
	require.Error(t, e.RestartNode(ctx, "nats-1"), "already running")
	assert.Equal(t, clientURL, victim.ClientURL())
	assert.Equal(t, monitorURL, victim.MonitorURL())
	require.Eventually(t, func() bool { return len(victim.missingLinks()) == 0 }, 15*time.Second, 10*time.Millisecond)
	requireStreamHasOn(t, victim, 5)
}

// hasRoute reports whether n currently has a route to peer.
func hasRoute(n *EmbeddedNode, peer string) bool {
	for _, r := range routesOf(n.Server()) {
		if r == peer {
			return true
		}
	}
	return false
}

// requireStreamHasOn waits until node n's own replica of the demo stream
// holds want messages, read from its local store.
func requireStreamHasOn(tb testing.TB, n *EmbeddedNode, want uint64) {
	tb.Helper()
	var got uint64
	require.Eventually(tb, func() bool {
		s := n.running()
		if s == nil {
			return false
		}
		jsz, err := s.Jsz(&server.JSzOptions{Accounts: true, Streams: true})
		if err != nil {
			return false
		}
		for _, a := range jsz.AccountDetails {
			for _, st := range a.Streams {
				if st.Name == DemoStream {
					got = st.State.Msgs
					return got == want
				}
			}
		}
		return false
	}, 20*time.Second, 20*time.Millisecond, "%s holds %d messages, want %d", n.Name(), got, want)
}

// connectTo dials one node only, as a client that knows no lame-duck handling.
func connectTo(tb testing.TB, n *EmbeddedNode, opts ...nats.Option) *nats.Conn {
	tb.Helper()
	opts = append([]nats.Option{nats.UserInfo("app", "app"), nats.MaxReconnects(-1), nats.ReconnectWait(50 * time.Millisecond)}, opts...)
	nc, err := nats.Connect(n.ClientURL(), opts...)
	require.NoError(tb, err)
	tb.Cleanup(nc.Close)
	return nc
}

func portsFree(first, count int) bool {
	for p := first; p < first+count; p++ {
		ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
		if err != nil {
			return false
		}
		ln.Close()
	}
	return true
}

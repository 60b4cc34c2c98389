package app_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/prober-dev/prober/app"
	"github.com/prober-dev/prober/maintenance"
	"github.com/prober-dev/prober/natsraft"
)

// appLogEnv, when set, sends the app's logs to the test log (they are
// dropped otherwise).
const appLogEnv = "PROBER_E2E_LOG"

// appStartTimeout bounds the boot of an embedded app (cluster, demo stream,
// API) on a loaded machine.
const appStartTimeout = 90 * time.Second

// appStopTimeout bounds Run's ordered shutdown.
const appStopTimeout = 60 * time.Second

// storeFile is where Embedded keeps its file store inside DataDir.
const storeFile = "maintenance.json"

// liveApp is one Embedded running in the background for a test.
type liveApp struct {
	*app.Embedded
	tb      testing.TB
	dir     string
	base    string
	client  *http.Client
	cancel  context.CancelFunc
	done    chan error
	stopped bool
}

// startApp boots the whole embedded default on 127.0.0.1 with random ports
// over dir and returns once the API serves. It is stopped at the end of the
// test unless Stop was called.
func startApp(tb testing.TB, dir string, topology []int) *liveApp {
	tb.Helper()
	return startAppWith(tb, dir, topology, nil)
}

// startAppWith is startApp with configure applied to the Embedded before it
// runs (its auth, say).
func startAppWith(tb testing.TB, dir string, topology []int, configure func(*app.Embedded)) *liveApp {
	tb.Helper()
	log := zerolog.Nop()
	if os.Getenv(appLogEnv) != "" {
		log = zerolog.New(zerolog.ConsoleWriter{Out: tbWriter{tb}, NoColor: true, PartsExclude: []string{zerolog.TimestampFieldName}})
	}
	a := &liveApp{
		Embedded: &app.Embedded{
			Listen:      "127.0.0.1:0",
			DataDir:     dir,
			Topology:    topology,
			ClientPort:  0,
			MonitorPort: 0,
			Resync:      2 * time.Second,
			Logger:      log,
		},
		tb:     tb,
		dir:    dir,
		client: &http.Client{Timeout: 2 * time.Minute},
		done:   make(chan error, 1),
	}
	if configure != nil {
		configure(a.Embedded)
	}
	ctx, cancel := context.WithCancel(context.Background())
	a.cancel = cancel
	started := a.Started()
	begin := time.Now()
	go func() { a.done <- a.Run(ctx) }()
	tb.Cleanup(func() {
		if !a.stopped {
			a.Stop()
		}
	})
	select {
	case <-started:
	case err := <-a.done:
		a.stopped = true
		require.FailNow(tb, "embedded app did not start", "Run returned: %v", err)
	case <-time.After(appStartTimeout):
		require.FailNow(tb, "embedded app did not start", "not serving after %s", appStartTimeout)
	}
	a.base = "http://" + a.Addr()
	tb.Logf("app on %s (topology %v) started in %.1fs", a.Addr(), topology, time.Since(begin).Seconds())
	return a
}

// Stop cancels Run and waits for it to return: API, reconcilers and
// collector, then the cluster.
func (a *liveApp) Stop() {
	a.tb.Helper()
	if a.stopped {
		return
	}
	a.stopped = true
	begin := time.Now()
	a.cancel()
	a.client.CloseIdleConnections()
	select {
	case err := <-a.done:
		require.NoError(a.tb, err, "Run")
	case <-time.After(appStopTimeout):
		require.FailNow(a.tb, "embedded app did not stop", "Run still running after %s", appStopTimeout)
	}
	a.tb.Logf("app stopped in %.1fs", time.Since(begin).Seconds())
}

// do sends a request to the API and returns the status, headers and body.
func (a *liveApp) do(method, path, body string) (int, http.Header, []byte) {
	a.tb.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, a.base+path, rd)
	require.NoError(a.tb, err)
	resp, err := a.client.Do(req)
	require.NoError(a.tb, err, "%s %s", method, path)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(a.tb, err)
	return resp.StatusCode, resp.Header, b
}

// call sends a request, requires the status and decodes the JSON body into
// out (when out is not nil).
func (a *liveApp) call(method, path, body string, want int, out any) []byte {
	a.tb.Helper()
	code, _, b := a.do(method, path, body)
	require.Equal(a.tb, want, code, "%s %s: %s", method, path, b)
	if out != nil {
		require.NoError(a.tb, json.Unmarshal(b, out), "%s %s: %s", method, path, b)
	}
	return b
}

// config is GET /config.
func (a *liveApp) config() *maintenance.Document {
	a.tb.Helper()
	var d maintenance.Document
	a.call(http.MethodGet, "/config", "", http.StatusOK, &d)
	return &d
}

// pod is GET /pods/{pod}.
func (a *liveApp) pod(name string) maintenance.PodView {
	a.tb.Helper()
	var pv maintenance.PodView
	a.call(http.MethodGet, "/pods/"+name, "", http.StatusOK, &pv)
	return pv
}

// readyz returns the status of GET /readyz and its body.
func (a *liveApp) readyz() (int, string) {
	a.tb.Helper()
	code, _, b := a.do(http.MethodGet, "/readyz", "")
	return code, string(b)
}

// requireClean requires that nothing is in maintenance: the stored document
// is empty and every node is ready.
func (a *liveApp) requireClean() {
	a.tb.Helper()
	d := a.config()
	require.Empty(a.tb, d.Pods, "pods in /config")
	require.Empty(a.tb, d.DCs, "dcs in /config")
	for pod, st := range d.Status {
		// A pod back from maintenance keeps its give-back report, phase
		// Active, for a while.
		require.Equal(a.tb, maintenance.PhaseActive, st.Phase, "status of %s in /config", pod)
	}
	waitFor(a.tb, 30*time.Second, "/readyz 200", func() (bool, string) {
		code, body := a.readyz()
		return code == http.StatusOK, body
	})
}

// readStoredDoc reads the file store of dir directly, as another process
// would; ok is false while the file is missing or half written.
func readStoredDoc(dir string) (*maintenance.Document, bool) {
	raw, err := os.ReadFile(filepath.Join(dir, storeFile))
	if err != nil {
		return nil, false
	}
	var f struct {
		ResourceVersion string            `json:"resourceVersion"`
		Data            map[string]string `json:"data"`
	}
	if err := json.Unmarshal(raw, &f); err != nil {
		return nil, false
	}
	d, err := maintenance.DecodeData(f.Data, f.ResourceVersion)
	if err != nil {
		return nil, false
	}
	return d, true
}

// waitStoredPhase polls the store file of dir as fast as it can until the
// stored status of pod is one of phases, and returns it.
func waitStoredPhase(tb testing.TB, dir, pod string, timeout time.Duration, phases ...maintenance.Phase) maintenance.Status {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	var last []maintenance.Phase
	for time.Now().Before(deadline) {
		if d, ok := readStoredDoc(dir); ok {
			st, has := d.Status[pod]
			if has && (len(last) == 0 || last[len(last)-1] != st.Phase) {
				last = append(last, st.Phase)
			}
			if has && slices.Contains(phases, st.Phase) {
				return st
			}
		}
		time.Sleep(time.Millisecond)
	}
	require.FailNow(tb, "stored phase not reached", "status.%s never showed %v within %s; phases seen: %v", pod, phases, timeout, last)
	return maintenance.Status{}
}

// waitFor polls cond every 50ms until it holds; past timeout the test fails
// with what, and the last detail cond gave.
func waitFor(tb testing.TB, timeout time.Duration, what string, cond func() (bool, string)) time.Duration {
	tb.Helper()
	begin := time.Now()
	deadline := begin.Add(timeout)
	for {
		ok, detail := cond()
		if ok {
			return time.Since(begin)
		}
		if time.Now().After(deadline) {
			require.FailNow(tb, "condition not met", "%s: not within %s; last: %s", what, timeout, detail)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// routes returns the names of the servers s has a route to.
func routes(s *server.Server) []string {
	rz, err := s.Routez(&server.RoutezOptions{})
	if err != nil {
		return []string{"routez error: " + err.Error()}
	}
	out := make([]string, 0, len(rz.Routes))
	for _, r := range rz.Routes {
		out = append(out, r.RemoteName)
	}
	sort.Strings(out)
	return out
}

// gatewayLinks lists s's gateway connections as "out:<dc>:<server id>" and
// "in:<dc>:<server id>".
func gatewayLinks(s *server.Server) []string {
	gz, err := s.Gatewayz(&server.GatewayzOptions{})
	if err != nil {
		return []string{"gatewayz error: " + err.Error()}
	}
	var out []string
	for dc, rg := range gz.OutboundGateways {
		if rg != nil && rg.Connection != nil {
			out = append(out, fmt.Sprintf("out:%s:%s", dc, rg.Connection.Name))
		}
	}
	for dc, list := range gz.InboundGateways {
		for _, rg := range list {
			if rg != nil && rg.Connection != nil {
				out = append(out, fmt.Sprintf("in:%s:%s", dc, rg.Connection.Name))
			}
		}
	}
	sort.Strings(out)
	return out
}

// requireFenced requires that pod is isolated as its own server and its
// peers see it: no route of its own, no peer with a route to it, no gateway
// connection to or from it, and JetStream off.
func requireFenced(tb testing.TB, c *natsraft.Embedded, pod string) {
	tb.Helper()
	n := c.Node(pod)
	require.NotNil(tb, n, "node %s", pod)
	require.True(tb, n.Running(), "%s running", pod)
	require.True(tb, isFenced(tb, n), "%s fenced", pod)
	require.True(tb, n.Quiesced(), "%s quiesced", pod)
	s := n.Server()
	require.Empty(tb, routes(s), "Routez of %s", pod)
	require.Empty(tb, gatewayLinks(s), "Gatewayz of %s", pod)
	id := s.ID()
	for _, p := range c.Nodes() {
		if p.Name() == pod || !p.Running() {
			continue
		}
		require.NotContains(tb, routes(p.Server()), pod, "Routez of %s", p.Name())
		for _, l := range gatewayLinks(p.Server()) {
			require.False(tb, strings.HasSuffix(l, ":"+id), "Gatewayz of %s has %s (= %s)", p.Name(), l, pod)
		}
	}
}

// requireLinked requires that pod has its routes back to every other node of
// its dc, from both ends, and an outbound gateway to every other dc.
func requireLinked(tb testing.TB, c *natsraft.Embedded, pod string) {
	tb.Helper()
	waitFor(tb, 30*time.Second, pod+" linked again", func() (bool, string) {
		n := c.Node(pod)
		if isFenced(tb, n) {
			return false, "still fenced"
		}
		mine := routes(n.Server())
		for _, p := range c.NodesOf(n.DC()) {
			if p.Name() == pod {
				continue
			}
			if !slices.Contains(mine, p.Name()) {
				return false, fmt.Sprintf("%s has no route to %s (routes %v)", pod, p.Name(), mine)
			}
			if !slices.Contains(routes(p.Server()), pod) {
				return false, fmt.Sprintf("%s has no route to %s", p.Name(), pod)
			}
		}
		links := gatewayLinks(n.Server())
		for _, dc := range c.DCs() {
			if dc == n.DC() {
				continue
			}
			if !slices.ContainsFunc(links, func(l string) bool { return strings.HasPrefix(l, "out:"+dc+":") }) {
				return false, fmt.Sprintf("%s has no outbound gateway to %s (%v)", pod, dc, links)
			}
		}
		return true, ""
	})
}

// leaderGroup is one Raft group as its leader's Jsz reports it.
type leaderGroup struct {
	Leader string
	// Followers are the other members, as the leader sees them.
	Followers []*server.PeerInfo
}

// groupsFromLeaders reads every running server's Jsz and returns each Raft
// group (keyed like the view: "_meta_", "<stream>", "<stream>/<consumer>")
// from the server that leads it: only a leader knows its followers.
func groupsFromLeaders(c *natsraft.Embedded) map[string]leaderGroup {
	out := map[string]leaderGroup{}
	for _, n := range c.Nodes() {
		s := n.Server()
		if !n.Running() || s == nil || !s.JetStreamEnabled() {
			continue
		}
		jsz, err := s.Jsz(&server.JSzOptions{Accounts: true, Streams: true, Consumer: true})
		if err != nil {
			continue
		}
		if jsz.Meta != nil && jsz.Meta.Leader == n.Name() {
			out[natsraft.MetaGroupName] = leaderGroup{Leader: n.Name(), Followers: jsz.Meta.Replicas}
		}
		for _, acc := range jsz.AccountDetails {
			for _, sd := range acc.Streams {
				if sd.Cluster != nil && sd.Cluster.Leader == n.Name() {
					out[sd.Name] = leaderGroup{Leader: n.Name(), Followers: sd.Cluster.Replicas}
				}
				for _, ci := range sd.Consumer {
					if ci != nil && ci.Cluster != nil && ci.Cluster.Leader == n.Name() {
						out[sd.Name+"/"+ci.Name] = leaderGroup{Leader: n.Name(), Followers: ci.Cluster.Replicas}
					}
				}
			}
		}
	}
	return out
}

// currentEverywhere reports whether pod is caught up in each of groups as
// their leaders see it, by the product's rule (current, or in contact and at
// most natsraft.ReadyLag behind); a group it leads counts as caught up.
func currentEverywhere(c *natsraft.Embedded, pod string, groups ...string) (bool, string) {
	led := groupsFromLeaders(c)
	for _, name := range groups {
		g, ok := led[name]
		switch {
		case !ok:
			return false, fmt.Sprintf("group %s has no leader", name)
		case g.Leader == pod:
			continue
		}
		i := slices.IndexFunc(g.Followers, func(p *server.PeerInfo) bool { return p.Name == pod })
		if i < 0 {
			return false, fmt.Sprintf("group %s: leader %s does not list %s", name, g.Leader, pod)
		}
		// Caught up as the product defines it (natsraft.ReadyLag): under
		// writes a follower is rarely at lag 0 at the moment one looks.
		if p := g.Followers[i]; p.Offline || p.Active > natsraft.ActiveThreshold || (!p.Current && p.Lag > natsraft.ReadyLag) {
			return false, fmt.Sprintf("group %s: leader %s sees %s current=%t offline=%t lag=%d active=%s",
				name, g.Leader, pod, p.Current, p.Offline, p.Lag, p.Active)
		}
	}
	return true, ""
}

// streamStates returns the state of stream in account APP on every running
// server that holds it, by server name.
func streamStates(c *natsraft.Embedded, stream string) map[string]server.StreamState {
	out := map[string]server.StreamState{}
	for _, n := range c.Nodes() {
		s := n.Server()
		if !n.Running() || s == nil || !s.JetStreamEnabled() {
			continue
		}
		jsz, err := s.Jsz(&server.JSzOptions{Account: natsraft.AppAccount, Streams: true})
		if err != nil {
			continue
		}
		for _, acc := range jsz.AccountDetails {
			for _, sd := range acc.Streams {
				if sd.Name == stream {
					out[n.Name()] = sd.State
				}
			}
		}
	}
	return out
}

// tbWriter sends log lines to the test log, stamped to the millisecond.
type tbWriter struct{ tb testing.TB }

func (w tbWriter) Write(p []byte) (int, error) {
	w.tb.Log(time.Now().Format("15:04:05.000"), strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// isFenced is f's Fenced, the test failing when it cannot be read.
func isFenced(tb testing.TB, f interface{ Fenced() (bool, error) }) bool {
	tb.Helper()
	fenced, err := f.Fenced()
	require.NoError(tb, err)
	return fenced
}

// restartReady starts the stopped server of pod again and waits until its
// sidecar sc answers /readyz 200, which must mean caught up in every demo
// group.
func (e *scEnv) restartReady(t *testing.T, sc *liveSidecar, pod string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), appStartTimeout)
	defer cancel()
	require.NoError(t, e.cluster.RestartNode(ctx, pod))
	took := waitFor(t, 60*time.Second, "the restarted node is ready", func() (bool, string) {
		code, body := e.call(t, sc, "", http.MethodGet, "/readyz", "")
		return code == http.StatusOK, body
	})
	t.Logf("%s ready %.2fs after its restart", pod, took.Seconds())
	ok, detail := currentEverywhere(e.cluster, pod, demoGroups...)
	if !ok && strings.Contains(detail, "has no leader") {
		// A stopped leader leaves its group electing for a few seconds,
		// and readiness admits a member whose log is as far as any
		// member's meanwhile (natsraft's ElectionGrace): then the winner,
		// once there is one, must count the pod current.
		waitFor(t, natsraft.ElectionGrace+5*time.Second, "caught up once its groups are led", func() (bool, string) {
			ok, detail = currentEverywhere(e.cluster, pod, demoGroups...)
			return ok, detail
		})
		return
	}
	assert.True(t, ok, "ready means caught up: %s", detail)
}

// freePort returns a loopback port that was free when asked, for a
// listener whose address must be known before it starts.
func freePort(tb testing.TB) string {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(tb, err)
	defer ln.Close()
	_, port, err := net.SplitHostPort(ln.Addr().String())
	require.NoError(tb, err)
	return port
}

//go:build linux

package natsraft

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Ports of the idle-connection test, as a NATS pod has them.
const (
	kfClusterPort = 6222
	kfGatewayPort = 7222
	kfClientPort  = 4222
)

// connPair is one TCP connection seen from both ends.
type connPair struct {
	name         string
	dialer, peer net.Conn
	fenced       bool // on a fenced port
}

// TestKernelFenceMechanism checks the kernel side alone on plain TCP
// connections between two network namespaces: firewall rules leave idle
// connections up, the socket kill resets both ends at once, new
// connections on the fenced ports are refused (with a reset, both ways)
// while the client port stays open, and deleting the table restores it.
func TestKernelFenceMechanism(t *testing.T) {
	lab := newNetLab(t, 2)
	a, b := lab.Node(0), lab.Node(1)
	f := NewKernelFence(KernelFenceOptions{
		ClusterPort: kfClusterPort, GatewayPort: kfGatewayPort, NetNS: a.Path(), Logger: zerolog.Nop(),
	})

	accepted := map[string]chan net.Conn{}
	for _, n := range []labNode{a, b} {
		for _, port := range []int{kfClusterPort, kfGatewayPort, kfClientPort} {
			ln, err := listenIn(n.Path(), "tcp", net.JoinHostPort(n.IP, strconv.Itoa(port)))
			require.NoError(t, err)
			t.Cleanup(func() { ln.Close() })
			ch := make(chan net.Conn, 16)
			accepted[ln.Addr().String()] = ch
			go func() {
				for {
					c, err := ln.Accept()
					if err != nil {
						return
					}
					t.Cleanup(func() { c.Close() })
					ch <- c
				}
			}()
		}
	}
	connect := func(t *testing.T, from, to labNode, port int) (net.Conn, net.Conn, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		addr := net.JoinHostPort(to.IP, strconv.Itoa(port))
		c, err := dialIn(ctx, from.Path(), "tcp", addr)
		if err != nil {
			return nil, nil, err
		}
		t.Cleanup(func() { c.Close() })
		select {
		case p := <-accepted[addr]:
			return c, p, nil
		case <-ctx.Done():
			return nil, nil, ctx.Err()
		}
	}

	var pairs []connPair
	for _, tc := range []struct {
		from, to labNode
		port     int
		fenced   bool
	}{
		{b, a, kfClusterPort, true}, {a, b, kfClusterPort, true},
		{b, a, kfGatewayPort, true}, {a, b, kfGatewayPort, true},
		{b, a, kfClientPort, false}, {a, b, kfClientPort, false},
	} {
		c, p, err := connect(t, tc.from, tc.to, tc.port)
		require.NoError(t, err)
		pairs = append(pairs, connPair{name: tc.from.IP + "->" + tc.to.IP + ":" + strconv.Itoa(tc.port), dialer: c, peer: p, fenced: tc.fenced})
	}

	require.False(t, isFenced(t, f), "no table before the fence")
	require.NoError(t, f.applyTable())
	require.NoError(t, f.applyTable(), "replacing the table is idempotent")
	assert.True(t, isFenced(t, f))
	assert.True(t, isFenced(t, NewKernelFence(KernelFenceOptions{NetNS: a.Path(), Logger: zerolog.Nop()})),
		"a new fence (a restarted sidecar) sees the table")
	assert.False(t, isFenced(t, NewKernelFence(KernelFenceOptions{NetNS: b.Path(), Logger: zerolog.Nop()})),
		"the peer's namespace has no table")
	// Both chains first accept resets; then, per fenced port and direction,
	// input rejects with a reset and output rejects a new connection and
	// drops the rest.
	assertRules(t, f, 1+2*2, 1+2*2*2)

	t.Run("rules alone leave idle connections up", func(t *testing.T) {
		deadline := time.Now().Add(200 * time.Millisecond)
		for _, p := range pairs {
			for _, c := range []net.Conn{p.dialer, p.peer} {
				require.NoError(t, c.SetReadDeadline(deadline))
			}
		}
		for _, p := range pairs {
			for _, c := range []net.Conn{p.dialer, p.peer} {
				_, err := c.Read(make([]byte, 1))
				var ne net.Error
				assert.True(t, errors.As(err, &ne) && ne.Timeout(), "%s: idle connection is still up, want a timeout, got %v", p.name, err)
			}
		}
	})

	killed, err := f.killSockets()
	require.NoError(t, err)
	assert.Equal(t, 4, killed, "the four connections on fenced ports, seen from the fenced namespace; listeners and the client port are spared")
	killed, err = f.killSockets()
	require.NoError(t, err)
	assert.Zero(t, killed, "nothing left to destroy")

	t.Run("socket kill resets both ends at once", func(t *testing.T) {
		for _, p := range pairs {
			if !p.fenced {
				continue
			}
			for _, c := range []net.Conn{p.dialer, p.peer} {
				require.NoError(t, c.SetReadDeadline(time.Now().Add(2*time.Second)))
				start := time.Now()
				_, err := c.Read(make([]byte, 1))
				require.Error(t, err, p.name)
				assert.True(t, errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.ECONNABORTED),
					"%s: want a reset or an abort, got %v", p.name, err)
				assert.Less(t, time.Since(start), time.Second, p.name)
			}
		}
	})

	t.Run("client connections survive", func(t *testing.T) {
		for _, p := range pairs {
			if p.fenced {
				continue
			}
			require.NoError(t, p.peer.SetDeadline(time.Now().Add(2*time.Second)))
			_, err := p.dialer.Write([]byte("x"))
			require.NoError(t, err, p.name)
			buf := make([]byte, 1)
			_, err = p.peer.Read(buf)
			require.NoError(t, err, p.name)
		}
	})

	t.Run("new connections", func(t *testing.T) {
		for _, tc := range []struct {
			from, to labNode
			port     int
			refused  bool
		}{
			{b, a, kfClusterPort, true}, // inbound on the cluster port
			{a, b, kfClusterPort, true}, // outbound to a peer's cluster port
			{b, a, kfGatewayPort, true}, // inbound gateway
			{a, b, kfGatewayPort, true}, // outbound gateway
			{b, a, kfClientPort, false}, // clients stay welcome
			{a, b, kfClientPort, false}, // and so do outbound connections to other ports
		} {
			name := tc.from.IP + "->" + tc.to.IP + ":" + strconv.Itoa(tc.port)
			start := time.Now()
			_, _, err := connect(t, tc.from, tc.to, tc.port)
			if tc.refused {
				// Refused, not timed out: the reset of the reject rule gets
				// through thanks to the rst rule.
				assert.ErrorIs(t, err, syscall.ECONNREFUSED, name)
				assert.Less(t, time.Since(start), time.Second, name)
			} else {
				assert.NoError(t, err, name)
			}
		}
	})

	require.NoError(t, f.removeTable())
	require.NoError(t, f.removeTable(), "removing a missing table is no error")
	assert.False(t, isFenced(t, f))
	t.Run("unfenced", func(t *testing.T) {
		for _, tc := range []struct {
			from, to labNode
			port     int
		}{{b, a, kfClusterPort}, {a, b, kfClusterPort}, {b, a, kfGatewayPort}} {
			_, _, err := connect(t, tc.from, tc.to, tc.port)
			assert.NoError(t, err)
		}
	})
}

func TestKernelFenceOptionsValidate(t *testing.T) {
	reload := func(context.Context) error { return nil }
	valid := KernelFenceOptions{Name: "nats-0", MonitorURL: "http://127.0.0.1:8222", ConfigInclude: "/etc/nats/quiesce.conf", Reload: reload}
	for _, tc := range []struct {
		name  string
		edit  func(*KernelFenceOptions)
		wants []string // substrings of the error; none: valid
	}{
		{"valid", func(*KernelFenceOptions) {}, nil},
		{"gateway", func(o *KernelFenceOptions) { o.GatewayPort = 7222 }, nil},
		{"ports out of range", func(o *KernelFenceOptions) { o.ClusterPort, o.GatewayPort = -1, 70000 },
			[]string{"cluster port -1", "gateway port 70000"}},
		{"gateway on the cluster port", func(o *KernelFenceOptions) { o.GatewayPort = DefaultClusterPort },
			[]string{"is the cluster port"}},
		{"everything missing at once", func(o *KernelFenceOptions) { *o = KernelFenceOptions{} },
			[]string{"server's name is required", "monitoring URL is required", "included configuration file", "system-account connection"}},
		{"relative monitoring URL", func(o *KernelFenceOptions) { o.MonitorURL = "localhost:8222" },
			[]string{"not an absolute URL"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := valid
			tc.edit(&o)
			err := o.Validate()
			if len(tc.wants) == 0 {
				assert.NoError(t, err)
				return
			}
			require.Error(t, err)
			for _, w := range tc.wants {
				assert.ErrorContains(t, err, w)
			}
		})
	}
}

// TestKernelFenceIncludeFile checks the file and signal plumbing that
// needs neither root nor a server.
func TestKernelFenceIncludeFile(t *testing.T) {
	t.Run("EnsureInclude", func(t *testing.T) {
		for _, tc := range []struct {
			name     string
			existing string // "" means no file
			want     string
		}{
			{"creates the file switched on", "", quiesceIncludeOn},
			{"keeps a running maintenance", quiesceIncludeOff, quiesceIncludeOff},
			{"keeps what the operator wrote", "# mine\n", "# mine\n"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				path := filepath.Join(t.TempDir(), "quiesce.conf")
				if tc.existing != "" {
					require.NoError(t, os.WriteFile(path, []byte(tc.existing), 0o600))
				}
				f := NewKernelFence(KernelFenceOptions{ConfigInclude: path, Logger: zerolog.Nop()})
				require.NoError(t, f.EnsureInclude())
				got, err := os.ReadFile(path)
				require.NoError(t, err)
				assert.Equal(t, tc.want, string(got))
			})
		}
		assert.Error(t, NewKernelFence(KernelFenceOptions{Logger: zerolog.Nop()}).EnsureInclude(), "no file configured")
	})

	t.Run("SignalReload", func(t *testing.T) {
		dir := t.TempDir()
		for _, tc := range []struct{ name, content string }{
			{"missing pid file", ""},
			{"no pid in the file", "nats\n"},
			{"negative pid", "-1\n"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				path := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "-"))
				if tc.content != "" {
					require.NoError(t, os.WriteFile(path, []byte(tc.content), 0o600))
				}
				assert.Error(t, SignalReload(path)(context.Background()))
			})
		}
		t.Run("signals the pid of the file", func(t *testing.T) {
			cmd := exec.Command("sleep", "60")
			require.NoError(t, cmd.Start())
			t.Cleanup(func() { _ = cmd.Process.Kill() })
			path := filepath.Join(dir, "nats.pid")
			require.NoError(t, os.WriteFile(path, []byte(strconv.Itoa(cmd.Process.Pid)+"\n"), 0o600))
			require.NoError(t, SignalReload(path)(context.Background()))
			err := cmd.Wait()
			var exit *exec.ExitError
			require.ErrorAs(t, err, &exit)
			ws, ok := exit.Sys().(syscall.WaitStatus)
			require.True(t, ok)
			assert.Equal(t, syscall.SIGHUP, ws.Signal())
		})
	})
}

// assertRules checks how many rules the input and output chains of the
// fence's table hold.
func assertRules(t *testing.T, f *KernelFence, input, output int) {
	t.Helper()
	c, done, err := f.nft()
	require.NoError(t, err)
	defer done()
	tab := f.table()
	for chain, want := range map[string]int{"input": input, "output": output} {
		rules, err := c.GetRules(tab, &nftables.Chain{Name: chain, Table: tab})
		require.NoError(t, err)
		assert.Len(t, rules, want, chain)
	}
}

// The real cluster of the NATS test: three nats-server processes, one per
// lab namespace, configured as the pods of a StatefulSet would be (same
// ports everywhere, every route listed), each including the file that the
// fence rewrites to quiesce it.

const (
	procStream   = "bench"
	procSubject  = "bench.x"
	procSettle   = 1500 * time.Millisecond
	procAppUser  = "app"
	procSysUser  = "sys"
	procPassword = "secret"
)

// natsProc is one nats-server process in a lab namespace.
type natsProc struct {
	name    string
	node    labNode
	conf    string
	include string
	pidFile string
	logFile string
	cmd     *exec.Cmd
	exited  chan struct{}
}

func (p *natsProc) monitorURL() string { return "http://" + p.node.IP + ":8222" }
func (p *natsProc) clientURL() string  { return "nats://" + p.node.IP + ":4222" }

// natsLab is the running cluster and how the test reaches it.
type natsLab struct {
	lab   *netLab
	bin   string
	procs []*natsProc
	http  *http.Client
}

// buildNATSServer builds the nats-server of the module's go.mod.
func buildNATSServer(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "nats-server")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, "go", "build", "-o", bin, "github.com/nats-io/nats-server/v2").CombinedOutput()
	require.NoError(t, err, "build nats-server: %s", out)
	return bin
}

// startNATSLab starts a nats-server in every node namespace of lab and
// waits for the full mesh of routes and a meta leader.
func startNATSLab(t *testing.T, lab *netLab, bin string) *natsLab {
	t.Helper()
	c := &natsLab{lab: lab, bin: bin, http: &http.Client{
		Transport: &http.Transport{DialContext: lab.DialContext, DisableKeepAlives: true},
		Timeout:   5 * time.Second,
	}}
	var routes []string
	for _, n := range lab.nodes {
		routes = append(routes, fmt.Sprintf("%q", "nats-route://"+n.IP+":6222"))
	}
	for i, n := range lab.nodes {
		dir := t.TempDir()
		p := &natsProc{
			name: fmt.Sprintf("n%d", i+1), node: n,
			conf:    filepath.Join(dir, "nats.conf"),
			include: filepath.Join(dir, "prober-quiesce.conf"),
			pidFile: filepath.Join(dir, "nats.pid"),
			logFile: filepath.Join(dir, "nats.log"),
			exited:  make(chan struct{}),
		}
		conf := fmt.Sprintf(`server_name: %q
listen: "0.0.0.0:4222"
http: "0.0.0.0:8222"
pid_file: %q
system_account: %s
accounts {
  %s { jetstream: enabled, users: [{user: %q, password: %q}] }
  %s { users: [{user: %q, password: %q}] }
}
jetstream { store_dir: %q, max_memory_store: 64MB, max_file_store: 1GB }
cluster { name: "dc1", listen: "0.0.0.0:6222", routes: [%s] }
gateway { name: "dc1", listen: "0.0.0.0:7222" }
include "prober-quiesce.conf"
`, p.name, p.pidFile, SystemAccount, AppAccount, procAppUser, procPassword,
			SystemAccount, procSysUser, procPassword, filepath.Join(dir, "js"), strings.Join(routes, ", "))
		require.NoError(t, os.WriteFile(p.conf, []byte(conf), 0o600))
		require.NoError(t, NewKernelFence(KernelFenceOptions{ConfigInclude: p.include, Logger: zerolog.Nop()}).EnsureInclude())
		c.start(t, p)
		c.procs = append(c.procs, p)
	}
	require.Eventually(t, func() bool {
		for _, p := range c.procs {
			if len(c.routes(p)) != len(c.procs)-1 || c.metaLeader(p) == "" {
				return false
			}
		}
		return true
	}, 30*time.Second, 50*time.Millisecond, "cluster did not form")
	return c
}

// start runs p's server and stops it when the test ends.
func (c *natsLab) start(t *testing.T, p *natsProc) {
	logf, err := os.Create(p.logFile)
	require.NoError(t, err)
	p.cmd = p.node.Command(c.bin, "-c", p.conf)
	p.cmd.Stdout, p.cmd.Stderr = logf, logf
	require.NoError(t, p.cmd.Start())
	go func() {
		_ = p.cmd.Wait()
		logf.Close()
		close(p.exited)
	}()
	t.Cleanup(func() {
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.exited:
		case <-time.After(10 * time.Second):
			_ = p.cmd.Process.Kill()
			<-p.exited
		}
		if t.Failed() {
			b, _ := os.ReadFile(p.logFile)
			lines := strings.Split(strings.TrimSpace(string(b)), "\n")
			t.Logf("last lines of %s's log:\n%s", p.name, strings.Join(lines[max(0, len(lines)-40):], "\n"))
		}
	})
}

func (c *natsLab) get(p *natsProc, path string, into any) error {
	resp, err := c.http.Get(p.monitorURL() + path)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: status %d", path, resp.StatusCode)
	}
	return json.NewDecoder(resp.Body).Decode(into)
}

// routes returns the names p has a route to (nil if it does not answer).
func (c *natsLab) routes(p *natsProc) []string {
	var rz routezDoc
	if c.get(p, "/routez", &rz) != nil {
		return nil
	}
	var out []string
	for _, r := range rz.Routes {
		if !slices.Contains(out, r.RemoteName) {
			out = append(out, r.RemoteName)
		}
	}
	sort.Strings(out)
	return out
}

func (c *natsLab) metaLeader(p *natsProc) string {
	var jsz struct {
		Meta *struct {
			Leader string `json:"leader"`
		} `json:"meta_cluster"`
	}
	if c.get(p, "/jsz", &jsz) != nil || jsz.Meta == nil {
		return ""
	}
	return jsz.Meta.Leader
}

// raftTerm returns the term p reports for the Raft group of the app
// account.
func (c *natsLab) raftTerm(p *natsProc, group string) (uint64, error) {
	var rz map[string]map[string]struct {
		Term uint64 `json:"term"`
	}
	if err := c.get(p, "/raftz?acc="+AppAccount+"&group="+group, &rz); err != nil {
		return 0, err
	}
	g, ok := rz[AppAccount][group]
	if !ok {
		return 0, fmt.Errorf("%s has no group %s", p.name, group)
	}
	return g.Term, nil
}

func (c *natsLab) proc(name string) *natsProc {
	for _, p := range c.procs {
		if p.name == name {
			return p
		}
	}
	return nil
}

// connect connects to the given servers only, from the hub namespace.
func (c *natsLab) connect(t *testing.T, user string, procs []*natsProc, opts ...nats.Option) *nats.Conn {
	t.Helper()
	var urls []string
	for _, p := range procs {
		urls = append(urls, p.clientURL())
	}
	opts = append([]nats.Option{nats.UserInfo(user, procPassword), nats.SetCustomDialer(c.lab),
		nats.MaxReconnects(-1), nats.ReconnectWait(50 * time.Millisecond), nats.DontRandomize()}, opts...)
	nc, err := nats.Connect(strings.Join(urls, ","), opts...)
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	return nc
}

// fence returns a kernel fence for p, as p's sidecar would have it.
func (c *natsLab) fence(p *natsProc, reload func(context.Context) error, sys *nats.Conn, log zerolog.Logger) *KernelFence {
	return NewKernelFence(KernelFenceOptions{
		Name:          p.name,
		NetNS:         p.node.Path(),
		GatewayPort:   kfGatewayPort,
		ConfigInclude: p.include,
		Reload:        reload,
		System:        sys,
		MonitorURL:    p.monitorURL(),
		Peers: func(context.Context) ([]string, error) {
			var out []string
			for _, q := range c.procs {
				if q != p {
					out = append(out, q.monitorURL())
				}
			}
			return out, nil
		},
		HTTPClient: c.http,
		Logger:     log,
	})
}

// assertIsolated checks from every side that p has no route.
func (c *natsLab) assertIsolated(t *testing.T, p *natsProc) {
	t.Helper()
	assert.Empty(t, c.routes(p), "%s's own routes", p.name)
	for _, q := range c.procs {
		if q != p {
			assert.NotContains(t, c.routes(q), p.name, "%s's routes", q.name)
		}
	}
}

// assertMesh checks that every server routes to every other.
func (c *natsLab) assertMesh(t *testing.T) {
	t.Helper()
	for _, p := range c.procs {
		assert.Len(t, c.routes(p), len(c.procs)-1, "%s's routes", p.name)
	}
}

// leadNothing steps p down from the meta group and the stream until it
// leads neither: a rejoining node can win the meta leadership, and the
// sequences measure a node without hand-off.
func (c *natsLab) leadNothing(t *testing.T, app, sys *nats.Conn, js jetstream.JetStream, p *natsProc) {
	t.Helper()
	require.Eventually(t, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		leads := false
		if c.metaLeader(p) == p.name {
			leads = true
			_, _ = sys.RequestWithContext(ctx, "$JS.API.META.LEADER.STEPDOWN", nil)
		}
		s, err := js.Stream(ctx, procStream)
		if err != nil {
			return false
		}
		info, err := s.Info(ctx)
		if err != nil || info.Cluster == nil || info.Cluster.Leader == "" {
			return false
		}
		if info.Cluster.Leader == p.name {
			leads = true
			_, _ = app.RequestWithContext(ctx, "$JS.API.STREAM.LEADER.STEPDOWN."+procStream, nil)
		}
		return !leads
	}, 30*time.Second, 100*time.Millisecond, "%s still leads", p.name)
}

// gapWriter publishes synchronously to the R3 stream at about 200 msg/s
// and records the longest pause between two acknowledgements, as the
// writegap bench does.
type gapWriter struct {
	mu     sync.Mutex
	last   time.Time
	maxGap time.Duration
	acked  int
	stop   context.CancelFunc
	done   chan struct{}
}

func startGapWriter(t *testing.T, js jetstream.JetStream) *gapWriter {
	ctx, cancel := context.WithCancel(context.Background())
	w := &gapWriter{last: time.Now(), stop: cancel, done: make(chan struct{})}
	go func() {
		defer close(w.done)
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for ctx.Err() == nil {
			pctx, pcancel := context.WithTimeout(ctx, 2*time.Second)
			_, err := js.Publish(pctx, procSubject, []byte("x"),
				jetstream.WithRetryWait(5*time.Millisecond), jetstream.WithRetryAttempts(200))
			pcancel()
			if err == nil {
				now := time.Now()
				w.mu.Lock()
				w.maxGap = max(w.maxGap, now.Sub(w.last))
				w.last = now
				w.acked++
				w.mu.Unlock()
			}
			select {
			case <-ctx.Done():
			case <-tick.C:
			}
		}
	}()
	t.Cleanup(func() { cancel(); <-w.done })
	return w
}

func (w *gapWriter) count() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.acked
}

// measure runs step and returns the longest write gap from its start
// until writes have flowed for procSettle after it returned.
func (w *gapWriter) measure(t *testing.T, step func() error) time.Duration {
	t.Helper()
	start := w.count()
	require.Eventually(t, func() bool { return w.count() >= start+20 }, 30*time.Second, 5*time.Millisecond, "writes do not flow")
	w.mu.Lock()
	w.maxGap = 0
	w.mu.Unlock()
	require.NoError(t, step())
	end := time.Now()
	require.Eventually(t, func() bool {
		w.mu.Lock()
		defer w.mu.Unlock()
		return w.last.After(end.Add(procSettle))
	}, 60*time.Second, 10*time.Millisecond, "writes did not resume")
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.maxGap
}

// waitCurrent waits until name's replica of the stream is current, as the
// stream's leader reports it, and returns how long that took from since.
func waitCurrent(t *testing.T, js jetstream.JetStream, name string, since time.Time) time.Duration {
	t.Helper()
	var detail string
	ok := assert.Eventually(t, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		s, err := js.Stream(ctx, procStream)
		if err != nil {
			detail = err.Error()
			return false
		}
		info, err := s.Info(ctx)
		if err != nil || info.Cluster == nil {
			detail = fmt.Sprint(err)
			return false
		}
		for _, r := range info.Cluster.Replicas {
			if r.Name == name {
				detail = fmt.Sprintf("current=%v lag=%d offline=%v", r.Current, r.Lag, r.Offline)
				return r.Current && r.Lag == 0 && !r.Offline
			}
		}
		detail = "leader " + info.Cluster.Leader + " lists no " + name
		return false
	}, 60*time.Second, 20*time.Millisecond)
	require.True(t, ok, "%s did not catch up: %s", name, detail)
	return time.Since(since)
}

// lockedBuffer is a log sink for zerolog that the test reads back.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// field returns the field of the last log line with the given message.
func (l *lockedBuffer) field(msg, field string) (any, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	var val any
	found := false
	for _, line := range bytes.Split(l.b.Bytes(), []byte("\n")) {
		var m map[string]any
		if json.Unmarshal(line, &m) == nil && m["message"] == msg {
			val, found = m[field]
		}
	}
	return val, found
}

// TestKernelFenceNATS fences a real nats-server process from its two
// peers, each in its own network namespace, and measures the write gap of
// an R3 stream and the catch-up for two sequences on a follower that
// leads nothing (so no hand-off is involved): (a) fence only, held until
// the fenced follower has campaigned, and (b) quiesce + fence, held as
// long. It checks that the cut is seen from every side, that the client
// and monitoring ports stay open, that Unfence restores the mesh, that
// quiesce and resume work by a reload over the system account and by
// SIGHUP, and that MoveClients moves a client to a peer.
func TestKernelFenceNATS(t *testing.T) {
	lab := newNetLab(t, 3)
	c := startNATSLab(t, lab, buildNATSServer(t))
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	admin := c.connect(t, procAppUser, c.procs)
	js, err := jetstream.New(admin)
	require.NoError(t, err)
	var group string
	require.Eventually(t, func() bool {
		cctx, ccancel := context.WithTimeout(ctx, 5*time.Second)
		defer ccancel()
		s, err := js.CreateOrUpdateStream(cctx, jetstream.StreamConfig{
			Name: procStream, Subjects: []string{"bench.>"}, Replicas: 3, Storage: jetstream.FileStorage,
		})
		if err != nil {
			return false
		}
		info, err := s.Info(cctx)
		if err != nil || info.Cluster == nil || info.Cluster.Leader == "" {
			return false
		}
		group = info.Cluster.RaftGroup
		return true
	}, 30*time.Second, 100*time.Millisecond, "stream was not created")

	// The target leads neither the stream nor the meta group.
	var x, via *natsProc
	require.Eventually(t, func() bool {
		info, err := js.Stream(ctx, procStream)
		if err != nil {
			return false
		}
		si, err := info.Info(ctx)
		if err != nil || si.Cluster == nil || si.Cluster.Leader == "" {
			return false
		}
		meta := c.metaLeader(c.procs[0])
		for _, p := range c.procs {
			if p.name != si.Cluster.Leader && p.name != meta {
				x = p
			}
		}
		return x != nil
	}, 10*time.Second, 50*time.Millisecond)
	for _, p := range c.procs {
		if p != x {
			via = p
			break
		}
	}
	t.Logf("fencing %s (a follower that leads nothing), writing through %s", x.name, via.name)

	pub := c.connect(t, procAppUser, []*natsProc{via}, nats.IgnoreDiscoveredServers())
	pjs, err := jetstream.New(pub)
	require.NoError(t, err)
	w := startGapWriter(t, pjs)

	sys := c.connect(t, procSysUser, []*natsProc{x}, nats.IgnoreDiscoveredServers())
	var logs lockedBuffer
	fSys := c.fence(x, nil, sys, zerolog.New(&logs))
	fSig := c.fence(x, SignalReload(x.pidFile), sys, zerolog.Nop())
	require.False(t, isFenced(t, fSys))
	require.False(t, fSys.Quiesced())

	type result struct {
		enter, leave, catchUp, fenceTook time.Duration
		held                             int
	}
	var a, b result

	ok := t.Run("fence only", func(t *testing.T) {
		c.leadNothing(t, admin, sys, js, x)
		before, err := c.raftTerm(x, group)
		require.NoError(t, err)
		fenced := 0
		a.enter = w.measure(t, func() error {
			start := time.Now()
			err := fSys.Fence(ctx)
			a.fenceTook = time.Since(start)
			fenced = w.count()
			return err
		})
		assert.Less(t, a.fenceTook, 2*time.Second, "the socket kill cuts routes at once")
		killed, _ := logs.field("fenced", "sockets")
		assert.Greater(t, killed, float64(0), "Fence destroyed the route sockets")
		assert.True(t, isFenced(t, fSys))
		assert.True(t, isFenced(t, c.fence(x, nil, nil, zerolog.Nop())), "a restarted sidecar sees the fence")
		c.assertIsolated(t, x)

		// Clients and monitoring stay welcome on the fenced server.
		direct := c.connect(t, procAppUser, []*natsProc{x}, nats.IgnoreDiscoveredServers())
		require.NoError(t, direct.Publish("core.ping", []byte("x")))
		require.NoError(t, direct.FlushTimeout(2*time.Second))
		assert.Equal(t, x.name, direct.ConnectedServerName())

		// Hold the fence until the isolated follower has campaigned: its
		// term runs ahead of the group's.
		require.Eventually(t, func() bool {
			term, err := c.raftTerm(x, group)
			return err == nil && term > before
		}, 30*time.Second, 50*time.Millisecond, "the fenced follower never campaigned")
		a.held = w.count() - fenced

		start := time.Now()
		a.leave = w.measure(t, func() error { return fSys.Unfence(ctx) })
		assert.False(t, isFenced(t, fSys))
		c.assertMesh(t)
		a.catchUp = waitCurrent(t, js, x.name, start)
	})
	require.True(t, ok, "fence only")

	ok = t.Run("move clients", func(t *testing.T) {
		moved := c.connect(t, procAppUser, append([]*natsProc{x}, slices.DeleteFunc(slices.Clone(c.procs), func(p *natsProc) bool { return p == x })...))
		require.Equal(t, x.name, moved.ConnectedServerName())
		require.NoError(t, fSys.MoveClients(ctx))
		assert.Eventually(t, func() bool {
			return moved.IsConnected() && moved.ConnectedServerName() != x.name
		}, 10*time.Second, 20*time.Millisecond, "the client is still on %s", x.name)
		assert.True(t, sys.IsConnected() && sys.ConnectedServerName() == x.name, "the fence's own connection stays")
	})
	require.True(t, ok, "move clients")

	ok = t.Run("quiesce and fence", func(t *testing.T) {
		c.leadNothing(t, admin, sys, js, x)
		fenced := 0
		b.enter = w.measure(t, func() error {
			if err := fSys.Quiesce(ctx); err != nil { // reload over the system account
				return err
			}
			start := time.Now()
			err := fSys.Fence(ctx)
			b.fenceTook = time.Since(start)
			fenced = w.count()
			return err
		})
		assert.True(t, fSys.Quiesced())
		assert.True(t, fSig.Quiesced(), "the state is the server's, not the fence's")
		include, err := os.ReadFile(x.include)
		require.NoError(t, err)
		assert.Contains(t, string(include), "jetstream { enabled: false }")
		c.assertIsolated(t, x)
		require.NoError(t, fSig.Fence(ctx), "Fence is idempotent")
		require.NoError(t, fSig.Quiesce(ctx), "Quiesce is idempotent")

		// Hold as many writes as the fence-only run did.
		require.Eventually(t, func() bool { return w.count()-fenced >= a.held }, 60*time.Second, 20*time.Millisecond)
		b.held = w.count() - fenced

		start := time.Now()
		b.leave = w.measure(t, func() error {
			if err := fSig.Unfence(ctx); err != nil {
				return err
			}
			return fSig.Resume(ctx) // SIGHUP
		})
		assert.False(t, fSys.Quiesced())
		include, err = os.ReadFile(x.include)
		require.NoError(t, err)
		assert.NotContains(t, string(include), "enabled: false")
		c.assertMesh(t)
		b.catchUp = waitCurrent(t, js, x.name, start)
		require.NoError(t, fSig.Resume(ctx), "Resume is idempotent")
		require.NoError(t, fSig.Unfence(ctx), "Unfence is idempotent")
	})
	require.True(t, ok, "quiesce and fence")

	t.Logf("kernel fence on %s, R3 stream, sync publishes ~200 msg/s through %s", x.name, via.name)
	t.Logf("%-22s %10s %10s %10s %12s %8s", "sequence", "Fence", "enter gap", "leave gap", "caught up", "held")
	for _, r := range []struct {
		name string
		r    result
	}{{"(a) fence only", a}, {"(b) quiesce + fence", b}} {
		t.Logf("%-22s %9.3fs %9.3fs %9.3fs %11.3fs %8d", r.name, r.r.fenceTook.Seconds(), r.r.enter.Seconds(),
			r.r.leave.Seconds(), r.r.catchUp.Seconds(), r.r.held)
	}
}

// TestKernelFenceFencedUnreadable checks what Fenced answers when nftables
// cannot be read: an error, never a guess either way.
func TestKernelFenceFencedUnreadable(t *testing.T) {
	f := NewKernelFence(KernelFenceOptions{NetNS: filepath.Join(t.TempDir(), "no-such-netns"), Logger: zerolog.Nop()})
	fenced, err := f.Fenced()
	require.Error(t, err, "the namespace is unreadable")
	assert.Contains(t, err.Error(), "read the nftables table "+DefaultFenceTable)
	assert.False(t, fenced)
}

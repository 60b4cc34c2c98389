package natsraft

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
)

// Accounts of the embedded cluster.
const (
	// AppAccount is the account the applications (and the demo stream) live in.
	AppAccount = "APP"
	// SystemAccount is the system account: meta leadership and server
	// requests ($SYS.REQ.…) go through it. Dial also accepts "$SYS".
	SystemAccount = "SYS"
)

// The demo stream and consumer StartEmbedded creates when asked to.
const (
	DemoStream   = "demo"
	DemoConsumer = "demo-consumer"
	DemoSubjects = "demo.>"
)

// embeddedUsers maps an account to the user/password of the embedded
// cluster's configuration.
var embeddedUsers = map[string][2]string{
	AppAccount:    {"app", "app"},
	SystemAccount: {"sys", "sys"},
}

// Default timeouts for calls whose context carries no deadline.
const (
	embeddedStartTimeout = 60 * time.Second
	embeddedOpTimeout    = 30 * time.Second
)

// EmbeddedOptions configures an in-process NATS JetStream cluster.
type EmbeddedOptions struct {
	// Topology is the number of nodes per dc; default []int{3}: one dc "dc1"
	// of nats-0..2. More than one entry builds a supercluster of clusters
	// dc1, dc2, … joined over gateways, with nodes nats-dc<k>-<i>.
	Topology []int
	// DataDir is the JetStream store root (each node keeps its store in
	// DataDir/<name>); "" means a new temporary directory removed on Close.
	DataDir string
	// ClientPort is the first client port (4222 gives 4222, 4223, …); 0
	// picks random free ports.
	ClientPort int
	// MonitorPort is the first monitoring port (8222 gives 8222, 8223, …);
	// 0 picks random free ports.
	MonitorPort int
	// Demo creates the demo stream and its durable consumer at start.
	Demo bool
	// Logger receives the servers' logs and the cluster's own events.
	Logger zerolog.Logger
}

// Endpoint is one node's monitoring address, as the collector sweeps it.
type Endpoint struct {
	Name       string `json:"name"`
	DC         string `json:"dc"`
	MonitorURL string `json:"monitorURL"`
	// ReportURL is where the node's own sidecar serves the report of its
	// server (GET /local/report), "" when it has none: a collector then
	// asks the server itself.
	ReportURL string `json:"reportURL,omitempty"`
}

// Embedded is a NATS JetStream cluster (or supercluster) running inside this
// process, each node's cluster and gateway ports behind a gate so that a node
// can be fenced off from its peers without privileges.
type Embedded struct {
	log     zerolog.Logger
	dataDir string
	ownData bool
	confDir string
	fab     *fabric
	nodes   []*EmbeddedNode
	dcs     []string
	multiDC bool
	// monitorClient reads the nodes' monitoring endpoints (the gate
	// fence's link verifier).
	monitorClient *http.Client

	closeOnce sync.Once
	closeErr  error
}

// nodeState is the life cycle of one embedded server.
type nodeState int

const (
	nodeStopped nodeState = iota
	nodeStarting
	nodeRunning
)

// EmbeddedNode is one server of an Embedded cluster. Its name is the pod
// name the rest of the prober uses.
type EmbeddedNode struct {
	e        *Embedded
	name     string
	dc       string
	storeDir string
	confPath string
	route    *gate
	gateway  *gate // nil when the topology has a single dc
	monitor  *monitor
	log      zerolog.Logger

	mu         sync.Mutex
	srv        *server.Server
	state      nodeState
	clientPort int // -1 = random until the first start
	httpPort   int
	// confEdit, when set, rewrites the configuration before each start
	// (fault injection in the tests, see faults_inject_test.go).
	confEdit func(string) string
	// shutdown is the JetStream shutdown a quiesce started, until it
	// ends (see Quiesce).
	shutdown *jsShutdown
	// redials counts the unfences that made the node dial its routes at
	// once; it spells the node's route URLs (see redial).
	redials int
}

// StartEmbedded starts every node of the topology concurrently and returns
// once the JetStream meta group has a leader (and, with Demo, once the demo
// stream and consumer exist and have leaders). On error everything started
// is shut down again.
func StartEmbedded(ctx context.Context, o EmbeddedOptions) (*Embedded, error) {
	topo := o.Topology
	if len(topo) == 0 {
		topo = []int{3}
	}
	total := 0
	for i, n := range topo {
		if n < 1 {
			return nil, fmt.Errorf("start embedded: dc%d has %d nodes, need at least 1", i+1, n)
		}
		total += n
	}
	for _, p := range []struct {
		name  string
		first int
	}{{"client", o.ClientPort}, {"monitor", o.MonitorPort}} {
		if p.first < 0 || p.first+total-1 > 65535 {
			return nil, fmt.Errorf("start embedded: %s ports %d..%d out of range", p.name, p.first, p.first+total-1)
		}
	}

	e := &Embedded{log: o.Logger, fab: newFabric(), multiDC: len(topo) > 1,
		monitorClient: &http.Client{Timeout: monitorRequestTimeout}}
	if err := e.prepareDirs(o.DataDir); err != nil {
		return nil, err
	}
	if err := e.buildNodes(topo, o); err != nil {
		e.Close()
		return nil, err
	}

	ctx, cancel := withDefaultDeadline(ctx, embeddedStartTimeout)
	defer cancel()
	started := time.Now()
	if err := e.startAll(ctx); err != nil {
		e.Close()
		return nil, err
	}
	if err := e.waitMetaLeader(ctx); err != nil {
		e.Close()
		return nil, err
	}
	if o.Demo {
		if err := e.ensureDemo(ctx); err != nil {
			e.Close()
			return nil, err
		}
	}
	e.log.Info().Int("nodes", total).Strs("dcs", e.dcs).Dur("took", time.Since(started)).Msg("embedded cluster ready")
	return e, nil
}

func (e *Embedded) prepareDirs(dataDir string) error {
	if dataDir == "" {
		d, err := os.MkdirTemp("", "prober-js-")
		if err != nil {
			return fmt.Errorf("start embedded: data dir: %w", err)
		}
		dataDir, e.ownData = d, true
	} else if err := os.MkdirAll(dataDir, 0o755); err != nil {
		return fmt.Errorf("start embedded: data dir: %w", err)
	}
	e.dataDir = dataDir
	conf, err := os.MkdirTemp("", "prober-conf-")
	if err != nil {
		if e.ownData {
			os.RemoveAll(e.dataDir)
		}
		return fmt.Errorf("start embedded: config dir: %w", err)
	}
	e.confDir = conf
	return nil
}

// buildNodes names the nodes and opens their gates.
func (e *Embedded) buildNodes(topo []int, o EmbeddedOptions) error {
	idx := 0
	for d, size := range topo {
		dc := fmt.Sprintf("dc%d", d+1)
		e.dcs = append(e.dcs, dc)
		for i := 0; i < size; i++ {
			name := fmt.Sprintf("nats-%d", i)
			if e.multiDC {
				name = fmt.Sprintf("nats-%s-%d", dc, i)
			}
			n := &EmbeddedNode{
				e:          e,
				name:       name,
				dc:         dc,
				storeDir:   filepath.Join(e.dataDir, name),
				confPath:   filepath.Join(e.confDir, name+".conf"),
				log:        e.log.With().Str("pod", name).Logger(),
				clientPort: -1,
				httpPort:   -1,
			}
			if o.ClientPort > 0 {
				n.clientPort = o.ClientPort + idx
			}
			if o.MonitorPort > 0 {
				n.httpPort = o.MonitorPort + idx
			}
			var err error
			if n.monitor, err = newMonitor(n, n.httpPort); err != nil {
				return fmt.Errorf("start embedded: %s: %w", name, err)
			}
			n.httpPort = n.monitor.port()
			if n.route, err = newGate(gateRoute, name, e.fab, n.clusterBackend, n.log); err != nil {
				n.monitor.close()
				return fmt.Errorf("start embedded: %s: %w", name, err)
			}
			if e.multiDC {
				if n.gateway, err = newGate(gateGateway, name, e.fab, n.gatewayBackend, n.log); err != nil {
					n.monitor.close()
					n.route.close()
					return fmt.Errorf("start embedded: %s: %w", name, err)
				}
			}
			e.nodes = append(e.nodes, n)
			idx++
		}
	}
	return nil
}

func (e *Embedded) startAll(ctx context.Context) error {
	errs := make([]error, len(e.nodes))
	var wg sync.WaitGroup
	for i, n := range e.nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = n.start(ctx)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// waitMetaLeader polls until some running node leads the JetStream meta group.
func (e *Embedded) waitMetaLeader(ctx context.Context) error {
	err := pollUntil(ctx, 10*time.Millisecond, func() bool {
		return e.MetaLeader() != ""
	})
	if err != nil {
		return fmt.Errorf("wait for JetStream meta leader: %w", err)
	}
	return nil
}

// MetaLeader returns the name of the node that leads the JetStream meta
// group, "" while there is none.
func (e *Embedded) MetaLeader() string {
	for _, n := range e.nodes {
		if s := n.running(); s != nil && s.JetStreamIsLeader() {
			return n.name
		}
	}
	return ""
}

// ensureDemo creates (or confirms) the demo stream and consumer, retrying
// while the cluster is still settling, and waits until both have leaders.
func (e *Embedded) ensureDemo(ctx context.Context) error {
	nc, err := e.Dial(AppAccount)
	if err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	replicas := min(3, len(e.NodesOf(e.dcs[0])))
	scfg := jetstream.StreamConfig{
		Name:     DemoStream,
		Subjects: []string{DemoSubjects},
		Storage:  jetstream.FileStorage,
		Replicas: replicas,
	}
	if e.multiDC {
		scfg.Placement = &jetstream.Placement{Cluster: e.dcs[0]}
	}
	ccfg := jetstream.ConsumerConfig{
		Durable:   DemoConsumer,
		AckPolicy: jetstream.AckExplicitPolicy,
		Replicas:  replicas,
	}
	var last error
	attempt := 0
	err = pollUntil(ctx, 50*time.Millisecond, func() bool {
		if last != nil {
			e.log.Debug().Err(last).Int("attempt", attempt).Msg("demo not ready yet")
		}
		attempt++
		rctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		defer cancel()
		st, err := js.CreateOrUpdateStream(rctx, scfg)
		if err != nil {
			last = fmt.Errorf("stream: %w", err)
			return false
		}
		if _, err := st.CreateOrUpdateConsumer(rctx, ccfg); err != nil {
			last = fmt.Errorf("consumer: %w", err)
			return false
		}
		info, err := st.Info(rctx)
		if err != nil || info.Cluster == nil || info.Cluster.Leader == "" {
			last = fmt.Errorf("stream %s has no leader yet", DemoStream)
			return false
		}
		c, err := st.Consumer(rctx, DemoConsumer)
		if err != nil {
			last = fmt.Errorf("consumer: %w", err)
			return false
		}
		ci := c.CachedInfo()
		if ci == nil || ci.Cluster == nil || ci.Cluster.Leader == "" {
			last = fmt.Errorf("consumer %s has no leader yet", DemoConsumer)
			return false
		}
		return true
	})
	if err != nil {
		return fmt.Errorf("demo stream %s: %w (last: %v)", DemoStream, err, last)
	}
	return nil
}

// Close shuts every server down, closes the gates and removes the
// temporary directories (DataDir only when StartEmbedded created it).
func (e *Embedded) Close() error {
	e.closeOnce.Do(func() {
		var wg sync.WaitGroup
		for _, n := range e.nodes {
			wg.Add(1)
			go func() {
				defer wg.Done()
				n.stop()
			}()
		}
		wg.Wait()
		var errs []error
		for _, n := range e.nodes {
			if n.route != nil {
				errs = append(errs, n.route.close())
			}
			if n.gateway != nil {
				errs = append(errs, n.gateway.close())
			}
			if n.monitor != nil {
				errs = append(errs, n.monitor.close())
			}
		}
		if e.confDir != "" {
			errs = append(errs, os.RemoveAll(e.confDir))
		}
		if e.ownData {
			errs = append(errs, os.RemoveAll(e.dataDir))
		}
		if err := errors.Join(errs...); err != nil {
			e.closeErr = fmt.Errorf("close embedded: %w", err)
		}
	})
	return e.closeErr
}

// Nodes returns every node, in topology order.
func (e *Embedded) Nodes() []*EmbeddedNode { return append([]*EmbeddedNode(nil), e.nodes...) }

// Node returns the named node, nil if there is none.
func (e *Embedded) Node(name string) *EmbeddedNode {
	for _, n := range e.nodes {
		if n.name == name {
			return n
		}
	}
	return nil
}

// NodesOf returns the nodes of one dc, in topology order.
func (e *Embedded) NodesOf(dc string) []*EmbeddedNode {
	var out []*EmbeddedNode
	for _, n := range e.nodes {
		if n.dc == dc {
			out = append(out, n)
		}
	}
	return out
}

// DCs returns the cluster (datacenter) names.
func (e *Embedded) DCs() []string { return append([]string(nil), e.dcs...) }

// DataDir returns the JetStream store root.
func (e *Embedded) DataDir() string { return e.dataDir }

// Endpoints returns every node's monitoring endpoint, stopped nodes included.
func (e *Embedded) Endpoints() []Endpoint {
	out := make([]Endpoint, len(e.nodes))
	for i, n := range e.nodes {
		out[i] = Endpoint{Name: n.name, DC: n.dc, MonitorURL: n.MonitorURL()}
	}
	return out
}

// ClientURLs returns every node's client URL.
func (e *Embedded) ClientURLs() []string {
	out := make([]string, len(e.nodes))
	for i, n := range e.nodes {
		out[i] = n.ClientURL()
	}
	return out
}

// Dial connects to account ("APP", "SYS" or "$SYS") through the client URLs
// of every node except those named in avoid. The connection reconnects
// forever, and moves to another node when its server sends a lame-duck
// notice; with avoid it ignores servers it discovers, so it never lands on
// an avoided node.
func (e *Embedded) Dial(account string, avoid ...string) (*nats.Conn, error) {
	if account == "$SYS" {
		account = SystemAccount
	}
	cred, ok := embeddedUsers[account]
	if !ok {
		return nil, fmt.Errorf("dial: unknown account %q", account)
	}
	servers := make(map[string]string, len(e.nodes))
	for _, n := range e.nodes {
		servers[n.name] = n.ClientURL()
	}
	return dialAvoiding(account, servers, avoid,
		nats.Name("prober-embedded"),
		nats.UserInfo(cred[0], cred[1]),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(100*time.Millisecond),
		nats.Timeout(2*time.Second),
	)
}

// StopNode shuts one server down, as if its pod were lost. Its gate stays,
// refusing connections until the node is restarted.
func (e *Embedded) StopNode(name string) error {
	n := e.Node(name)
	if n == nil {
		return fmt.Errorf("stop node %q: unknown node", name)
	}
	n.stop()
	e.log.Info().Str("pod", name).Msg("node stopped")
	return nil
}

// RestartNode starts a stopped node again with the same name, ports, gates
// and store (JetStream on, as configured), and returns once it accepts
// connections. A fence on the node stays. It fails if the node is running.
func (e *Embedded) RestartNode(ctx context.Context, name string) error {
	n := e.Node(name)
	if n == nil {
		return fmt.Errorf("restart node %q: unknown node", name)
	}
	ctx, cancel := withDefaultDeadline(ctx, embeddedStartTimeout)
	defer cancel()
	if err := n.start(ctx); err != nil {
		return err
	}
	e.log.Info().Str("pod", name).Msg("node restarted")
	return nil
}

// conf renders the node's configuration file.
func (n *EmbeddedNode) conf() string {
	var b strings.Builder
	// No http_port: the node's monitoring is served by its monitor.
	fmt.Fprintf(&b, "server_name: %q\nhost: \"127.0.0.1\"\nport: %d\n", n.name, n.clientPort)
	fmt.Fprintf(&b, "system_account: %q\n", SystemAccount)
	fmt.Fprintf(&b, "accounts {\n  %s {\n    jetstream: enabled\n    users: [{user: %q, password: %q}]\n  }\n",
		AppAccount, embeddedUsers[AppAccount][0], embeddedUsers[AppAccount][1])
	fmt.Fprintf(&b, "  %s {\n    users: [{user: %q, password: %q}]\n  }\n}\n",
		SystemAccount, embeddedUsers[SystemAccount][0], embeddedUsers[SystemAccount][1])
	fmt.Fprintf(&b, "jetstream {\n  store_dir: %q\n  max_memory_store: 256MB\n  max_file_store: 2GB\n}\n", n.storeDir)
	// After an unfence the route URLs carry the redial count: a reload
	// that changes them makes NATS dial the new ones at once (see redial).
	spell := func(addr string) string {
		if n.redials == 0 {
			return fmt.Sprintf("%q", "nats-route://"+addr)
		}
		return fmt.Sprintf("%q", fmt.Sprintf("nats-route://%s/?redial=%d", addr, n.redials))
	}
	var routes []string
	for _, p := range n.e.nodes {
		if p != n && p.dc == n.dc {
			routes = append(routes, spell(p.route.addr()))
		}
	}
	if len(routes) == 0 {
		// A dc of one: JetStream in clustered mode insists on configured
		// routes; a route to itself satisfies it and NATS ignores it.
		routes = append(routes, spell(n.route.addr()))
	}
	// A reload sorts the running options' lists in place (while route and
	// gateway goroutines read them); written in that order already, nothing
	// moves.
	sort.Strings(routes)
	fmt.Fprintf(&b, "cluster {\n  name: %q\n  host: \"127.0.0.1\"\n  port: -1\n  advertise: %q\n  routes: [%s]\n}\n",
		n.dc, n.route.addr(), strings.Join(routes, ", "))
	if n.gateway != nil {
		var remotes []string
		dcs := slices.Clone(n.e.dcs)
		sort.Strings(dcs)
		for _, dc := range dcs {
			if dc == n.dc {
				continue
			}
			var urls []string
			for _, p := range n.e.nodes {
				if p.dc == dc {
					urls = append(urls, fmt.Sprintf("%q", "nats://"+p.gateway.addr()))
				}
			}
			remotes = append(remotes, fmt.Sprintf("{name: %q, urls: [%s]}", dc, strings.Join(urls, ", ")))
		}
		fmt.Fprintf(&b, "gateway {\n  name: %q\n  host: \"127.0.0.1\"\n  port: -1\n  advertise: %q\n  gateways: [%s]\n}\n",
			n.dc, n.gateway.addr(), strings.Join(remotes, ", "))
	}
	return b.String()
}

// start writes the configuration, starts the server and waits until it
// accepts clients. The first start records the ports actually bound so that
// a restart keeps them.
func (n *EmbeddedNode) start(ctx context.Context) error {
	n.mu.Lock()
	if n.state != nodeStopped {
		n.mu.Unlock()
		return fmt.Errorf("start %s: already running", n.name)
	}
	n.state = nodeStarting
	port := n.clientPort
	n.mu.Unlock()

	// NATS logs a client port it cannot bind and never becomes ready;
	// a port in use is said at once, not after the start's deadline.
	if port > 0 {
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err != nil {
			n.setStopped(nil)
			return fmt.Errorf("start %s: client port: %w", n.name, err)
		}
		l.Close()
	}
	s, err := n.newServer()
	if err != nil {
		n.setStopped(nil)
		return fmt.Errorf("start %s: %w", n.name, err)
	}
	n.e.fab.learn(s.ID(), n.name)
	n.mu.Lock()
	n.srv = s
	n.mu.Unlock()

	s.Start()
	err = pollUntil(ctx, 5*time.Millisecond, func() bool {
		return s.Addr() != nil && s.ClusterAddr() != nil &&
			(n.gateway == nil || s.GatewayAddr() != nil)
	})
	if err != nil {
		s.Shutdown()
		s.WaitForShutdown()
		n.setStopped(s)
		return fmt.Errorf("start %s: not ready for connections: %w", n.name, err)
	}
	n.mu.Lock()
	if a, ok := s.Addr().(*net.TCPAddr); ok {
		n.clientPort = a.Port
	}
	n.state = nodeRunning
	n.mu.Unlock()
	return nil
}

// options writes the node's configuration file and returns the options it
// gives.
func (n *EmbeddedNode) options() (*server.Options, error) {
	n.mu.Lock()
	text := n.conf()
	if n.confEdit != nil {
		text = n.confEdit(text)
	}
	n.mu.Unlock()
	if err := os.WriteFile(n.confPath, []byte(text), 0o600); err != nil {
		return nil, fmt.Errorf("write config: %w", err)
	}
	opts, err := server.ProcessConfigFile(n.confPath)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	opts.NoSigs = true
	return opts, nil
}

func (n *EmbeddedNode) newServer() (*server.Server, error) {
	opts, err := n.options()
	if err != nil {
		return nil, err
	}
	s, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("new server: %w", err)
	}
	s.SetLoggerV2(natsLogAdapter{log: n.log}, false, false, false)
	return s, nil
}

func (n *EmbeddedNode) setStopped(s *server.Server) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if s != nil {
		n.srv = s
	}
	n.state = nodeStopped
}

// stop shuts the server down and waits for it; a no-op when stopped.
func (n *EmbeddedNode) stop() {
	n.mu.Lock()
	s := n.srv
	n.state = nodeStopped
	n.mu.Unlock()
	if s != nil {
		s.Shutdown()
		s.WaitForShutdown()
	}
}

// running returns the server while the node is running, nil otherwise.
func (n *EmbeddedNode) running() *server.Server {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.state != nodeRunning {
		return nil
	}
	return n.srv
}

// clusterBackend tells the route gate where the real cluster port is; alive
// is false while the node is stopped.
func (n *EmbeddedNode) clusterBackend() (addr string, alive bool) {
	return n.backend(func(s *server.Server) *net.TCPAddr { return s.ClusterAddr() })
}

func (n *EmbeddedNode) gatewayBackend() (addr string, alive bool) {
	return n.backend(func(s *server.Server) *net.TCPAddr { return s.GatewayAddr() })
}

func (n *EmbeddedNode) backend(get func(*server.Server) *net.TCPAddr) (string, bool) {
	n.mu.Lock()
	s, state := n.srv, n.state
	n.mu.Unlock()
	if state == nodeStopped || s == nil {
		return "", false
	}
	if a := get(s); a != nil {
		return a.String(), true
	}
	return "", true
}

// Name returns the pod (= server) name.
func (n *EmbeddedNode) Name() string { return n.name }

// DC returns the NATS cluster (datacenter) the node belongs to.
func (n *EmbeddedNode) DC() string { return n.dc }

// Server returns the node's current server (a shut-down one while the node
// is stopped, nil before the first start).
func (n *EmbeddedNode) Server() *server.Server {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.srv
}

// Running reports whether the node's server is up.
func (n *EmbeddedNode) Running() bool { return n.running() != nil }

// ClientURL returns the node's client URL (without credentials).
func (n *EmbeddedNode) ClientURL() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return fmt.Sprintf("nats://127.0.0.1:%d", n.clientPort)
}

// MonitorURL returns the base URL of the node's monitoring endpoint.
func (n *EmbeddedNode) MonitorURL() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return fmt.Sprintf("http://127.0.0.1:%d", n.httpPort)
}

// natsLogAdapter sends a server's log lines to zerolog.
type natsLogAdapter struct{ log zerolog.Logger }

func (a natsLogAdapter) Noticef(format string, v ...any) { a.log.Info().Msgf(format, v...) }
func (a natsLogAdapter) Warnf(format string, v ...any)   { a.log.Warn().Msgf(format, v...) }
func (a natsLogAdapter) Fatalf(format string, v ...any)  { a.log.Error().Msgf(format, v...) }
func (a natsLogAdapter) Errorf(format string, v ...any)  { a.log.Error().Msgf(format, v...) }
func (a natsLogAdapter) Debugf(format string, v ...any)  { a.log.Debug().Msgf(format, v...) }
func (a natsLogAdapter) Tracef(format string, v ...any)  { a.log.Trace().Msgf(format, v...) }

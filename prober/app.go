package prober

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/prober-dev/prober/maintenance"
	"github.com/prober-dev/prober/natsraft"
)

// EmbeddedApp is the embedded default as one value: cluster, collector,
// store, one reconciler per node and the API server.
type EmbeddedApp struct {
	Listen      string // API address, ":8889"; "127.0.0.1:0" in tests
	DataDir     string // "" = a temp folder removed at the end
	Topology    []int  // nodes per dc; nil = one dc of 3
	ClientPort  int
	MonitorPort int
	Resync      time.Duration
	Logger      zerolog.Logger
	Stdout      io.Writer // the start banner; nil = none
	// Auth admits callers that are not on loopback (e.g. static tokens from
	// --token-file); the zero value serves loopback callers only.
	Auth AuthOptions

	// Set once Run has started everything; read by tests.
	mu          sync.Mutex
	cluster     *natsraft.Embedded
	server      *Server
	reconcilers map[string]*maintenance.Reconciler
	started     chan struct{}
}

// Started returns a channel closed once the API is serving.
func (a *EmbeddedApp) Started() <-chan struct{} {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.started == nil {
		a.started = make(chan struct{})
	}
	return a.started
}

// Cluster returns the embedded cluster once Started is closed.
func (a *EmbeddedApp) Cluster() *natsraft.Embedded {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.cluster
}

// Addr returns the API's bound address once Started is closed.
func (a *EmbeddedApp) Addr() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.server == nil {
		return ""
	}
	return a.server.Addr()
}

// Reconciler returns the named node's reconciler once Started is closed.
func (a *EmbeddedApp) Reconciler(pod string) *maintenance.Reconciler {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.reconcilers[pod]
}

// Run starts everything and blocks until ctx ends, then shuts down in order:
// API, reconcilers and collector, cluster.
func (a *EmbeddedApp) Run(ctx context.Context) error {
	log := a.Logger
	dataDir := a.DataDir
	if dataDir == "" {
		tmp, err := os.MkdirTemp("", "prober-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(tmp)
		dataDir = tmp
	}
	cluster, err := natsraft.StartEmbedded(ctx, natsraft.EmbeddedOptions{
		Topology:    a.Topology,
		DataDir:     filepath.Join(dataDir, "jetstream"),
		ClientPort:  a.ClientPort,
		MonitorPort: a.MonitorPort,
		Demo:        true,
		Logger:      log.With().Str("component", "nats").Logger(),
	})
	if err != nil {
		return fmt.Errorf("start embedded cluster: %w", err)
	}
	defer cluster.Close()

	store, err := maintenance.OpenFileStore(filepath.Join(dataDir, "maintenance.json"), maintenance.FileStoreOptions{
		PollInterval: time.Second,
		Logger:       log.With().Str("component", "store").Logger(),
	})
	if err != nil {
		return err
	}
	defer store.Close()

	collector := natsraft.NewCollector(natsraft.CollectorOptions{
		Endpoints: cluster.Endpoints(),
		Interval:  time.Second,
		Logger:    log.With().Str("component", "collector").Logger(),
	})
	handoff := &natsraft.HandOff{Views: collector, Dial: cluster.Dial, Logger: log.With().Str("component", "handoff").Logger()}

	svc := &maintenance.Service{Store: store, Views: collector, Now: time.Now, Logger: log}
	reconcilers := map[string]*maintenance.Reconciler{}
	for _, n := range cluster.Nodes() {
		reconcilers[n.Name()] = maintenance.NewReconciler(maintenance.ReconcilerOptions{
			Store:  store,
			Node:   member{EmbeddedNode: n, handoff: handoff},
			DC:     n.DC(),
			Resync: a.Resync,
			Now:    time.Now,
			Logger: log.With().Str("pod", n.Name()).Logger(),
		})
	}
	srv := NewServer(Options{
		Addr:      a.Listen,
		Service:   svc,
		Views:     collector,
		Readiness: readiness(reconcilers, collector),
		Auth:      a.Auth,
		Logger:    log.With().Str("component", "http").Logger(),
		Now:       time.Now,
	})
	if err := srv.Open(); err != nil {
		return fmt.Errorf("listen %s: %w", a.Listen, err)
	}

	g := newRunGroup(ctx)
	g.Go("http server", srv.Wait)
	g.Go("collector", collector.Run)
	for name, r := range reconcilers {
		g.Go("reconciler "+name, r.Run)
	}

	a.mu.Lock()
	a.cluster, a.server, a.reconcilers = cluster, srv, reconcilers
	if a.started == nil {
		a.started = make(chan struct{})
	}
	close(a.started)
	a.mu.Unlock()
	a.printBanner(cluster, srv)

	return g.Wait(ctx, func() {
		shutdownCtx, done := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer done()
		if err := srv.Close(shutdownCtx); err != nil {
			log.Warn().Err(err).Msg("close API")
		}
	})
}

func (a *EmbeddedApp) printBanner(c *natsraft.Embedded, srv *Server) {
	if a.Stdout == nil {
		return
	}
	var b strings.Builder
	fmt.Fprintf(&b, "prober: maintenance API on http://%s\n", displayAddr(srv.Addr()))
	for _, n := range c.Nodes() {
		fmt.Fprintf(&b, "  %-12s dc=%-4s client %s  monitor %s\n", n.Name(), n.DC(), n.ClientURL(), n.MonitorURL())
	}
	fmt.Fprintf(&b, "try: curl -s localhost%s/config | jq ; curl -s -X PUT 'localhost%s/pods/%s?wait=30s'\n",
		portOf(srv.Addr()), portOf(srv.Addr()), c.Nodes()[len(c.Nodes())-1].Name())
	fmt.Fprint(a.Stdout, b.String())
}

func displayAddr(addr string) string {
	if strings.HasPrefix(addr, "[::]:") || strings.HasPrefix(addr, "0.0.0.0:") || strings.HasPrefix(addr, ":") {
		return "127.0.0.1" + portOf(addr)
	}
	return addr
}

func portOf(addr string) string {
	if i := strings.LastIndex(addr, ":"); i >= 0 {
		return addr[i:]
	}
	return ""
}

// member makes an embedded node a maintenance.Node: the fence and quiesce
// come from the node itself, hand-off and catch-up from the cluster view.
type member struct {
	*natsraft.EmbeddedNode
	handoff *natsraft.HandOff
}

func (m member) HandOff(ctx context.Context) error { return m.handoff.Run(ctx, m.Name()) }

func (m member) CaughtUp(ctx context.Context) (bool, string, error) {
	return m.handoff.CaughtUp(ctx, m.Name())
}

// readiness is the embedded default's readiness: per node (/readyz?pod=),
// its reconciler's and the cluster view's; without ?pod= every node.
func readiness(rs map[string]*maintenance.Reconciler, views maintenance.ViewSource) *ViewReadiness {
	local := make(map[string]func() (bool, string), len(rs))
	for name, r := range rs {
		local[name] = r.Ready
	}
	return &ViewReadiness{Local: local, Views: views}
}

package app

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

	"github.com/prober-dev/prober/filestore"
	"github.com/prober-dev/prober/maintenance"
	"github.com/prober-dev/prober/natsraft"
	"github.com/prober-dev/prober/prober"
)

// Embedded is the embedded default as one value: an in-process NATS
// cluster, the file store, the collector, one reconciler per node (each
// node gate-fenced) and the API server.
type Embedded struct {
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
	Auth prober.AuthOptions

	// Set once Run has started everything; read by tests.
	serving
	mu          sync.Mutex
	cluster     *natsraft.Embedded
	reconcilers map[string]*maintenance.Reconciler
}

// Cluster returns the embedded cluster once Started is closed.
func (a *Embedded) Cluster() *natsraft.Embedded {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.cluster
}

// Reconciler returns the named node's reconciler once Started is closed.
func (a *Embedded) Reconciler(pod string) *maintenance.Reconciler {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.reconcilers[pod]
}

// Run starts everything and blocks until ctx ends, then shuts down in order:
// API, reconcilers and collector, cluster.
func (a *Embedded) Run(ctx context.Context) error {
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

	store, err := filestore.Open(filepath.Join(dataDir, "maintenance.json"), filestore.Options{
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
		// A node lost is found within half a second, not at the next
		// sweep: the watch asks each in-process node a tiny question.
		WatchInterval: natsraft.DefaultWatchInterval,
		Logger:        log.With().Str("component", "collector").Logger(),
	})
	handoff := &natsraft.HandOff{Views: collector, Dial: cluster.Dial, Logger: log.With().Str("component", "handoff").Logger()}

	restarter := &embeddedRestarter{cluster: cluster, started: time.Now()}
	svc := &maintenance.Service{Store: store, Views: collector, Leaders: handoff, Now: time.Now, Logger: log, Restarter: restarter}
	driver := maintenance.NewRolloutDriver(maintenance.RolloutDriverOptions{
		Service: svc,
		ID:      EmbeddedDriverID,
		Logger:  log.With().Str("component", "rollout").Logger(),
	})
	reconcilers := map[string]*maintenance.Reconciler{}
	for _, n := range cluster.Nodes() {
		reconcilers[n.Name()] = maintenance.NewReconciler(maintenance.ReconcilerOptions{
			Store:  store,
			Node:   natsraft.NewMember(n.Name(), n, handoff),
			DC:     n.DC(),
			Resync: a.Resync,
			Now:    time.Now,
			Views:  collector,
			Logger: log.With().Str("pod", n.Name()).Logger(),
		})
	}
	feed := newEventFeed(log)
	defer feed.hub.Close()
	srv := prober.NewServer(prober.Options{
		Addr:      a.Listen,
		Service:   svc,
		Views:     collector,
		Readiness: readiness(reconcilers, collector),
		Events:    feed.hub,
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
	g.Go("event watcher", feed.watcher(store, collector, nil, srv).Run)
	g.Go("rollout driver", driver.Run)
	for name, r := range reconcilers {
		g.Go("reconciler "+name, r.Run)
	}

	a.mu.Lock()
	a.cluster, a.reconcilers = cluster, reconcilers
	a.mu.Unlock()
	a.serving.start(srv)
	a.printBanner(cluster, srv)

	return g.Wait(ctx, closeServer(ctx, srv, log))
}

// EmbeddedDriverID is the embedded default's name as a rollout's driver:
// one process serves a data dir, so the same name taken up again after a
// restart goes on at once.
const EmbeddedDriverID = "embedded"

// embeddedRestarter restarts an embedded node for a rollout: it stops the
// in-process server and starts it again on the same store. Every node
// started with the process, so a node whose restart was asked for before
// the process started has been restarted already.
type embeddedRestarter struct {
	cluster *natsraft.Embedded
	started time.Time

	mu        sync.Mutex
	restarted map[string]time.Time
}

// Restart implements maintenance.Restarter.
func (r *embeddedRestarter) Restart(ctx context.Context, pod string, since time.Time) (bool, string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	last := r.started
	if t, ok := r.restarted[pod]; ok {
		last = t
	}
	if last.After(since) {
		return true, "", nil
	}
	if r.cluster.Node(pod) == nil {
		return false, "", fmt.Errorf("restart %s: no such embedded node", pod)
	}
	if err := r.cluster.StopNode(pod); err != nil {
		return false, "", err
	}
	if err := r.cluster.RestartNode(ctx, pod); err != nil {
		return false, "", err
	}
	if r.restarted == nil {
		r.restarted = map[string]time.Time{}
	}
	r.restarted[pod] = time.Now()
	return true, "", nil
}

func (a *Embedded) printBanner(c *natsraft.Embedded, srv *prober.Server) {
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

// readiness is the embedded default's readiness: per node (/readyz?pod=),
// its reconciler's and the cluster view's; without ?pod= every node.
func readiness(rs map[string]*maintenance.Reconciler, views maintenance.ViewSource) *prober.ViewReadiness {
	local := make(map[string]func() (bool, string), len(rs))
	for name, r := range rs {
		local[name] = r.Ready
	}
	return &prober.ViewReadiness{Local: local, Views: views}
}

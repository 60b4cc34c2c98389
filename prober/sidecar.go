package prober

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/rs/zerolog"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/apimachinery/pkg/watch"
	corev1client "k8s.io/client-go/kubernetes/typed/core/v1"

	"github.com/prober-dev/prober/maintenance"
	"github.com/prober-dev/prober/natsraft"
)

// The pod metadata the sidecar reads from its peers.
const (
	// DefaultDCLabel is the pod label that, when set, names the pod's dc
	// instead of the NATS cluster name the server reports: for grouping
	// the pods of one NATS cluster by zone, say, for maintenance.
	DefaultDCLabel = "maintenance.prober/dc"
	// MonitorPortAnnotation gives a pod's NATS monitoring port when it is
	// not the one the sidecar is configured with.
	MonitorPortAnnotation = "maintenance.prober/monitor-port"
	// ClientPortAnnotation gives a pod's NATS client port when it is not
	// the one the sidecar is configured with.
	ClientPortAnnotation = "maintenance.prober/client-port"
)

// Defaults of PodDiscoveryOptions and SidecarApp.
const (
	DefaultMonitorPort = 8222
	DefaultClientPort  = 4222
	// DefaultPodWatchTimeout is how long one pod watch lasts before the
	// discovery opens the next one from where it left off.
	DefaultPodWatchTimeout = 5 * time.Minute
	// podRequestTimeout bounds one list of the pods.
	podRequestTimeout = 10 * time.Second
	// localDCPoll is how often the sidecar looks for its own dc while it
	// does not know it yet, and then for a change of it.
	localDCPoll = 250 * time.Millisecond
	// sidecarShutdown bounds the shutdown of the API.
	sidecarShutdown = 10 * time.Second
)

// podWatchBackoff paces listing again after a failed list or watch.
var podWatchBackoff = wait.Backoff{Duration: 100 * time.Millisecond, Factor: 2, Jitter: 0.5, Steps: 100, Cap: 10 * time.Second}

// Peer is one NATS pod as the discovery sees it.
type Peer struct {
	// Name is the pod's name, which must be its NATS server name.
	Name string `json:"name"`
	// IP is the pod's IP, "" while it has none.
	IP string `json:"ip,omitempty"`
	// MonitorURL is the base URL of its NATS monitoring endpoint; at the
	// pod's DNS name while it has no IP.
	MonitorURL string `json:"monitorURL"`
	// ClientURL is its NATS client URL, "" while it has no IP.
	ClientURL string `json:"clientURL,omitempty"`
	// DC is the value of the dc label, "" when the pod has none (its dc is
	// then the NATS cluster name).
	DC string `json:"dc,omitempty"`
}

// PodDiscoveryOptions configures a PodDiscovery.
type PodDiscoveryOptions struct {
	// Selector is the label selector of the NATS pods (for example
	// "app.kubernetes.io/name=nats"); required.
	Selector string
	// MonitorPort and ClientPort are the NATS ports of a pod that does not
	// override them with MonitorPortAnnotation / ClientPortAnnotation;
	// DefaultMonitorPort and DefaultClientPort when 0.
	MonitorPort int
	ClientPort  int
	// DCLabel is the label naming a pod's dc; DefaultDCLabel when empty.
	DCLabel string
	// WatchTimeout is the lifetime of one watch; DefaultPodWatchTimeout
	// when 0.
	WatchTimeout time.Duration
	Logger       zerolog.Logger
}

// PodDiscovery follows the NATS pods of the namespace (a list, then a
// watch, listed again after errors) and derives each one's Peer: where its
// monitoring and client ports are and its dc label. It is safe for
// concurrent use.
type PodDiscovery struct {
	pods corev1client.PodInterface
	o    PodDiscoveryOptions
	log  zerolog.Logger

	synced     chan struct{}
	syncedOnce sync.Once
	changed    chan struct{}

	mu    sync.Mutex
	peers map[string]Peer
}

// NewPodDiscovery returns a discovery over pods, which is
// clientset.CoreV1().Pods(namespace). It fails on a selector that does not
// parse or selects everything.
func NewPodDiscovery(pods corev1client.PodInterface, o PodDiscoveryOptions) (*PodDiscovery, error) {
	sel, err := labels.Parse(o.Selector)
	if err != nil {
		return nil, fmt.Errorf("pod selector %q: %w", o.Selector, err)
	}
	if sel.Empty() {
		return nil, fmt.Errorf("pod selector %q selects every pod of the namespace", o.Selector)
	}
	o.Selector = sel.String()
	if o.MonitorPort == 0 {
		o.MonitorPort = DefaultMonitorPort
	}
	if o.ClientPort == 0 {
		o.ClientPort = DefaultClientPort
	}
	if o.DCLabel == "" {
		o.DCLabel = DefaultDCLabel
	}
	if o.WatchTimeout <= 0 {
		o.WatchTimeout = DefaultPodWatchTimeout
	}
	return &PodDiscovery{
		pods:    pods,
		o:       o,
		log:     o.Logger.With().Str("component", "discovery").Str("selector", o.Selector).Logger(),
		synced:  make(chan struct{}),
		changed: make(chan struct{}, 1),
		peers:   map[string]Peer{},
	}, nil
}

// Synced is closed once the first list has been read.
func (d *PodDiscovery) Synced() <-chan struct{} { return d.synced }

// Changed receives a value (coalesced) after every change of the peers; it
// is meant for one receiver.
func (d *PodDiscovery) Changed() <-chan struct{} { return d.changed }

// Peers returns every peer, sorted by name.
func (d *PodDiscovery) Peers() []Peer {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make([]Peer, 0, len(d.peers))
	for _, name := range slices.Sorted(maps.Keys(d.peers)) {
		out = append(out, d.peers[name])
	}
	return out
}

// Peer returns the named peer and whether it is known.
func (d *PodDiscovery) Peer(name string) (Peer, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	p, ok := d.peers[name]
	return p, ok
}

// Endpoints returns the monitoring endpoint of every peer, for the
// collector.
func (d *PodDiscovery) Endpoints() []natsraft.Endpoint {
	peers := d.Peers()
	out := make([]natsraft.Endpoint, len(peers))
	for i, p := range peers {
		out[i] = natsraft.Endpoint{Name: p.Name, DC: p.DC, MonitorURL: p.MonitorURL}
	}
	return out
}

// ClientURLs returns the client URL of every peer that has one, by name:
// the servers a natsraft.CredentialsDialer dials.
func (d *PodDiscovery) ClientURLs() map[string]string {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make(map[string]string, len(d.peers))
	for name, p := range d.peers {
		if p.ClientURL != "" {
			out[name] = p.ClientURL
		}
	}
	return out
}

// DCs returns the dc label of every peer that has one, by name.
func (d *PodDiscovery) DCs() map[string]string {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := map[string]string{}
	for name, p := range d.peers {
		if p.DC != "" {
			out[name] = p.DC
		}
	}
	return out
}

// Run follows the pods until ctx ends, then returns nil.
func (d *PodDiscovery) Run(ctx context.Context) error {
	d.log.Info().Msg("pod discovery started")
	defer d.log.Info().Msg("pod discovery stopped")
	maintenance.WatchLoop(ctx, maintenance.ListWatch{
		List: d.list,
		Watch: func(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error) {
			opts.LabelSelector = d.o.Selector
			return d.pods.Watch(ctx, opts)
		},
		Event: d.event,
	}, maintenance.WatchLoopOptions{
		Name:         "pods",
		WatchTimeout: d.o.WatchTimeout,
		Grace:        podRequestTimeout,
		Backoff:      podWatchBackoff,
		Logger:       d.log,
	})
	return nil
}

// list reads every selected pod, replaces the peers and returns the list's
// resourceVersion to watch from.
func (d *PodDiscovery) list(ctx context.Context) (string, error) {
	lctx, cancel := context.WithTimeout(ctx, podRequestTimeout)
	defer cancel()
	l, err := d.pods.List(lctx, metav1.ListOptions{LabelSelector: d.o.Selector})
	if err != nil {
		return "", fmt.Errorf("list pods: %w", err)
	}
	peers := make(map[string]Peer, len(l.Items))
	for i := range l.Items {
		if p, ok := d.peerOf(&l.Items[i]); ok {
			peers[p.Name] = p
		}
	}
	d.replace(peers)
	d.syncedOnce.Do(func() { close(d.synced) })
	return l.ResourceVersion, nil
}

// event applies a pod event to the peers.
func (d *PodDiscovery) event(ev watch.Event) error {
	pod, isPod := ev.Object.(*corev1.Pod)
	if !isPod {
		return fmt.Errorf("unexpected %T in a %s event", ev.Object, ev.Type)
	}
	p, known := d.peerOf(pod)
	d.apply(pod.Name, p, known && ev.Type != watch.Deleted)
	return nil
}

// peerOf derives the peer of a pod; false for a pod that cannot be reached
// at all (no IP and no DNS name).
func (d *PodDiscovery) peerOf(pod *corev1.Pod) (Peer, bool) {
	log := d.log.With().Str("pod", pod.Name).Logger()
	p := Peer{Name: pod.Name, IP: pod.Status.PodIP, DC: pod.Labels[d.o.DCLabel]}
	monitor := annotatedPort(pod, MonitorPortAnnotation, d.o.MonitorPort, log)
	client := annotatedPort(pod, ClientPortAnnotation, d.o.ClientPort, log)
	switch {
	case p.IP != "":
		p.MonitorURL = "http://" + net.JoinHostPort(p.IP, strconv.Itoa(monitor))
		p.ClientURL = "nats://" + net.JoinHostPort(p.IP, strconv.Itoa(client))
	case pod.Spec.Subdomain != "":
		// A StatefulSet's pod keeps its DNS name while it waits for an IP:
		// it shows as unreachable rather than vanishing from the view.
		host := pod.Name
		if pod.Spec.Hostname != "" {
			host = pod.Spec.Hostname
		}
		host += "." + pod.Spec.Subdomain + "." + pod.Namespace + ".svc"
		p.MonitorURL = "http://" + net.JoinHostPort(host, strconv.Itoa(monitor))
	default:
		return Peer{}, false
	}
	return p, true
}

// annotatedPort returns the port the annotation gives, or def when it is
// absent or invalid (which is logged).
func annotatedPort(pod *corev1.Pod, annotation string, def int, log zerolog.Logger) int {
	v, ok := pod.Annotations[annotation]
	if !ok {
		return def
	}
	port, err := strconv.Atoi(v)
	if err != nil || port < 1 || port > 65535 {
		log.Warn().Str("annotation", annotation).Str("value", v).Int("using", def).Msg("invalid port annotation")
		return def
	}
	return port
}

// replace sets the peers to a fresh list and notifies if they changed.
func (d *PodDiscovery) replace(peers map[string]Peer) {
	d.mu.Lock()
	same := maps.Equal(d.peers, peers)
	d.peers = peers
	d.mu.Unlock()
	if !same {
		d.log.Info().Int("pods", len(peers)).Msg("peers listed")
		d.notify()
	}
}

// apply sets (or, when present is false, removes) one peer and notifies
// if that changed anything.
func (d *PodDiscovery) apply(name string, p Peer, present bool) {
	d.mu.Lock()
	old, had := d.peers[name]
	changed := had != present || (present && old != p)
	if present {
		d.peers[name] = p
	} else {
		delete(d.peers, name)
	}
	d.mu.Unlock()
	if changed {
		d.log.Info().Str("pod", name).Bool("present", present).Str("monitor", p.MonitorURL).Str("dc", p.DC).Msg("peer changed")
		d.notify()
	}
}

func (d *PodDiscovery) notify() {
	select {
	case d.changed <- struct{}{}:
	default:
	}
}

// Fence is what the sidecar drives on its local NATS server besides the
// hand-off and the catch-up, which it does over NATS itself: cutting the
// node off from its peers and switching its JetStream off and on. In
// production it is the kernel fence (nftables and socket kills in the
// pod's network namespace, a quiesce by config reload); an embedded node's
// gate fence satisfies it too, which is how the sidecar is tested.
type Fence interface {
	// Fenced reports whether the node is cut off from its peers.
	Fenced() bool
	// Fence cuts cluster and gateway traffic to and from the node and
	// returns once the cut is verified.
	Fence(ctx context.Context) error
	// Unfence lifts the cut and returns once routes are back.
	Unfence(ctx context.Context) error
	// Quiesced reports whether the node's JetStream is off.
	Quiesced() bool
	// Quiesce switches the node's JetStream off.
	Quiesce(ctx context.Context) error
	// Resume switches it back on.
	Resume(ctx context.Context) error
	// MoveClients asks the node's clients to reconnect to its peers.
	MoveClients(ctx context.Context) error
}

// sidecarNode is the local node as the reconciler drives it: the fence,
// and hand-off and catch-up over the cluster.
type sidecarNode struct {
	name    string
	fence   Fence
	handoff *natsraft.HandOff
}

var _ maintenance.Node = sidecarNode{}

func (n sidecarNode) Name() string                          { return n.name }
func (n sidecarNode) Fenced() bool                          { return n.fence.Fenced() }
func (n sidecarNode) Quiesced() bool                        { return n.fence.Quiesced() }
func (n sidecarNode) Quiesce(ctx context.Context) error     { return n.fence.Quiesce(ctx) }
func (n sidecarNode) MoveClients(ctx context.Context) error { return n.fence.MoveClients(ctx) }
func (n sidecarNode) Fence(ctx context.Context) error       { return n.fence.Fence(ctx) }
func (n sidecarNode) Unfence(ctx context.Context) error     { return n.fence.Unfence(ctx) }
func (n sidecarNode) Resume(ctx context.Context) error      { return n.fence.Resume(ctx) }
func (n sidecarNode) HandOff(ctx context.Context) error     { return n.handoff.Run(ctx, n.name) }
func (n sidecarNode) CaughtUp(ctx context.Context) (bool, string, error) {
	return n.handoff.CaughtUp(ctx, n.name)
}

// dcViews is the cluster view as the maintenance service sees it: each
// node's dc is its pod's dc label where it has one, else the NATS cluster
// name. /raft and the diagnosis keep the NATS cluster names, which is what
// routes and gateways follow.
type dcViews struct {
	views maintenance.ViewSource
	dcs   func() map[string]string
}

// View returns the collector's view with the labelled dcs applied.
func (v *dcViews) View(ctx context.Context) (*natsraft.View, error) {
	view, err := v.views.View(ctx)
	return withDCs(view, v.dcs()), err
}

// withDCs returns v with the dcs of the named nodes replaced; v itself is
// shared and left alone.
func withDCs(v *natsraft.View, dcs map[string]string) *natsraft.View {
	if v == nil || len(dcs) == 0 {
		return v
	}
	out := *v
	out.Nodes = slices.Clone(v.Nodes)
	for i := range out.Nodes {
		if dc := dcs[out.Nodes[i].Name]; dc != "" {
			out.Nodes[i].DC = dc
		}
	}
	return &out
}

// SidecarApp is Kubernetes mode, one per NATS pod: the maintenance state in
// a ConfigMap, the peers from the pod list, a collector sweeping every
// peer's monitoring endpoint, a reconciler driving the local NATS server
// through its Fence, and the API. Any pod's API serves requests for every
// pod: the state is shared, and each pod's reconciler acts for its own.
type SidecarApp struct {
	// Listen is the API address, ":8889"; "127.0.0.1:0" in tests.
	Listen string
	// Pod is this pod's name, which is its NATS server name.
	Pod string
	// Namespace holds the pods and the ConfigMap.
	Namespace string
	// ConfigMaps reaches the ConfigMap store (clientset.CoreV1()).
	ConfigMaps corev1client.ConfigMapsGetter
	// ConfigMapName is the maintenance ConfigMap;
	// maintenance.DefaultConfigMapName when empty.
	ConfigMapName string
	// Discovery follows the NATS pods; the app runs it.
	Discovery *PodDiscovery
	// Fence cuts the local node off and quiesces it.
	Fence Fence
	// Dial reaches the cluster's accounts for the hand-off, normally a
	// natsraft.CredentialsDialer over Discovery.ClientURLs.
	Dial natsraft.Dialer
	// Auth says who may call the API (see AuthOptions).
	Auth AuthOptions
	// Resync is the reconciler's periodic resync; maintenance.DefaultResync
	// when 0.
	Resync time.Duration
	// CollectorInterval is the pause between two sweeps;
	// natsraft.DefaultCollectorInterval when 0.
	CollectorInterval time.Duration
	Logger            zerolog.Logger
	// Now is the clock; time.Now when nil.
	Now func() time.Time

	mu         sync.Mutex
	started    chan struct{}
	server     *Server
	reconciler *maintenance.Reconciler
	localDC    string
}

// Started returns a channel closed once the API is serving.
func (a *SidecarApp) Started() <-chan struct{} {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.started == nil {
		a.started = make(chan struct{})
	}
	return a.started
}

// Addr returns the API's bound address once Started is closed.
func (a *SidecarApp) Addr() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.server == nil {
		return ""
	}
	return a.server.Addr()
}

// Reconciler returns the local node's reconciler, nil until the local dc
// is known.
func (a *SidecarApp) Reconciler() *maintenance.Reconciler {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.reconciler
}

// DC returns the local pod's dc, "" until it is known.
func (a *SidecarApp) DC() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.localDC
}

// validate reports the wiring mistakes of a.
func (a *SidecarApp) validate() error {
	var errs []error
	for _, f := range []struct {
		name    string
		missing bool
	}{
		{"Pod", a.Pod == ""}, {"Namespace", a.Namespace == ""}, {"ConfigMaps", a.ConfigMaps == nil},
		{"Discovery", a.Discovery == nil}, {"Fence", a.Fence == nil}, {"Dial", a.Dial == nil},
	} {
		if f.missing {
			errs = append(errs, fmt.Errorf("sidecar: %s is required", f.name))
		}
	}
	return errors.Join(errs...)
}

// Run serves the API at once (so that /livez answers while NATS starts),
// follows the pods, sweeps them, and starts the local reconciler as soon
// as the local pod's dc is known. It blocks until ctx ends, then shuts down
// in order: API, reconciler, collector and discovery. The local node is
// left as it is: a restarted sidecar takes over from what it finds.
func (a *SidecarApp) Run(ctx context.Context) error {
	if err := a.validate(); err != nil {
		return err
	}
	log := a.Logger.With().Str("pod", a.Pod).Logger()
	now := a.Now
	if now == nil {
		now = time.Now
	}
	store := maintenance.NewConfigMapStore(a.ConfigMaps, maintenance.ConfigMapStoreOptions{
		Namespace: a.Namespace,
		Name:      a.ConfigMapName,
		Logger:    log.With().Str("component", "store").Logger(),
	})
	collector := natsraft.NewCollector(natsraft.CollectorOptions{
		Interval: a.CollectorInterval,
		Logger:   log,
	})
	handoff := &natsraft.HandOff{Views: collector, Dial: a.Dial, Logger: log.With().Str("component", "handoff").Logger()}
	svc := &maintenance.Service{
		Store:  store,
		Views:  &dcViews{views: collector, dcs: a.Discovery.DCs},
		Now:    now,
		Logger: log,
	}
	srv := NewServer(Options{
		Addr:    a.Listen,
		Service: svc,
		Views:   collector,
		DCs:     a.Discovery.DCs,
		Readiness: &ViewReadiness{
			Local: map[string]func() (bool, string){a.Pod: a.localReady},
			Views: collector,
		},
		Auth:   a.Auth,
		Logger: log.With().Str("component", "http").Logger(),
		Now:    now,
	})
	if err := srv.Open(); err != nil {
		return fmt.Errorf("listen %s: %w", a.Listen, err)
	}

	g := newRunGroup(ctx)
	g.Go("http server", srv.Wait)
	g.Go("discovery", a.Discovery.Run)
	g.Go("peers", func(ctx context.Context) error { return a.followPeers(ctx, collector, g.Go) })
	g.Go("local node", func(ctx context.Context) error {
		return a.runLocal(ctx, store, sidecarNode{name: a.Pod, fence: a.Fence, handoff: handoff}, collector, log)
	})

	a.mu.Lock()
	a.server = srv
	if a.started == nil {
		a.started = make(chan struct{})
	}
	close(a.started)
	a.mu.Unlock()
	log.Info().Str("addr", srv.Addr()).Str("namespace", a.Namespace).Msg("sidecar serving")

	return g.Wait(ctx, func() {
		shutdownCtx, done := context.WithTimeout(context.WithoutCancel(ctx), sidecarShutdown)
		defer done()
		if err := srv.Close(shutdownCtx); err != nil {
			log.Warn().Err(err).Msg("close API")
		}
	})
}

// followPeers hands the discovered endpoints to the collector, and starts
// the collector once the first list is in.
func (a *SidecarApp) followPeers(ctx context.Context, c *natsraft.Collector, goRun func(string, func(context.Context) error)) error {
	select {
	case <-ctx.Done():
		return nil
	case <-a.Discovery.Synced():
	}
	if err := c.SetEndpoints(ctx, a.Discovery.Endpoints()); err != nil {
		return nil
	}
	goRun("collector", c.Run)
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-a.Discovery.Changed():
		}
		eps := a.Discovery.Endpoints()
		if err := c.SetEndpoints(ctx, eps); err != nil {
			return nil
		}
		a.Logger.Debug().Int("endpoints", len(eps)).Msg("collector endpoints updated")
	}
}

// runLocal runs the local node's reconciler once its dc is known, and
// starts it again with the new dc when the dc changes (the label is edited,
// or NATS comes back with another cluster name), so that "dc.<dc>" entries
// always apply to the dc the API shows the pod in. Between two reconcilers
// the node stays as it is.
func (a *SidecarApp) runLocal(ctx context.Context, store maintenance.Store, node maintenance.Node, c *natsraft.Collector, log zerolog.Logger) error {
	tick := time.NewTicker(localDCPoll)
	defer tick.Stop()
	dc := ""
	for {
		for dc == "" {
			dc = a.lookupDC(c)
			if dc != "" {
				break
			}
			select {
			case <-ctx.Done():
				return nil
			case <-tick.C:
			}
		}
		rctx, stop := context.WithCancel(ctx)
		r := maintenance.NewReconciler(maintenance.ReconcilerOptions{
			Store:  store,
			Node:   node,
			DC:     dc,
			Resync: a.Resync,
			Now:    a.Now,
			Logger: log,
		})
		a.mu.Lock()
		a.reconciler, a.localDC = r, dc
		a.mu.Unlock()
		done := make(chan struct{})
		go func() {
			defer close(done)
			_ = r.Run(rctx)
		}()

		next := dc
		for next == dc {
			select {
			case <-ctx.Done():
				stop()
				<-done
				return nil
			case <-tick.C:
			}
			if found := a.lookupDC(c); found != "" {
				next = found
			}
		}
		log.Info().Str("from", dc).Str("to", next).Msg("local dc changed, restarting the reconciler")
		stop()
		<-done
		dc = next
	}
}

// lookupDC returns the local pod's dc: its dc label, else the NATS cluster
// name its server reports in the latest view; "" while neither is known.
func (a *SidecarApp) lookupDC(c *natsraft.Collector) string {
	if p, ok := a.Discovery.Peer(a.Pod); ok && p.DC != "" {
		return p.DC
	}
	if v := c.Latest(); v != nil {
		if n, ok := v.Node(a.Pod); ok && n.Reachable && n.DC != "" {
			return n.DC
		}
	}
	return ""
}

// localReady is the local reconciler's readiness; not ready until there is
// one.
func (a *SidecarApp) localReady() (bool, string) {
	r := a.Reconciler()
	if r != nil {
		return r.Ready()
	}
	select {
	case <-a.Discovery.Synced():
		if _, ok := a.Discovery.Peer(a.Pod); !ok {
			return false, fmt.Sprintf("pod %s is not among the pods the selector %q finds", a.Pod, a.Discovery.o.Selector)
		}
	default:
		return false, "waiting for the list of pods"
	}
	return false, fmt.Sprintf("waiting for %s's NATS server to report its cluster (dc)", a.Pod)
}

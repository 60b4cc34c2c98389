package kube

import (
	"context"
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
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	corev1client "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/prober-dev/prober/natsraft"
)

// Pod discovery: the sidecar finds the NATS pods of its namespace by a
// label selector, and from each pod where its monitoring and client ports
// are and which dc it is in.

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
	// ReportPortAnnotation gives the port of a pod's sidecar API, where it
	// serves its server's report (GET /local/report), when it is not the
	// one the sidecar is configured with.
	ReportPortAnnotation = "maintenance.prober/report-port"
)

// Defaults of PodDiscoveryOptions.
const (
	DefaultMonitorPort = 8222
	DefaultClientPort  = 4222
	// DefaultPodWatchTimeout is how long one pod watch lasts before the
	// discovery opens the next one from where it left off.
	DefaultPodWatchTimeout = 5 * time.Minute
	// podRequestTimeout bounds one list of the pods.
	podRequestTimeout = 10 * time.Second
)

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
	// ReportURL is where its sidecar serves its server's report, "" while
	// it has no IP or when reports are not shared.
	ReportURL string `json:"reportURL,omitempty"`
	// DC is the value of the dc label, "" when the pod has none (its dc is
	// then the NATS cluster name).
	DC string `json:"dc,omitempty"`
}

// PodDiscoveryOptions configures a PodDiscovery.
type PodDiscoveryOptions struct {
	// Selector selects the NATS pods (see ParseSelector); required.
	Selector labels.Selector
	// MonitorPort and ClientPort are the NATS ports of a pod that does not
	// override them with MonitorPortAnnotation / ClientPortAnnotation;
	// DefaultMonitorPort and DefaultClientPort when 0.
	MonitorPort int
	ClientPort  int
	// ReportPort is the port of the sidecars' API, where each serves its
	// server's report to the others (GET /local/report) so that every
	// server answers one sweep per interval; 0 shares nothing, and every
	// sidecar reads every server. ReportPortAnnotation overrides it.
	ReportPort int
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

// ParseSelector parses the label selector of the NATS pods (for example
// "app.kubernetes.io/name=nats"). It fails on one that does not parse or
// selects every pod of the namespace.
func ParseSelector(s string) (labels.Selector, error) {
	sel, err := labels.Parse(s)
	if err != nil {
		return nil, fmt.Errorf("pod selector %q: %w", s, err)
	}
	if sel.Empty() {
		return nil, fmt.Errorf("pod selector %q selects every pod of the namespace", s)
	}
	return sel, nil
}

// NewPodDiscovery returns a discovery over pods, which is
// clientset.CoreV1().Pods(namespace), of the pods o.Selector selects. It
// fails without a selector, or with one that selects every pod.
func NewPodDiscovery(pods corev1client.PodInterface, o PodDiscoveryOptions) (*PodDiscovery, error) {
	if o.Selector == nil || o.Selector.Empty() {
		return nil, fmt.Errorf("pod discovery: a selector that selects only the NATS pods is required")
	}
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
		log:     o.Logger.With().Str("component", "discovery").Str("selector", o.Selector.String()).Logger(),
		synced:  make(chan struct{}),
		changed: make(chan struct{}, 1),
		peers:   map[string]Peer{},
	}, nil
}

// Selector returns the label selector of the NATS pods.
func (d *PodDiscovery) Selector() string { return d.o.Selector.String() }

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
		out[i] = natsraft.Endpoint{Name: p.Name, DC: p.DC, MonitorURL: p.MonitorURL, ReportURL: p.ReportURL}
	}
	return out
}

// IsPeerIP tells whether ip is the IP of one of the pods (an IPv4 address
// matches its IPv4-in-IPv6 form too).
func (d *PodDiscovery) IsPeerIP(ip string) bool {
	want := net.ParseIP(ip)
	if want == nil {
		return false
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, p := range d.peers {
		if have := net.ParseIP(p.IP); have != nil && have.Equal(want) {
			return true
		}
	}
	return false
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

// Run follows the pods until ctx ends, then returns nil. Behind it is a
// client-go informer over the selected pods: listed, watched, listed again
// after errors; every change of the informer's cache recomputes the peers.
func (d *PodDiscovery) Run(ctx context.Context) error {
	d.log.Info().Msg("pod discovery started")
	defer d.log.Info().Msg("pod discovery stopped")
	lw := &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			o.LabelSelector = d.o.Selector.String()
			lctx, cancel := context.WithTimeout(ctx, podRequestTimeout)
			defer cancel()
			return d.pods.List(lctx, o)
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			o.LabelSelector = d.o.Selector.String()
			secs := max(int64(d.o.WatchTimeout/time.Second), 1)
			o.TimeoutSeconds = &secs
			return d.pods.Watch(ctx, o)
		},
	}
	informer := cache.NewSharedIndexInformerWithOptions(lw, &corev1.Pod{}, cache.SharedIndexInformerOptions{
		ObjectDescription: "pods " + d.o.Selector.String(),
	})
	refresh := func() { d.replace(d.peersOf(informer.GetStore().List())) }
	if _, err := informer.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { refresh() },
		UpdateFunc: func(any, any) { refresh() },
		DeleteFunc: func(any) { refresh() },
	}); err != nil {
		return fmt.Errorf("pod discovery: %w", err)
	}
	go func() {
		if cache.WaitForCacheSync(ctx.Done(), informer.HasSynced) {
			refresh()
			d.syncedOnce.Do(func() { close(d.synced) })
		}
	}()
	informer.RunWithContext(ctx)
	return nil
}

// peersOf derives the peers of the pods in objs.
func (d *PodDiscovery) peersOf(objs []any) map[string]Peer {
	peers := make(map[string]Peer, len(objs))
	for _, obj := range objs {
		if pod, ok := obj.(*corev1.Pod); ok {
			if p, ok := d.peerOf(pod); ok {
				peers[p.Name] = p
			}
		}
	}
	return peers
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
		if d.o.ReportPort != 0 {
			report := annotatedPort(pod, ReportPortAnnotation, d.o.ReportPort, log)
			p.ReportURL = "http://" + net.JoinHostPort(p.IP, strconv.Itoa(report)) + "/local/report"
		}
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

func (d *PodDiscovery) notify() {
	select {
	case d.changed <- struct{}{}:
	default:
	}
}

package app

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/rs/zerolog"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	corev1client "k8s.io/client-go/kubernetes/typed/core/v1"

	"github.com/prober-dev/prober/kube"
	"github.com/prober-dev/prober/maintenance"
	"github.com/prober-dev/prober/natsraft"
	"github.com/prober-dev/prober/prober"
)

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
	return view.WithDCs(v.dcs()), err
}

// Sidecar is Kubernetes mode, one per NATS pod: the maintenance state in a
// ConfigMap, the peers from the pod list, a collector sweeping every peer's
// monitoring endpoint, a reconciler driving the local NATS server through
// its fence, and the API. Any pod's API serves requests for every pod: the
// state is shared, and each pod's reconciler acts for its own. In
// production RunKernelSidecar builds one with the kernel fence; the tests
// give it an embedded node's gate fence.
type Sidecar struct {
	// Listen is the API address, ":8889"; "127.0.0.1:0" in tests.
	Listen string
	// Pod is this pod's name, which is its NATS server name.
	Pod string
	// Namespace holds the pods and the ConfigMap.
	Namespace string
	// ConfigMaps reaches the ConfigMap store (clientset.CoreV1()).
	ConfigMaps corev1client.ConfigMapsGetter
	// ConfigMapName is the maintenance ConfigMap; kube.DefaultConfigMapName
	// when empty.
	ConfigMapName string
	// Discovery follows the NATS pods; the app runs it.
	Discovery *kube.PodDiscovery
	// Fence cuts the local node off and quiesces it.
	Fence natsraft.Fence
	// Dial reaches the cluster's accounts for the hand-off, normally a
	// natsraft.CredentialsDialer over Discovery.ClientURLs.
	Dial natsraft.Dialer
	// ClusterPort is the NATS route port, named by the diagnosis's
	// remedies; natsraft.DefaultClusterPort when 0.
	ClusterPort int
	// Auth says who may call the API (see prober.AuthOptions).
	Auth prober.AuthOptions
	// Resync is the reconciler's periodic resync; maintenance.DefaultResync
	// when 0.
	Resync time.Duration
	// CollectorInterval is the pause between two sweeps;
	// natsraft.DefaultCollectorInterval when 0.
	CollectorInterval time.Duration
	Logger            zerolog.Logger
	// Now is the clock; time.Now when nil.
	Now func() time.Time
	// PreStopHold bounds the pause of the local reconciler after a
	// pre-stop (see PreStop); DefaultPreStopHold when 0.
	PreStopHold time.Duration
	// PreStopKeepJetStream leaves the quiesce out of a pre-stop (see
	// maintenance.PreStop): the kernel fence's quiesce deletes the meta
	// group's log, which a rolling restart must keep.
	PreStopKeepJetStream bool
	// BalanceAfterStart has the pod take its share of its dc's leaderships
	// once it is ready after its server's start (see takeShare): after a
	// rolling restart the leaderships end up balanced.
	BalanceAfterStart bool
	// Events records, on the pod, what each pre-stop did (Normal
	// PreStopHandedOff, or Warning PreStopIncomplete with the failed
	// steps), so that a rolling restart that cost an election says why in
	// `kubectl describe pod` and `kubectl get events`; nil records
	// nothing.
	Events EventRecorder

	serving
	preStopMu  sync.Mutex // one PreStop at a time
	mu         sync.Mutex
	reconciler *maintenance.Reconciler
	localDC    string
	member     *natsraft.Member
	collector  *natsraft.Collector
	// preStopScope is the Scope of a pre-stop's hand-off, from the
	// stored document.
	preStopScope func(context.Context) natsraft.Scope
	// hold is set by PreStop; pauseReconciler stops the running local
	// reconciler and returns once it has stopped.
	hold            *preStopHold
	pauseReconciler func()
}

// Reconciler returns the local node's reconciler, nil until the local dc
// is known.
func (a *Sidecar) Reconciler() *maintenance.Reconciler {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.reconciler
}

// DC returns the local pod's dc, "" until it is known.
func (a *Sidecar) DC() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.localDC
}

// validate reports the wiring mistakes of a.
func (a *Sidecar) validate() error {
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

// localDCPoll is how often the sidecar looks for its own dc while it does
// not know it yet, and then for a change of it.
const localDCPoll = 250 * time.Millisecond

// Run serves the API at once (so that /livez answers while NATS starts),
// follows the pods, sweeps them, and starts the local reconciler as soon
// as the local pod's dc is known. It blocks until ctx ends, then shuts down
// in order: API, reconciler, collector and discovery. The local node is
// left as it is: a restarted sidecar takes over from what it finds.
func (a *Sidecar) Run(ctx context.Context) error {
	if err := a.validate(); err != nil {
		return err
	}
	log := a.Logger.With().Str("pod", a.Pod).Logger()
	now := a.Now
	if now == nil {
		now = time.Now
	}
	store := kube.NewConfigMapStore(a.ConfigMaps, kube.ConfigMapStoreOptions{
		Namespace: a.Namespace,
		Name:      a.ConfigMapName,
		Logger:    log.With().Str("component", "store").Logger(),
	})
	collector := natsraft.NewCollector(natsraft.CollectorOptions{
		Interval: a.CollectorInterval,
		// Between two sweeps, a look at the local server's routes every
		// 250 ms: a peer lost is swept at once (natsraft's linkWatch),
		// for four requests a second to the local server whatever the
		// number of pods.
		WatchInterval: natsraft.DefaultWatchInterval,
		Self:          a.Pod,
		Logger:        log,
	})
	handoff := &natsraft.HandOff{Views: collector, Dial: a.Dial, Logger: log.With().Str("component", "handoff").Logger()}
	svc := &maintenance.Service{
		Store:   store,
		Views:   &dcViews{views: collector, dcs: a.Discovery.DCs},
		Leaders: handoff,
		Now:     now,
		Logger:  log,
		// Rollouts that restart pods delete them; their StatefulSet makes
		// them again.
		Restarter: a.Discovery.Restarter(),
	}
	driver := maintenance.NewRolloutDriver(maintenance.RolloutDriverOptions{
		Service: svc,
		ID:      a.Pod,
		Logger:  log.With().Str("component", "rollout").Logger(),
	})
	readiness := &prober.ViewReadiness{
		Local: map[string]func() (bool, string){a.Pod: a.localReady},
		Views: collector,
	}
	feed := newEventFeed(log)
	defer feed.hub.Close()
	srv := prober.NewServer(prober.Options{
		Addr:        a.Listen,
		Service:     svc,
		Views:       collector,
		DCs:         a.Discovery.DCs,
		Readiness:   readiness,
		Auth:        a.Auth,
		ClusterPort: a.ClusterPort,
		PreStop:     a.PreStop,
		Reports:     collector,
		PeerIP:      a.Discovery.IsPeerIP,
		Events:      feed.hub,
		Logger:      log.With().Str("component", "http").Logger(),
		Now:         now,
	})
	if err := srv.Open(); err != nil {
		return fmt.Errorf("listen %s: %w", a.Listen, err)
	}

	member := natsraft.NewMember(a.Pod, a.Fence, handoff)
	a.mu.Lock()
	a.member, a.collector = member, collector
	a.preStopScope = func(ctx context.Context) natsraft.Scope {
		doc, err := store.Get(ctx)
		if err != nil {
			log.Warn().Err(err).Msg("pre-stop: the maintenance state is unreadable; the hand-off avoids no pod out of service")
			return natsraft.Scope{Leaving: true}
		}
		v, _ := svc.Views.View(ctx)
		return maintenance.HandOffScope(v, doc, a.Pod, true, now())
	}
	a.mu.Unlock()

	g := newRunGroup(ctx)
	g.Go("http server", srv.Wait)
	g.Go("discovery", a.Discovery.Run)
	g.Go("rollout driver", driver.Run)
	g.Go("event watcher", feed.watcher(store, collector, a.Discovery.DCs, srv).Run)
	g.Go("peers", func(ctx context.Context) error { return a.followPeers(ctx, collector, g.Go) })
	g.Go("local node", func(ctx context.Context) error {
		return a.runLocal(ctx, store, member, svc.Views, collector, log)
	})

	if a.BalanceAfterStart {
		g.Go("leadership share", func(ctx context.Context) error {
			return takeShare(ctx, a.Pod, svc, shareInputs{ready: readiness, dc: a.DC, started: func() time.Time {
				if v := collector.Latest(); v != nil {
					if n, ok := v.Node(a.Pod); ok && n.Reachable {
						return n.Started
					}
				}
				return time.Time{}
			}, stopping: a.preStopping}, log.With().Str("component", "share").Logger())
		})
	}

	a.serving.start(srv)
	log.Info().Str("addr", srv.Addr()).Str("namespace", a.Namespace).Msg("sidecar serving")

	return g.Wait(ctx, closeServer(ctx, srv, log))
}

// followPeers hands the discovered endpoints to the collector, and starts
// the collector once the first list is in.
func (a *Sidecar) followPeers(ctx context.Context, c *natsraft.Collector, goRun func(string, func(context.Context) error)) error {
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
// always apply to the dc the API shows the pod in. A pre-stop pauses it
// until its hold ends (see PreStop). Between two reconcilers the node stays
// as it is.
func (a *Sidecar) runLocal(ctx context.Context, store maintenance.Store, node maintenance.Node, views maintenance.ViewSource, c *natsraft.Collector, log zerolog.Logger) error {
	tick := time.NewTicker(localDCPoll)
	defer tick.Stop()
	dc := ""
	for {
		for {
			if dc == "" {
				dc = a.lookupDC(c)
			}
			if dc != "" && !a.holding(c, log) {
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
			Views:  views,
			Logger: log,
		})
		done := make(chan struct{})
		a.mu.Lock()
		if a.hold != nil {
			// A pre-stop came in since the look above.
			a.mu.Unlock()
			stop()
			continue
		}
		a.reconciler, a.localDC = r, dc
		a.pauseReconciler = func() { stop(); <-done }
		a.mu.Unlock()
		go func() {
			defer close(done)
			_ = r.Run(rctx)
		}()

		next := dc
	watch:
		for next == dc {
			select {
			case <-ctx.Done():
				stop()
				<-done
				return nil
			case <-rctx.Done():
				break watch // paused by a pre-stop
			case <-tick.C:
			}
			if found := a.lookupDC(c); found != "" {
				next = found
			}
		}
		stop()
		<-done
		a.mu.Lock()
		a.pauseReconciler = nil
		a.mu.Unlock()
		if next == dc {
			log.Info().Msg("reconciler paused by a pre-stop")
			continue
		}
		log.Info().Str("from", dc).Str("to", next).Msg("local dc changed, restarting the reconciler")
		dc = next
	}
}

// lookupDC returns the local pod's dc: its dc label, else the NATS cluster
// name its server reports in the latest view; "" while neither is known.
func (a *Sidecar) lookupDC(c *natsraft.Collector) string {
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
func (a *Sidecar) localReady() (bool, string) {
	if ok, msg, held := a.preStopReady(); held {
		return ok, msg
	}
	r := a.Reconciler()
	if r != nil {
		return r.Ready()
	}
	select {
	case <-a.Discovery.Synced():
		if _, ok := a.Discovery.Peer(a.Pod); !ok {
			return false, fmt.Sprintf("pod %s is not among the pods the selector %q finds", a.Pod, a.Discovery.Selector())
		}
	default:
		return false, "waiting for the list of pods"
	}
	return false, fmt.Sprintf("waiting for %s's NATS server to report its cluster (dc)", a.Pod)
}

// KernelSidecarConfig is what one NATS pod's sidecar needs in production:
// where it runs, how it reaches the API server and NATS, and how the kernel
// fence cuts and quiesces the local server. cmd/prober fills it from the
// flags of `prober serve`.
type KernelSidecarConfig struct {
	// Listen is the API address.
	Listen string
	// Pod is this pod's name (= its NATS server name); Namespace holds the
	// pods and the ConfigMap.
	Pod, Namespace string
	// Client reaches the API server (pods, the ConfigMap, TokenReview and
	// SubjectAccessReview).
	Client kubernetes.Interface
	// ConfigMap names the maintenance ConfigMap.
	ConfigMap string
	// Selector selects the NATS pods; DCLabel is the pod label naming a
	// pod's dc instead of its NATS cluster name.
	Selector labels.Selector
	DCLabel  string
	// The NATS ports: monitoring and client (a pod's annotations may
	// override them), cluster and gateway (cut by the fence; gateway 0 when
	// there are none).
	MonitorPort, ClientPort, ClusterPort, GatewayPort int
	// CredentialsDir holds a user per NATS account (see
	// natsraft.CredentialsDialer).
	CredentialsDir string
	// ConfigInclude is the file the NATS configuration includes after its
	// jetstream block; the fence writes it to quiesce JetStream.
	ConfigInclude string
	// PreStopBinary, when not empty, is where the sidecar copies its own
	// binary before NATS starts: a volume the NATS container mounts, so
	// that its preStop hook can run `prober prestop`.
	PreStopBinary string
	// BalanceAfterStart: see Sidecar.BalanceAfterStart.
	BalanceAfterStart bool
	// ShareSweeps has each sidecar read only its own server and ask the
	// other sidecars for theirs (GET /local/report on the port of Listen,
	// see natsraft/report.go): every server then answers one sweep per
	// interval instead of one per pod.
	ShareSweeps bool
	// Reload makes NATS reload its configuration; nil means over the
	// system account.
	Reload func(context.Context) error
	// Restart stops the NATS server so that its container starts it again
	// (natsraft.SignalRestart); nil: a server that started quiesced is
	// resumed by a reload (see natsraft.KernelFence.Resume).
	Restart func(ctx context.Context) error
	// TokenAudiences are the audiences a caller's token must be issued
	// for; empty means the API server's.
	TokenAudiences []string
	// LoopbackNeedsToken requires a token from loopback callers too.
	LoopbackNeedsToken bool
	Resync             time.Duration
	Logger             zerolog.Logger
}

// bootStateWait bounds how long a starting sidecar tries to read the
// maintenance state before its NATS server may start.
const bootStateWait = 20 * time.Second

// holdAtBoot brings a pod recreated while in maintenance (a node drain, a
// reboot: often the very reason for the maintenance) up fenced and
// quiesced, before the API serves: the startup probe passes only then, and
// only then does the kubelet start NATS. It reads the desired state and the
// pod's dc label; when they cannot be read within bootStateWait the node
// starts as it would without maintenance, and the reconciler brings it
// into maintenance once it can read them.
func holdAtBoot(ctx context.Context, c KernelSidecarConfig, fence *natsraft.KernelFence, log zerolog.Logger) error {
	ctx, cancel := context.WithTimeout(ctx, bootStateWait)
	defer cancel()
	store := kube.NewConfigMapStore(c.Client.CoreV1(), kube.ConfigMapStoreOptions{
		Namespace: c.Namespace, Name: c.ConfigMap, Logger: log.With().Str("component", "store").Logger(),
	})
	var doc *maintenance.Document
	var dcLabel string
	err := wait.PollUntilContextCancel(ctx, 250*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		d, err := store.Get(ctx)
		if err != nil {
			log.Warn().Err(err).Msg("read the maintenance state at boot")
			return false, nil
		}
		pod, err := c.Client.CoreV1().Pods(c.Namespace).Get(ctx, c.Pod, metav1.GetOptions{})
		if err != nil {
			log.Warn().Err(err).Msg("read the pod at boot")
			return false, nil
		}
		doc, dcLabel = d, pod.Labels[c.DCLabel]
		return true, nil
	})
	if err != nil {
		log.Error().Err(err).Dur("waited", bootStateWait).
			Msg("maintenance state unreadable at boot: NATS starts unfenced, the reconciler takes over once it can read it")
		return nil
	}
	key, held := doc.HeldAtBoot(c.Pod, dcLabel, time.Now())
	if !held {
		return nil
	}
	if err := fence.HoldAtBoot(); err != nil {
		return fmt.Errorf("hold %s in maintenance at boot (%s): %w", c.Pod, key, err)
	}
	log.Info().Str("entry", key).Msg("in maintenance at boot: NATS starts quiesced and fenced")
	return nil
}

// LocalURLs are the local NATS server's monitoring and client URLs: the
// sidecar shares its pod's network namespace.
func (c KernelSidecarConfig) LocalURLs() (monitor, client string) {
	return "http://127.0.0.1:" + strconv.Itoa(c.MonitorPort), "nats://127.0.0.1:" + strconv.Itoa(c.ClientPort)
}

// RunKernelSidecar wires and runs the production sidecar: the pod
// discovery, the credentials dialer, the kernel fence over the local NATS
// server, and the API with TokenReview and SubjectAccessReview. It writes
// the file NATS includes before the API serves: the startup probe passes
// only then, and only then does the kubelet start NATS, which cannot start
// without it. It blocks until ctx ends.
func RunKernelSidecar(ctx context.Context, c KernelSidecarConfig) error {
	log := c.Logger.With().Str("pod", c.Pod).Logger()
	reportPort := 0
	if c.ShareSweeps {
		var err error
		if reportPort, err = listenPort(c.Listen); err != nil {
			return fmt.Errorf("shared sweeps: %w", err)
		}
	}
	disc, err := kube.NewPodDiscovery(c.Client.CoreV1().Pods(c.Namespace), kube.PodDiscoveryOptions{
		Selector:    c.Selector,
		MonitorPort: c.MonitorPort,
		ClientPort:  c.ClientPort,
		ReportPort:  reportPort,
		DCLabel:     c.DCLabel,
		Logger:      log,
	})
	if err != nil {
		return err
	}
	dialer := &natsraft.CredentialsDialer{Dir: c.CredentialsDir, Servers: disc.ClientURLs, Name: "prober-" + c.Pod}
	monitorURL, clientURL := c.LocalURLs()
	system, err := dialer.DialServer(natsraft.SystemAccount, clientURL)
	if err != nil {
		return fmt.Errorf("system account connection to the local server: %w", err)
	}
	defer system.Close()
	fo := natsraft.KernelFenceOptions{
		Name:          c.Pod,
		ClusterPort:   c.ClusterPort,
		GatewayPort:   c.GatewayPort,
		ConfigInclude: c.ConfigInclude,
		Reload:        c.Reload,
		Restart:       c.Restart,
		System:        system,
		MonitorURL:    monitorURL,
		Peers: func(context.Context) ([]string, error) {
			var urls []string
			for _, p := range disc.Peers() {
				if p.Name != c.Pod {
					urls = append(urls, p.MonitorURL)
				}
			}
			return urls, nil
		},
		Logger: log,
	}
	if err := fo.Validate(); err != nil {
		return fmt.Errorf("kernel fence: %w", err)
	}
	fence := natsraft.NewKernelFence(fo)
	if err := fence.EnsureInclude(); err != nil {
		return fmt.Errorf("included NATS configuration: %w", err)
	}
	if c.PreStopBinary != "" {
		if err := installSelf(c.PreStopBinary); err != nil {
			return fmt.Errorf("binary for the preStop hook: %w", err)
		}
	}
	if err := holdAtBoot(ctx, c, fence, log); err != nil {
		return err
	}
	authLog := log.With().Str("component", "auth").Logger()
	sc := &Sidecar{
		Listen:        c.Listen,
		Pod:           c.Pod,
		Namespace:     c.Namespace,
		ConfigMaps:    c.Client.CoreV1(),
		ConfigMapName: c.ConfigMap,
		Discovery:     disc,
		Fence:         fence,
		Dial:          dialer.Dial,
		ClusterPort:   c.ClusterPort,
		Auth: prober.AuthOptions{
			Authenticator: prober.NewTokenReviewAuthenticator(c.Client.AuthenticationV1().TokenReviews(), prober.TokenReviewOptions{
				Audiences: c.TokenAudiences,
				Logger:    authLog,
			}),
			Authorizer: prober.NewSubjectAccessReviewAuthorizer(c.Client.AuthorizationV1().SubjectAccessReviews(), prober.SubjectAccessReviewOptions{
				Namespace: c.Namespace,
				Name:      c.ConfigMap,
				Logger:    authLog,
			}),
			LoopbackNeedsToken: c.LoopbackNeedsToken,
		},
		Resync:               c.Resync,
		Logger:               c.Logger,
		PreStopKeepJetStream: true,
		BalanceAfterStart:    c.BalanceAfterStart,
		Events: &kube.PodEvents{
			Pods:      c.Client.CoreV1().Pods(c.Namespace),
			Events:    c.Client.CoreV1().Events(c.Namespace),
			Pod:       c.Pod,
			Namespace: c.Namespace,
		},
	}
	return sc.Run(ctx)
}

// listenPort returns the port of a listen address such as ":8889".
func listenPort(addr string) (int, error) {
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		return 0, fmt.Errorf("listen address %q: %w", addr, err)
	}
	port, err := strconv.Atoi(p)
	if err != nil || port < 1 || port > 65535 {
		return 0, fmt.Errorf("listen address %q: want a fixed port", addr)
	}
	return port, nil
}

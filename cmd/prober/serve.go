package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/rs/zerolog"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/prober-dev/prober/app"
	"github.com/prober-dev/prober/kube"
	"github.com/prober-dev/prober/maintenance"
	"github.com/prober-dev/prober/natsraft"
)

// Reload methods of --reload.
const (
	reloadSystem = "system"
	reloadSignal = "signal"
)

// ServeOptions are the flags of `prober serve`, the sidecar of Kubernetes
// mode.
type ServeOptions struct {
	Listen     string
	Kubeconfig string
	Pod        string
	Namespace  string
	Selector   string
	ConfigMap  string
	DCLabel    string

	MonitorPort int
	ClientPort  int
	ClusterPort int
	GatewayPort int

	CredentialsDir string
	ConfigInclude  string
	Reload         string
	PIDFile        string
	PreStopBinary  string
	// BalanceAfterStart: the pod takes its share of the leaderships once
	// ready after the sidecar's start (after a rolling restart).
	BalanceAfterStart bool
	// ShareSweeps: each sidecar reads only its own server and serves it to
	// the others (app.KernelSidecarConfig.ShareSweeps).
	ShareSweeps bool

	TokenAudiences     string
	LoopbackNeedsToken bool

	Resync    time.Duration
	LogFormat string
	LogLevel  string

	// Set by Complete.
	logger    zerolog.Logger
	clientset kubernetes.Interface
	audiences []string
	selector  labels.Selector
	reload    func(context.Context) error
	restart   func(context.Context) error
}

// Flags registers the options on fs with their defaults; the pod and its
// namespace default to $POD_NAME and $POD_NAMESPACE (the downward API).
func (o *ServeOptions) Flags(fs *flag.FlagSet) {
	fs.StringVar(&o.Listen, "listen", ":8889", "address of the maintenance API")
	fs.StringVar(&o.Kubeconfig, "kubeconfig", "", "kubeconfig file (token or client certificate users); default: the in-cluster config")
	fs.StringVar(&o.Pod, "pod-name", os.Getenv("POD_NAME"), "this pod's name, which is its NATS server name (default $POD_NAME)")
	fs.StringVar(&o.Namespace, "namespace", os.Getenv("POD_NAMESPACE"), "namespace of the pods and the ConfigMap (default $POD_NAMESPACE)")
	fs.StringVar(&o.Selector, "selector", "app.kubernetes.io/name=nats", "label selector of the NATS pods")
	fs.StringVar(&o.ConfigMap, "configmap", kube.DefaultConfigMapName, "ConfigMap holding the maintenance state")
	fs.StringVar(&o.DCLabel, "dc-label", kube.DefaultDCLabel, "pod label that names a pod's dc instead of its NATS cluster name")
	fs.IntVar(&o.MonitorPort, "monitor-port", kube.DefaultMonitorPort, "NATS monitoring port (a pod's annotation "+kube.MonitorPortAnnotation+" overrides it)")
	fs.IntVar(&o.ClientPort, "client-port", kube.DefaultClientPort, "NATS client port (a pod's annotation "+kube.ClientPortAnnotation+" overrides it)")
	fs.IntVar(&o.ClusterPort, "cluster-port", natsraft.DefaultClusterPort, "NATS route port, cut by the fence")
	fs.IntVar(&o.GatewayPort, "gateway-port", 0, "NATS gateway port, cut by the fence too; 0: no gateways")
	fs.StringVar(&o.CredentialsDir, "credentials-dir", "/etc/prober/credentials", "folder with a user per NATS account: <ACCOUNT>.creds or <ACCOUNT>/user and <ACCOUNT>/password")
	fs.StringVar(&o.ConfigInclude, "config-include", "", "file the NATS configuration includes after its jetstream block; the prober writes it to quiesce JetStream (required)")
	fs.StringVar(&o.Reload, "reload", reloadSystem, "how NATS reloads its configuration: system (a request over the system account) or signal (SIGHUP, needs a shared process namespace)")
	fs.StringVar(&o.PIDFile, "nats-pid-file", "", "the NATS server's pid_file, for --reload=signal")
	fs.StringVar(&o.PreStopBinary, "prestop-binary", "", "copy this binary there before NATS starts (a volume the NATS container mounts), so that its preStop hook can run `prober prestop`; empty: no copy")
	fs.BoolVar(&o.BalanceAfterStart, "balance-after-start", true, "once this pod is ready after the sidecar's start, move to it its share of its dc's leaderships (POST /balance?to=<pod>): after a rolling restart's hand-offs the leaderships end up balanced")
	fs.BoolVar(&o.ShareSweeps, "share-sweeps", true, "read only the local NATS server and ask the other pods' sidecars (GET /local/report on the --listen port) for theirs, so that each server answers one sweep per interval however many pods there are; a sidecar that does not answer is read directly")
	fs.StringVar(&o.TokenAudiences, "token-audiences", "", "comma separated audiences a caller's token must be issued for; default: the API server's")
	fs.BoolVar(&o.LoopbackNeedsToken, "loopback-needs-token", false, "require a token from loopback callers too (behind a local proxy such as a service mesh)")
	fs.DurationVar(&o.Resync, "resync", maintenance.DefaultResync, "periodic resync of the reconciler")
	fs.StringVar(&o.LogFormat, "log-format", "json", "log format: json or console")
	fs.StringVar(&o.LogLevel, "log-level", "info", "log level: debug, info, warn, error")
}

// Validate checks every option and returns all problems at once.
func (o *ServeOptions) Validate() error {
	var errs []error
	for flagName, v := range map[string]string{"pod-name": o.Pod, "namespace": o.Namespace, "configmap": o.ConfigMap} {
		switch {
		case v == "":
			errs = append(errs, fmt.Errorf("--%s is required", flagName))
		default:
			if msgs := validation.IsDNS1123Subdomain(v); len(msgs) > 0 {
				errs = append(errs, fmt.Errorf("--%s %q: %s", flagName, v, strings.Join(msgs, "; ")))
			}
		}
	}
	if _, err := kube.ParseSelector(o.Selector); err != nil {
		errs = append(errs, fmt.Errorf("--selector: %w", err))
	}
	if msgs := validation.IsQualifiedName(o.DCLabel); len(msgs) > 0 {
		errs = append(errs, fmt.Errorf("--dc-label %q: %s", o.DCLabel, strings.Join(msgs, "; ")))
	}
	for _, p := range []struct {
		name     string
		v        int
		optional bool
	}{
		{"monitor-port", o.MonitorPort, false},
		{"client-port", o.ClientPort, false},
		{"cluster-port", o.ClusterPort, false},
		{"gateway-port", o.GatewayPort, true},
	} {
		if (p.v == 0 && !p.optional) || p.v < 0 || p.v > 65535 {
			errs = append(errs, fmt.Errorf("--%s %d: out of range", p.name, p.v))
		}
	}
	if o.CredentialsDir == "" {
		errs = append(errs, errors.New("--credentials-dir is required"))
	}
	if o.PreStopBinary != "" && !filepath.IsAbs(o.PreStopBinary) {
		errs = append(errs, fmt.Errorf("--prestop-binary %q: an absolute path", o.PreStopBinary))
	}
	if o.ConfigInclude == "" {
		errs = append(errs, errors.New("--config-include is required"))
	} else if !filepath.IsAbs(o.ConfigInclude) {
		errs = append(errs, fmt.Errorf("--config-include %q: an absolute path", o.ConfigInclude))
	}
	switch o.Reload {
	case reloadSystem:
	case reloadSignal:
		if o.PIDFile == "" {
			errs = append(errs, errors.New("--reload=signal needs --nats-pid-file"))
		}
	default:
		errs = append(errs, fmt.Errorf("--reload %q: %s or %s", o.Reload, reloadSystem, reloadSignal))
	}
	errs = append(errs, validateRunFlags(o.Resync, o.LogFormat, o.LogLevel)...)
	return errors.Join(errs...)
}

// Complete builds the logger and the Kubernetes client: from --kubeconfig,
// else the in-cluster config of the pod's ServiceAccount.
func (o *ServeOptions) Complete(stderr io.Writer) error {
	o.logger = newLogger(stderr, o.LogFormat, o.LogLevel)
	routeKlog(o.logger)
	var err error
	if o.selector, err = kube.ParseSelector(o.Selector); err != nil {
		return err
	}
	if o.Reload == reloadSignal {
		o.reload = natsraft.SignalReload(o.PIDFile)
		o.restart = natsraft.SignalRestart(o.PIDFile)
	}
	for _, a := range strings.Split(o.TokenAudiences, ",") {
		if a = strings.TrimSpace(a); a != "" {
			o.audiences = append(o.audiences, a)
		}
	}
	var cfg *rest.Config
	if o.Kubeconfig != "" {
		cfg, err = loadKubeconfig(o.Kubeconfig)
	} else {
		cfg, err = rest.InClusterConfig()
	}
	if err != nil {
		return fmt.Errorf("kubernetes client config: %w", err)
	}
	cfg.UserAgent = "prober/" + o.Pod
	if o.clientset, err = kubernetes.NewForConfig(cfg); err != nil {
		return fmt.Errorf("kubernetes client: %w", err)
	}
	return nil
}

// loadKubeconfig builds a client config from the current context of a
// kubeconfig file, with client-go's own loader (relative paths, tokens,
// certificates and exec plugins as kubectl reads them). The sidecar runs
// with its ServiceAccount; --kubeconfig is for development.
func loadKubeconfig(path string) (*rest.Config, error) {
	cfg, err := clientcmd.BuildConfigFromFlags("", path)
	if err != nil {
		return nil, fmt.Errorf("kubeconfig %s: %w", path, err)
	}
	return cfg, nil
}

func runServe(args []string, _, stderr io.Writer) int {
	var o ServeOptions
	if code, ok := parseOptions("prober serve", &o, args, stderr); !ok {
		return code
	}
	ctx, stop := signalContext()
	defer stop()
	if err := o.run(ctx); err != nil {
		o.logger.Error().Err(err).Msg("prober stopped")
		return 1
	}
	return 0
}

// run runs the sidecar the options describe.
func (o *ServeOptions) run(ctx context.Context) error {
	return app.RunKernelSidecar(ctx, o.config())
}

// config is the sidecar the completed options describe.
func (o *ServeOptions) config() app.KernelSidecarConfig {
	return app.KernelSidecarConfig{
		Listen:             o.Listen,
		Pod:                o.Pod,
		Namespace:          o.Namespace,
		Client:             o.clientset,
		ConfigMap:          o.ConfigMap,
		Selector:           o.selector,
		DCLabel:            o.DCLabel,
		MonitorPort:        o.MonitorPort,
		ClientPort:         o.ClientPort,
		ClusterPort:        o.ClusterPort,
		GatewayPort:        o.GatewayPort,
		CredentialsDir:     o.CredentialsDir,
		ConfigInclude:      o.ConfigInclude,
		PreStopBinary:      o.PreStopBinary,
		BalanceAfterStart:  o.BalanceAfterStart,
		ShareSweeps:        o.ShareSweeps,
		Reload:             o.reload,
		Restart:            o.restart,
		TokenAudiences:     o.audiences,
		LoopbackNeedsToken: o.LoopbackNeedsToken,
		Resync:             o.Resync,
		Logger:             o.logger,
	}
}

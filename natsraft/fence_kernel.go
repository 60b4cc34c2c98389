package natsraft

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"
)

// The kernel fence: the production sidecar's way of putting the NATS server
// of its pod into maintenance. The NATS server runs as another process in
// the same pod, so the fence acts on what the two share: the network
// namespace (an nftables table that rejects the cluster and gateway ports,
// and the kernel's socket table, whose established route sockets it
// destroys), a configuration file that the server includes (quiesce), and
// the server's monitoring endpoint and system account (verification,
// reload, moving clients). Every answer it gives is read from that shared
// state, never from a flag of its own, so a restarted sidecar picks up
// where the last one stopped.

// Defaults of KernelFenceOptions.
const (
	DefaultFenceTable          = "prober_fence"
	DefaultFenceTimeout        = 30 * time.Second
	DefaultFenceRequestTimeout = 10 * time.Second
	DefaultMoveClientsGrace    = 2 * time.Second
)

const (
	kernelFencePollInterval = 20 * time.Millisecond
	kernelFenceConnzPage    = 1024
	// The NATS server may run as another user: it must read the file.
	kernelFenceIncludeFileMode = 0o644
)

// The two contents of the included file. The NATS configuration includes
// it after its own jetstream block: a later key replaces an earlier one,
// so the "off" content switches JetStream off and the "on" content leaves
// the configuration as written.
const (
	quiesceIncludeOn = "# Managed by prober: empty while this server runs normally.\n" +
		"# Include it after the jetstream block; during maintenance it switches JetStream off.\n"
	quiesceIncludeOff = "# Managed by prober: this server is in maintenance, JetStream is off.\n" +
		"jetstream { enabled: false }\n"
)

// errSockDestroyUnsupported says that the kernel cannot destroy sockets on
// request (it lacks CONFIG_INET_DIAG_DESTROY): the firewall rules then cut
// a route only when it next carries a packet.
var errSockDestroyUnsupported = errors.New("kernel cannot destroy sockets (CONFIG_INET_DIAG_DESTROY missing)")

// KernelFenceOptions configures a KernelFence.
type KernelFenceOptions struct {
	// Name is the local server's name (the pod's): the server at
	// MonitorURL must report it, or the fence would act on another.
	Name string
	// ClusterPort is the NATS route port, on this server and its peers
	// alike; 0 means DefaultClusterPort.
	ClusterPort int
	// GatewayPort is the NATS gateway port; 0 means no gateways.
	GatewayPort int
	// Table names the nftables table (family inet) of the fence; empty
	// means DefaultFenceTable.
	Table string
	// NetNS is the path of the network namespace to fence (for example
	// /var/run/netns/<name> or /proc/<pid>/ns/net); empty means the
	// sidecar's own, which in a pod is the NATS server's too.
	NetNS string
	// ConfigInclude is the path of the file that the NATS configuration
	// includes after its jetstream block; Quiesce and Resume rewrite it.
	ConfigInclude string
	// Reload makes the NATS server reload its configuration. Nil means over
	// the system account (System); SignalReload sends SIGHUP instead, which
	// needs a shared process namespace.
	Reload func(ctx context.Context) error
	// Restart makes the NATS server stop so that its container starts it
	// again (SignalRestart); Resume needs it for a server that started
	// quiesced (see Resume). Nil: such a server is resumed by a reload,
	// with the NATS flaw Resume describes.
	Restart func(ctx context.Context) error
	// System is a connection to the local NATS server, and only to it
	// (connect with nats.IgnoreDiscoveredServers), as a user of the system
	// account. MoveClients needs it, and so does the default Reload: over
	// the client port, which the fence leaves open, it reaches the server
	// while it is fenced too.
	System *nats.Conn
	// MonitorURL is the base URL of the local server's monitoring endpoint.
	MonitorURL string
	// Peers returns the base URLs of the monitoring endpoints of the other
	// servers, those of other clusters (gateways) included; the fence is
	// verified from their side too.
	Peers func(ctx context.Context) ([]string, error)
	// HTTPClient does the monitoring requests; nil means a client of our
	// own with a short timeout.
	HTTPClient *http.Client
	// Timeout bounds the wait of Fence, Unfence, Quiesce and Resume, also
	// under a caller's later deadline (a reconciler's step allows minutes:
	// a fence that cannot finish says so after its own timeout); 0 means
	// DefaultFenceTimeout.
	Timeout time.Duration
	// RequestTimeout bounds one system-account request; 0 means
	// DefaultFenceRequestTimeout.
	RequestTimeout time.Duration
	// MoveClientsGrace is how long MoveClients lets clients leave after the
	// lame-duck notice before it disconnects the rest; 0 means
	// DefaultMoveClientsGrace.
	MoveClientsGrace time.Duration
	Logger           zerolog.Logger
}

// KernelFence fences the NATS server of the sidecar's pod from its peers
// in the kernel, and quiesces it through its configuration. It implements
// the fence half of maintenance.Node. Each method is idempotent, and the
// state it reports is read from the kernel and the server, so a new
// KernelFence sees the fence of an earlier one.
type KernelFence struct {
	o     KernelFenceOptions
	log   zerolog.Logger
	links *linkVerifier
}

// Validate reports every problem of the options at once.
func (o KernelFenceOptions) Validate() error {
	var errs []error
	if o.Name == "" {
		errs = append(errs, errors.New("the local server's name is required"))
	}
	if o.ClusterPort < 0 || o.ClusterPort > 65535 {
		errs = append(errs, fmt.Errorf("cluster port %d is out of range", o.ClusterPort))
	}
	if o.GatewayPort < 0 || o.GatewayPort > 65535 {
		errs = append(errs, fmt.Errorf("gateway port %d is out of range", o.GatewayPort))
	}
	if o.GatewayPort != 0 && o.GatewayPort == cmp.Or(o.ClusterPort, DefaultClusterPort) {
		errs = append(errs, fmt.Errorf("gateway port %d is the cluster port", o.GatewayPort))
	}
	if o.MonitorURL == "" {
		errs = append(errs, errors.New("the local monitoring URL is required"))
	} else if u, err := url.Parse(o.MonitorURL); err != nil || u.Host == "" {
		errs = append(errs, fmt.Errorf("monitoring URL %q is not an absolute URL", o.MonitorURL))
	}
	if o.ConfigInclude == "" {
		errs = append(errs, errors.New("the included configuration file is required (quiesce)"))
	}
	if o.Reload == nil && o.System == nil {
		errs = append(errs, errors.New("reload needs a system-account connection or a Reload function"))
	}
	return errors.Join(errs...)
}

// NewKernelFence returns a KernelFence with the defaults filled in.
func NewKernelFence(o KernelFenceOptions) *KernelFence {
	if o.ClusterPort == 0 {
		o.ClusterPort = DefaultClusterPort
	}
	if o.Table == "" {
		o.Table = DefaultFenceTable
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultFenceTimeout
	}
	if o.RequestTimeout <= 0 {
		o.RequestTimeout = DefaultFenceRequestTimeout
	}
	if o.MoveClientsGrace <= 0 {
		o.MoveClientsGrace = DefaultMoveClientsGrace
	}
	if o.HTTPClient == nil {
		o.HTTPClient = &http.Client{Timeout: monitorRequestTimeout}
	}
	f := &KernelFence{o: o, log: o.Logger.With().Str("component", "kernelfence").Logger()}
	f.links = &linkVerifier{
		name:     o.Name,
		client:   o.HTTPClient,
		local:    func() string { return o.MonitorURL },
		peers:    o.Peers,
		gateways: o.GatewayPort != 0,
		log:      f.log,
	}
	// A peer's fence cannot be read from here; a peer cut off from every
	// server with its JetStream off is fenced for maintenance, and no route
	// to it is missing.
	f.links.skip = f.links.cutOff
	if f.o.Reload == nil {
		f.o.Reload = f.systemReload
	}
	return f
}

// ports returns the ports the fence cuts.
func (f *KernelFence) ports() []uint16 {
	ps := []uint16{uint16(f.o.ClusterPort)}
	if f.o.GatewayPort != 0 {
		ps = append(ps, uint16(f.o.GatewayPort))
	}
	return ps
}

// Fenced reports whether the fence's nftables table exists in the network
// namespace. When nftables cannot be read that is an error, not an answer:
// a node wrongly taken as unfenced would be resumed behind its fence, one
// wrongly taken as fenced unfenced for nothing.
func (f *KernelFence) Fenced() (bool, error) {
	ok, err := f.tableExists()
	if err != nil {
		return false, fmt.Errorf("read the nftables table %s: %w", f.o.Table, err)
	}
	return ok, nil
}

// Fence installs the nftables table that rejects the cluster (and
// gateway) ports in both directions, destroys the established sockets on
// those ports, and returns once the cut is verified: the local server has
// no route or gateway connection left and no peer lists it any more. It is
// idempotent: the table is replaced atomically.
func (f *KernelFence) Fence(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, f.o.Timeout)
	defer cancel()
	start := time.Now()
	if err := f.applyTable(); err != nil {
		return fmt.Errorf("fence: nftables table %s: %w", f.o.Table, err)
	}
	killed, err := f.killSockets()
	switch {
	case errors.Is(err, errSockDestroyUnsupported):
		f.log.Warn().Err(err).Msg("established routes are cut when they next carry a packet")
	case err != nil:
		return fmt.Errorf("fence: destroy sockets: %w", err)
	}
	left, err := f.links.awaitCut(ctx, kernelFencePollInterval, f.killSockets)
	if err != nil {
		return fmt.Errorf("fence: still linked %v: %w", left, err)
	}
	f.log.Info().Int("sockets", killed).Dur("took", time.Since(start)).Msg("fenced")
	return nil
}

// Unfence deletes the fence's table and returns once the local server has
// its routes back to every peer of its cluster that answers (seen from
// both ends) and an outbound gateway to every other cluster with a peer
// that answers. It is idempotent.
func (f *KernelFence) Unfence(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, f.o.Timeout)
	defer cancel()
	start := time.Now()
	if err := f.removeTable(); err != nil {
		return fmt.Errorf("unfence: nftables table %s: %w", f.o.Table, err)
	}
	missing, err := f.links.awaitLinks(ctx, kernelFencePollInterval, f.killSockets)
	if err != nil {
		return fmt.Errorf("unfence: still missing %v: %w", missing, err)
	}
	f.log.Info().Dur("took", time.Since(start)).Msg("unfenced")
	return nil
}

// Quiesced reports whether the local server is quiesced: the included file
// holds the "off" content and the server's JetStream is off, as its /jsz
// says. A server whose JetStream is off for another reason — still starting,
// in lame-duck mode while its pod terminates, out of storage — is not
// quiesced: there is no quiesce to undo, and "resuming" it would report a
// way out of maintenance that the pod never entered. An unreachable server
// counts as not quiesced (its JetStream state is unknown, and quiescing
// again is harmless).
func (f *KernelFence) Quiesced() bool {
	b, err := os.ReadFile(f.o.ConfigInclude)
	if err != nil {
		if !errors.Is(err, os.ErrNotExist) {
			f.log.Warn().Err(err).Msg("cannot read the included configuration file")
		}
		return false
	}
	if string(b) != quiesceIncludeOff {
		return false
	}
	ctx, cancel := context.WithTimeout(context.Background(), monitorRequestTimeout)
	defer cancel()
	on, err := f.jetStreamOn(ctx)
	if err != nil {
		f.log.Warn().Err(err).Msg("cannot read JetStream state")
		return false
	}
	return !on
}

// Quiesce writes the "off" content to the included file, makes the server
// reload its configuration and returns once JetStream is off. A quiesced
// server stops campaigning, so a fenced follower cannot raise its term and
// depose healthy leaders when it comes back.
//
// NATS switches JetStream off on reload with DisableJetStream, which
// deletes the server's copy of the meta group's log; on Resume the server
// gets the meta state back from the meta leader. Stream data stays.
func (f *KernelFence) Quiesce(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, f.o.Timeout)
	defer cancel()
	if err := f.switchJetStream(ctx, false); err != nil {
		return fmt.Errorf("quiesce: %w", err)
	}
	return nil
}

// Resume writes the "on" content to the included file and, when JetStream
// is off, makes the server reload and returns once JetStream runs again.
// The file is rewritten even when JetStream runs, so that a quiesce
// interrupted between writing the file and the reload cannot switch
// JetStream off at the server's next start.
//
// A server that started quiesced (the file said "off" at its start: a pod
// recreated in maintenance, or a container restarted during one) is
// restarted instead, when Restart is set: NATS records a server among the
// JetStream servers it knows only at its start with JetStream on, so one
// switched on later by a reload never knows itself. Once it leads the meta
// group it then counts itself as unknown and offline: its /jsz names no
// meta leader, and stream placement leaves it out (a new R3 stream of a
// cluster of three finds too few servers). Started again with the file
// saying "on", it knows itself.
func (f *KernelFence) Resume(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, f.o.Timeout)
	defer cancel()
	if f.o.Restart != nil {
		started, bootedOff, err := f.startedQuiesced(ctx)
		if err != nil {
			return fmt.Errorf("resume: %w", err)
		}
		if bootedOff {
			if err := f.restartOn(ctx, started); err != nil {
				return fmt.Errorf("resume: %w", err)
			}
			return nil
		}
	}
	if err := f.switchJetStream(ctx, true); err != nil {
		return fmt.Errorf("resume: %w", err)
	}
	return nil
}

// startedQuiesced reports the local server's start time and whether it
// started quiesced: JetStream off, with the included file saying "off"
// since before the start (a quiesce by reload writes it after the start).
func (f *KernelFence) startedQuiesced(ctx context.Context) (time.Time, bool, error) {
	start, err := f.serverStart(ctx)
	if err != nil {
		return time.Time{}, false, err
	}
	on, err := f.jetStreamOn(ctx)
	if err != nil || on {
		return start, false, err
	}
	b, err := os.ReadFile(f.o.ConfigInclude)
	if err != nil {
		return start, false, fmt.Errorf("included configuration file: %w", err)
	}
	fi, err := os.Stat(f.o.ConfigInclude)
	if err != nil {
		return start, false, fmt.Errorf("included configuration file: %w", err)
	}
	return start, string(b) == quiesceIncludeOff && fi.ModTime().Before(start), nil
}

// serverStart reads the local server's start time from its /varz.
func (f *KernelFence) serverStart(ctx context.Context) (time.Time, error) {
	var varz varzDoc
	if err := getDoc(ctx, f.o.HTTPClient, f.o.MonitorURL, "/varz", nil, &varz); err != nil {
		return time.Time{}, err
	}
	return varz.Start, nil
}

// restartOn writes the "on" content to the included file, stops the local
// server (Restart) and returns once a server started after started runs
// JetStream and, when not fenced, has its links back.
func (f *KernelFence) restartOn(ctx context.Context, started time.Time) error {
	if err := ensureFileContent(f.o.ConfigInclude, []byte(quiesceIncludeOn), kernelFenceIncludeFileMode); err != nil {
		return fmt.Errorf("included configuration file: %w", err)
	}
	begin := time.Now()
	f.log.Info().Time("started", started).Msg("the server started quiesced: restarting it with JetStream on (a reload would leave it not knowing itself as a JetStream server)")
	if err := f.o.Restart(ctx); err != nil {
		return fmt.Errorf("restart: %w", err)
	}
	var lastErr error
	err := pollUntil(ctx, kernelFencePollInterval, func() bool {
		var now time.Time
		if now, lastErr = f.serverStart(ctx); lastErr != nil || !now.After(started) {
			return false
		}
		on, err := f.jetStreamOn(ctx)
		lastErr = err
		return err == nil && on
	})
	if err != nil {
		return fmt.Errorf("the server did not come back with JetStream on after its restart (last error: %v): %w", lastErr, err)
	}
	// Unfenced already, it must have its links back, as after Unfence.
	if fenced, err := f.Fenced(); err == nil && !fenced {
		if missing, err := f.links.awaitLinks(ctx, kernelFencePollInterval, f.killSockets); err != nil {
			return fmt.Errorf("restarted, still missing %v: %w", missing, err)
		}
	}
	f.log.Info().Dur("took", time.Since(begin)).Msg("server restarted with JetStream on")
	return nil
}

// HoldAtBoot readies a pod recreated in maintenance, before its NATS
// server starts: the included file switches JetStream off and the nftables
// table is in place, so that the server boots quiesced and fenced and
// never joins its peers. Nothing is verified (there is no server yet); the
// reconciler finds the node fenced and quiesced when it starts.
func (f *KernelFence) HoldAtBoot() error {
	if f.o.ConfigInclude == "" {
		return errors.New("no included configuration file configured")
	}
	if err := ensureFileContent(f.o.ConfigInclude, []byte(quiesceIncludeOff), kernelFenceIncludeFileMode); err != nil {
		return fmt.Errorf("hold at boot: included configuration file: %w", err)
	}
	if err := f.applyTable(); err != nil {
		return fmt.Errorf("hold at boot: nftables table %s: %w", f.o.Table, err)
	}
	return nil
}

// EnsureInclude creates the included file with the "on" content unless it
// exists: the server cannot start while a file it includes is missing, and
// an existing file may hold the quiesce of a running maintenance.
func (f *KernelFence) EnsureInclude() error {
	if f.o.ConfigInclude == "" {
		return errors.New("no included configuration file configured")
	}
	if _, err := os.Stat(f.o.ConfigInclude); err == nil {
		return nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("included configuration file: %w", err)
	}
	return writeFileAtomic(f.o.ConfigInclude, []byte(quiesceIncludeOn), kernelFenceIncludeFileMode)
}

func (f *KernelFence) switchJetStream(ctx context.Context, on bool) error {
	if f.o.ConfigInclude == "" {
		return errors.New("no included configuration file configured")
	}
	content := quiesceIncludeOff
	if on {
		content = quiesceIncludeOn
	}
	if err := ensureFileContent(f.o.ConfigInclude, []byte(content), kernelFenceIncludeFileMode); err != nil {
		return fmt.Errorf("included configuration file: %w", err)
	}
	running, err := f.jetStreamOn(ctx)
	if err != nil {
		return err
	}
	if running == on {
		return nil
	}
	start := time.Now()
	if err := f.o.Reload(ctx); err != nil {
		return fmt.Errorf("reload: %w", err)
	}
	var lastErr error
	err = pollUntil(ctx, kernelFencePollInterval, func() bool {
		running, lastErr = f.jetStreamOn(ctx)
		return lastErr == nil && running == on
	})
	if err != nil {
		return fmt.Errorf("JetStream still on=%v after the reload (last error: %v): %w", !on, lastErr, err)
	}
	f.log.Info().Bool("jetstream", on).Dur("took", time.Since(start)).Msg("JetStream switched")
	return nil
}

// jetStreamOn reads from /jsz whether the local server's JetStream runs.
func (f *KernelFence) jetStreamOn(ctx context.Context) (bool, error) {
	var jsz struct {
		Disabled bool `json:"disabled"`
	}
	if err := getDoc(ctx, f.o.HTTPClient, f.o.MonitorURL, "/jsz", nil, &jsz); err != nil {
		return false, err
	}
	return !jsz.Disabled, nil
}

// SignalReload returns a Reload that sends SIGHUP to the NATS server whose
// pid the file at pidFile (the server's pid_file) holds. The file is read
// on every call, as the pid changes when the server restarts. It needs a
// process namespace shared with the server.
func SignalReload(pidFile string) func(ctx context.Context) error {
	return signalPIDFile(pidFile, syscall.SIGHUP)
}

// signalPIDFile returns a function that sends sig to the process whose pid
// the file at pidFile holds, read on every call.
func signalPIDFile(pidFile string, sig syscall.Signal) func(ctx context.Context) error {
	return func(ctx context.Context) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		b, err := os.ReadFile(pidFile)
		if err != nil {
			return fmt.Errorf("read pid file: %w", err)
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil || pid <= 0 {
			return fmt.Errorf("pid file %s: no pid in %q", pidFile, b)
		}
		if err := syscall.Kill(pid, sig); err != nil {
			return fmt.Errorf("signal pid %d: %w", pid, err)
		}
		return nil
	}
}

// SignalRestart returns a Restart that sends SIGTERM to the NATS server
// whose pid the file at pidFile holds: the server shuts down, and its
// container (restartPolicy Always) starts it again. It needs a process
// namespace shared with the server.
func SignalRestart(pidFile string) func(ctx context.Context) error {
	return signalPIDFile(pidFile, syscall.SIGTERM)
}

// SignalLameDuck returns a function that sends SIGUSR2 to the NATS server
// whose pid the file at pidFile holds: lame-duck mode, what `nats-server
// --signal ldm=<pid file>` does.
func SignalLameDuck(pidFile string) func(ctx context.Context) error {
	return signalPIDFile(pidFile, syscall.SIGUSR2)
}

// systemReload asks the local server to reload its configuration over the
// system account ($SYS.REQ.SERVER.<id>.RELOAD); it answers once the reload
// is applied, with the error if it failed.
func (f *KernelFence) systemReload(ctx context.Context) error {
	self, err := f.links.self(ctx, f.o.MonitorURL)
	if err != nil {
		return err
	}
	return f.serverRequest(ctx, self.ID, "RELOAD", nil)
}

// serverRequest sends a $SYS.REQ.SERVER.<id>.<verb> request over the
// system account and returns the error the server answers with.
func (f *KernelFence) serverRequest(ctx context.Context, id, verb string, body any) error {
	if f.o.System == nil {
		return errors.New("no system-account connection configured")
	}
	var data []byte
	if body != nil {
		var err error
		if data, err = json.Marshal(body); err != nil {
			return fmt.Errorf("%s request: %w", verb, err)
		}
	}
	rctx, cancel := context.WithTimeout(ctx, f.o.RequestTimeout)
	defer cancel()
	msg, err := f.o.System.RequestWithContext(rctx, "$SYS.REQ.SERVER."+id+"."+verb, data)
	if err != nil {
		return fmt.Errorf("%s request: %w", verb, err)
	}
	var resp struct {
		Error *struct {
			Code        int    `json:"code"`
			Description string `json:"description"`
		} `json:"error"`
	}
	if err := json.Unmarshal(msg.Data, &resp); err != nil {
		return fmt.Errorf("%s answer: %w", verb, err)
	}
	if resp.Error != nil {
		return fmt.Errorf("%s: %w: %d %s", verb, errServerRefused, resp.Error.Code, resp.Error.Description)
	}
	return nil
}

// errServerRefused marks an error the server answered a request with, as
// opposed to a request that did not get through.
var errServerRefused = errors.New("server refused")

// MoveClients sends every client of the local server a lame-duck notice
// ($SYS.REQ.SERVER.<id>.LDM), so that clients which honour it reconnect to
// a peer, waits (bounded by ctx and MoveClientsGrace) for them to leave,
// and disconnects those still there ($SYS.REQ.SERVER.<id>.KICK), which
// makes them reconnect too. The fence's own system-account connection is
// spared.
func (f *KernelFence) MoveClients(ctx context.Context) error {
	self, err := f.links.self(ctx, f.o.MonitorURL)
	if err != nil {
		return fmt.Errorf("move clients: %w", err)
	}
	if f.o.System == nil {
		return errors.New("move clients: no system-account connection configured")
	}
	h := fenceClients{f: f, id: self.ID}
	if f.o.System.ConnectedServerId() == self.ID {
		h.own, _ = f.o.System.GetClientID()
	}
	if err := moveClients(ctx, h, f.o.MoveClientsGrace, kernelFencePollInterval, f.log); err != nil {
		return fmt.Errorf("move clients: %w", err)
	}
	return nil
}

// fenceClients is the clientHost of the local server as the fence sees it:
// through /connz and system-account requests, sparing the fence's own
// connection own.
type fenceClients struct {
	f   *KernelFence
	id  string
	own uint64
}

func (h fenceClients) clients(ctx context.Context) ([]uint64, error) {
	return h.f.clientIDs(ctx, h.own)
}

func (h fenceClients) present(ctx context.Context, ids []uint64) ([]uint64, error) {
	now, err := h.f.clientIDs(ctx, h.own)
	if err != nil {
		return nil, err
	}
	var left []uint64
	for _, id := range ids {
		if slices.Contains(now, id) {
			left = append(left, id)
		}
	}
	return left, nil
}

func (h fenceClients) notify(ctx context.Context, id uint64) (bool, error) {
	return h.request(ctx, "LDM", id)
}

// kick gives up on a ctx that ended during the grace: its request could
// not get through.
func (h fenceClients) kick(ctx context.Context, id uint64) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, err
	}
	return h.request(ctx, "KICK", id)
}

// request sends verb for client id; a refusal is an answer, not an error.
func (h fenceClients) request(ctx context.Context, verb string, id uint64) (bool, error) {
	switch err := h.f.serverRequest(ctx, h.id, verb, map[string]uint64{"cid": id}); {
	case err == nil:
		return true, nil
	case errors.Is(err, errServerRefused):
		return false, nil
	default:
		return false, err
	}
}

// clientIDs returns the ids of the local server's client connections from
// /connz, but skip.
func (f *KernelFence) clientIDs(ctx context.Context, skip uint64) ([]uint64, error) {
	var ids []uint64
	for offset := 0; ; offset += kernelFenceConnzPage {
		var cz connzDoc
		q := url.Values{"limit": {strconv.Itoa(kernelFenceConnzPage)}, "offset": {strconv.Itoa(offset)}}
		if err := getDoc(ctx, f.o.HTTPClient, f.o.MonitorURL, "/connz", q, &cz); err != nil {
			return nil, err
		}
		for _, c := range cz.Conns {
			if c.Cid != skip {
				ids = append(ids, c.Cid)
			}
		}
		if len(cz.Conns) < kernelFenceConnzPage {
			return ids, nil
		}
	}
}

// ensureFileContent writes content to path (atomically) unless the file
// already holds exactly that.
func ensureFileContent(path string, content []byte, mode os.FileMode) error {
	if cur, err := os.ReadFile(path); err == nil && string(cur) == string(content) {
		return nil
	}
	return writeFileAtomic(path, content, mode)
}

// writeFileAtomic replaces path with content: a temporary file in the same
// directory, synced, renamed over path, and the directory synced, so a
// reader sees the old or the new content, never a part.
func writeFileAtomic(path string, content []byte, mode os.FileMode) (err error) {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer func() {
		if err != nil {
			_ = os.Remove(tmp.Name())
		}
	}()
	if _, err = tmp.Write(content); err == nil {
		err = tmp.Chmod(mode)
	}
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err = os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if d, derr := os.Open(dir); derr == nil {
		_ = d.Sync()
		_ = d.Close()
	}
	return nil
}

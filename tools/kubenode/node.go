// Package kubenode runs a real single-node Kubernetes for the tests and for
// `make node`: etcd, kube-apiserver, kube-controller-manager,
// kube-scheduler, containerd (with runc and the CNI plugins of the host's
// Debian packages), the kubelet, kube-proxy and CoreDNS — the Kubernetes
// binaries from tools/kubeenv (scripts/kubeenv-bin.sh).
//
// The node lives in a network namespace and a mount namespace of its own,
// as a kind node lives in its container. In the network namespace are the
// bridge cni0 with the node address (NodeIP), the pods' routes, kube-proxy's
// and the kubelet's firewall tables and every listening port; the host's
// network is never touched. In the mount namespace, a private /run and an
// overlay over /var/lib take the paths the kubelet and containerd 1.6
// insist on, and the kernel settings the kubelet checks read as it wants
// them, so nothing is written on the host outside the node's state folder.
// Only the API server is published, on a free port of the host's loopback
// interface (a relay in the process that started the node), so that a
// kubeconfig on the host works for kubectl, port-forward and exec.
//
// Every process of a node — components, containerd's shims, containers —
// runs in cgroups of its own (cgroupPrefix+name). Stop kills them and
// removes the cgroups and the state folder; when all processes are gone,
// the namespaces, and with them every mount, interface and firewall table,
// are gone too. A node whose owner was killed is cleaned up by the next
// Start (or by Cleanup).
//
// A node needs root, cgroups, and the Debian packages in DebianPackages.
package kubenode

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// Binaries are the Kubernetes programs a node runs, all in one folder
// (scripts/kubeenv-bin.sh prints it).
var Binaries = []string{"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet", "kube-proxy", "coredns", "kubectl"}

// Options configures Start.
type Options struct {
	// Name identifies the node on this machine (cgroups, state folder);
	// "t<pid>" when empty. Two live nodes need different names.
	Name string
	// Bin is the folder holding Binaries.
	Bin string
	// Base is the folder that holds the node's state folder
	// (cgroupPrefix+Name); os.TempDir() when empty. Start cleans up after
	// dead nodes found there.
	Base string
	// Images are docker-archives imported into containerd before the
	// kubelet starts; SandboxImage must be among them.
	Images []string
	// SandboxImage is the pods' sandbox (containerd's sandbox_image).
	SandboxImage string
	// APIPort is the host loopback port that publishes the API server; a
	// free one when 0.
	APIPort int
	// Namespace is the default namespace of the host kubeconfig; "default"
	// when empty.
	Namespace string
	// ReadyTimeout bounds Start; 3 minutes when 0.
	ReadyTimeout time.Duration
	// Logf reports progress; nil means silence.
	Logf func(format string, args ...any)
}

// Phase is one step of a start, with the time since the start began.
type Phase struct {
	Name string
	At   time.Duration
}

// Node is a running node.
type Node struct {
	// Name, Dir: the node's name and state folder.
	Name string
	Dir  string
	// Kubeconfig is the admin kubeconfig for the host, against APIServer.
	Kubeconfig string
	// APIServer is the API server's URL on the host, https://127.0.0.1:<port>.
	APIServer string
	// Timings are the phases of the start.
	Timings []Phase

	o     Options
	p     paths
	creds *credentials
	logf  func(string, ...any)

	mu     sync.Mutex
	procs  map[string]*proc
	order  []string
	holder *proc
	netns  *os.File
	relay  net.Listener
	cancel context.CancelFunc
	bg     sync.WaitGroup
	begin  time.Time
}

// Start starts a node and returns once it is Ready and its default
// ServiceAccount exists. On failure everything started is stopped again.
func Start(ctx context.Context, o Options) (_ *Node, err error) {
	if os.Geteuid() != 0 {
		return nil, errors.New("kubenode: needs root (namespaces, cgroups, containers)")
	}
	if o.Name == "" {
		o.Name = "t" + strconv.Itoa(os.Getpid())
	}
	if o.Base == "" {
		o.Base = os.TempDir()
	}
	if o.Namespace == "" {
		o.Namespace = "default"
	}
	if o.ReadyTimeout <= 0 {
		o.ReadyTimeout = 3 * time.Minute
	}
	logf := o.Logf
	if logf == nil {
		logf = func(string, ...any) {}
	}
	if err := lookTools(); err != nil {
		return nil, fmt.Errorf("kubenode: %w", err)
	}
	for _, b := range Binaries {
		if _, err := os.Stat(filepath.Join(o.Bin, b)); err != nil {
			return nil, fmt.Errorf("kubenode: binary %s: %w", b, err)
		}
	}
	if err := CleanStale(o.Base, logf); err != nil {
		return nil, fmt.Errorf("kubenode: clean up after dead nodes: %w", err)
	}
	dir := filepath.Join(o.Base, cgroupPrefix+o.Name)
	if _, err := os.Stat(dir); err == nil {
		return nil, fmt.Errorf("kubenode: node %q is running (its state folder %s exists; stop it first)", o.Name, dir)
	}
	n := &Node{
		Name:  o.Name,
		Dir:   dir,
		o:     o,
		p:     newPaths(dir),
		logf:  logf,
		procs: map[string]*proc{},
		begin: time.Now(),
	}
	defer func() {
		if err != nil {
			logf("kubenode: start failed, stopping: %v", err)
			if serr := n.Stop(); serr != nil {
				logf("kubenode: %v", serr)
			}
		}
	}()
	ctx, cancel := context.WithTimeout(ctx, o.ReadyTimeout)
	defer cancel()
	if err := n.prepare(); err != nil {
		return nil, fmt.Errorf("kubenode: %w", err)
	}
	if err := n.startNamespaces(ctx); err != nil {
		return nil, fmt.Errorf("kubenode: %w", err)
	}
	if err := n.startControlPlane(ctx); err != nil {
		return nil, fmt.Errorf("kubenode: %w", err)
	}
	if err := n.startNode(ctx); err != nil {
		return nil, fmt.Errorf("kubenode: %w", err)
	}
	return n, nil
}

// phase records a step of the start.
func (n *Node) phase(name string) {
	at := time.Since(n.begin)
	n.Timings = append(n.Timings, Phase{Name: name, At: at})
	n.logf("kubenode: %-28s %6.1fs", name, at.Seconds())
}

// prepare writes the state folder: owner, credentials, configurations,
// cgroups.
func (n *Node) prepare() error {
	p := n.p
	for _, d := range []string{p.etc, p.logs, p.run, p.pki, p.containerd, p.pv, filepath.Join(p.etc, "cni"),
		filepath.Join(p.run, "varlib-upper"), filepath.Join(p.run, "varlib-work"), filepath.Join(p.etc, "sysctl")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	// The owner: a later Start cleans up this node once its owner is gone.
	start, err := processStart(os.Getpid())
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(n.Dir, "owner"), []byte(fmt.Sprintf("%d %s\n", os.Getpid(), start)), 0o644); err != nil {
		return err
	}
	if err := createCgroups(n.Name); err != nil {
		return err
	}
	creds, err := writeCredentials(p.pki, NodeName)
	if err != nil {
		return fmt.Errorf("credentials: %w", err)
	}
	n.creds = creds
	internal := "https://" + net.JoinHostPort(NodeIP, itoa(APIPort))
	files := map[string]string{
		filepath.Join(p.etc, "containerd.toml"):             containerdConfig(p, n.o.SandboxImage),
		filepath.Join(p.etc, "cni", "10-kubenode.conflist"): cniConfig(p),
		filepath.Join(p.etc, "kubelet.yaml"):                kubeletConfig(p, "/"+cgroupPrefix+n.Name),
		filepath.Join(p.etc, "kube-proxy.yaml"):             kubeProxyConfig(p),
		filepath.Join(p.etc, "Corefile"):                    corefile(p),
		// Pods resolve through the cluster DNS only; the host's resolver
		// is not theirs.
		filepath.Join(p.etc, "resolv.conf"): "",
	}
	for _, c := range []string{"admin", "kubelet", "kcm", "scheduler", "proxy"} {
		files[p.kubeconfig(c)] = string(creds.kubeconfig(c, internal, ""))
	}
	for k, v := range kernelDefaults {
		files[filepath.Join(p.etc, "sysctl", strings.ReplaceAll(k, "/", "."))] = v + "\n"
	}
	for path, content := range files {
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			return err
		}
	}
	// The kubelet's sysctl files are read by the kubelet as root; 0644 like
	// the /proc/sys files they stand for.
	for k := range kernelDefaults {
		if err := os.Chmod(filepath.Join(p.etc, "sysctl", strings.ReplaceAll(k, "/", ".")), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// launch starts a component inside the node's namespaces.
func (n *Node) launch(name, bin string, args ...string) (*proc, error) {
	comp, err := componentsCgroup(n.Name)
	if err != nil {
		return nil, err
	}
	argv := append([]string{hostTools.nsenter, "--target", itoa(n.holder.pid()), "--net", "--mount", "--", bin}, args...)
	p, err := startProc(name, comp, filepath.Join(n.p.logs, name+".log"), argv)
	if err != nil {
		return nil, err
	}
	n.mu.Lock()
	if _, ok := n.procs[name]; !ok {
		n.order = append(n.order, name)
	}
	n.procs[name] = p
	n.mu.Unlock()
	return p, nil
}

// inNode runs a command inside the node's namespaces and returns its
// output.
func (n *Node) inNode(ctx context.Context, args ...string) ([]byte, error) {
	argv := append([]string{"--target", itoa(n.holder.pid()), "--net", "--mount", "--"}, args...)
	cmd := exec.CommandContext(ctx, hostTools.nsenter, argv...)
	cmd.Env = []string{"PATH=" + toolPath, "LANG=C"}
	out, err := cmd.CombinedOutput()
	if err != nil {
		return out, fmt.Errorf("%s (in the node): %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return out, nil
}

// startNamespaces starts the holder of the node's namespaces and sets them
// up: the private /run, the overlay over /var/lib, the kernel settings the
// kubelet checks, loopback, the bridge with the node address, forwarding.
func (n *Node) startNamespaces(ctx context.Context) error {
	comp, err := componentsCgroup(n.Name)
	if err != nil {
		return err
	}
	holder, err := startProc("namespaces", comp, filepath.Join(n.p.logs, "namespaces.log"),
		[]string{hostTools.unshare, "--net", "--mount", "--propagation", "private", "--", "sleep", "infinity"})
	if err != nil {
		return err
	}
	n.holder = holder
	own, err := os.Readlink("/proc/self/ns/net")
	if err != nil {
		return err
	}
	// unshare has entered the new namespaces once its net link differs.
	if err := waitFor(ctx, "network namespace", holder, func(context.Context) error {
		l, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/net", holder.pid()))
		if err != nil {
			return err
		}
		if l == own {
			return errors.New("not yet in its own network namespace")
		}
		exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", holder.pid()))
		if err != nil {
			return err
		}
		if filepath.Base(exe) != "sleep" {
			return errors.New("not yet holding")
		}
		return nil
	}); err != nil {
		return fmt.Errorf("%w (a kernel that refuses new network or mount namespaces says why in %s)", err, holder.logPath)
	}
	ns, err := os.Open(fmt.Sprintf("/proc/%d/ns/net", holder.pid()))
	if err != nil {
		return err
	}
	n.netns = ns
	// mount -n: util-linux would otherwise record the mounts in
	// /run/mount/utab, the host's, before the private /run exists.
	steps := [][]string{
		{hostTools.mount, "-n", "-t", "tmpfs", "-o", "mode=755", "kubenode-run", "/run"},
		{hostTools.mount, "-n", "-t", "overlay", "kubenode-varlib", "-o",
			"lowerdir=/var/lib,upperdir=" + filepath.Join(n.p.run, "varlib-upper") + ",workdir=" + filepath.Join(n.p.run, "varlib-work"),
			"/var/lib"},
	}
	for k := range kernelDefaults {
		steps = append(steps, []string{hostTools.mount, "-n", "--bind", "-o", "ro",
			filepath.Join(n.p.etc, "sysctl", strings.ReplaceAll(k, "/", ".")), "/proc/sys/" + k})
	}
	steps = append(steps,
		[]string{hostTools.ip, "link", "set", "lo", "up"},
		[]string{hostTools.ip, "link", "add", bridge, "type", "bridge"},
		[]string{hostTools.ip, "addr", "add", NodeIP + "/24", "dev", bridge},
		[]string{hostTools.ip, "link", "set", bridge, "up"},
		// Per network namespace: forwarding between pods and the node, and
		// bridged pod traffic through the firewall hooks (Service DNAT).
		[]string{hostTools.sh, "-c", "echo 1 > /proc/sys/net/ipv4/ip_forward && " +
			"echo 1 > /proc/sys/net/bridge/bridge-nf-call-iptables && " +
			"echo 1 > /proc/sys/net/bridge/bridge-nf-call-ip6tables"},
	)
	for _, s := range steps {
		if _, err := n.inNode(ctx, s...); err != nil {
			return fmt.Errorf("set up the node's namespaces: %w", err)
		}
	}
	n.phase("namespaces")
	return nil
}

// DialContext connects from inside the node's network namespace, to a
// pod's or the node's address (literal IPs only).
func (n *Node) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	return dialIn(ctx, n.netns, network, addr)
}

// Dial is DialContext with a 10 s bound, for nats.SetCustomDialer.
func (n *Node) Dial(network, addr string) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return n.DialContext(ctx, network, addr)
}

// HTTPClient returns a client whose connections start inside the node's
// network namespace: it reaches pods at their IPs.
func (n *Node) HTTPClient(timeout time.Duration) *http.Client {
	return &http.Client{Timeout: timeout, Transport: &http.Transport{DialContext: n.DialContext, DisableKeepAlives: true}}
}

// startControlPlane starts etcd, the API server (and its relay), the
// controller-manager and the scheduler.
func (n *Node) startControlPlane(ctx context.Context) error {
	bin := func(b string) string { return filepath.Join(n.o.Bin, b) }
	etcd, err := n.launch("etcd", bin("etcd"),
		"--name=kubenode", "--data-dir="+filepath.Join(n.p.run, "etcd"),
		"--listen-client-urls=http://127.0.0.1:2379", "--advertise-client-urls=http://127.0.0.1:2379",
		"--listen-peer-urls=http://127.0.0.1:2380", "--initial-advertise-peer-urls=http://127.0.0.1:2380",
		"--initial-cluster=kubenode=http://127.0.0.1:2380", "--listen-metrics-urls=http://127.0.0.1:2381",
		"--unsafe-no-fsync", "--log-level=warn")
	if err != nil {
		return err
	}
	plain := n.HTTPClient(5 * time.Second)
	if err := waitFor(ctx, "etcd", etcd, httpOK(plain, "http://127.0.0.1:2379/health", "")); err != nil {
		return err
	}
	n.phase("etcd ready")

	c := n.creds
	api, err := n.launch("kube-apiserver", bin("kube-apiserver"),
		"--etcd-servers=http://127.0.0.1:2379",
		"--bind-address=0.0.0.0", "--advertise-address="+NodeIP, "--secure-port="+itoa(APIPort),
		"--tls-cert-file="+c.certFile, "--tls-private-key-file="+c.keyFile, "--client-ca-file="+c.caFile,
		"--token-auth-file="+c.tokensFile,
		"--authorization-mode=Node,RBAC",
		"--service-account-issuer=https://kubernetes.default.svc."+ClusterDomain,
		"--service-account-key-file="+c.saPub, "--service-account-signing-key-file="+c.saKey,
		"--service-cluster-ip-range="+ServiceCIDR,
		"--allow-privileged=true",
		// exec, logs and port-forward dial the kubelet by its address: its
		// host name resolves nowhere.
		"--kubelet-preferred-address-types=InternalIP,Hostname",
		"--profiling=false", "--v=1")
	if err != nil {
		return err
	}
	secure, err := n.secureClient()
	if err != nil {
		return err
	}
	if err := waitFor(ctx, "kube-apiserver", api, httpOK(secure, "https://"+net.JoinHostPort(NodeIP, itoa(APIPort))+"/readyz",
		c.ids["admin"].token)); err != nil {
		return err
	}
	n.phase("apiserver ready")
	if err := n.publishAPI(); err != nil {
		return err
	}

	if _, err := n.launch("kube-controller-manager", bin("kube-controller-manager"),
		"--kubeconfig="+n.p.kubeconfig("kcm"),
		"--authentication-kubeconfig="+n.p.kubeconfig("kcm"), "--authorization-kubeconfig="+n.p.kubeconfig("kcm"),
		"--bind-address=127.0.0.1", "--leader-elect=false",
		"--service-account-private-key-file="+c.saKey, "--root-ca-file="+c.caFile,
		"--use-service-account-credentials=true",
		"--service-cluster-ip-range="+ServiceCIDR, "--cluster-cidr="+PodCIDR, "--allocate-node-cidrs=false",
		"--v=1"); err != nil {
		return err
	}
	if _, err := n.launch("kube-scheduler", bin("kube-scheduler"),
		"--kubeconfig="+n.p.kubeconfig("scheduler"),
		"--authentication-kubeconfig="+n.p.kubeconfig("scheduler"), "--authorization-kubeconfig="+n.p.kubeconfig("scheduler"),
		"--bind-address=127.0.0.1", "--leader-elect=false", "--v=1"); err != nil {
		return err
	}
	n.phase("controllers started")
	return nil
}

// secureClient trusts the node's CA and dials inside the node.
func (n *Node) secureClient() (*http.Client, error) {
	ca, err := os.ReadFile(n.creds.caFile)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(ca) {
		return nil, errors.New("no certificate in the CA file")
	}
	return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		DialContext: n.DialContext, TLSClientConfig: &tls.Config{RootCAs: pool}, DisableKeepAlives: true,
	}}, nil
}

// httpOK checks that url answers 200.
func httpOK(c *http.Client, url, token string) func(context.Context) error {
	return func(ctx context.Context) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := c.Do(req)
		if err != nil {
			return err
		}
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("%s: %s", url, resp.Status)
		}
		return nil
	}
}

// publishAPI listens on the host's loopback interface and relays to the API
// server, and writes the host's admin kubeconfig.
func (n *Node) publishAPI() error {
	ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", itoa(n.o.APIPort)))
	if err != nil {
		return fmt.Errorf("publish the API server: %w", err)
	}
	n.relay = ln
	go relay(ln, n.netns, net.JoinHostPort(NodeIP, itoa(APIPort)))
	n.APIServer = "https://" + ln.Addr().String()
	n.Kubeconfig = filepath.Join(n.Dir, "kubeconfig")
	if err := os.WriteFile(n.Kubeconfig, n.creds.kubeconfig("admin", n.APIServer, n.o.Namespace), 0o600); err != nil {
		return err
	}
	n.phase("apiserver published")
	return nil
}

// startNode starts containerd (and imports the images), the kubelet,
// kube-proxy and CoreDNS, the storage provisioner, and waits for the node
// to be Ready.
func (n *Node) startNode(ctx context.Context) error {
	bin := func(b string) string { return filepath.Join(n.o.Bin, b) }
	ctrd, err := n.launch("containerd", hostTools.containerd, "--config", filepath.Join(n.p.etc, "containerd.toml"))
	if err != nil {
		return err
	}
	if err := waitFor(ctx, "containerd", ctrd, func(ctx context.Context) error {
		_, err := n.Ctr(ctx, "version")
		return err
	}); err != nil {
		return err
	}
	n.phase("containerd ready")
	for _, archive := range n.o.Images {
		if err := n.ImportImages(ctx, archive); err != nil {
			return err
		}
	}
	if len(n.o.Images) > 0 {
		n.phase("images imported")
	}
	if _, err := n.launch("kubelet", bin("kubelet"),
		"--config="+filepath.Join(n.p.etc, "kubelet.yaml"), "--kubeconfig="+n.p.kubeconfig("kubelet"),
		"--root-dir="+filepath.Join(n.p.run, "kubelet"), "--cert-dir="+filepath.Join(n.p.run, "kubelet-pki"),
		"--hostname-override="+NodeName, "--node-ip="+NodeIP, "--v=1"); err != nil {
		return err
	}
	if _, err := n.launch("kube-proxy", bin("kube-proxy"), "--config="+filepath.Join(n.p.etc, "kube-proxy.yaml"), "--v=1"); err != nil {
		return err
	}
	if err := n.StartCoreDNS(ctx); err != nil {
		return err
	}
	cs, err := n.Clientset()
	if err != nil {
		return err
	}
	bgctx, cancel := context.WithCancel(context.Background())
	n.cancel = cancel
	prov := &provisioner{cs: cs, dir: n.p.pv, logf: n.logf}
	if err := prov.ensureClass(ctx); err != nil {
		return err
	}
	n.bg.Add(1)
	go func() {
		defer n.bg.Done()
		prov.run(bgctx)
	}()

	if err := waitFor(ctx, "node Ready", n.proc("kubelet"), func(ctx context.Context) error {
		node, err := cs.CoreV1().Nodes().Get(ctx, NodeName, metav1.GetOptions{})
		if err != nil {
			return err
		}
		for _, c := range node.Status.Conditions {
			if c.Type == corev1.NodeReady {
				if c.Status == corev1.ConditionTrue {
					return nil
				}
				return fmt.Errorf("node %s: %s", c.Reason, c.Message)
			}
		}
		return errors.New("no Ready condition yet")
	}); err != nil {
		return err
	}
	n.phase("node Ready")
	if err := waitFor(ctx, "default ServiceAccount", n.proc("kube-controller-manager"), func(ctx context.Context) error {
		_, err := cs.CoreV1().ServiceAccounts("default").Get(ctx, "default", metav1.GetOptions{})
		return err
	}); err != nil {
		return err
	}
	n.phase("default ServiceAccount")
	return nil
}

// StartCoreDNS starts CoreDNS and waits until it serves; a test that
// stopped it with StopCoreDNS brings it back with this.
func (n *Node) StartCoreDNS(ctx context.Context) error {
	if p := n.proc("coredns"); p != nil && p.running() {
		return errors.New("kubenode: coredns is running")
	}
	p, err := n.launch("coredns", filepath.Join(n.o.Bin, "coredns"), "-conf", filepath.Join(n.p.etc, "Corefile"))
	if err != nil {
		return err
	}
	if err := waitFor(ctx, "coredns", p, httpOK(n.HTTPClient(5*time.Second), "http://127.0.0.1:8181/ready", "")); err != nil {
		return err
	}
	return nil
}

// StopCoreDNS stops the cluster DNS: pods' name lookups fail at once (the
// node refuses the port).
func (n *Node) StopCoreDNS() {
	if p := n.proc("coredns"); p != nil {
		p.stop(syscall.SIGTERM, 10*time.Second)
	}
}

// proc returns the named component, nil if never started.
func (n *Node) proc(name string) *proc {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.procs[name]
}

// Ctr runs containerd's ctr client against the node's containerd, in its
// k8s.io namespace.
func (n *Node) Ctr(ctx context.Context, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, hostTools.ctr, append([]string{"--address", n.p.containerdSock(), "--namespace", "k8s.io"}, args...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return out, fmt.Errorf("ctr %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return out, nil
}

// ImportImages imports a docker-archive into the node's containerd; an
// image imported again under the same name replaces the old one for new
// containers.
func (n *Node) ImportImages(ctx context.Context, archive string) error {
	if _, err := n.Ctr(ctx, "images", "import", "--platform", "linux/"+runtime.GOARCH, archive); err != nil {
		return fmt.Errorf("import %s: %w", archive, err)
	}
	return nil
}

// RESTConfig returns an admin client configuration through the published
// port.
func (n *Node) RESTConfig() *rest.Config {
	return &rest.Config{
		Host:            n.APIServer,
		BearerToken:     n.creds.ids["admin"].token,
		TLSClientConfig: rest.TLSClientConfig{CAFile: n.creds.caFile},
		QPS:             100,
		Burst:           200,
		Timeout:         30 * time.Second,
	}
}

// Clientset returns an admin clientset.
func (n *Node) Clientset() (kubernetes.Interface, error) {
	cs, err := kubernetes.NewForConfig(n.RESTConfig())
	if err != nil {
		return nil, fmt.Errorf("kubenode clientset: %w", err)
	}
	return cs, nil
}

// Stop stops the node: the components in reverse order (the API server is
// killed: its graceful stop waits a minute for open watches), then every
// process left in its cgroups; then it removes the cgroups and the state
// folder. Once no process is left the node's namespaces are gone, and with
// them its mounts, interfaces and firewall tables. Stop may be called more
// than once.
func (n *Node) Stop() error {
	begin := time.Now()
	if n.cancel != nil {
		n.cancel()
	}
	n.bg.Wait()
	if n.relay != nil {
		_ = n.relay.Close()
	}
	n.mu.Lock()
	order := append([]string(nil), n.order...)
	n.mu.Unlock()
	for i := len(order) - 1; i >= 0; i-- {
		p := n.proc(order[i])
		switch order[i] {
		case "kube-apiserver", "containerd":
			// containerd's shims and the pods are killed with the cgroups.
			p.stop(syscall.SIGKILL, 5*time.Second)
		default:
			p.stop(syscall.SIGTERM, 5*time.Second)
		}
	}
	var errs []error
	if err := killCgroups(n.Name, 30*time.Second); err != nil {
		errs = append(errs, err)
	}
	if n.holder != nil {
		n.holder.stop(syscall.SIGKILL, 5*time.Second)
	}
	if n.netns != nil {
		_ = n.netns.Close()
	}
	if err := removeState(n.o.Base, n.Name); err != nil {
		errs = append(errs, err)
	}
	n.logf("kubenode: node %s stopped in %.1fs", n.Name, time.Since(begin).Seconds())
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("kubenode: stop %s: %w", n.Name, err)
	}
	return nil
}

// removeState removes a node's cgroups and state folder; its processes
// must be gone.
func removeState(base, name string) error {
	var errs []error
	if err := removeCgroups(name); err != nil {
		errs = append(errs, err)
	}
	if err := os.RemoveAll(filepath.Join(base, cgroupPrefix+name)); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// Cleanup kills whatever is left of the named node (a node whose owner was
// killed, or one started by another process) and removes its cgroups and
// state folder.
func Cleanup(base, name string) error {
	if base == "" {
		base = os.TempDir()
	}
	if err := killCgroups(name, 30*time.Second); err != nil {
		return fmt.Errorf("kubenode: clean up %s: %w", name, err)
	}
	if err := removeState(base, name); err != nil {
		return fmt.Errorf("kubenode: clean up %s: %w", name, err)
	}
	return nil
}

// Owner returns the pid of the process that runs the named node and
// whether that process is alive.
func Owner(base, name string) (int, bool) {
	if base == "" {
		base = os.TempDir()
	}
	b, err := os.ReadFile(filepath.Join(base, cgroupPrefix+name, "owner"))
	if err != nil {
		return 0, false
	}
	var pid int
	var start string
	if _, err := fmt.Sscan(string(b), &pid, &start); err != nil {
		return 0, false
	}
	now, err := processStart(pid)
	return pid, err == nil && now == start
}

// CleanStale cleans up every node under base (or with cgroups) whose owner
// is gone.
func CleanStale(base string, logf func(string, ...any)) error {
	names := map[string]bool{}
	ents, err := os.ReadDir(base)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	for _, e := range ents {
		if name, ok := strings.CutPrefix(e.Name(), cgroupPrefix); ok && e.IsDir() {
			names[name] = true
		}
	}
	cg, err := cgroupNames()
	if err != nil {
		return err
	}
	for _, name := range cg {
		names[name] = true
	}
	var errs []error
	for name := range names {
		if _, alive := Owner(base, name); alive {
			continue
		}
		// A node that is just starting has a state folder and no owner file
		// for a moment: leave young folders alone.
		if fi, err := os.Stat(filepath.Join(base, cgroupPrefix+name)); err == nil &&
			time.Since(fi.ModTime()) < time.Minute {
			if _, err := os.Stat(filepath.Join(base, cgroupPrefix+name, "owner")); errors.Is(err, fs.ErrNotExist) {
				continue
			}
		}
		if logf != nil {
			logf("kubenode: cleaning up node %s, whose owner is gone", name)
		}
		if err := Cleanup(base, name); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// NetNS returns the path of the node's network namespace (for nsenter
// --net=…), valid while the node runs.
func (n *Node) NetNS() string { return fmt.Sprintf("/proc/%d/ns/net", n.holder.pid()) }

// Logs returns the folder of the components' logs.
func (n *Node) Logs() string { return n.p.logs }

// ensureNamespace creates a namespace if it does not exist.
func ensureNamespace(ctx context.Context, cs kubernetes.Interface, name string) error {
	_, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return err
	}
	return nil
}

// Package kubetest runs a real etcd and kube-apiserver on loopback for
// tests, so that code talking to Kubernetes (the ConfigMap store, the
// TokenReview/SubjectAccessReview auth) is tested against the real API
// server's behaviour: resourceVersion conflicts, watches, RBAC. client-go's
// fake clientset enforces none of that.
//
// The binaries (etcd, kube-apiserver, kubectl) come from tools/kubeenv and
// are found through the PROBER_KUBEENV_BIN environment variable, which `make
// test` sets. When it is unset, the package runs scripts/kubeenv-bin.sh
// itself, which builds them once per machine into a cache keyed by the hash
// of tools/kubeenv/go.sum (several minutes the first time), so a bare `go
// test ./...` works too. If they cannot be had, Start skips the test, unless
// PROBER_KUBEENV_REQUIRED or CI is set, in which case it fails it.
//
// Everything else is done here in Go, with no shell tools: free loopback
// ports, a service-account key pair, an admin token in system:masters, the
// kubeconfig, starting both processes, waiting for /readyz and stopping them
// when the test ends.
package kubetest

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// Environment variables read by this package.
const (
	// EnvBin names the directory holding etcd, kube-apiserver and kubectl.
	EnvBin = "PROBER_KUBEENV_BIN"
	// EnvRequired, when non-empty, turns a missing binary into a test
	// failure instead of a skip. CI (any non-empty value) does the same.
	EnvRequired = "PROBER_KUBEENV_REQUIRED"
)

// DefaultReadyTimeout bounds how long New waits for etcd and the API server
// to become ready; the pair is usually ready in about 3 s, more on a loaded
// machine.
const DefaultReadyTimeout = 90 * time.Second

// stopTimeout is how long etcd gets to exit after SIGTERM before it is
// killed.
const stopTimeout = 15 * time.Second

// binScript is the script that prints (building if needed) the binary
// directory, relative to the repository root.
const binScript = "scripts/kubeenv-bin.sh"

var (
	binOnce sync.Once
	binDir  string
	binErr  error
)

// BinDir returns the directory holding etcd, kube-apiserver and kubectl:
// $PROBER_KUBEENV_BIN if set, otherwise the output of
// scripts/kubeenv-bin.sh, found by walking up from the working directory,
// which builds them if this machine has not yet. The answer is computed
// once per process.
func BinDir() (string, error) {
	binOnce.Do(func() { binDir, binErr = findBinDir() })
	return binDir, binErr
}

func findBinDir() (string, error) {
	dir := os.Getenv(EnvBin)
	if dir == "" {
		script, err := findUp(binScript)
		if err != nil {
			return "", fmt.Errorf("%s is unset and %w", EnvBin, err)
		}
		fmt.Fprintf(os.Stderr, "kubetest: %s is unset, running %s (the first build takes several minutes)\n",
			EnvBin, script)
		var out bytes.Buffer
		cmd := exec.Command("bash", script)
		cmd.Stdout = &out
		cmd.Stderr = os.Stderr
		if err := cmd.Run(); err != nil {
			return "", fmt.Errorf("run %s: %w", script, err)
		}
		dir = strings.TrimSpace(out.String())
	}
	for _, b := range []string{"etcd", "kube-apiserver", "kubectl"} {
		fi, err := os.Stat(filepath.Join(dir, b))
		if err != nil {
			return "", fmt.Errorf("kubeenv binaries in %q: %w", dir, err)
		}
		if fi.Mode()&0o111 == 0 {
			return "", fmt.Errorf("kubeenv binaries in %q: %s is not executable", dir, b)
		}
	}
	return dir, nil
}

// findUp looks for rel in the working directory and each of its parents.
func findUp(rel string) (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("find %s: %w", rel, err)
	}
	for {
		p := filepath.Join(dir, rel)
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("%s not found above the working directory", rel)
		}
		dir = parent
	}
}

// Options tunes an Env. The zero value is ready to use.
type Options struct {
	// APIServerArgs are appended to the kube-apiserver command line, for
	// example "--disable-admission-plugins=ServiceAccount".
	APIServerArgs []string
	// ReadyTimeout bounds the wait for readiness; zero means
	// DefaultReadyTimeout.
	ReadyTimeout time.Duration
}

// Env is a running etcd and kube-apiserver pair. There is no
// controller-manager: create ServiceAccounts and the like yourself.
type Env struct {
	// Dir holds the data, certificates, keys, logs and kubeconfig; it is
	// removed by Close.
	Dir string
	// Kubeconfig is the path of a kubeconfig for the admin user.
	Kubeconfig string
	// Host is the API server URL, https://127.0.0.1:<port>.
	Host string
	// CAFile is the API server's self-signed serving certificate.
	CAFile string
	// Token is the admin bearer token (group system:masters).
	Token string
	// EtcdURL is etcd's client URL.
	EtcdURL string

	bin     string
	opts    Options
	apiPort int

	mu        sync.Mutex
	etcd      *proc
	apiserver *proc
}

// Start runs an Env for the test and stops it when the test ends, printing
// the tail of both logs if the test failed. It skips the test if the
// binaries cannot be had (fails it if PROBER_KUBEENV_REQUIRED or CI is set)
// and fails it if the pair does not start.
func Start(tb testing.TB, o Options) *Env {
	tb.Helper()
	bin, err := BinDir()
	if err != nil {
		if os.Getenv(EnvRequired) != "" || os.Getenv("CI") != "" {
			tb.Fatalf("kubetest: no etcd/kube-apiserver binaries: %v", err)
		}
		tb.Skipf("kubetest: skipped, no etcd/kube-apiserver binaries (set %s or run %s): %v",
			EnvBin, binScript, err)
	}
	e, err := New(context.Background(), bin, o)
	if err != nil {
		tb.Fatalf("kubetest: %v", err)
	}
	tb.Cleanup(func() {
		if tb.Failed() {
			tb.Logf("kubetest: apiserver log tail:\n%s", tail(filepath.Join(e.Dir, "apiserver.log"), 40))
			tb.Logf("kubetest: etcd log tail:\n%s", tail(filepath.Join(e.Dir, "etcd.log"), 20))
		}
		if err := e.Close(); err != nil {
			tb.Errorf("kubetest: %v", err)
		}
	})
	return e
}

// New starts etcd and kube-apiserver from the binaries in bin on free
// loopback ports and returns once the API server answers /readyz. The
// caller must Close it. A start that fails because a port was taken in the
// meantime is retried with fresh ports.
func New(ctx context.Context, bin string, o Options) (*Env, error) {
	if o.ReadyTimeout <= 0 {
		o.ReadyTimeout = DefaultReadyTimeout
	}
	var err error
	for attempt := 0; attempt < 3; attempt++ {
		var e *Env
		e, err = newOnce(ctx, bin, o)
		if err == nil {
			return e, nil
		}
		if !errors.Is(err, errPortTaken) {
			break
		}
	}
	return nil, err
}

var errPortTaken = errors.New("address already in use")

func newOnce(ctx context.Context, bin string, o Options) (_ *Env, err error) {
	dir, err := os.MkdirTemp("", "kubetest-")
	if err != nil {
		return nil, fmt.Errorf("start kube env: %w", err)
	}
	e := &Env{Dir: dir, bin: bin, opts: o}
	defer func() {
		if err != nil {
			_ = e.Close()
		}
	}()
	ports, err := freePorts(3)
	if err != nil {
		return nil, fmt.Errorf("start kube env: %w", err)
	}
	etcdClient, etcdPeer := ports[0], ports[1]
	e.apiPort = ports[2]
	e.EtcdURL = "http://127.0.0.1:" + strconv.Itoa(etcdClient)
	e.Host = "https://127.0.0.1:" + strconv.Itoa(e.apiPort)
	e.CAFile = filepath.Join(dir, "certs", "apiserver.crt")
	e.Kubeconfig = filepath.Join(dir, "kubeconfig")
	if err := e.writeCredentials(); err != nil {
		return nil, fmt.Errorf("start kube env: %w", err)
	}

	ctx, cancel := context.WithTimeout(ctx, o.ReadyTimeout)
	defer cancel()
	peerURL := "http://127.0.0.1:" + strconv.Itoa(etcdPeer)
	e.etcd, err = startProc("etcd", filepath.Join(bin, "etcd"), []string{
		"--name=kubetest",
		"--data-dir=" + filepath.Join(dir, "etcd"),
		"--listen-client-urls=" + e.EtcdURL,
		"--advertise-client-urls=" + e.EtcdURL,
		"--listen-peer-urls=" + peerURL,
		"--initial-advertise-peer-urls=" + peerURL,
		"--initial-cluster=kubetest=" + peerURL,
		// A test cluster is thrown away: durability buys nothing and fsync
		// on a shared disk slows every write.
		"--unsafe-no-fsync",
		"--log-level=warn",
	}, filepath.Join(dir, "etcd.log"))
	if err != nil {
		return nil, fmt.Errorf("start kube env: %w", err)
	}
	if err := waitReady(ctx, e.etcd, &http.Client{Timeout: 5 * time.Second}, e.EtcdURL+"/health", ""); err != nil {
		return nil, fmt.Errorf("start kube env: etcd: %w", err)
	}
	if err := e.startAPIServer(ctx); err != nil {
		return nil, fmt.Errorf("start kube env: %w", err)
	}
	return e, nil
}

// writeCredentials writes the service-account key pair, the token file and
// the kubeconfig.
func (e *Env) writeCredentials() error {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return fmt.Errorf("service-account key: %w", err)
	}
	pub, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		return fmt.Errorf("service-account key: %w", err)
	}
	files := map[string][]byte{
		"sa.key": pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)}),
		"sa.pub": pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub}),
	}
	tok := make([]byte, 24)
	if _, err := rand.Read(tok); err != nil {
		return fmt.Errorf("admin token: %w", err)
	}
	e.Token = hex.EncodeToString(tok)
	files["tokens.csv"] = []byte(e.Token + `,admin,admin-uid,"system:masters"` + "\n")
	files["kubeconfig"] = []byte(fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: kubetest
  cluster:
    server: %s
    certificate-authority: %s
users:
- name: admin
  user:
    token: %s
contexts:
- name: kubetest
  context:
    cluster: kubetest
    user: admin
current-context: kubetest
`, e.Host, e.CAFile, e.Token))
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(e.Dir, name), b, 0o600); err != nil {
			return fmt.Errorf("write %s: %w", name, err)
		}
	}
	return nil
}

// startAPIServer starts kube-apiserver on e.apiPort and waits for /readyz.
func (e *Env) startAPIServer(ctx context.Context) error {
	args := []string{
		"--etcd-servers=" + e.EtcdURL,
		"--bind-address=127.0.0.1",
		"--advertise-address=127.0.0.1",
		"--secure-port=" + strconv.Itoa(e.apiPort),
		"--cert-dir=" + filepath.Join(e.Dir, "certs"),
		"--service-cluster-ip-range=10.0.0.0/24",
		"--service-account-issuer=https://kubernetes.default.svc",
		"--service-account-key-file=" + filepath.Join(e.Dir, "sa.pub"),
		"--service-account-signing-key-file=" + filepath.Join(e.Dir, "sa.key"),
		"--authorization-mode=RBAC",
		"--token-auth-file=" + filepath.Join(e.Dir, "tokens.csv"),
		"--endpoint-reconciler-type=none",
		"--v=1",
	}
	args = append(args, e.opts.APIServerArgs...)
	p, err := startProc("kube-apiserver", filepath.Join(e.bin, "kube-apiserver"), args,
		filepath.Join(e.Dir, "apiserver.log"))
	if err != nil {
		return err
	}
	e.mu.Lock()
	e.apiserver = p
	e.mu.Unlock()
	// The serving certificate is generated at start-up; trust it once it is
	// there whole (the file appears before its content does).
	var client *http.Client
	if err := waitFor(ctx, p, e.CAFile, func() (err error) {
		client, err = e.httpClient()
		return err
	}); err != nil {
		return fmt.Errorf("kube-apiserver: %w", err)
	}
	if err := waitReady(ctx, p, client, e.Host+"/readyz", e.Token); err != nil {
		return fmt.Errorf("kube-apiserver: %w", err)
	}
	return nil
}

func (e *Env) httpClient() (*http.Client, error) {
	ca, err := os.ReadFile(e.CAFile)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(ca) {
		return nil, fmt.Errorf("no certificate in %s", e.CAFile)
	}
	return &http.Client{
		Timeout:   5 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}},
	}, nil
}

// RESTConfig returns a fresh client configuration for the admin user, with
// client-side throttling raised so that concurrency tests measure the API
// server and not client-go's default 5 requests per second.
func (e *Env) RESTConfig() *rest.Config {
	return &rest.Config{
		Host:            e.Host,
		BearerToken:     e.Token,
		TLSClientConfig: rest.TLSClientConfig{CAFile: e.CAFile},
		QPS:             1000,
		Burst:           2000,
		Timeout:         30 * time.Second,
	}
}

// Clientset returns a clientset for the admin user.
func (e *Env) Clientset() (kubernetes.Interface, error) {
	cs, err := kubernetes.NewForConfig(e.RESTConfig())
	if err != nil {
		return nil, fmt.Errorf("kube env clientset: %w", err)
	}
	return cs, nil
}

// Kubectl runs kubectl against the Env and returns its combined output.
func (e *Env) Kubectl(ctx context.Context, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, filepath.Join(e.bin, "kubectl"), append([]string{"--kubeconfig=" + e.Kubeconfig}, args...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return out, fmt.Errorf("kubectl %s: %w", strings.Join(args, " "), err)
	}
	return out, nil
}

// StopAPIServer kills kube-apiserver abruptly, as a crash or a lost node
// would, and leaves etcd running, so that a test can watch its code face an
// unreachable API server; open connections are reset. (A graceful SIGTERM
// would wait for open watches to drain, which takes as long as the API
// server's own timeouts.) StartAPIServer brings it back.
func (e *Env) StopAPIServer() error {
	e.mu.Lock()
	p := e.apiserver
	e.apiserver = nil
	e.mu.Unlock()
	if p == nil {
		return nil
	}
	return p.kill()
}

// StartAPIServer starts kube-apiserver again after StopAPIServer, on the
// same port and with the same certificate, token and data, and waits for
// /readyz.
func (e *Env) StartAPIServer(ctx context.Context) error {
	e.mu.Lock()
	running := e.apiserver != nil
	e.mu.Unlock()
	if running {
		return fmt.Errorf("restart kube-apiserver: already running")
	}
	ctx, cancel := context.WithTimeout(ctx, e.opts.ReadyTimeout)
	defer cancel()
	if err := e.startAPIServer(ctx); err != nil {
		return fmt.Errorf("restart %w", err)
	}
	return nil
}

// Close kills the API server, stops etcd and removes Dir. It is safe to
// call more than once.
func (e *Env) Close() error {
	var errs []error
	if err := e.StopAPIServer(); err != nil {
		errs = append(errs, err)
	}
	e.mu.Lock()
	etcd := e.etcd
	e.etcd = nil
	e.mu.Unlock()
	if etcd != nil {
		if err := etcd.stop(stopTimeout); err != nil {
			errs = append(errs, err)
		}
	}
	if err := os.RemoveAll(e.Dir); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("close kube env: %w", err)
	}
	return nil
}

// proc is a child process whose exit is observed.
type proc struct {
	name    string
	logPath string
	cmd     *exec.Cmd
	done    chan struct{}
	err     error // set before done is closed
}

func startProc(name, path string, args []string, logPath string) (*proc, error) {
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	cmd := exec.Command(path, args...)
	cmd.Stdout = logf
	cmd.Stderr = logf
	cmd.SysProcAttr = childAttr()
	if err := cmd.Start(); err != nil {
		_ = logf.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{name: name, logPath: logPath, cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		_ = logf.Close()
		close(p.done)
	}()
	return p, nil
}

// exitError describes an early exit, with errPortTaken in the chain when
// the log says a port was in use.
func (p *proc) exitError() error {
	msg := tail(p.logPath, 15)
	err := fmt.Errorf("%s exited early (%v); log tail:\n%s", p.name, p.err, msg)
	if strings.Contains(msg, "address already in use") {
		return fmt.Errorf("%w: %w", errPortTaken, err)
	}
	return err
}

// kill sends SIGKILL and waits for the exit.
func (p *proc) kill() error {
	if err := p.cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("kill %s: %w", p.name, err)
	}
	<-p.done
	return nil
}

// stop sends SIGTERM and waits for the exit, killing the process if it
// has not exited after timeout.
func (p *proc) stop(timeout time.Duration) error {
	select {
	case <-p.done:
		return nil
	default:
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("stop %s: %w", p.name, err)
	}
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-p.done:
		return nil
	case <-t.C:
	}
	return p.kill()
}

// waitReady polls url until it answers 200, p exits or ctx ends.
func waitReady(ctx context.Context, p *proc, client *http.Client, url, token string) error {
	var last error
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := client.Do(req)
		if err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("%s answered %s", url, resp.Status)
		}
		last = err
		if err := pause(ctx, p, 100*time.Millisecond); err != nil {
			return fmt.Errorf("%w (last: %v)", err, last)
		}
	}
}

// waitFor polls ready until it succeeds, p exits or ctx ends; what names
// what is waited for.
func waitFor(ctx context.Context, p *proc, what string, ready func() error) error {
	for {
		err := ready()
		if err == nil {
			return nil
		}
		if perr := pause(ctx, p, 50*time.Millisecond); perr != nil {
			return fmt.Errorf("%w waiting for %s (last: %v)", perr, what, err)
		}
	}
}

// pause waits d, returning early with an error if p exits or ctx ends.
func pause(ctx context.Context, p *proc, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-p.done:
		return p.exitError()
	case <-ctx.Done():
		return fmt.Errorf("not ready: %w", ctx.Err())
	}
}

// freePorts returns n distinct free TCP ports on 127.0.0.1. They are free
// when returned; a process may take one before it is used, which New
// handles by retrying.
func freePorts(n int) ([]int, error) {
	ports := make([]int, 0, n)
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("free port: %w", err)
		}
		defer l.Close()
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// tail returns the last n lines of the file at path, or why it cannot.
func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

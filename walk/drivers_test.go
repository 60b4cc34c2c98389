package walk_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/prober-dev/prober/app"
)

// driver runs the prober under test. The walk talks to it over its API
// only; the driver adds the faults its way of running allows.
type driver interface {
	// start boots the prober on dir and returns once its API answers.
	start(ctx context.Context) error
	// base is the API's base URL.
	base() string
	// clientURLs are the NATS client URLs, stable across restarts.
	clientURLs() []string
	// storeFile is the file store's path (read to kill at a given phase).
	storeFile() string
	// kill ends the whole prober at once (kill -9) and waits for its end;
	// nil when the driver cannot.
	kill() error
	// crash stops one NATS node as if its pod were lost, revive starts it
	// again; errNoCrash when the driver cannot.
	crash(pod string) error
	revive(ctx context.Context, pod string) error
	// stop ends the prober in order.
	stop() error
	// logName is the path of the prober's log (see tailFile).
	logName() string
}

var errNoCrash = errors.New("this driver cannot crash a NATS node")

// apiStartTimeout bounds a boot of the prober (cluster, demo stream, API)
// on a loaded machine.
const apiStartTimeout = 90 * time.Second

// waitAPI polls GET /config until it answers 200.
func waitAPI(ctx context.Context, base string, exited <-chan struct{}) error {
	ctx, cancel := context.WithTimeout(ctx, apiStartTimeout)
	defer cancel()
	c := &http.Client{Timeout: 2 * time.Second}
	for {
		resp, err := c.Get(base + "/config")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("API at %s not serving within %s (last: %v)", base, apiStartTimeout, err)
		case <-exited:
			return fmt.Errorf("prober exited while starting")
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// freePorts returns n consecutive free loopback ports, the first of them.
// The prober keeps its ports across restarts, so they are taken below the
// kernel's ephemeral range: a port from that range, free when picked, can
// become the local port of any outgoing connection (another test's, in a
// parallel package) before the prober binds it again.
func freePorts(n int) (int, error) {
	lo, hi := fixedPortRange()
	for attempt := 0; attempt < 50; attempt++ {
		first := lo + rand.IntN(hi-lo-n)
		ok := true
		for p := first; p < first+n && ok; p++ {
			l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
			if err != nil {
				ok = false
				break
			}
			l.Close()
		}
		if ok {
			return first, nil
		}
	}
	return 0, fmt.Errorf("no %d consecutive free ports in [%d, %d)", n, lo, hi)
}

// fixedPortRange is where fixed test ports are picked: from 10000 up to the
// start of the ephemeral range (net.ipv4.ip_local_port_range), or
// 20000–30000 when that cannot be read or leaves too little room.
func fixedPortRange() (lo, hi int) {
	lo, hi = 20000, 30000
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return lo, hi
	}
	f := strings.Fields(string(b))
	if len(f) != 2 {
		return lo, hi
	}
	if eph, err := strconv.Atoi(f[0]); err == nil && eph > 10000+1000 {
		return 10000, eph
	}
	return lo, hi
}

// ports are the fixed ports a prober keeps across restarts.
type ports struct {
	api, client, monitor int
	nodes                int
}

func pickPorts(nodes int) (ports, error) {
	p := ports{nodes: nodes}
	var err error
	if p.api, err = freePorts(1); err != nil {
		return p, err
	}
	if p.client, err = freePorts(nodes); err != nil {
		return p, err
	}
	if p.monitor, err = freePorts(nodes); err != nil {
		return p, err
	}
	return p, nil
}

func (p ports) clientURLs() []string {
	out := make([]string, p.nodes)
	for i := range out {
		out[i] = fmt.Sprintf("nats://127.0.0.1:%d", p.client+i)
	}
	return out
}

// tailFile returns the last n lines of path, without the API's request
// log and the gates' route churn.
func tailFile(path string, n int) string {
	f, err := os.Open(path)
	if err != nil {
		return err.Error()
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		// Left out: requests, route churn and NATS's "Healthcheck failed"
		// (one per sweep and node while anything is in maintenance), which
		// would fill the tail.
		if line := sc.Text(); !strings.Contains(line, `"component":"http"`) && !strings.Contains(line, "Route connection created") &&
			!strings.Contains(line, "Router connection closed") && !strings.Contains(line, "Healthcheck failed") {
			lines = append(lines, line)
		}
		if len(lines) > n {
			lines = lines[1:]
		}
	}
	return strings.Join(lines, "\n")
}

// procDriver runs the real binary, `prober embedded --data-dir D`, as a
// subprocess on fixed ports, so that it can be killed with SIGKILL and
// started again on the same data.
type procDriver struct {
	bin      string
	dir      string
	topology string
	ports    ports
	logPath  string

	cmd    *exec.Cmd
	exited chan struct{}
	starts int
}

func newProcDriver(bin, dir, topology string, nodes int) (*procDriver, error) {
	p, err := pickPorts(nodes)
	if err != nil {
		return nil, err
	}
	return &procDriver{bin: bin, dir: dir, topology: topology, ports: p,
		logPath: filepath.Join(filepath.Dir(dir), "prober.log")}, nil
}

// errPortTaken is a start that failed because a port was in use.
var errPortTaken = errors.New("a port of the prober was taken")

// start boots the prober. Before its first boot nothing depends on its
// ports yet, so a port taken in the meantime is met with fresh ones.
func (d *procDriver) start(ctx context.Context) error {
	for attempt := 1; ; attempt++ {
		err := d.startOnce(ctx)
		if !errors.Is(err, errPortTaken) || d.starts > attempt || attempt == 3 {
			return err
		}
		if d.ports, err = pickPorts(d.ports.nodes); err != nil {
			return err
		}
	}
}

func (d *procDriver) startOnce(ctx context.Context) error {
	logf, err := os.OpenFile(d.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	var from int64
	if fi, err := logf.Stat(); err == nil {
		from = fi.Size()
	}
	d.starts++
	fmt.Fprintf(logf, "---- start %d\n", d.starts)
	cmd := exec.Command(d.bin, "embedded", "--data-dir", d.dir, "--topology", d.topology,
		"--listen", fmt.Sprintf("127.0.0.1:%d", d.ports.api),
		"--client-port", strconv.Itoa(d.ports.client), "--monitor-port", strconv.Itoa(d.ports.monitor),
		"--log-format", "json")
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		return err
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		logf.Close()
		close(exited)
	}()
	d.cmd, d.exited = cmd, exited
	err = waitAPI(ctx, d.base(), exited)
	if err == nil {
		return nil
	}
	select {
	case <-exited:
		if logSays(d.logPath, from, "address already in use") {
			d.cmd = nil
			return fmt.Errorf("%w: %v", errPortTaken, err)
		}
	default:
	}
	return err
}

// logSays reports whether the file at path holds s after offset from.
func logSays(path string, from int64, s string) bool {
	b, err := os.ReadFile(path)
	if err != nil || int64(len(b)) < from {
		return false
	}
	return strings.Contains(string(b[from:]), s)
}

func (d *procDriver) base() string                         { return fmt.Sprintf("http://127.0.0.1:%d", d.ports.api) }
func (d *procDriver) clientURLs() []string                 { return d.ports.clientURLs() }
func (d *procDriver) storeFile() string                    { return filepath.Join(d.dir, "maintenance.json") }
func (d *procDriver) logName() string                      { return d.logPath }
func (d *procDriver) crash(string) error                   { return errNoCrash }
func (d *procDriver) revive(context.Context, string) error { return errNoCrash }

func (d *procDriver) kill() error {
	if d.cmd == nil {
		return nil
	}
	if err := d.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		return err
	}
	select {
	case <-d.exited:
	case <-time.After(30 * time.Second):
		return fmt.Errorf("prober did not die within 30s of SIGKILL")
	}
	d.cmd = nil
	return nil
}

func (d *procDriver) stop() error {
	if d.cmd == nil {
		return nil
	}
	if err := d.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		return err
	}
	select {
	case <-d.exited:
	case <-time.After(60 * time.Second):
		return d.kill()
	}
	d.cmd = nil
	return nil
}

// inprocDriver runs app.Embedded in the test process, which lets the walk
// stop and start single NATS nodes (what a lost pod is) through the
// embedded cluster, without any endpoint for it in the product.
type inprocDriver struct {
	dir      string
	topology []int
	logPath  string
	logFile  *os.File

	app    *app.Embedded
	cancel context.CancelFunc
	done   chan error
}

func newInprocDriver(dir string, topology []int) *inprocDriver {
	return &inprocDriver{dir: dir, topology: topology, logPath: filepath.Join(filepath.Dir(dir), "prober.log")}
}

func (d *inprocDriver) start(ctx context.Context) error {
	f, err := os.OpenFile(d.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	d.logFile = f
	d.app = &app.Embedded{
		Listen:   "127.0.0.1:0",
		DataDir:  d.dir,
		Topology: d.topology,
		Resync:   5 * time.Second,
		Logger:   zerolog.New(f).With().Timestamp().Logger(),
	}
	runCtx, cancel := context.WithCancel(context.Background())
	d.cancel, d.done = cancel, make(chan error, 1)
	started := d.app.Started()
	go func() { d.done <- d.app.Run(runCtx) }()
	select {
	case <-started:
		return nil
	case err := <-d.done:
		return fmt.Errorf("embedded app stopped while starting: %w", err)
	case <-time.After(apiStartTimeout):
		return fmt.Errorf("embedded app not serving within %s", apiStartTimeout)
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (d *inprocDriver) base() string { return "http://" + d.app.Addr() }
func (d *inprocDriver) clientURLs() []string {
	return d.app.Cluster().ClientURLs()
}
func (d *inprocDriver) storeFile() string { return filepath.Join(d.dir, "maintenance.json") }
func (d *inprocDriver) logName() string   { return d.logPath }
func (d *inprocDriver) kill() error       { return errors.ErrUnsupported }

func (d *inprocDriver) crash(pod string) error { return d.app.Cluster().StopNode(pod) }
func (d *inprocDriver) revive(ctx context.Context, pod string) error {
	return d.app.Cluster().RestartNode(ctx, pod)
}

func (d *inprocDriver) stop() error {
	if d.cancel == nil {
		return nil
	}
	d.cancel()
	d.cancel = nil
	defer d.logFile.Close()
	select {
	case err := <-d.done:
		return err
	case <-time.After(60 * time.Second):
		return fmt.Errorf("embedded app did not stop within 60s")
	}
}

// TestProcDriverMovesOffATakenPort takes one of the NATS client ports the
// driver picked before its first boot, as a parallel test's connection
// can: the prober cannot bind it and exits, and the driver boots it again
// on fresh ports.
func TestProcDriverMovesOffATakenPort(t *testing.T) {
	if testing.Short() {
		t.Skip("boots the prober binary")
	}
	bin, err := proberBinary()
	if err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	d, err := newProcDriver(bin, filepath.Join(root, "data"), "3", 3)
	if err != nil {
		t.Fatal(err)
	}
	taken := d.ports.client + 1
	l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(taken))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	t.Cleanup(func() {
		if err := d.stop(); err != nil {
			t.Errorf("stop prober: %v", err)
		}
	})
	if err := d.start(context.Background()); err != nil {
		t.Fatalf("start: %v\n%s", err, tailFile(d.logPath, 20))
	}
	if d.starts != 2 {
		t.Errorf("booted %d times, want 2 (one on the taken port, one on fresh ports)", d.starts)
	}
	for _, u := range d.clientURLs() {
		if strings.HasSuffix(u, ":"+strconv.Itoa(taken)) {
			t.Errorf("client URL %s is the taken port", u)
		}
	}
	// A restart keeps its ports: a port taken then is an error.
	if err := d.kill(); err != nil {
		t.Fatal(err)
	}
	l2, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(d.ports.client))
	if err != nil {
		t.Fatal(err)
	}
	defer l2.Close()
	if err := d.start(context.Background()); !errors.Is(err, errPortTaken) {
		t.Errorf("restart on a taken port: %v, want errPortTaken", err)
	}
}

package walk_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
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
	// logTail returns the last lines of the prober's log.
	logTail(n int) string
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
func freePorts(n int) (int, error) {
	for attempt := 0; attempt < 50; attempt++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, err
		}
		first := l.Addr().(*net.TCPAddr).Port
		l.Close()
		if first+n > 65000 {
			continue
		}
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
	return 0, fmt.Errorf("no %d consecutive free ports", n)
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

func (d *procDriver) start(ctx context.Context) error {
	logf, err := os.OpenFile(d.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
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
	return waitAPI(ctx, d.base(), exited)
}

func (d *procDriver) base() string                         { return fmt.Sprintf("http://127.0.0.1:%d", d.ports.api) }
func (d *procDriver) clientURLs() []string                 { return d.ports.clientURLs() }
func (d *procDriver) storeFile() string                    { return filepath.Join(d.dir, "maintenance.json") }
func (d *procDriver) logTail(n int) string                 { return tailFile(d.logPath, n) }
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
func (d *inprocDriver) storeFile() string    { return filepath.Join(d.dir, "maintenance.json") }
func (d *inprocDriver) logTail(n int) string { return tailFile(d.logPath, n) }
func (d *inprocDriver) kill() error          { return errors.ErrUnsupported }

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

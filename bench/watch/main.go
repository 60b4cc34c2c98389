// Command watch measures the cost of watching a NATS cluster: for N pods
// (3, 5 and 9 by default) and clusters of 1,000 and 10,000 Raft groups, how
// many monitoring requests (and bytes) each NATS server answers per second
// and what each sidecar spends (CPU, peak resident set), in two designs
// side by side:
//
//   - every: every sidecar sweeps every server (one natsraft.Collector per
//     pod with every pod's endpoint, one sweep a second), the design
//     before shared sweeps and what `prober serve --share-sweeps=false`
//     does;
//   - shared: each sidecar reads only its own server and asks the other
//     sidecars for theirs (natsraft/report.go, GET /local/report), the
//     default of `prober serve`.
//
// The watch between sweeps (natsraft.CollectorOptions.WatchInterval) is
// counted apart: the shared design runs it as `prober serve` does (each
// sidecar looks at its own server's /routez every 250 ms), the every
// design as it was, without a watch.
//
// The servers are synthetic (package synth: nats-server's own document
// types, rendered once and served as they are, R3 streams spread over the
// nodes three at a time, 4 R3 consumers each) in one child process that
// counts the requests of each server. Each sidecar is a child process of
// its own running a real natsraft.Collector with its Run loop, so its CPU
// time (getrusage) and peak resident set (VmHWM) are its alone. On this
// 2-core machine the larger runs saturate the cores: the table then shows
// the sweep rate achieved below the 1/s wanted, and the CPU per sweep is
// the figure that carries over to a machine with a core per pod.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/prober-dev/prober/bench/internal/proc"
	"github.com/prober-dev/prober/bench/internal/synth"
	"github.com/prober-dev/prober/natsraft"
	"github.com/prober-dev/prober/prober"
)

// Lines the children print on stdout and the parent waits for.
const (
	readyLine  = "READY "  // server child: its endpoints and document sizes
	countLine  = "COUNT "  // server child: requests answered so far, per server
	warmLine   = "WARM"    // sidecar child: first sweep done
	resultLine = "RESULT " // sidecar child: its measure
)

func main() {
	serve := flag.Int("serve", 0, "serve a synthetic cluster of this many nodes and print its endpoints (internal)")
	sidecar := flag.String("sidecar", "", "run one sidecar's collector over these endpoints (JSON; internal)")
	self := flag.String("self", "", "the sidecar's own node, whose report it serves on -listen (internal)")
	listen := flag.String("listen", "", "where the sidecar serves its report (internal)")
	designs := flag.String("designs", "every,shared", "designs to measure: every (every sidecar sweeps every server), shared (each reads its own and serves it)")
	pods := flag.String("pods", "3,5,9", "numbers of pods (NATS servers, one sidecar each)")
	groups := flag.String("groups", "1000,10000", "Raft groups of the cluster (R3 streams with -consumers R3 consumers each)")
	consumers := flag.Int("consumers", 4, "R3 consumers per stream")
	streams := flag.Int("streams", 0, "R3 streams (internal)")
	window := flag.Duration("window", 10*time.Second, "how long each configuration is measured after every sidecar's first sweep")
	interval := flag.Duration("interval", natsraft.DefaultCollectorInterval, "the collectors' sweep interval (the product's)")
	watch := flag.Duration("watch", 0, "the sidecar's watch interval (internal)")
	flag.Parse()

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Minute)
	defer cancel()
	var err error
	switch {
	case *serve > 0:
		err = serveCluster(ctx, *serve, *streams, *consumers, os.Stdout, os.Stdin)
	case *sidecar != "":
		err = runSidecar(ctx, sidecarArgs{endpoints: *sidecar, self: *self, listen: *listen, interval: *interval, window: *window, watch: *watch}, os.Stdout, os.Stdin)
	default:
		var o options
		if o.pods, err = ints(*pods); err == nil {
			o.groups, err = ints(*groups)
		}
		for _, d := range strings.Split(*designs, ",") {
			if d = strings.TrimSpace(d); d != designEvery && d != designShared {
				err = fmt.Errorf("-designs: unknown design %q", d)
			}
			o.designs = append(o.designs, d)
		}
		if err == nil {
			o.consumers, o.window, o.interval = *consumers, *window, *interval
			err = run(ctx, os.Stdout, o)
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "watch:", err)
		os.Exit(1)
	}
}

// ints parses a comma-separated list of positive integers.
func ints(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n <= 0 {
			return nil, fmt.Errorf("%q: want positive integers separated by commas", s)
		}
		out = append(out, n)
	}
	return out, nil
}

// The designs measured.
const (
	designEvery  = "every"
	designShared = "shared"
)

// options are the command line's.
type options struct {
	pods, groups     []int
	designs          []string
	consumers        int
	window, interval time.Duration
}

// row is one configuration's measure.
type row struct {
	design       string
	pods, groups int
	// reqPerServer is the monitoring requests per second of the sweeps
	// each server answered (mean over the servers); bytesPerServer their
	// bytes; watchPerServer the requests of the collectors' watch between
	// sweeps (GET /healthz?js-server-only=true, a few bytes each).
	reqPerServer, bytesPerServer, watchPerServer float64
	// sweepsPerSidecar is the sweeps per second each sidecar completed.
	sweepsPerSidecar float64
	// cpu is each sidecar's CPU time per second (mean); cpuPerSweep per
	// sweep; rss the largest peak resident set of a sidecar.
	cpu, cpuPerSweep float64
	rss              uint64
}

func run(ctx context.Context, out io.Writer, o options) error {
	var rows []row
	for _, g := range o.groups {
		for _, n := range o.pods {
			for _, d := range o.designs {
				r, err := measure(ctx, out, d, n, g, o)
				if err != nil {
					return fmt.Errorf("%s, %d pods, %d groups: %w", d, n, g, err)
				}
				rows = append(rows, r)
			}
		}
	}
	fmt.Fprintf(out, "\ninterval %s, window %s, %d cores; every: every sidecar sweeps every server; shared: each reads its own server and serves it to the others\n",
		o.interval, o.window, runtime.NumCPU())
	fmt.Fprintf(out, "%-7s %-5s %-7s %-12s %-8s %-12s %-13s %-13s %-12s %-11s %s\n", "design", "pods", "groups", "sweep req/s",
		"wanted", "watch req/s", "MiB/s/server", "sweeps/s/pod", "CPU/sidecar", "CPU/sweep", "peak RSS/sidecar")
	for _, r := range rows {
		wanted := r.pods * requestsPerSweep
		if r.design == designShared {
			wanted = requestsPerSweep
		}
		fmt.Fprintf(out, "%-7s %-5d %-7d %-12.1f %-8d %-12.1f %-13.1f %-13.2f %-12s %-11s %.1f MiB\n", r.design, r.pods, r.groups,
			r.reqPerServer, wanted, r.watchPerServer, r.bytesPerServer/(1<<20), r.sweepsPerSidecar,
			fmt.Sprintf("%.0f%% core", 100*r.cpu), fmt.Sprintf("%.0f ms", 1000*r.cpuPerSweep), float64(r.rss)/(1<<20))
	}
	fmt.Fprintf(out, "per server; wanted at 1 sweep/s: every: pods × %d requests per sweep (/varz /routez /gatewayz /healthz /jsz /raftz×2); shared: %d, its own sidecar's\n", requestsPerSweep, requestsPerSweep)
	fmt.Fprintf(out, "ratio shared/every (same pods and groups): server requests, sidecar CPU\n")
	for _, r := range rows {
		if r.design != designShared {
			continue
		}
		for _, e := range rows {
			if e.design == designEvery && e.pods == r.pods && e.groups == r.groups && e.reqPerServer > 0 && e.cpu > 0 {
				fmt.Fprintf(out, "  %d pods, %5d groups: requests %.2f×, CPU %.2f×, peak RSS %.2f×\n", r.pods, r.groups,
					r.reqPerServer/e.reqPerServer, r.cpu/e.cpu, float64(r.rss)/float64(e.rss))
			}
		}
	}
	return nil
}

// requestsPerSweep is what one collector asks one server per sweep of a
// cluster with one application account: /varz, /routez, /gatewayz,
// /healthz, /jsz (one page), /raftz of the system and of the account.
const requestsPerSweep = 7

// child is a started child process of this program, its output read line
// by line.
type child struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	lines chan string
}

func startChild(ctx context.Context, args ...string) (*child, error) {
	cmd, stdin, stdout, err := proc.StartSelf(ctx, args...)
	if err != nil {
		return nil, err
	}
	c := &child{cmd: cmd, stdin: stdin, lines: make(chan string, 16)}
	go func() {
		defer close(c.lines)
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			c.lines <- sc.Text()
		}
	}()
	return c, nil
}

// await returns the rest of the next line that starts with prefix.
func (c *child) await(ctx context.Context, prefix string) (string, error) {
	for {
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case l, ok := <-c.lines:
			if !ok {
				return "", fmt.Errorf("child ended before %q", strings.TrimSpace(prefix))
			}
			if rest, ok := strings.CutPrefix(l, prefix); ok {
				return rest, nil
			}
		}
	}
}

// stop closes the child's stdin (it ends then) and waits for it.
func (c *child) stop() {
	_ = c.stdin.Close()
	_ = c.cmd.Wait()
}

// served is what the server child announces.
type served struct {
	Endpoints []natsraft.Endpoint `json:"endpoints"`
	// Bytes is per server what one sweep of it carries.
	Bytes []int `json:"bytes"`
}

func measure(ctx context.Context, out io.Writer, design string, pods, groups int, o options) (row, error) {
	streams := max(1, groups/(1+o.consumers))
	fmt.Fprintf(out, "%s: %d pods, %d groups (%d R3 streams × %d R3 consumers + meta): ", design, pods, groups, streams, o.consumers)
	srv, err := startChild(ctx, "-serve", strconv.Itoa(pods), "-streams", strconv.Itoa(streams), "-consumers", strconv.Itoa(o.consumers))
	if err != nil {
		return row{}, err
	}
	defer srv.stop()
	rest, err := srv.await(ctx, readyLine)
	if err != nil {
		return row{}, err
	}
	var s served
	if err := json.Unmarshal([]byte(rest), &s); err != nil {
		return row{}, fmt.Errorf("server child: %w", err)
	}
	var listens []string
	if design == designShared {
		if listens, err = freeAddrs(pods); err != nil {
			return row{}, err
		}
		for i := range s.Endpoints {
			s.Endpoints[i].ReportURL = "http://" + listens[i] + "/local/report"
		}
	}
	eps, err := json.Marshal(s.Endpoints)
	if err != nil {
		return row{}, err
	}
	sidecars := make([]*child, 0, pods)
	defer func() {
		for _, c := range sidecars {
			c.stop()
		}
	}()
	for i := range pods {
		args := []string{"-sidecar", string(eps), "-interval", o.interval.String(), "-window", o.window.String()}
		if design == designShared {
			args = append(args, "-self", s.Endpoints[i].Name, "-listen", listens[i], "-watch", natsraft.DefaultWatchInterval.String())
		}
		c, err := startChild(ctx, args...)
		if err != nil {
			return row{}, err
		}
		sidecars = append(sidecars, c)
	}
	for _, c := range sidecars {
		if _, err := c.await(ctx, warmLine); err != nil {
			return row{}, err
		}
	}
	before, err := counts(ctx, srv)
	if err != nil {
		return row{}, err
	}
	start := time.Now()
	for _, c := range sidecars {
		if _, err := io.WriteString(c.stdin, "go\n"); err != nil {
			return row{}, err
		}
	}
	results := make([]sidecarResult, 0, pods)
	for _, c := range sidecars {
		rest, err := c.await(ctx, resultLine)
		if err != nil {
			return row{}, err
		}
		var res sidecarResult
		if err := json.Unmarshal([]byte(rest), &res); err != nil {
			return row{}, fmt.Errorf("sidecar child: %w", err)
		}
		results = append(results, res)
	}
	after, err := counts(ctx, srv)
	if err != nil {
		return row{}, err
	}
	wall := time.Since(start).Seconds()

	r := row{design: design, pods: pods, groups: groups}
	for i := range after.Sweep {
		d := float64(after.Sweep[i] - before.Sweep[i])
		r.watchPerServer += float64(max(0, after.Watch[i]-before.Watch[i])) / wall / float64(pods)
		r.reqPerServer += d / wall / float64(pods)
		// Every sweep carries the server's documents once.
		r.bytesPerServer += d / requestsPerSweep * float64(s.Bytes[i]) / wall / float64(pods)
	}
	var sweeps float64
	for _, res := range results {
		r.sweepsPerSidecar += float64(res.Sweeps) / res.Seconds / float64(pods)
		r.cpu += res.CPU / res.Seconds / float64(pods)
		sweeps += float64(res.Sweeps)
		r.rss = max(r.rss, res.PeakRSS)
	}
	if sweeps > 0 {
		var cpu float64
		for _, res := range results {
			cpu += res.CPU
		}
		r.cpuPerSweep = cpu / sweeps
	}
	fmt.Fprintf(out, "%.0f sweep + %.0f watch req/s per server, %.2f sweeps/s per sidecar\n", r.reqPerServer, r.watchPerServer, r.sweepsPerSidecar)
	return r, nil
}

// requestCounts are the requests each server answered so far: those of
// the sweeps and those of the watch between sweeps.
type requestCounts struct {
	Sweep []int64 `json:"sweep"`
	Watch []int64 `json:"watch"`
}

// counts asks the server child for the requests each server answered.
func counts(ctx context.Context, srv *child) (*requestCounts, error) {
	if _, err := io.WriteString(srv.stdin, "count\n"); err != nil {
		return nil, err
	}
	rest, err := srv.await(ctx, countLine)
	if err != nil {
		return nil, err
	}
	var n requestCounts
	if err := json.Unmarshal([]byte(rest), &n); err != nil {
		return nil, fmt.Errorf("server child: %w", err)
	}
	return &n, nil
}

// serveCluster serves a synthetic cluster of n nodes, announces it on out
// and answers "count" lines on in with the requests each server answered,
// until in closes.
func serveCluster(ctx context.Context, n, streams, consumers int, out io.Writer, in io.Reader) error {
	nodes := synth.Nodes(n)
	var s served
	reqs, watches := make([]atomic.Int64, n), make([]atomic.Int64, n)
	routez, varz := make([]atomic.Int64, n), make([]atomic.Int64, n)
	var servers []*http.Server
	defer func() {
		for _, srv := range servers {
			_ = srv.Close()
		}
	}()
	for i, name := range nodes {
		h, err := synth.NewHandler(nodes, i, streams, consumers)
		if err != nil {
			return err
		}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return err
		}
		srv := &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			// A sweep reads /varz and /routez once each: a /routez
			// beyond the /varz is a look of the watch, and so is the
			// embedded default's /healthz?js-server-only=true.
			switch {
			case r.URL.Path == "/healthz" && r.URL.Query().Get("js-server-only") == "true":
				watches[i].Add(1)
			case r.URL.Path == "/routez":
				routez[i].Add(1)
			case r.URL.Path == "/varz":
				varz[i].Add(1)
				reqs[i].Add(1)
			default:
				reqs[i].Add(1)
			}
			h.ServeHTTP(w, r)
		})}
		servers = append(servers, srv)
		go func() { _ = srv.Serve(ln) }()
		s.Endpoints = append(s.Endpoints, natsraft.Endpoint{Name: name, DC: "dc1", MonitorURL: "http://" + ln.Addr().String()})
		s.Bytes = append(s.Bytes, h.Size())
	}
	b, err := json.Marshal(s)
	if err != nil {
		return err
	}
	fmt.Fprintln(out, readyLine+string(b))
	sc := bufio.NewScanner(in)
	for sc.Scan() {
		if sc.Text() != "count" {
			continue
		}
		c := requestCounts{Sweep: make([]int64, n), Watch: make([]int64, n)}
		for i := range reqs {
			// Read varz first: a sweep in flight between the two loads
			// then counts its /routez as a look, not its /varz as one.
			v := varz[i].Load()
			rz := routez[i].Load()
			c.Sweep[i] = reqs[i].Load() + min(rz, v)
			c.Watch[i] = watches[i].Load() + max(0, rz-v)
		}
		b, err := json.Marshal(c)
		if err != nil {
			return err
		}
		fmt.Fprintln(out, countLine+string(b))
	}
	return ctx.Err()
}

// sidecarResult is one sidecar's measure over the window.
type sidecarResult struct {
	Sweeps  int     `json:"sweeps"`
	Seconds float64 `json:"seconds"`
	// CPU is the user and system time spent, in seconds.
	CPU     float64 `json:"cpu"`
	PeakRSS uint64  `json:"peak_rss"`
}

// freeAddrs returns n loopback addresses with a port free at the time of
// asking, for the sidecars' report servers.
func freeAddrs(n int) ([]string, error) {
	var out []string
	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			_ = ln.Close()
		}
	}()
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		lns = append(lns, ln)
		out = append(out, ln.Addr().String())
	}
	return out, nil
}

// sidecarArgs are a sidecar child's flags.
type sidecarArgs struct {
	endpoints, self, listen string
	interval, window, watch time.Duration
}

// runSidecar runs a collector over the endpoints as a sidecar does (its
// Run loop), and with self its report server as the product's GET
// /local/report serves it; it announces its first sweep, and on "go"
// measures its sweeps and CPU time for window.
func runSidecar(ctx context.Context, a sidecarArgs, out io.Writer, in io.Reader) error {
	var eps []natsraft.Endpoint
	if err := json.Unmarshal([]byte(a.endpoints), &eps); err != nil {
		return fmt.Errorf("-sidecar: %w", err)
	}
	interval, window := a.interval, a.window
	c := natsraft.NewCollector(natsraft.CollectorOptions{Endpoints: eps, Self: a.self, Interval: interval,
		WatchInterval: a.watch, Timeout: 30 * time.Second, Logger: zerolog.Nop()})
	if a.self != "" {
		srv, err := serveReport(c, a.listen)
		if err != nil {
			return err
		}
		defer func() { _ = srv.Close(context.Background()) }()
	}
	runCtx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { _ = c.Run(runCtx) })
	defer func() { stop(); wg.Wait() }()

	// Sweeps are counted by the views they leave: a sweep takes far longer
	// than the 5 ms between two looks.
	var sweeps atomic.Int64
	wg.Go(func() {
		t := time.NewTicker(5 * time.Millisecond)
		defer t.Stop()
		var last *natsraft.View
		for {
			select {
			case <-runCtx.Done():
				return
			case <-t.C:
				if v := c.Latest(); v != last {
					last = v
					sweeps.Add(1)
				}
			}
		}
	})
	for sweeps.Load() == 0 {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
	}
	fmt.Fprintln(out, warmLine)
	sc := bufio.NewScanner(in)
	if !sc.Scan() {
		return errors.New("stdin closed before go")
	}
	cpu0, err := proc.CPUTime()
	if err != nil {
		return err
	}
	n0, start := sweeps.Load(), time.Now()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(window):
	}
	cpu1, err := proc.CPUTime()
	if err != nil {
		return err
	}
	res := sidecarResult{Sweeps: int(sweeps.Load() - n0), Seconds: time.Since(start).Seconds(), CPU: (cpu1 - cpu0).Seconds()}
	if res.PeakRSS, err = proc.PeakRSS(); err != nil {
		return err
	}
	b, err := json.Marshal(res)
	if err != nil {
		return err
	}
	fmt.Fprintln(out, resultLine+string(b))
	_, _ = io.Copy(io.Discard, in)
	return nil
}

// serveReport serves the collector's local report at addr with the
// product's own API server (GET /local/report, prober/report.go).
func serveReport(c *natsraft.Collector, addr string) (*prober.Server, error) {
	srv := prober.NewServer(prober.Options{Addr: addr, Reports: c, Logger: zerolog.Nop()})
	if err := srv.Open(); err != nil {
		return nil, fmt.Errorf("report server: %w", err)
	}
	return srv, nil
}

// Command health measures the speed goals of the cluster health view:
//
//	(1) how long after a Raft group loses its quorum the diagnosis reports
//	    it: two of three nodes of an embedded cluster are stopped while the
//	    collector sweeps at the product's interval (1 s) and watches for
//	    nodes going down between sweeps, as the embedded default does (one
//	    collector, GET /healthz of every node every 250 ms); then the same
//	    with one collector per node, as the sidecars have them (shared
//	    sweeps, each serving its report with the product's API server, and
//	    each looking at its own server's routes every 250 ms); target ≤ 0.5 s;
//	(2) one health sweep (collection over HTTP, view, diagnosis) over a
//	    3-node cluster of 10,001 Raft groups — 2,000 R3 streams with 4 R3
//	    consumers each, and the meta group — its time and the prober's peak
//	    memory; targets < 0.3 s and < 100 MiB. The nodes' monitoring documents
//	    are rendered with nats-server's own types and served as they are:
//	    three real servers holding 30,000 Raft nodes between them do not
//	    fit the 2 cores of this machine (they exhaust it in elections);
//	(3) the same sweep over a real embedded cluster of a size that fits
//	    (by default 200 streams × 4 consumers: 1,001 groups), which adds
//	    the servers' own cost of rendering /jsz and /raftz.
//
// The clusters of (2) and (3) run in a child process (this program started
// again with -serve), so that the memory measured is the prober's alone:
// the parent's peak resident set (VmHWM) and the Go heap sampled during the
// sweeps.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/prober-dev/prober/bench/internal/gap"
	"github.com/prober-dev/prober/bench/internal/proc"
	"github.com/prober-dev/prober/natsraft"
	"github.com/prober-dev/prober/prober"
)

// readyLine prefixes the line on which the child announces its endpoints.
const readyLine = "READY "

func main() {
	serve := flag.String("serve", "", "run the cluster of a sweep benchmark, real or synthetic, and print its endpoints (internal)")
	streams := flag.Int("streams", 2000, "R3 streams of the synthetic cluster")
	consumers := flag.Int("consumers", 4, "R3 consumers per stream")
	realStreams := flag.Int("real-streams", 200, "R3 streams of the real cluster (0: skip it)")
	sweeps := flag.Int("sweeps", 5, "sweeps measured per cluster")
	reps := flag.Int("reps", 5, "quorum losses measured")
	interval := flag.Duration("interval", time.Second, "collector interval for the quorum-loss measurement (the product's)")
	skipQuorum := flag.Bool("skip-quorum", false, "skip the quorum-loss measurement")
	skipSweep := flag.Bool("skip-sweep", false, "skip the sweeps")
	flag.Parse()

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Minute)
	defer cancel()
	var err error
	switch *serve {
	case "real":
		err = serveCluster(ctx, *streams, *consumers, os.Stdout, os.Stdin)
	case "synthetic":
		err = serveSynthetic(ctx, *streams, *consumers, os.Stdout, os.Stdin)
	case "":
		o := options{streams: *streams, consumers: *consumers, realStreams: *realStreams, sweeps: *sweeps,
			reps: *reps, interval: *interval, skipQuorum: *skipQuorum, skipSweep: *skipSweep}
		err = run(ctx, os.Stdout, o)
	default:
		err = fmt.Errorf("-serve %q: want real or synthetic", *serve)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "health:", err)
		os.Exit(1)
	}
}

// options are the command line's.
type options struct {
	streams, consumers, realStreams, sweeps, reps int
	interval                                      time.Duration
	skipQuorum, skipSweep                         bool
}

func run(ctx context.Context, out io.Writer, o options) error {
	var synth, real *sweepResult
	if !o.skipSweep {
		var err error
		// The synthetic sweep first, while the process is fresh: its peak
		// resident set is the figure (the quorum-loss run below holds an
		// embedded cluster in this process).
		if synth, err = benchSweep(ctx, out, "synthetic", o.streams, o.consumers, o.sweeps); err != nil {
			return fmt.Errorf("synthetic sweep: %w", err)
		}
		if o.realStreams > 0 {
			if real, err = benchSweep(ctx, out, "real", o.realStreams, o.consumers, o.sweeps); err != nil {
				return fmt.Errorf("real sweep: %w", err)
			}
		}
	}
	var quorum, quorumSidecars []time.Duration
	if !o.skipQuorum {
		var err error
		if quorum, err = benchQuorumLoss(ctx, out, o.reps, o.interval, false); err != nil {
			return fmt.Errorf("quorum loss: %w", err)
		}
		if quorumSidecars, err = benchQuorumLoss(ctx, out, o.reps, o.interval, true); err != nil {
			return fmt.Errorf("quorum loss, sidecars: %w", err)
		}
	}
	row := func(measure, value, target string) { fmt.Fprintf(out, "%-58s %-28s %s\n", measure, value, target) }
	fmt.Fprintln(out)
	row("measure", "min / median / max", "target")
	if quorum != nil {
		row(fmt.Sprintf("quorum loss → finding (interval %s, %d runs)", o.interval, len(quorum)), stats(quorum), "≤ 0.5 s")
		row(fmt.Sprintf("  the same in the sidecars (%d runs)", len(quorumSidecars)), stats(quorumSidecars), "≤ 0.5 s")
	}
	if synth != nil {
		row(fmt.Sprintf("sweep + diagnosis, %d groups, served (%d sweeps)", synth.groups, len(synth.times)), stats(synth.times), "< 0.3 s")
		row("  of which diagnosis", stats(synth.diagnose), "")
		row("  prober peak memory: resident set (VmHWM)", mib(synth.peakRSS), "< 100 MiB")
		row("  prober peak memory: Go heap in use (sampled)", mib(synth.peakHeap), "")
		row("  allocated per sweep (median)", mib(synth.allocPerSweep), "")
	}
	if real != nil {
		row(fmt.Sprintf("sweep + diagnosis, %d groups, real servers (%d sweeps)", real.groups, len(real.times)), stats(real.times), "")
		row("  of which diagnosis", stats(real.diagnose), "")
	}
	return nil
}

// benchQuorumLoss stops two of three nodes reps times and measures how long
// the background collector and the diagnosis take to report it: the
// embedded default's one collector, or with sidecars the collector of the
// node left running.
func benchQuorumLoss(ctx context.Context, out io.Writer, reps int, interval time.Duration, sidecars bool) ([]time.Duration, error) {
	how := "one collector (the embedded default)"
	if sidecars {
		how = "one collector per node sharing its sweeps (the sidecars)"
	}
	fmt.Fprintf(out, "quorum loss: 3-node cluster with the demo stream, %s, sweeps every %s\n", how, interval)
	e, err := natsraft.StartEmbedded(ctx, natsraft.EmbeddedOptions{Demo: true, Logger: zerolog.Nop()})
	if err != nil {
		return nil, err
	}
	defer e.Close()
	latest, stop, err := startWatching(ctx, e, interval, sidecars)
	if err != nil {
		return nil, err
	}
	defer stop()

	names := make([]string, 0, 3)
	for _, n := range e.Nodes() {
		names = append(names, n.Name())
	}
	var res []time.Duration
	for i := range reps {
		a, b, left := names[i%3], names[(i+1)%3], names[(i+2)%3]
		if err := waitFor(ctx, 60*time.Second, func() bool { return healthy(latest(left)) }); err != nil {
			return nil, fmt.Errorf("run %d: cluster not healthy: %w", i+1, err)
		}
		if err := e.StopNode(a); err != nil {
			return nil, err
		}
		if err := e.StopNode(b); err != nil {
			return nil, err
		}
		stopped := time.Now()
		var seen time.Time
		var summary string
		err := waitFor(ctx, 30*time.Second, func() bool {
			v := latest(left)
			if v == nil || !v.At.After(stopped) {
				return false
			}
			for _, f := range natsraft.Diagnose(v, natsraft.DiagnoseOptions{}) {
				if f.Cause == natsraft.CauseTooFewNodes && f.GroupCount == len(v.Groups) {
					seen, summary = time.Now(), f.Summary
					return true
				}
			}
			return false
		})
		if err != nil {
			return nil, fmt.Errorf("run %d: no finding: %w", i+1, err)
		}
		took := seen.Sub(stopped)
		res = append(res, took)
		fmt.Fprintf(out, "  run %d: stopped %s and %s, reported after %.3fs: %s\n", i+1, a, b, took.Seconds(), summary)
		for _, n := range []string{a, b} {
			if err := e.RestartNode(ctx, n); err != nil {
				return nil, err
			}
		}
	}
	return res, nil
}

// startWatching runs the collectors of benchQuorumLoss: one over every
// node, as the embedded default has it (sweeps every interval, and at
// once when its watch finds a node down), or with sidecars one per node
// as the sidecars have them (each reads its own server, serves its report
// at GET /local/report with the product's API server and asks the others
// for theirs, and looks at its own server's routes between sweeps).
// latest gives the latest view of the node named.
func startWatching(ctx context.Context, e *natsraft.Embedded, interval time.Duration, sidecars bool) (latest func(node string) *natsraft.View, stop func(), err error) {
	runCtx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	var servers []*prober.Server
	stop = func() {
		cancel()
		wg.Wait()
		for _, s := range servers {
			_ = s.Close(context.Background())
		}
	}
	eps := e.Endpoints()
	if !sidecars {
		c := natsraft.NewCollector(natsraft.CollectorOptions{Endpoints: eps, Interval: interval,
			WatchInterval: natsraft.DefaultWatchInterval, Logger: zerolog.Nop()})
		wg.Go(func() { _ = c.Run(runCtx) })
		return func(string) *natsraft.View { return c.Latest() }, stop, nil
	}
	collectors := map[string]*natsraft.Collector{}
	for i, ep := range eps {
		c := natsraft.NewCollector(natsraft.CollectorOptions{Self: ep.Name, Interval: interval,
			WatchInterval: natsraft.DefaultWatchInterval, Logger: zerolog.Nop()})
		srv := prober.NewServer(prober.Options{Addr: "127.0.0.1:0", Reports: c, Logger: zerolog.Nop()})
		if err := srv.Open(); err != nil {
			stop()
			return nil, nil, fmt.Errorf("report server: %w", err)
		}
		servers = append(servers, srv)
		eps[i].ReportURL = "http://" + srv.Addr() + "/local/report"
		collectors[ep.Name] = c
	}
	for _, c := range collectors {
		if err := c.SetEndpoints(ctx, eps); err != nil {
			stop()
			return nil, nil, err
		}
		wg.Go(func() { _ = c.Run(runCtx) })
	}
	return func(node string) *natsraft.View { return collectors[node].Latest() }, stop, nil
}

// healthy holds when every group has a leader and only healthy members.
func healthy(v *natsraft.View) bool {
	if v == nil || len(v.Groups) == 0 {
		return false
	}
	for i := range v.Groups {
		if v.Groups[i].State() != natsraft.StateHealthy {
			return false
		}
	}
	return true
}

type sweepResult struct {
	groups            int
	times, diagnose   []time.Duration
	peakRSS, peakHeap uint64
	allocPerSweep     uint64
}

// benchSweep starts a cluster (kind "real" or "synthetic") in a child
// process and sweeps it.
func benchSweep(ctx context.Context, out io.Writer, kind string, streams, consumers, sweeps int) (*sweepResult, error) {
	fmt.Fprintf(out, "sweep: child process with a %s 3-node cluster of %d R3 streams × %d R3 consumers\n", kind, streams, consumers)
	cmd, stdin, stdout, err := proc.StartSelf(ctx, "-serve", kind, "-streams", strconv.Itoa(streams), "-consumers", strconv.Itoa(consumers))
	if err != nil {
		return nil, err
	}
	defer func() {
		_ = stdin.Close() // the child shuts its cluster down and exits
		_ = cmd.Wait()
	}()
	var eps []natsraft.Endpoint
	sc := bufio.NewScanner(stdout)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if rest, ok := strings.CutPrefix(line, readyLine); ok {
			if err := json.Unmarshal([]byte(rest), &eps); err != nil {
				return nil, fmt.Errorf("child's endpoints: %w", err)
			}
			break
		}
		fmt.Fprintln(out, "  "+line)
	}
	if eps == nil {
		return nil, fmt.Errorf("child ended without its endpoints: %v", sc.Err())
	}
	go func() { _, _ = io.Copy(io.Discard, stdout) }()

	runtime.GC()
	debug.FreeOSMemory()
	res := &sweepResult{}
	c := natsraft.NewCollector(natsraft.CollectorOptions{Endpoints: eps, Timeout: 30 * time.Second, Logger: zerolog.Nop()})
	var peakHeap atomic.Uint64
	sampling := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(2 * time.Millisecond)
		defer t.Stop()
		var ms runtime.MemStats
		for {
			select {
			case <-sampling:
				return
			case <-t.C:
				runtime.ReadMemStats(&ms)
				if ms.HeapInuse > peakHeap.Load() {
					peakHeap.Store(ms.HeapInuse)
				}
			}
		}
	})
	var allocs []uint64
	for i := range sweeps {
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		start := time.Now()
		v, err := c.Sweep(ctx)
		if err != nil {
			close(sampling)
			wg.Wait()
			return nil, err
		}
		dstart := time.Now()
		findings := natsraft.Diagnose(v, natsraft.DiagnoseOptions{})
		end := time.Now()
		runtime.ReadMemStats(&after)
		res.groups = len(v.Groups)
		res.times = append(res.times, end.Sub(start))
		res.diagnose = append(res.diagnose, end.Sub(dstart))
		allocs = append(allocs, after.TotalAlloc-before.TotalAlloc)
		fmt.Fprintf(out, "  sweep %d: %d groups on %d nodes in %.3fs (diagnosis %.3fs, %d findings), %s allocated\n",
			i+1, len(v.Groups), len(v.Nodes), end.Sub(start).Seconds(), end.Sub(dstart).Seconds(), len(findings),
			mib(after.TotalAlloc-before.TotalAlloc))
	}
	close(sampling)
	wg.Wait()
	slices.Sort(allocs)
	res.allocPerSweep = median(allocs)
	res.peakHeap = peakHeap.Load()
	res.peakRSS, err = proc.PeakRSS()
	if err != nil {
		return nil, err
	}
	return res, nil
}

// serveCluster runs the large cluster: 3 nodes, streams × (1 + consumers)
// Raft groups, announces the endpoints on out and runs until in closes.
func serveCluster(ctx context.Context, streams, consumers int, out io.Writer, in io.Reader) error {
	// Three servers with ten thousand Raft groups each make many blocking
	// file syscalls at once (term and vote writes): more threads than Go's
	// default limit of 10,000.
	debug.SetMaxThreads(100_000)
	start := time.Now()
	e, err := natsraft.StartEmbedded(ctx, natsraft.EmbeddedOptions{Logger: zerolog.Nop()})
	if err != nil {
		return err
	}
	defer e.Close()
	fmt.Fprintf(out, "cluster up in %.1fs, creating %d streams and %d consumers\n", time.Since(start).Seconds(), streams, streams*consumers)
	js, closeJS, err := gap.JetStream(e)
	if err != nil {
		return err
	}
	defer closeJS()
	created := time.Now()
	var next atomic.Int64
	var done atomic.Int64
	errs := make(chan error, 16)
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= streams {
					return
				}
				if err := createStream(ctx, js, i, consumers); err != nil {
					errs <- err
					return
				}
				if n := done.Add(1); n%250 == 0 {
					fmt.Fprintf(out, "  %d streams after %.0fs\n", n, time.Since(created).Seconds())
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return err
	}
	fmt.Fprintf(out, "created in %.0fs\n", time.Since(created).Seconds())
	b, err := json.Marshal(e.Endpoints())
	if err != nil {
		return err
	}
	fmt.Fprintln(out, readyLine+string(b))
	_, _ = io.Copy(io.Discard, in)
	return nil
}

// createStream creates stream i and its consumers, retrying while the
// meta group is busy.
func createStream(ctx context.Context, js jetstream.JetStream, i, consumers int) error {
	name := fmt.Sprintf("s%05d", i)
	var last error
	for attempt := 0; attempt < 50; attempt++ {
		if err := ctx.Err(); err != nil {
			return err
		}
		rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		st, err := js.CreateOrUpdateStream(rctx, jetstream.StreamConfig{
			Name: name, Subjects: []string{name + ".>"}, Storage: jetstream.MemoryStorage, Replicas: 3,
		})
		if err == nil {
			for c := 0; c < consumers && err == nil; c++ {
				_, err = st.CreateOrUpdateConsumer(rctx, jetstream.ConsumerConfig{
					Durable: fmt.Sprintf("c%d", c), AckPolicy: jetstream.AckExplicitPolicy, Replicas: 3, MemoryStorage: true,
				})
			}
		}
		cancel()
		if err == nil {
			return nil
		}
		last = err
		time.Sleep(200 * time.Millisecond)
	}
	return fmt.Errorf("stream %s: %w", name, last)
}

// waitFor polls cond every 10 ms until it holds or timeout passes.
func waitFor(ctx context.Context, timeout time.Duration, cond func() bool) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for !cond() {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
	return nil
}

func stats(ds []time.Duration) string {
	if len(ds) == 0 {
		return "-"
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return fmt.Sprintf("%.3f / %.3f / %.3f s", s[0].Seconds(), median(s).Seconds(), s[len(s)-1].Seconds())
}

// median returns the middle of sorted, the mean of the two middles for an
// even count (as bench/writegap does).
func median[T ~int64 | ~uint64](sorted []T) T {
	n := len(sorted)
	if n%2 == 1 {
		return sorted[n/2]
	}
	lo, hi := sorted[n/2-1], sorted[n/2]
	return lo + (hi-lo)/2
}

func mib(n uint64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

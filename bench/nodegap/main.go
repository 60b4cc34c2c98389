// Command nodegap measures, on a real node (tools/kubenode) with deploy/
// installed, the longest pause of a publisher in a pod while the R3
// stream's leader pod enters and then leaves maintenance, for two
// sequences side by side:
//
//	(a) bare fence: the kernel fence's nftables table and socket kill in the
//	    leader pod's network namespace, nothing else (as if the pod were
//	    lost), then lifted;
//	(b) the product: PUT /pods/<leader>?wait=60s through a port-forward
//	    (hand off, quiesce, move clients, fence, in the pod's own sidecar),
//	    then DELETE ?wait=120s (unfence, resume, caught up).
//
// The publisher (tools/kubenode/podclient) runs in a client pod, writes
// through a pod that stays up with synchronous acknowledged publishes
// (~200 msg/s, 2 s timeout, a failed publish retried with the same message
// id) and reports its longest gap between two acknowledgements and every
// acknowledged id; the bench checks that each one is in the stream. Needs
// root. It prints the node's start phases too.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"
	"k8s.io/client-go/kubernetes"

	benchgap "github.com/prober-dev/prober/bench/internal/gap"
	"github.com/prober-dev/prober/bench/internal/nodebench"
	"github.com/prober-dev/prober/natsraft"
	"github.com/prober-dev/prober/tools/kubenode"
)

const (
	ns      = kubenode.DeployNamespace
	stream  = "GAP"
	subject = "gap.x"
	// benchTable is the bare fence's table: not the sidecar's, so that the
	// sidecar, which reads its own table, leaves it alone.
	benchTable = "nodegap_fence"
)

func main() {
	reps := flag.Int("reps", 3, "repetitions per sequence")
	settle := flag.Duration("settle", 1500*time.Millisecond, "writes that keep going after a step, before the publisher stops")
	flag.Parse()
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "nodegap: needs root (it runs a real Kubernetes node)")
		os.Exit(1)
	}
	if err := run(*reps, *settle, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "nodegap:", err)
		os.Exit(1)
	}
}

// gap is one publisher run around one step.
type gap struct {
	max   time.Duration
	acked int
	lost  int
}

type result struct{ enter, leave []gap }

// bench holds the node and what the sequences share.
type bench struct {
	n      *kubenode.WithDeploy
	cs     kubernetes.Interface
	nc     *nats.Conn
	js     nats.JetStreamContext
	settle time.Duration
	out    io.Writer
}

func run(reps int, settle time.Duration, out io.Writer) error {
	ctx, n, stop, err := nodebench.StartNode("nodegap", "gap", 40*time.Minute)
	if err != nil {
		return err
	}
	defer stop()
	fmt.Fprintln(out, "node start (tools/kubenode):")
	for _, p := range n.Timings {
		fmt.Fprintf(out, "  %-40s %6.1fs\n", p.Name, p.At.Seconds())
	}
	fmt.Fprintf(out, "  images built in %.1fs; deploy/ 3 pods Ready %.1fs after kubectl apply\n", n.Images.Took.Seconds(), n.InstallReady.Seconds())

	e, err := nodebench.Open(ctx, n, stream, "gap.>", nats.IgnoreDiscoveredServers())
	if err != nil {
		return err
	}
	defer e.NC.Close()
	b := &bench{n: n, cs: e.CS, nc: e.NC, js: e.JS, settle: settle, out: out}
	fmt.Fprintf(out, "\nwrite gap of a publisher in a pod (R3 stream %s, sync publishes through a pod that stays up), %d repetitions\n", stream, reps)
	var bare, full result
	for i := range reps {
		if err := b.once(ctx, "(a) bare fence", i, b.bareFence, &bare); err != nil {
			return fmt.Errorf("bare fence: %w", err)
		}
		if err := b.once(ctx, "(b) product", i, b.product, &full); err != nil {
			return fmt.Errorf("product: %w", err)
		}
	}
	fmt.Fprintln(out)
	fmt.Fprintf(out, "%-28s %-26s %-26s %s\n", "max write gap (min/med/max)", "entering", "leaving", "acknowledged (lost)")
	fmt.Fprintf(out, "%-28s %-26s %-26s %s\n", "(a) bare fence", stats(bare.enter), stats(bare.leave), acks(bare))
	fmt.Fprintf(out, "%-28s %-26s %-26s %s\n", "(b) product", stats(full.enter), stats(full.leave), acks(full))
	fmt.Fprintf(out, "%-28s %-26s %-26s\n", "ratio of medians (a)/(b)", ratio(bare.enter, full.enter), ratio(bare.leave, full.leave))
	return nil
}

// step enters (or leaves) maintenance of the leader pod.
type step func(ctx context.Context, leader string, entering bool) error

// once runs one repetition of a sequence: the leader enters, then leaves,
// each with a publisher of its own, so that each gap is measured alone.
func (b *bench) once(ctx context.Context, label string, i int, s step, into *result) error {
	leader, err := b.leader()
	if err != nil {
		return err
	}
	g, err := b.measure(ctx, leader, func() error { return s(ctx, leader, true) })
	if err != nil {
		return fmt.Errorf("enter: %w", err)
	}
	into.enter = append(into.enter, g)
	fmt.Fprintf(b.out, "  %s #%d: %s entering: max gap %.3fs, %d acknowledged, %d lost\n", label, i+1, leader, g.max.Seconds(), g.acked, g.lost)
	g, err = b.measure(ctx, leader, func() error { return s(ctx, leader, false) })
	if err != nil {
		return fmt.Errorf("leave: %w", err)
	}
	into.leave = append(into.leave, g)
	fmt.Fprintf(b.out, "  %s #%d: %s leaving:  max gap %.3fs, %d acknowledged, %d lost\n", label, i+1, leader, g.max.Seconds(), g.acked, g.lost)
	wctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	return kubenode.WaitPodsReady(wctx, b.cs, ns, kubenode.DeploySelector, kubenode.DeployReplicas)
}

// measure runs a publisher through a pod other than the leader around do:
// it publishes, do runs, writes must flow again and go on for the settle
// time, and the publisher stops. Every acknowledged id must be stored.
func (b *bench) measure(ctx context.Context, leader string, do func() error) (gap, error) {
	via := "nats-0"
	if leader == via {
		via = "nats-1"
	}
	if err := b.js.PurgeStream(stream); err != nil {
		return gap{}, fmt.Errorf("purge: %w", err)
	}
	p, err := nodebench.Start(b.n, nodebench.Options{Servers: []string{"nats://" + via + ".nats-headless:4222"},
		Subject: subject, Timeout: 2 * time.Second})
	if err != nil {
		return gap{}, fmt.Errorf("publisher: %w", err)
	}
	defer p.Kill()
	if err := b.flowing(ctx); err != nil {
		return gap{}, fmt.Errorf("before the step: %w", err)
	}
	if err := do(); err != nil {
		return gap{}, err
	}
	if err := b.flowing(ctx); err != nil {
		return gap{}, fmt.Errorf("after the step: %w", err)
	}
	sum, err := p.Stop(b.nc)
	if err != nil {
		return gap{}, fmt.Errorf("stop the publisher: %w", err)
	}
	// Right after a step the stream may be between leaders for a while:
	// every read is retried until it answers.
	retry := func(fn func() error) error { return benchgap.Retry(ctx, "read the stream", fn) }
	lost, err := nodebench.Stream{JS: b.js, Name: stream, Retry: retry, Strict: true}.Lost(sum)
	if err != nil {
		return gap{}, fmt.Errorf("read the stream: %w", err)
	}
	return gap{max: time.Duration(sum.MaxGap * float64(time.Second)), acked: sum.Acked, lost: lost}, nil
}

// flowing waits until the stream has grown by settle's worth of messages.
func (b *bench) flowing(ctx context.Context) error {
	want := uint64(b.settle.Seconds() * 200 * 0.8)
	var start uint64
	if err := benchgap.Retry(ctx, "read the stream", func() (err error) { start, err = b.last(); return err }); err != nil {
		return err
	}
	deadline := time.Now().Add(2 * time.Minute)
	for {
		// A stream info request can time out while the stream has no
		// leader: that is the gap itself; ask again.
		now, err := b.last()
		if err == nil && now >= start+want {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("writes do not flow (last sequence %d, was %d): %v\n%s", now, start, err, b.explain(ctx))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// product is (b): the API of a pod that stays up, through kubectl
// port-forward.
func (b *bench) product(ctx context.Context, leader string, entering bool) error {
	via := "nats-0"
	if leader == via {
		via = "nats-1"
	}
	pf, err := b.n.PortForward(ctx, ns, "pod/"+via, 0, 8889)
	if err != nil {
		return err
	}
	defer pf.Close()
	method, path := http.MethodPut, "/pods/"+leader+"?wait=60s"
	if !entering {
		method, path = http.MethodDelete, "/pods/"+leader+"?wait=120s"
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://"+pf.Local+path, nil)
	if err != nil {
		return err
	}
	resp, err := (&http.Client{Timeout: 3 * time.Minute}).Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s %s: %s: %s", method, path, resp.Status, body)
	}
	return nil
}

// bareFence is (a): the kernel fence alone on the leader pod's network
// namespace, from outside the pod.
func (b *bench) bareFence(ctx context.Context, leader string, entering bool) error {
	pid, err := b.n.ContainerPID(ctx, ns, leader, "nats")
	if err != nil {
		return err
	}
	var peers []string
	for _, p := range []string{"nats-0", "nats-1", "nats-2"} {
		ip, err := nodebench.PodIP(ctx, b.cs, p)
		if err != nil {
			return err
		}
		if p != leader {
			peers = append(peers, "http://"+ip+":8222")
		}
	}
	ip, err := nodebench.PodIP(ctx, b.cs, leader)
	if err != nil {
		return err
	}
	f := natsraft.NewKernelFence(natsraft.KernelFenceOptions{
		Table:      benchTable,
		NetNS:      fmt.Sprintf("/proc/%d/ns/net", pid),
		MonitorURL: "http://" + ip + ":8222",
		Peers:      func(context.Context) ([]string, error) { return peers, nil },
		HTTPClient: b.n.HTTPClient(5 * time.Second),
		Logger:     zerolog.New(os.Stderr).Level(zerolog.WarnLevel),
	})
	if entering {
		return f.Fence(ctx)
	}
	return f.Unfence(ctx)
}

// leader returns the stream's leader, once it has one.
func (b *bench) leader() (string, error) {
	deadline := time.Now().Add(time.Minute)
	for {
		info, err := b.js.StreamInfo(stream)
		if err == nil && info.Cluster != nil && info.Cluster.Leader != "" {
			return info.Cluster.Leader, nil
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("stream %s has no leader: %v", stream, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (b *bench) last() (uint64, error) {
	info, err := b.js.StreamInfo(stream)
	if err != nil {
		return 0, err
	}
	return info.State.LastSeq, nil
}

// explain returns what each NATS server says of the stream, for an error
// message.
func (b *bench) explain(ctx context.Context) string {
	var out strings.Builder
	c := b.n.HTTPClient(5 * time.Second)
	for _, p := range []string{"nats-0", "nats-1", "nats-2"} {
		ip, err := nodebench.PodIP(ctx, b.cs, p)
		if err != nil {
			fmt.Fprintf(&out, "%s: %v\n", p, err)
			continue
		}
		for _, path := range []string{"/jsz?streams=true&raft=true&accounts=true", "/routez"} {
			resp, err := c.Get("http://" + ip + ":8222" + path)
			if err != nil {
				fmt.Fprintf(&out, "%s %s: %v\n", p, path, err)
				continue
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			fmt.Fprintf(&out, "%s %s: %s\n", p, path, body)
		}
	}
	return out.String()
}

// stats is "min / median / max s" of the longest gaps.
func stats(gs []gap) string {
	ds := make([]time.Duration, len(gs))
	for i, g := range gs {
		ds[i] = g.max
	}
	return benchgap.Stats(ds)
}

func acks(r result) string {
	var acked, lost []string
	for _, g := range append(append([]gap(nil), r.enter...), r.leave...) {
		acked = append(acked, strconv.Itoa(g.acked))
		lost = append(lost, strconv.Itoa(g.lost))
	}
	return strings.Join(acked, ", ") + " (lost " + strings.Join(lost, ", ") + ")"
}

func ratio(a, b []gap) string {
	if len(a) == 0 || len(b) == 0 {
		return "-"
	}
	med := func(gs []gap) time.Duration {
		ds := make([]time.Duration, len(gs))
		for i, g := range gs {
			ds[i] = g.max
		}
		sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
		return ds[len(ds)/2]
	}
	if med(b) == 0 {
		return "-"
	}
	return fmt.Sprintf("%.1fx", float64(med(a))/float64(med(b)))
}

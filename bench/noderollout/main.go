// Command noderollout measures, on a real node (tools/kubenode) with
// deploy/ installed, what `kubectl rollout restart statefulset/nats` costs a
// publisher in a pod, for two preStop hooks of the NATS container side by
// side in one run:
//
//	(a) baseline: the NATS chart's usual hook alone, lame-duck mode
//	    (nats-server --signal ldm=<pid file>);
//	(b) prober: deploy/'s hook, `prober prestop` (the pod's sidecar hands off
//	    every leadership, quiesces JetStream and moves the clients), then
//	    lame-duck mode.
//
// For each: the longest gap between two acknowledged publishes; the
// publishes not acknowledged within the client's default timeout (5 s,
// nats.go's JetStream default), which the publisher retries with the same
// message id; acknowledged messages missing from the stream; and the leader
// changes of the stream and its consumer (advisories
// $JS.EVENT.ADVISORY.{STREAM,CONSUMER}.LEADER_ELECTED), split into hand-offs
// (the leadership left a pod being stopped while its server still answered)
// and elections (every other change: a leader lost). Needs root.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"

	"github.com/prober-dev/prober/bench/internal/nodebench"
	"github.com/prober-dev/prober/tools/kubenode"
)

const (
	ns          = kubenode.DeployNamespace
	stream      = "ROLL"
	consumer    = "ROLLC"
	preStopPath = "/spec/template/spec/containers/0/lifecycle/preStop/exec/command"
)

// The two hooks compared.
var (
	lameDuckHook = []string{"nats-server", "--signal", "ldm=/var/run/nats/nats.pid"}
	proberHook   = []string{"/var/run/prober/prober", "prestop", "--timeout=25s", "--lame-duck=/var/run/nats/nats.pid"}
)

func main() {
	flag.Parse()
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "noderollout: needs root (it runs a real Kubernetes node)")
		os.Exit(1)
	}
	if err := run(os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "noderollout:", err)
		os.Exit(1)
	}
}

type bench struct {
	n  *kubenode.WithDeploy
	cs kubernetes.Interface
	nc *nats.Conn
	js nats.JetStreamContext
}

// outcome is one measured rollout.
type outcome struct {
	took                         time.Duration
	maxGap                       float64
	acked, unacked, lost         int
	changes, handOffs, elections int
}

func run(out io.Writer) error {
	ctx, n, stop, err := nodebench.StartNode("noderollout", "roll", 60*time.Minute)
	if err != nil {
		return err
	}
	defer stop()
	fmt.Fprintf(out, "node up, deploy/ Ready %.1fs after kubectl apply\n", n.InstallReady.Seconds())
	// The connection follows the servers the cluster announces, as the pods
	// get new addresses; a durable consumer beside the stream.
	e, err := nodebench.Open(ctx, n, stream, "roll.>")
	if err != nil {
		return err
	}
	defer e.NC.Close()
	b := &bench{n: n, cs: e.CS, nc: e.NC, js: e.JS}
	if _, err := b.js.AddConsumer(stream, &nats.ConsumerConfig{Durable: consumer, AckPolicy: nats.AckExplicitPolicy, Replicas: 3}); err != nil {
		return fmt.Errorf("consumer: %w", err)
	}
	var res [2]outcome
	for i, hook := range [][]string{lameDuckHook, proberHook} {
		if err := b.setHook(ctx, hook); err != nil {
			return err
		}
		if res[i], err = b.measure(ctx); err != nil {
			return fmt.Errorf("%v: %w", hook, err)
		}
		fmt.Fprintf(out, "  %-10s %+v\n", []string{"baseline", "prober"}[i], res[i])
	}
	fmt.Fprintf(out, "\nkubectl rollout restart statefulset/nats, publisher in a pod (R3 stream %s + R3 consumer, ~200 msg/s, 5s timeout)\n", stream)
	fmt.Fprintf(out, "%-34s %-12s %-14s %-10s %-6s %-16s %s\n", "preStop", "rollout", "max write gap", "no ack 5s", "lost", "leader changes", "hand-offs / elections")
	for i, name := range []string{"(a) lame duck (chart)", "(b) prober prestop + lame duck"} {
		r := res[i]
		fmt.Fprintf(out, "%-34s %-12s %-14s %-10d %-6d %-16d %d / %d\n", name, fmt.Sprintf("%.0fs", r.took.Seconds()),
			fmt.Sprintf("%.3fs", r.maxGap), r.unacked, r.lost, r.changes, r.handOffs, r.elections)
	}
	if res[1].maxGap > 0 {
		fmt.Fprintf(out, "max write gap, baseline / prober: %.1fx\n", res[0].maxGap/res[1].maxGap)
	}
	return nil
}

// setHook makes hook the NATS container's preStop command; a change rolls
// the pods once, which is waited for and not measured.
func (b *bench) setHook(ctx context.Context, hook []string) error {
	sts, err := b.cs.AppsV1().StatefulSets(ns).Get(ctx, "nats", metav1.GetOptions{})
	if err != nil {
		return err
	}
	c := sts.Spec.Template.Spec.Containers[0]
	if c.Lifecycle != nil && c.Lifecycle.PreStop != nil && c.Lifecycle.PreStop.Exec != nil &&
		strings.Join(c.Lifecycle.PreStop.Exec.Command, " ") == strings.Join(hook, " ") {
		return nil
	}
	patch, _ := json.Marshal([]map[string]any{{"op": "replace", "path": preStopPath, "value": hook}})
	if _, err := b.cs.AppsV1().StatefulSets(ns).Patch(ctx, "nats", types.JSONPatchType, patch, metav1.PatchOptions{}); err != nil {
		return fmt.Errorf("set the preStop hook: %w", err)
	}
	return b.rolloutStatus(ctx)
}

func (b *bench) rolloutStatus(ctx context.Context) error {
	if out, err := b.n.Kubectl(ctx, "-n", ns, "rollout", "status", "statefulset/nats", "--timeout=15m"); err != nil {
		return fmt.Errorf("rollout: %v: %s", err, out)
	}
	wctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	return kubenode.WaitPodsReady(wctx, b.cs, ns, kubenode.DeploySelector, kubenode.DeployReplicas)
}

// measure runs `kubectl rollout restart` under a publisher and the
// advisory watch.
func (b *bench) measure(ctx context.Context) (outcome, error) {
	if err := b.js.PurgeStream(stream); err != nil {
		return outcome{}, fmt.Errorf("purge: %w", err)
	}
	w, err := b.watch(ctx)
	if err != nil {
		return outcome{}, err
	}
	defer w.stop()
	var servers []string
	for _, p := range nodebench.Pods {
		servers = append(servers, "nats://"+p+".nats-headless:4222")
	}
	p, err := nodebench.Start(b.n, nodebench.Options{Servers: servers, Subject: "roll.x", Timeout: 5 * time.Second})
	if err != nil {
		return outcome{}, err
	}
	defer p.Kill()
	begin := time.Now()
	if out, err := b.n.Kubectl(ctx, "-n", ns, "rollout", "restart", "statefulset/nats"); err != nil {
		return outcome{}, fmt.Errorf("rollout restart: %v: %s", err, out)
	}
	if err := b.rolloutStatus(ctx); err != nil {
		return outcome{}, err
	}
	took := time.Since(begin)
	time.Sleep(2 * time.Second) // writes after the last pod, as the publisher's tail
	sum, err := p.Stop(b.nc)
	if err != nil {
		return outcome{}, err
	}
	lost, err := nodebench.Stream{JS: b.js, Name: stream}.Lost(sum)
	if err != nil {
		return outcome{}, err
	}
	o := outcome{took: took, maxGap: sum.MaxGap, acked: sum.Acked, unacked: sum.Failed, lost: lost}
	o.changes, o.handOffs, o.elections = w.count()
	return o, nil
}

// watcher follows the leader changes and which pods are stopping.
type watcher struct {
	mu       sync.Mutex
	leader   map[string]string // group -> leader
	stopping map[string]bool   // pod -> being stopped and its server still answers
	changes  [][3]string       // group, from, to
	handOffs int
	subs     []*nats.Subscription
	cancel   context.CancelFunc
}

func (b *bench) watch(ctx context.Context) (*watcher, error) {
	w := &watcher{leader: map[string]string{}, stopping: map[string]bool{}}
	si, err := b.js.StreamInfo(stream)
	if err != nil {
		return nil, err
	}
	ci, err := b.js.ConsumerInfo(stream, consumer)
	if err != nil {
		return nil, err
	}
	w.leader[stream], w.leader[stream+"/"+consumer] = si.Cluster.Leader, ci.Cluster.Leader
	on := func(group string) nats.MsgHandler {
		return func(m *nats.Msg) {
			var a struct {
				Leader string `json:"leader"`
			}
			if json.Unmarshal(m.Data, &a) != nil || a.Leader == "" {
				return
			}
			w.mu.Lock()
			defer w.mu.Unlock()
			from := w.leader[group]
			if from == a.Leader {
				return
			}
			w.leader[group] = a.Leader
			w.changes = append(w.changes, [3]string{group, from, a.Leader})
			if w.stopping[from] {
				w.handOffs++
			}
		}
	}
	for subj, group := range map[string]string{
		"$JS.EVENT.ADVISORY.STREAM.LEADER_ELECTED." + stream:                    stream,
		"$JS.EVENT.ADVISORY.CONSUMER.LEADER_ELECTED." + stream + "." + consumer: stream + "/" + consumer,
	} {
		s, err := b.nc.Subscribe(subj, on(group))
		if err != nil {
			return nil, err
		}
		w.subs = append(w.subs, s)
	}
	wctx, cancel := context.WithCancel(ctx)
	w.cancel = cancel
	go b.followStopping(wctx, w)
	return w, b.nc.Flush()
}

// followStopping marks a pod stopping from its deletion until its NATS
// server stops answering on its monitoring port.
func (b *bench) followStopping(ctx context.Context, w *watcher) {
	c := b.n.HTTPClient(300 * time.Millisecond)
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		list, err := b.cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: kubenode.DeploySelector})
		if err != nil {
			continue
		}
		for _, p := range list.Items {
			up := false
			if p.DeletionTimestamp != nil && p.Status.PodIP != "" {
				if resp, err := c.Get("http://" + p.Status.PodIP + ":8222/varz"); err == nil {
					resp.Body.Close()
					up = true
				}
			}
			w.mu.Lock()
			w.stopping[p.Name] = up
			w.mu.Unlock()
		}
	}
}

func (w *watcher) stop() {
	w.cancel()
	for _, s := range w.subs {
		_ = s.Unsubscribe()
	}
}

func (w *watcher) count() (changes, handOffs, elections int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.changes), w.handOffs, len(w.changes) - w.handOffs
}

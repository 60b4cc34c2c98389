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
// For each: the longest gap between two acknowledged publishes; the waits of
// a second or more for an acknowledgement (a publish lost, waited out for the
// client's default timeout, 5 s, nats.go's JetStream default, then retried
// with the same message id); the failed attempts, those waits included;
// acknowledged messages missing from the stream; and the leader changes of
// the stream and its consumer (advisories
// $JS.EVENT.ADVISORY.{STREAM,CONSUMER}.LEADER_ELECTED, and a poll of their
// leaders every 100 ms for the advisories missed while the bench's own
// connection moves), split into hand-offs (the leadership left a pod being
// stopped while its server still answered), moves (it left a pod not being
// stopped whose server answers: the sidecars' balance once the restarted
// pod is back) and elections (the old leader's server no longer answered:
// a leader lost).
//
// A publish lost now and then, with either hook, costs the whole client
// timeout, so -rounds (3) alternates the two hooks that many times, the
// summary gives the spread of the longest gaps, and each rollout's timeline
// shows where the waits began: at a step-down or at a move of the
// publisher's connection. Needs root.
package main

import (
	"cmp"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"

	"github.com/prober-dev/prober/bench/internal/nodebench"
	"github.com/prober-dev/prober/tools/kubenode"
	"github.com/prober-dev/prober/tools/kubenode/podclient/events"
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
	rounds := flag.Int("rounds", 3, "rounds; each measures (a) then (b), so that the two hooks alternate on the same node")
	flag.Parse()
	if *rounds < 1 {
		fmt.Fprintln(os.Stderr, "noderollout: -rounds must be at least 1")
		os.Exit(2)
	}
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "noderollout: needs root (it runs a real Kubernetes node)")
		os.Exit(1)
	}
	if err := run(os.Stdout, *rounds); err != nil {
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
	took                       time.Duration
	maxGap                     float64
	acked, failed, waits, lost int
	// changes counts the leader changes by kind: hand-off, move, election.
	changes map[string]int
	// timeline is what happened, in order: the restart, leader changes,
	// the pods' deletion and stop, and the publisher's moves and long
	// waits.
	timeline []moment
}

// moment is one line of a timeline, at an offset from the start of the
// watch (the publisher starts, then the restart).
type moment struct {
	at   time.Duration
	what string
}

var hookNames = [2]string{"(a) lame duck (chart)", "(b) prober prestop + lame duck"}

func run(out io.Writer, rounds int) error {
	ctx, n, stop, err := nodebench.StartNode("noderollout", "roll", time.Duration(20+20*rounds)*time.Minute)
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
	res := make([][2]outcome, rounds)
	for r := range rounds {
		for i, hook := range [][]string{lameDuckHook, proberHook} {
			if err := b.setHook(ctx, hook); err != nil {
				return err
			}
			if res[r][i], err = b.measure(ctx); err != nil {
				return fmt.Errorf("round %d, %v: %w", r+1, hook, err)
			}
			o := res[r][i]
			fmt.Fprintf(out, "  round %d %s: took %.0fs, max gap %.3fs, %d acked, %d waits >= 1s, %d lost, leader changes %v\n",
				r+1, hookNames[i], o.took.Seconds(), o.maxGap, o.acked, o.waits, o.lost, o.changes)
		}
	}
	report(out, res)
	return nil
}

// changeKinds are the kinds of leader change, as counted and printed.
var changeKinds = []string{"hand-off", "move", "election"}

// report prints every rollout and its timeline, then per hook the spread
// of the longest gaps and the totals over the rounds.
func report(out io.Writer, res [][2]outcome) {
	fmt.Fprintf(out, "\nkubectl rollout restart statefulset/nats, publisher in a pod (R3 stream %s + R3 consumer, ~200 msg/s, 5s timeout), %d rounds\n",
		stream, len(res))
	row := "%-5s %-32s %-8s %-14s %-11s %-7s %-5s %s\n"
	fmt.Fprintf(out, row, "round", "preStop", "rollout", "max write gap", "waits >=1s", "failed", "lost", "hand-offs / moves / elections")
	for r, pair := range res {
		for i, o := range pair {
			fmt.Fprintf(out, row, strconv.Itoa(r+1), hookNames[i], fmt.Sprintf("%.0fs", o.took.Seconds()), fmt.Sprintf("%.3fs", o.maxGap),
				strconv.Itoa(o.waits), strconv.Itoa(o.failed), strconv.Itoa(o.lost), kindsString(o.changes))
		}
	}
	for r, pair := range res {
		for i, o := range pair {
			fmt.Fprintf(out, "\nround %d, %s:\n", r+1, hookNames[i])
			for _, m := range o.timeline {
				fmt.Fprintf(out, "  %6.2fs %s\n", m.at.Seconds(), m.what)
			}
		}
	}
	row = "%-32s %-28s %-11s %-7s %-5s %s\n"
	fmt.Fprintf(out, "\n"+row, "preStop", "max write gap min/med/max", "waits >=1s", "failed", "lost", "hand-offs / moves / elections")
	var med [2]float64
	for i := range hookNames {
		var gaps []float64
		t := outcome{changes: map[string]int{}}
		for _, pair := range res {
			o := pair[i]
			gaps = append(gaps, o.maxGap)
			t.waits += o.waits
			t.failed += o.failed
			t.lost += o.lost
			for k, n := range o.changes {
				t.changes[k] += n
			}
		}
		slices.Sort(gaps)
		med[i] = gaps[len(gaps)/2]
		fmt.Fprintf(out, row, hookNames[i], fmt.Sprintf("%.3f / %.3f / %.3f s", gaps[0], med[i], gaps[len(gaps)-1]),
			strconv.Itoa(t.waits), strconv.Itoa(t.failed), strconv.Itoa(t.lost), kindsString(t.changes))
	}
	if med[1] > 0 {
		fmt.Fprintf(out, "median of the longest gaps, baseline / prober: %.1fx (goal: 20x)\n", med[0]/med[1])
	}
}

func kindsString(changes map[string]int) string {
	var parts []string
	for _, k := range changeKinds {
		parts = append(parts, strconv.Itoa(changes[k]))
	}
	return strings.Join(parts, " / ")
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
	begin := time.Now()
	w, err := b.watch(ctx, begin)
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
	restart := time.Now()
	w.mu.Lock()
	w.note("kubectl rollout restart statefulset/nats")
	w.mu.Unlock()
	if out, err := b.n.Kubectl(ctx, "-n", ns, "rollout", "restart", "statefulset/nats"); err != nil {
		return outcome{}, fmt.Errorf("rollout restart: %v: %s", err, out)
	}
	if err := b.rolloutStatus(ctx); err != nil {
		return outcome{}, err
	}
	took := time.Since(restart)
	time.Sleep(2 * time.Second) // writes after the last pod, as the publisher's tail
	sum, err := p.Stop(b.nc)
	if err != nil {
		return outcome{}, err
	}
	lost, err := nodebench.Stream{JS: b.js, Name: stream}.Lost(sum)
	if err != nil {
		return outcome{}, err
	}
	o := outcome{took: took, maxGap: sum.MaxGap, acked: sum.Acked, failed: sum.Failed, lost: lost}
	w.mu.Lock()
	o.changes, o.timeline = maps.Clone(w.kinds), w.timeline
	w.mu.Unlock()
	pub := publisherMoments(p.Events(), begin)
	for _, m := range pub {
		if strings.HasPrefix(m.what, waitPrefix) {
			o.waits++
		}
	}
	o.timeline = append(o.timeline, pub...)
	slices.SortStableFunc(o.timeline, func(a, b moment) int { return cmp.Compare(a.at, b.at) })
	return o, nil
}

// waitPrefix begins the timeline line of a wait for an acknowledgement.
const waitPrefix = "publisher: no acknowledgement for "

// publisherMoments are the publisher's moves and its waits longer than a
// second, a wait placed where it began.
func publisherMoments(evs []events.Event, begin time.Time) []moment {
	var out []moment
	for _, e := range evs {
		t, err := time.Parse(time.RFC3339Nano, e.Time)
		if err != nil {
			continue
		}
		at := t.Sub(begin)
		switch {
		case e.Event == "disconnected" && e.Error != "": // not its own close at the end
			out = append(out, moment{at, "publisher disconnected: " + e.Error})
		case e.Event == "reconnected":
			out = append(out, moment{at, "publisher reconnected to " + e.Server})
		case e.Event == "gap" && e.Gap >= 1:
			out = append(out, moment{at - time.Duration(e.Gap*float64(time.Second)),
				fmt.Sprintf("%s%.2fs (on %s)", waitPrefix, e.Gap, e.Server)})
		}
	}
	return out
}

// watcher follows the leader changes and which pods are stopping.
type watcher struct {
	mu        sync.Mutex
	leader    map[string]string // group -> leader
	stopping  map[string]bool   // pod -> being stopped and its server still answers
	answering map[string]bool   // pod -> its server answers
	deleting  map[string]bool   // pod -> its deletion was seen
	kinds     map[string]int    // leader changes by kind
	begin     time.Time
	timeline  []moment
	subs      []*nats.Subscription
	cancel    context.CancelFunc
}

func (b *bench) watch(ctx context.Context, begin time.Time) (*watcher, error) {
	w := &watcher{leader: map[string]string{}, stopping: map[string]bool{}, answering: map[string]bool{},
		deleting: map[string]bool{}, kinds: map[string]int{}, begin: begin}
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
			if json.Unmarshal(m.Data, &a) == nil {
				w.saw(group, a.Leader, "advisory")
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
	go b.pollLeaders(wctx, w)
	return w, b.nc.Flush()
}

// saw records leader as the group's leader; a change from the one known is
// counted once, whether an advisory or a poll saw it first.
func (w *watcher) saw(group, leader, source string) {
	if leader == "" {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	from := w.leader[group]
	if from == leader {
		return
	}
	w.leader[group] = leader
	kind := "election"
	switch {
	case w.stopping[from]:
		kind = "hand-off"
	case w.answering[from]:
		kind = "move"
	}
	w.kinds[kind]++
	w.note("%s leader %s -> %s: %s (%s)", group, from, leader, kind, source)
}

// note adds a line to the timeline; w.mu is held.
func (w *watcher) note(format string, args ...any) {
	w.timeline = append(w.timeline, moment{time.Since(w.begin), fmt.Sprintf(format, args...)})
}

// pollLeaders asks for the stream's and the consumer's leader every 100 ms:
// the bench's own connection moves too while the pods restart, and an
// advisory published meanwhile would go unseen. A leader that changed twice
// between two polls with no advisory seen counts once.
func (b *bench) pollLeaders(ctx context.Context, w *watcher) {
	every(ctx, 100*time.Millisecond, func() {
		pctx, cancel := context.WithTimeout(ctx, time.Second)
		if si, err := b.js.StreamInfo(stream, nats.Context(pctx)); err == nil && si.Cluster != nil {
			w.saw(stream, si.Cluster.Leader, "poll")
		}
		if ci, err := b.js.ConsumerInfo(stream, consumer, nats.Context(pctx)); err == nil && ci.Cluster != nil {
			w.saw(stream+"/"+consumer, ci.Cluster.Leader, "poll")
		}
		cancel()
	})
}

// every calls fn every d until ctx ends.
func every(ctx context.Context, d time.Duration, fn func()) {
	t := time.NewTicker(d)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			fn()
		}
	}
}

// followStopping follows whether each pod's NATS server answers on its
// monitoring port, and marks a pod stopping from its deletion until its
// server stops answering.
func (b *bench) followStopping(ctx context.Context, w *watcher) {
	c := b.n.HTTPClient(300 * time.Millisecond)
	every(ctx, 50*time.Millisecond, func() {
		list, err := b.cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: kubenode.DeploySelector})
		if err != nil {
			return
		}
		for _, p := range list.Items {
			up := false
			if p.Status.PodIP != "" {
				if resp, err := c.Get("http://" + p.Status.PodIP + ":8222/varz"); err == nil {
					resp.Body.Close()
					up = true
				}
			}
			deleting := p.DeletionTimestamp != nil
			w.mu.Lock()
			if deleting && !w.deleting[p.Name] {
				w.note("%s deleted", p.Name)
			}
			if w.stopping[p.Name] && !up && deleting {
				w.note("%s: its server stopped answering", p.Name)
			}
			w.deleting[p.Name] = deleting
			w.stopping[p.Name] = up && deleting
			w.answering[p.Name] = up
			w.mu.Unlock()
		}
	})
}

func (w *watcher) stop() {
	w.cancel()
	for _, s := range w.subs {
		_ = s.Unsubscribe()
	}
}

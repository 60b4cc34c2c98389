package walk_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/prober-dev/prober/maintenance"
	"github.com/prober-dev/prober/natsraft"
	"github.com/prober-dev/prober/prober"
)

// Environment of the walk: PROBER_WALK_SEED replays a seed,
// PROBER_WALK_STEPS sets the steps per topology (make soak: 200).
const (
	seedEnv  = "PROBER_WALK_SEED"
	stepsEnv = "PROBER_WALK_STEPS"
)

const (
	defaultSeed  = 1
	defaultSteps = 20
	// convergeTimeout is how long after a step every node may take to
	// reach its desired phase.
	convergeTimeout = 10 * time.Second
	// catchUpTimeout bounds how long a node may take to catch up after
	// maintenance: under the writers' load on 2 cores with -race it has
	// taken more than convergeTimeout, and a group that every member left
	// at once (a forced dc maintenance) has to elect a leader first (NATS
	// elects within 4–9 s of noticing, once JetStream is on again).
	catchUpTimeout = 60 * time.Second
	// quiesceTimeout bounds how long a node may take through the Fencing
	// phase on its way in, where it switches its JetStream off: NATS's
	// JetStream shutdown waits up to 10 s for its cluster routine to stop,
	// and a node not forced first waits for its streams that restore a
	// snapshot (a quiesce would wait for them; the prober does not start
	// one then).
	quiesceTimeout = 30 * time.Second
	// leaderTimeout is how long a group that keeps its quorum may take to
	// have a leader again: NATS elects within 4–9 s of noticing a loss.
	leaderTimeout = 30 * time.Second
	// viewLag is how far behind a crash the prober's cluster view (swept
	// every second) and so its safety rule may be: a node fenced within it
	// of a peer's crash was judged without knowing it.
	viewLag = 5 * time.Second
)

// walkCase is one way of running the prober with the faults it allows.
type walkCase struct {
	name     string
	topology string
	topo     []int
	// proc runs the real binary as a subprocess (kill -9 steps); otherwise
	// the app runs in-process (NATS node crash steps).
	proc bool
}

var walkCases = []walkCase{
	{name: "proc-3", topology: "3", topo: []int{3}, proc: true},
	{name: "inproc-2,2,2", topology: "2,2,2", topo: []int{2, 2, 2}},
}

// TestWalk runs the reliability walk on each case: seeded random steps
// (maintenance requests, forced and with TTLs, kills and crashes) with
// writers publishing meanwhile, every invariant checked after every step.
func TestWalk(t *testing.T) {
	seed := envUint(t, seedEnv, defaultSeed)
	steps := int(envUint(t, stepsEnv, defaultSteps))
	for _, c := range walkCases {
		t.Run(c.name, func(t *testing.T) { runWalk(t, c, seed, steps) })
	}
}

func envUint(t *testing.T, name string, def uint64) uint64 {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.ParseUint(v, 10, 64)
	if err != nil {
		t.Fatalf("%s=%q: want a non-negative integer", name, v)
	}
	return n
}

// proberBinary builds the prober once per test binary.
var proberBinary = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "prober-walk-bin-")
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "prober")
	cmd := exec.Command("go", "build", "-o", bin, "github.com/prober-dev/prober/cmd/prober")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build: %v\n%s", err, out)
	}
	return bin, nil
})

func TestMain(m *testing.M) {
	code := m.Run()
	if bin, err := proberBinary(); err == nil {
		os.RemoveAll(filepath.Dir(bin))
	}
	os.Exit(code)
}

// stats counts what a walk did.
type stats struct {
	steps, checks                    int
	accepted, refused, forced, ttl   int
	refusedSafe                      int
	kills, crashes, midPhaseKills    int
	acked, retries, dupAcks, msgRead int
	// raftUnavailable counts GET /raft answering 503 while polling.
	raftUnavailable int
}

// walker is one walk in progress.
type walker struct {
	t      *testing.T
	c      walkCase
	seed   uint64
	rng    *rand.Rand
	drv    driver
	m      *model
	http   *http.Client
	step   int
	steps  int
	st     stats
	ctx    context.Context
	writes *writers
	// lastView is the latest /raft answer.
	lastView *prober.RaftResponse
}

func runWalk(t *testing.T, c walkCase, seed uint64, steps int) {
	begin := time.Now()
	t.Logf("walk: seed %d, %d steps on %s (replay: %s=%d %s=%d go test -run 'TestWalk/%s' ./walk/)",
		seed, steps, c.name, seedEnv, seed, stepsEnv, steps, c.name)
	root := t.TempDir()
	dir := filepath.Join(root, "data")
	var drv driver
	if c.proc {
		bin, err := proberBinary()
		if err != nil {
			t.Fatal(err)
		}
		nodes := 0
		for _, n := range c.topo {
			nodes += n
		}
		if drv, err = newProcDriver(bin, dir, c.topology, nodes); err != nil {
			t.Fatal(err)
		}
	} else {
		drv = newInprocDriver(dir, c.topo)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	w := &walker{t: t, c: c, seed: seed, rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), drv: drv,
		http: &http.Client{Timeout: 30 * time.Second}, ctx: ctx, steps: steps}
	t.Cleanup(func() {
		if err := drv.stop(); err != nil {
			t.Errorf("stop prober: %v", err)
		}
	})
	if err := drv.start(ctx); err != nil {
		w.fail("start: %v", err)
	}
	w.setup()
	for w.step = 1; w.step <= steps; w.step++ {
		w.doStep()
		w.st.steps++
		w.checkConverged(false)
	}
	w.finish()
	t.Logf("walk: seed %d, %d steps, %d invariant checks, 0 violations; %d accepted (%d forced, %d with TTL), %d refused (%d judged safe by the model), "+
		"%d kill -9 (%d mid-phase), %d node crashes, %d /raft 503s; %d messages acknowledged (%d publish retries, %d duplicate acks), %d read back; %s on %s",
		seed, w.st.steps, w.st.checks, w.st.accepted, w.st.forced, w.st.ttl, w.st.refused, w.st.refusedSafe,
		w.st.kills, w.st.midPhaseKills, w.st.crashes, w.st.raftUnavailable, w.st.acked, w.st.retries, w.st.dupAcks, w.st.msgRead,
		time.Since(begin).Round(time.Second), c.name)
}

// fail stops the walk with the seed and step, so that it can be replayed.
func (w *walker) fail(format string, args ...any) {
	w.t.Helper()
	w.t.Logf("prober log (last lines):\n%s", tailFile(w.drv.logName(), 60))
	// The test's folder goes with the test: the whole log is kept beside it.
	kept := filepath.Join(os.TempDir(), fmt.Sprintf("prober-walk-%s-seed%d-step%d.log", w.c.name, w.seed, w.step))
	if b, err := os.ReadFile(w.drv.logName()); err == nil && os.WriteFile(kept, b, 0o644) == nil {
		w.t.Logf("the whole prober log is kept in %s", kept)
	}
	w.t.Fatalf("walk: seed %d, step %d of %s: VIOLATION: %s\nreplay: %s=%d %s=%d go test -run 'TestWalk/%s' ./walk/",
		w.seed, w.step, w.c.name, fmt.Sprintf(format, args...), seedEnv, w.seed, stepsEnv, max(w.step, 1), w.c.name)
}

// --- HTTP ---

type reply struct {
	code   int
	body   []byte
	lo, hi time.Time
}

func (w *walker) send(method, path, body string) reply {
	w.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(w.ctx, method, w.drv.base()+path, rd)
	if err != nil {
		w.fail("%s %s: %v", method, path, err)
	}
	lo := time.Now()
	resp, err := w.http.Do(req)
	if err != nil {
		w.fail("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		w.fail("%s %s: read: %v", method, path, err)
	}
	return reply{code: resp.StatusCode, body: b, lo: lo, hi: time.Now()}
}

func (w *walker) get(path string, out any) {
	w.t.Helper()
	r := w.send(http.MethodGet, path, "")
	if r.code != http.StatusOK {
		w.fail("GET %s: %d %s", path, r.code, r.body)
	}
	if err := json.Unmarshal(r.body, out); err != nil {
		w.fail("GET %s: %v: %s", path, err, r.body)
	}
}

func (w *walker) config() *maintenance.Document {
	var d maintenance.Document
	w.get("/config", &d)
	return &d
}

func (w *walker) raft() *prober.RaftResponse {
	v, detail := w.tryRaft()
	if v == nil {
		w.fail("GET /raft: %s", detail)
	}
	return v
}

// tryRaft is GET /raft; a 503 (no cluster view yet, e.g. a sweep that
// timed out) gives nil and the answer, for callers that poll.
func (w *walker) tryRaft() (*prober.RaftResponse, string) {
	w.t.Helper()
	r := w.send(http.MethodGet, "/raft", "")
	if r.code == http.StatusServiceUnavailable {
		return nil, fmt.Sprintf("503 %s", r.body)
	}
	var v prober.RaftResponse
	if r.code != http.StatusOK || json.Unmarshal(r.body, &v) != nil {
		w.fail("GET /raft: %d %s", r.code, r.body)
	}
	w.lastView = &v
	return &v, ""
}

// --- setup and end ---

// walkStream is the stream the walk adds in dc.
func walkStream(dc string) streamTarget {
	return streamTarget{stream: "walk-" + dc, subject: "walk." + dc}
}

// setup waits for a healthy cluster, adds one stream per dc (as many
// replicas as the dc allows, up to 3) and starts the writers.
func (w *walker) setup() {
	w.t.Helper()
	var v *prober.RaftResponse
	var nodes []node
	w.poll(apiStartTimeout, "cluster healthy", func() (bool, string) {
		v = w.raft()
		if len(v.Nodes) == 0 {
			return false, "no nodes"
		}
		nodes = nodes[:0]
		for _, n := range v.Nodes {
			if !n.Reachable || !n.JetStream {
				return false, n.Name + " not reachable with JetStream"
			}
			nodes = append(nodes, node{name: n.Name, dc: n.DC})
		}
		return true, ""
	})
	w.m = newModel(nodes, nil)
	targets := []streamTarget{{stream: natsraft.DemoStream, subject: "demo.walk"}}
	nc, err := nats.Connect(joinURLs(w.drv.clientURLs()), nats.UserInfo("app", "app"), nats.Timeout(2*time.Second))
	if err != nil {
		w.fail("connect: %v", err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		w.fail("jetstream: %v", err)
	}
	multi := len(w.m.dcNames()) > 1
	for _, dc := range w.m.dcNames() {
		tg := walkStream(dc)
		cfg := jetstream.StreamConfig{Name: tg.stream, Subjects: []string{tg.subject}, Storage: jetstream.FileStorage,
			Replicas: min(3, len(w.m.membersOf(dc)))}
		if multi {
			cfg.Placement = &jetstream.Placement{Cluster: dc}
		}
		if err := retry(w.ctx, func(c context.Context) error { _, err := js.CreateOrUpdateStream(c, cfg); return err }); err != nil {
			w.fail("create stream %s: %v", tg.stream, err)
		}
		targets = append(targets, tg)
	}
	want := []string{natsraft.MetaGroupName, natsraft.DemoStream, natsraft.DemoStream + "/" + natsraft.DemoConsumer}
	for _, tg := range targets[1:] {
		want = append(want, tg.stream)
	}
	w.poll(apiStartTimeout, "every group in /raft with a leader", func() (bool, string) {
		v = w.raft()
		led := map[string]bool{}
		for _, g := range v.Groups {
			led[g.Name] = g.Leader != ""
		}
		for _, g := range want {
			if !led[g] {
				return false, g + " has no leader in /raft"
			}
		}
		return true, ""
	})
	for _, g := range groupsOf(v.View) {
		if slices.Contains(want, g.name) {
			w.m.groups = append(w.m.groups, g)
		}
	}
	w.t.Logf("nodes %v; groups %v", nodes, w.m.groups)
	if w.writes, err = startWriters(w.drv.clientURLs(), targets); err != nil {
		w.fail("writers: %v", err)
	}
}

// finish brings every crashed node back, ends every maintenance, requires
// every node Active, and reads every acknowledged message back.
func (w *walker) finish() {
	w.step = w.st.steps + 1
	for pod := range w.m.crashed {
		w.revive(pod)
	}
	for dc := range w.m.dcs {
		w.remove("dcs", dc)
	}
	for pod := range w.m.pods {
		w.remove("pods", pod)
	}
	w.checkConverged(true)
	w.st.acked, w.st.retries, w.st.dupAcks = w.writes.counts()
	acks := w.writes.stop()
	ctx, cancel := context.WithTimeout(w.ctx, 2*time.Minute)
	defer cancel()
	problems, read, err := checkAcks(ctx, w.drv.clientURLs(), acks)
	if err != nil {
		w.fail("read the streams back: %v", err)
	}
	w.st.msgRead = read
	w.st.checks += len(acks)
	if len(problems) > 0 {
		w.fail("%d acknowledged messages lost or doubled, first: %s", len(problems), strings.Join(problems[:min(5, len(problems))], "; "))
	}
	if len(acks) == 0 {
		w.fail("no message was acknowledged during the walk")
	}
}

// poll calls cond every 100ms until it holds; past timeout the walk fails.
func (w *walker) poll(timeout time.Duration, what string, cond func() (bool, string)) {
	w.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, detail := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			w.fail("%s: not within %s; last: %s", what, timeout, detail)
		}
		select {
		case <-w.ctx.Done():
			w.fail("%s: %v", what, w.ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

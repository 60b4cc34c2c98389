// Command api measures the API's throughput: requests per second of the
// prober's real HTTP stack — prober.NewServer with its middlewares (auth
// of a loopback caller, the access log, the metrics), built as
// app/embedded.go builds it, over a maintenance.Service with a file store
// and a view source — beside a bare net/http handler that encodes the same
// answer (the same JSON body, byte for byte), under the same attack in the
// same run, for GET /pods/<pod> and GET /config; then PUT
// /pods/<pod>?dryRun=true against a view of 1,000 R3 groups (the safety
// check of every group), with its latency percentiles.
//
// The load comes from vegeta (as a library) in the same process, at a fixed
// concurrency and no rate limit: the generator shares the 2 cores with the
// server, the same for both targets, so the ratio is what compares them.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strings"
	"time"

	"github.com/rs/zerolog"
	vegeta "github.com/tsenart/vegeta/v12/lib"

	"github.com/prober-dev/prober/filestore"
	"github.com/prober-dev/prober/maintenance"
	"github.com/prober-dev/prober/natsraft"
	"github.com/prober-dev/prober/prober"
)

// goal is the least ratio of the prober's req/s to the bare handler's.
const goal = 0.5

func main() {
	duration := flag.Duration("d", 5*time.Second, "length of each attack")
	conc := flag.Int("c", 16, "concurrent requests (vegeta workers, each with its keep-alive connection)")
	groups := flag.Int("groups", 1000, "R3 groups of the view the dry run is checked against")
	nodes := flag.Int("nodes", 5, "nodes of that view")
	cpuProfile := flag.String("cpuprofile", "", "write a CPU profile of the attacks to this file")
	flag.Parse()
	if err := run(*duration, *conc, *groups, *nodes, *cpuProfile, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "api:", err)
		os.Exit(1)
	}
}

// staticViews is a view source that always has the same view, as the
// collector between two sweeps.
type staticViews struct{ v *natsraft.View }

func (s staticViews) View(context.Context) (*natsraft.View, error) { return s.v, nil }

// target is one server under test.
type target struct {
	base  string
	close func()
}

func run(duration time.Duration, conc, groups, nodes int, cpuProfile string, out io.Writer) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	dir, err := os.MkdirTemp("", "apibench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	now := time.Now()

	// The embedded default's size: three nodes, the meta group, a stream
	// and its consumer; nats-2 in maintenance, so that its answer carries
	// an entry and a status.
	small, smallSvc, err := startProber(ctx, filepath.Join(dir, "small.json"), smallView(now), func(d *maintenance.Document) {
		d.Pods["nats-2"] = maintenance.Entry{Reason: "kernel upgrade", RequestedBy: prober.LoopbackUser, Since: now}
		d.Status["nats-2"] = maintenance.Status{Phase: maintenance.PhaseInMaintenance, Message: "fenced",
			ObservedAt: now, PhaseSince: now, Entry: "pod.nats-2", Mode: maintenance.ModeFence,
			Leaders: []string{"demo", "demo/worker"}}
	})
	if err != nil {
		return err
	}
	defer small.close()
	pod, err := smallSvc.Pod(ctx, "nats-2")
	if err != nil {
		return err
	}
	doc, err := smallSvc.Config(ctx)
	if err != nil {
		return err
	}
	bare, err := startBare(pod, doc)
	if err != nil {
		return err
	}
	defer bare.close()

	large, _, err := startProber(ctx, filepath.Join(dir, "large.json"), largeView(now, groups, nodes), nil)
	if err != nil {
		return err
	}
	defer large.close()

	routes := []string{"/pods/nats-2", "/config"}
	for _, route := range routes {
		p, err := fetch(small.base + route)
		if err != nil {
			return err
		}
		b, err := fetch(bare.base + route)
		if err != nil {
			return err
		}
		if p != b {
			return fmt.Errorf("GET %s: the bare handler's body (%d bytes) is not the prober's (%d bytes)", route, len(b), len(p))
		}
	}

	if cpuProfile != "" {
		f, err := os.Create(cpuProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}

	fmt.Fprintf(out, "API throughput: %d concurrent keep-alive requests, no rate limit, %s per target, GOMAXPROCS %d\n",
		conc, duration, runtime.GOMAXPROCS(0))
	fmt.Fprintf(out, "%-34s %-9s %9s %9s %9s %7s %8s\n", "request", "server", "req/s", "p50", "p99", "errors", "body")
	var ratios []string
	for _, route := range routes {
		size, _ := fetch(small.base + route)
		var rates [2]float64
		for i, t := range []struct {
			name string
			base string
		}{{"bare", bare.base}, {"prober", small.base}} {
			m := attack(http.MethodGet, t.base+route, conc, duration)
			rates[i] = m.Throughput
			fmt.Fprintf(out, "%-34s %-9s %9.0f %9s %9s %7d %7dB\n", "GET "+route, t.name, m.Throughput,
				ms(m.Latencies.P50), ms(m.Latencies.P99), errorsOf(m), len(size))
		}
		verdict := "below the goal"
		if rates[1] >= goal*rates[0] {
			verdict = "meets the goal"
		}
		ratios = append(ratios, fmt.Sprintf("%-34s %.2fx (goal ≥ %.1fx: %s)", "GET "+route+" prober/bare", rates[1]/rates[0], goal, verdict))
	}
	for _, r := range ratios {
		fmt.Fprintln(out, r)
	}

	m := attack(http.MethodPut, large.base+"/pods/nats-0?dryRun=true", conc, duration)
	fmt.Fprintf(out, "\nPUT /pods/nats-0?dryRun=true, %d R3 groups on %d nodes (prober)\n", groups, nodes)
	fmt.Fprintf(out, "%9s %9s %9s %9s %9s %9s %7s\n", "req/s", "p50", "p90", "p99", "max", "mean", "errors")
	fmt.Fprintf(out, "%9.0f %9s %9s %9s %9s %9s %7d\n", m.Throughput, ms(m.Latencies.P50), ms(m.Latencies.P90),
		ms(m.Latencies.P99), ms(m.Latencies.Max), ms(m.Latencies.Mean), errorsOf(m))
	return nil
}

// startProber serves the prober's API on a loopback port over a file store
// at path, seeded by seed, and a view source that always has v.
func startProber(ctx context.Context, path string, v *natsraft.View, seed func(*maintenance.Document)) (*target, *maintenance.Service, error) {
	// As cmd/prober logs by default: JSON at info level (to nowhere here,
	// so that the log is formatted but the terminal costs nothing).
	log := zerolog.New(io.Discard).Level(zerolog.InfoLevel).With().Timestamp().Logger()
	store, err := filestore.Open(path, filestore.Options{PollInterval: time.Second, Logger: log.With().Str("component", "store").Logger()})
	if err != nil {
		return nil, nil, err
	}
	if seed != nil {
		if _, err := store.Update(ctx, func(d *maintenance.Document) error {
			if d.Pods == nil {
				d.Pods = map[string]maintenance.Entry{}
			}
			if d.Status == nil {
				d.Status = map[string]maintenance.Status{}
			}
			seed(d)
			return nil
		}); err != nil {
			_ = store.Close()
			return nil, nil, err
		}
	}
	views := staticViews{v}
	svc := &maintenance.Service{Store: store, Views: views, Now: time.Now, Logger: log}
	srv := prober.NewServer(prober.Options{
		Addr:    "127.0.0.1:0",
		Service: svc,
		Views:   views,
		Logger:  log.With().Str("component", "http").Logger(),
		Now:     time.Now,
	})
	if err := srv.Open(); err != nil {
		_ = store.Close()
		return nil, nil, err
	}
	return &target{base: "http://" + srv.Addr(), close: func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Close(ctx)
		_ = store.Close()
	}}, svc, nil
}

// startBare serves the same answers from a bare net/http handler: the same
// values encoded per request as the prober encodes them (indented JSON,
// the same headers), with nothing around them.
func startBare(pod maintenance.PodView, doc *maintenance.Document) (*target, error) {
	encode := func(v any) http.HandlerFunc {
		return func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("X-Content-Type-Options", "nosniff")
			enc := json.NewEncoder(w)
			enc.SetIndent("", "  ")
			_ = enc.Encode(v)
		}
	}
	mux := http.NewServeMux()
	mux.Handle("GET /pods/{pod}", encode(pod))
	mux.Handle("GET /config", encode(doc))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	return &target{base: "http://" + ln.Addr().String(), close: func() { _ = srv.Close() }}, nil
}

// attack sends requests from conc workers for duration, as fast as they
// are answered, after a short warm-up that is not counted.
func attack(method, url string, conc int, duration time.Duration) *vegeta.Metrics {
	tr := vegeta.NewStaticTargeter(vegeta.Target{Method: method, URL: url})
	// An attacker stops for good at the end of its attack: one each.
	attacker := func() *vegeta.Attacker {
		return vegeta.NewAttacker(vegeta.Workers(uint64(conc)), vegeta.MaxWorkers(uint64(conc)),
			vegeta.Connections(conc), vegeta.MaxConnections(conc), vegeta.KeepAlive(true), vegeta.Timeout(30*time.Second))
	}
	for range attacker().Attack(tr, vegeta.ConstantPacer{}, duration/5, "warm-up") {
	}
	var m vegeta.Metrics
	for res := range attacker().Attack(tr, vegeta.ConstantPacer{}, duration, url) {
		m.Add(res)
	}
	m.Close()
	return &m
}

// errorsOf counts the requests that failed or were not answered 200.
func errorsOf(m *vegeta.Metrics) int {
	n := 0
	for code, c := range m.StatusCodes {
		if code != "200" {
			n += c
		}
	}
	return n
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2fms", float64(d)/float64(time.Millisecond)) }

// fetch returns the body of a GET that must answer 200.
func fetch(url string) (string, error) {
	resp, err := http.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("GET %s: %s: %s", url, resp.Status, strings.TrimSpace(string(b)))
	}
	return string(b), nil
}

// peer is a healthy, current member of a group.
func peer(name string, leader bool) natsraft.Peer {
	return natsraft.Peer{Name: name, Leader: leader, Current: true, Healthy: true, Active: 200 * time.Millisecond}
}

// group is a healthy group led by its first member.
func group(kind natsraft.GroupKind, name, account string, members ...string) natsraft.Group {
	g := natsraft.Group{Kind: kind, Name: name, Account: account, Leader: members[0], Term: 3, Commit: 100, Applied: 100}
	if kind != natsraft.KindMeta {
		g.Stream, _, _ = strings.Cut(name, "/")
		if _, c, ok := strings.Cut(name, "/"); ok {
			g.Consumer = c
		}
	}
	for i, p := range members {
		g.Peers = append(g.Peers, peer(p, i == 0))
	}
	return g
}

// nodesOf are n reachable JetStream nodes nats-0… in dc1, each routed to
// the others.
func nodesOf(n int) []natsraft.Node {
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("nats-%d", i)
	}
	out := make([]natsraft.Node, n)
	for i, name := range names {
		var routes []string
		for _, o := range names {
			if o != name {
				routes = append(routes, o)
			}
		}
		out[i] = natsraft.Node{Name: name, DC: "dc1", Reachable: true, JetStream: true, Routes: routes}
	}
	return out
}

// smallView is the embedded default's view: three nodes, the meta group,
// the R3 stream demo and its R3 consumer.
func smallView(at time.Time) *natsraft.View {
	v := &natsraft.View{At: at, Nodes: nodesOf(3), Groups: []natsraft.Group{
		group(natsraft.KindMeta, natsraft.MetaGroupName, "", "nats-0", "nats-1", "nats-2"),
		group(natsraft.KindStream, "demo", "APP", "nats-2", "nats-0", "nats-1"),
		group(natsraft.KindConsumer, "demo/worker", "APP", "nats-2", "nats-0", "nats-1"),
	}}
	countLeads(v)
	return v
}

// largeView is the meta group of nodes members and groups healthy R3
// groups over them: streams of three consumers each, each stream's three
// members the next in turn, its consumers on the same members and their
// leaderships spread over them.
func largeView(at time.Time, groups, nodes int) *natsraft.View {
	v := &natsraft.View{At: at, Nodes: nodesOf(nodes)}
	var all []string
	for _, n := range v.Nodes {
		all = append(all, n.Name)
	}
	v.Groups = append(v.Groups, group(natsraft.KindMeta, natsraft.MetaGroupName, "", all...))
	for s := 0; len(v.Groups) <= groups; s++ {
		members := []string{all[s%nodes], all[(s+1)%nodes], all[(s+2)%nodes]}
		stream := fmt.Sprintf("S%04d", s)
		v.Groups = append(v.Groups, group(natsraft.KindStream, stream, "APP", members...))
		for c := 0; c < 3 && len(v.Groups) <= groups; c++ {
			rot := []string{members[(c+1)%3], members[(c+2)%3], members[c%3]}
			v.Groups = append(v.Groups, group(natsraft.KindConsumer, fmt.Sprintf("%s/C%d", stream, c), "APP", rot...))
		}
	}
	countLeads(v)
	return v
}

// countLeads fills in each node's count of leaderships.
func countLeads(v *natsraft.View) {
	leads := map[string]int{}
	for _, g := range v.Groups {
		leads[g.Leader]++
	}
	for i := range v.Nodes {
		v.Nodes[i].Leads = leads[v.Nodes[i].Name]
	}
}

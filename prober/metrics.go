package prober

import (
	"context"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/prober-dev/prober/maintenance"
	"github.com/prober-dev/prober/natsraft"
)

// metricsPath serves the Prometheus metrics. It stays open, as the probes.
const metricsPath = "/metrics"

// metricsViewTimeout bounds the sweep a scrape may have to wait for when the
// collector has no recent view.
const metricsViewTimeout = 5 * time.Second

// maxLatestAge is how old the collector's latest view may be for a scrape
// (or /readyz) to use it without asking for a fresh one.
const maxLatestAge = 5 * time.Second

// latestViews is what the natsraft collector offers beyond View: its last
// view without waiting for a sweep.
type latestViews interface {
	Latest() *natsraft.View
}

// metrics are the server's Prometheus metrics, in a registry of its own: the
// HTTP requests by route template, and, read at each scrape from the latest
// cluster view, the Raft health and every pod's maintenance phase.
type metrics struct {
	reg      *prometheus.Registry
	requests *prometheus.CounterVec
	latency  *prometheus.HistogramVec
}

func newMetrics(s *Server) *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "prober_http_requests_total",
			Help: "API requests by method, route template and status code.",
		}, []string{"method", "route", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "prober_http_request_duration_seconds",
			Help:    "API request latency by method and route template; not of /events, a stream that lasts as long as its client.",
			Buckets: []float64{.001, .005, .01, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"method", "route"}),
	}
	m.reg.MustRegister(m.requests, m.latency, &clusterCollector{s: s},
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	if st, ok := s.reports.(sharedStater); ok {
		for _, source := range []string{"sidecar", "server"} {
			m.reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
				Name:        "prober_peer_reads_total",
				Help:        "Reads of the other pods' NATS servers by where they came from: sidecar (its report, GET /local/report, shared sweeps) or server (read directly because its sidecar did not answer).",
				ConstLabels: prometheus.Labels{"source": source},
			}, func() float64 {
				shared, direct := st.SharedStats()
				if source == "sidecar" {
					return float64(shared)
				}
				return float64(direct)
			}))
		}
	}
	return m
}

func (s *Server) registerMetricsRoutes() {
	h := promhttp.HandlerFor(s.metrics.reg, promhttp.HandlerOpts{ErrorLog: promLogger{s}})
	s.route(metricsPath, methods{http.MethodGet: h.ServeHTTP})
}

// instrument counts every request and its latency by route template (the
// route handler records the template; a path without a route counts as
// "unmatched").
func (s *Server) instrument(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw, ok := w.(*statusWriter)
		if !ok {
			sw = &statusWriter{ResponseWriter: w}
		}
		next.ServeHTTP(sw, r)
		route := "unmatched"
		if info := infoFrom(r.Context()); info != nil && info.route != "" {
			route = info.route
		}
		status := sw.status
		if status == 0 {
			status = http.StatusOK
		}
		method := metricMethod(r.Method)
		s.metrics.requests.WithLabelValues(method, route, strconv.Itoa(status)).Inc()
		if route != eventsPath {
			// A stream lasts as long as its client stays: no latency.
			s.metrics.latency.WithLabelValues(method, route).Observe(time.Since(start).Seconds())
		}
	})
}

// metricMethod bounds the method label: any token is a valid HTTP method,
// and a label per made-up method would let any caller grow the registry.
func metricMethod(m string) string {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPut, http.MethodDelete, http.MethodPost, http.MethodOptions, http.MethodPatch:
		return m
	}
	return "other"
}

// promLogger sends the metrics handler's errors to the server's log.
type promLogger struct{ s *Server }

func (l promLogger) Println(v ...any) {
	l.s.log.Warn().Str("component", "metrics").Msg(strings.TrimSpace(fmt.Sprintln(v...)))
}

// Descriptions of the cluster metrics.
var (
	descViewUp = prometheus.NewDesc("prober_raft_view_up",
		"1 when the prober has a view of the NATS cluster, 0 when no node answered.", nil, nil)
	descViewAge = prometheus.NewDesc("prober_raft_view_age_seconds",
		"Age of the cluster view the metrics are read from.", nil, nil)
	descGroups = prometheus.NewDesc("prober_raft_groups",
		"Raft groups by state: leaderless, quorum_lost (a leader without a quorum of healthy members), degraded, healthy.",
		[]string{"state"}, nil)
	descLeaderless = prometheus.NewDesc("prober_raft_group_leaderless_seconds",
		"How long a Raft group has been without a working leader; only groups without one.",
		[]string{"kind", "account", "group"}, nil)
	descLag = prometheus.NewDesc("prober_raft_replica_lag",
		"Log entries a replica is behind its leader; only replicas that are behind or not current.",
		[]string{"kind", "account", "group", "peer"}, nil)
	descTerms = prometheus.NewDesc("prober_raft_group_term_changes_per_minute",
		"Term changes (elections) of a Raft group in the last minute; only groups that had some.",
		[]string{"kind", "account", "group"}, nil)
	descFindings = prometheus.NewDesc("prober_raft_findings",
		"Diagnosed problems by cause and severity (see GET /raft).", []string{"cause", "severity"}, nil)
	descNodeUp = prometheus.NewDesc("prober_nats_node_up",
		"1 when the node's monitoring endpoint answers.", []string{"node", "dc"}, nil)
	descNodeRoutes = prometheus.NewDesc("prober_nats_node_routes",
		"Servers the node has a route to.", []string{"node"}, nil)
	descSkew = prometheus.NewDesc("prober_leader_skew",
		"Most minus fewest Raft leaderships of a pod among the pods of a dc that can lead (see POST /balance).",
		[]string{"dc"}, nil)
	descPhase = prometheus.NewDesc("prober_maintenance_phase",
		"1 for the maintenance phase each pod is in, 0 for the others.", []string{"pod", "phase"}, nil)
)

// phases lists every maintenance phase, for the phase metric.
var phases = []maintenance.Phase{
	maintenance.PhaseActive, maintenance.PhaseRequested, maintenance.PhaseHandingOff, maintenance.PhaseFencing,
	maintenance.PhaseInMaintenance, maintenance.PhaseUnfencing, maintenance.PhaseCatchingUp, maintenance.PhaseFailed,
}

// clusterCollector reads the cluster metrics from the latest view at each
// scrape.
type clusterCollector struct{ s *Server }

// Describe implements prometheus.Collector.
func (c *clusterCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descViewUp, descViewAge, descGroups, descLeaderless, descLag, descTerms,
		descFindings, descNodeUp, descNodeRoutes, descPhase, descSkew} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *clusterCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), metricsViewTimeout)
	defer cancel()
	s := c.s
	v := s.currentView(ctx)
	if v == nil {
		ch <- prometheus.MustNewConstMetric(descViewUp, prometheus.GaugeValue, 0)
		return
	}
	now := s.now()
	ch <- prometheus.MustNewConstMetric(descViewUp, prometheus.GaugeValue, 1)
	ch <- prometheus.MustNewConstMetric(descViewAge, prometheus.GaugeValue, max(0, now.Sub(v.At).Seconds()))

	states := map[natsraft.GroupState]int{}
	for i := range v.Groups {
		g := &v.Groups[i]
		states[g.State()]++
		if since := g.WorkingLeaderSince(); since != nil {
			ch <- prometheus.MustNewConstMetric(descLeaderless, prometheus.GaugeValue,
				max(0, now.Sub(*since).Seconds()), string(g.Kind), g.Account, g.Name)
		}
		if g.TermChangesPerMinute > 0 {
			ch <- prometheus.MustNewConstMetric(descTerms, prometheus.GaugeValue,
				float64(g.TermChangesPerMinute), string(g.Kind), g.Account, g.Name)
		}
		if g.Leader == "" {
			continue
		}
		for _, p := range g.Peers {
			if !p.Leader && (p.Lag > 0 || !p.Current) {
				ch <- prometheus.MustNewConstMetric(descLag, prometheus.GaugeValue, float64(p.Lag),
					string(g.Kind), g.Account, g.Name, p.Name)
			}
		}
	}
	for _, st := range natsraft.GroupStates {
		ch <- prometheus.MustNewConstMetric(descGroups, prometheus.GaugeValue, float64(states[st]),
			strings.ReplaceAll(string(st), " ", "_"))
	}
	sv := s.serviceView(v)
	nodes := uniqueNodes(sv.Nodes)
	for _, n := range nodes {
		up := 0.0
		if n.Reachable {
			up = 1
		}
		ch <- prometheus.MustNewConstMetric(descNodeUp, prometheus.GaugeValue, up, n.Name, n.DC)
		ch <- prometheus.MustNewConstMetric(descNodeRoutes, prometheus.GaugeValue, float64(len(n.Routes)), n.Name)
	}

	doc := s.document(ctx)
	counts := map[[2]string]int{}
	for _, f := range s.diagnose(v, doc, now) {
		counts[[2]string{string(f.Cause), string(f.Severity)}]++
	}
	for k, n := range counts {
		ch <- prometheus.MustNewConstMetric(descFindings, prometheus.GaugeValue, float64(n), k[0], k[1])
	}
	for _, sk := range maintenance.LeaderSkew(sv, doc, now) {
		ch <- prometheus.MustNewConstMetric(descSkew, prometheus.GaugeValue, float64(sk.Skew), sk.DC)
	}
	for _, n := range nodes {
		phase := doc.Phase(n.Name, n.DC, now)
		for _, p := range phases {
			val := 0.0
			if p == phase {
				val = 1
			}
			ch <- prometheus.MustNewConstMetric(descPhase, prometheus.GaugeValue, val, n.Name, string(p))
		}
	}
}

// currentView returns the collector's latest view when it is recent, else
// asks for one; nil when there is none.
func (s *Server) currentView(ctx context.Context) *natsraft.View {
	if s.views == nil {
		return nil
	}
	v, err := latestOrFresh(ctx, s.views, s.now())
	if err != nil && v == nil {
		s.log.Debug().Err(err).Msg("cluster view unavailable")
	}
	return v
}

// latestOrFresh returns the views' latest view when they keep one (the
// collector) no older than maxLatestAge at now, else asks for a view.
func latestOrFresh(ctx context.Context, views maintenance.ViewSource, now time.Time) (*natsraft.View, error) {
	if lv, ok := views.(latestViews); ok {
		if v := lv.Latest(); v != nil && now.Sub(v.At) <= maxLatestAge {
			return v, nil
		}
	}
	return views.View(ctx)
}

// document returns the stored maintenance document, nil without a service
// or when it cannot be read (logged).
func (s *Server) document(ctx context.Context) *maintenance.Document {
	if s.svc == nil {
		return nil
	}
	d, err := s.svc.Config(ctx)
	if err != nil {
		s.log.Warn().Err(err).Msg("read the maintenance document")
		return nil
	}
	return d
}

// uniqueNodes returns nodes with each name once, the first seen: two
// endpoints reporting one server name (a misconfiguration /raft shows)
// would otherwise give a metric twice with one label set, which fails the
// whole scrape.
func uniqueNodes(nodes []natsraft.Node) []natsraft.Node {
	seen := make(map[string]bool, len(nodes))
	out := make([]natsraft.Node, 0, len(nodes))
	for _, n := range nodes {
		if !seen[n.Name] {
			seen[n.Name] = true
			out = append(out, n)
		}
	}
	return out
}

// serviceView returns v with each node's dc as the maintenance service
// sees it: Options.DCs where it names one, else the NATS cluster name.
func (s *Server) serviceView(v *natsraft.View) *natsraft.View {
	if s.dcs == nil {
		return v
	}
	return v.WithDCs(s.dcs())
}

// diagnose diagnoses v, telling the diagnosis which pods are out of
// service on purpose as far as doc says.
func (s *Server) diagnose(v *natsraft.View, doc *maintenance.Document, now time.Time) []natsraft.Finding {
	out := maintenance.OutOfService(s.serviceView(v), doc, now)
	return natsraft.Diagnose(v, natsraft.DiagnoseOptions{Now: now, Maintenance: slices.Sorted(maps.Keys(out)), ClusterPort: s.clusterPort})
}

package natsraft

import (
	"cmp"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
)

// HealthyLag is how many entries a follower in contact may be behind and
// still count as a working voter (see Peer.Healthy): replication in flight
// under load, not a replica that is catching up.
const HealthyLag = 1000

// ActiveThreshold is how long a group's leader may go without hearing from a
// peer before the collector counts that peer as not current. NATS sets its
// own offline flag only after about 150 s and keeps a peer "current" for up
// to the 10 s lost-quorum interval; with a 1 s Raft heartbeat, three missed
// heartbeats are a much earlier and still reliable sign of a lost peer.
const ActiveThreshold = 3 * time.Second

// Defaults of CollectorOptions.
const (
	DefaultCollectorTimeout  = 2 * time.Second
	DefaultCollectorInterval = time.Second
	// DefaultWatchInterval is a WatchInterval that finds a lost node
	// within half a second: the embedded default's.
	DefaultWatchInterval = 250 * time.Millisecond
)

// viewFreshness is how old the latest view may be for View to return it
// instead of sweeping again.
const viewFreshness = 250 * time.Millisecond

// ErrNoNodeReachable is returned by Sweep when not one node answered: the
// view then says nothing about the Raft groups and must not be acted on.
var ErrNoNodeReachable = errors.New("no NATS node reachable")

// CollectorOptions configures a Collector.
type CollectorOptions struct {
	// Endpoints lists every node to sweep. Endpoint.Name must be the NATS
	// server name, so that an unreachable node still matches the peers
	// that the other nodes report.
	Endpoints []Endpoint
	// Client does the HTTP requests; nil means a client of our own.
	Client *http.Client
	// Timeout bounds the requests to one node in one sweep.
	Timeout time.Duration
	// Interval is the pause between two sweeps of Run.
	Interval time.Duration
	// WatchInterval is how often Run, between two sweeps, asks each node
	// whether its server is up (GET /healthz?js-server-only=true, which
	// NATS answers without looking at JetStream's accounts, streams or
	// consumers): when a node's answer turns from 200 to anything else, or
	// back, since the last look, Run sweeps at once instead of at the next
	// Interval. A node lost (or back) is then seen within about
	// WatchInterval, for one tiny request per node per look. A sidecar
	// (Self set) looks at its own server's routes instead (see
	// linkWatch): one request per look, whatever the number of pods. Zero
	// or negative means no watch: a node lost is seen at the next sweep.
	WatchInterval time.Duration
	// Self names the local node in a sidecar: the collector reads its
	// server itself and serves what it read to the other sidecars
	// (LocalReport), while it asks each other node's sidecar, at its
	// Endpoint.ReportURL, for that node's (see report.go). "" in the
	// embedded default, whose one collector reads every server.
	Self string
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Resolver looks up the host names of configured routes; nil means
	// net.DefaultResolver.
	Resolver Resolver
	Logger   zerolog.Logger
}

// Collector builds Views of a NATS cluster from the monitoring endpoints of
// its nodes. It talks HTTP only, so the same code serves the embedded
// cluster and the pods of a real deployment. It is safe for concurrent use.
type Collector struct {
	o   CollectorOptions
	log zerolog.Logger

	// sem admits one sweep at a time; callers of View that wait behind a
	// sweep reuse its result.
	sem chan struct{}

	mu        sync.Mutex
	latest    *View
	latestErr error // what Sweep returned with latest
	// latestRead is when the oldest read that latest holds started: its
	// sweep's start, or earlier when it reused a read (its own server's,
	// a peer's report; see report.go). Reuse is judged by it.
	latestRead time.Time
	leaderless map[groupKey]time.Time
	// accounts remembers, per node, the accounts with streams on it, so
	// that the next sweep asks for their /raftz without waiting for /jsz.
	accounts map[string][]string
	// health remembers what the views need from earlier sweeps: since
	// when quorum is lost, term changes, slow consumers, Raft positions.
	health *healthMemory
	// dns caches route host lookups; used by sweeps only (one at a time).
	dns map[string]dnsAnswer

	// localSem admits one read of the local server at a time (sweeps and
	// the peers' requests share it); localMu guards the fields below it.
	localSem chan struct{}
	localMu  sync.Mutex
	local    *localRead
	localEp  Endpoint
	hasLocal bool
	// shared and direct count the peers' reports got from their sidecars
	// and from their servers (the sidecar did not answer).
	shared, direct atomic.Int64
	// stopping is SetStopping's: the local server is readied for a
	// shutdown.
	stopping atomic.Bool
}

// NewCollector returns a Collector with the defaults filled in.
func NewCollector(o CollectorOptions) *Collector {
	if o.Timeout <= 0 {
		o.Timeout = DefaultCollectorTimeout
	}
	if o.Interval <= 0 {
		o.Interval = DefaultCollectorInterval
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Client == nil {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.MaxIdleConnsPerHost = 8
		// The decoder reads the documents as they come: with the default
		// 4 KiB read buffer, the /jsz and /raftz of ten thousand groups
		// took a read system call per 4 KiB, 15 % of a sweep's CPU.
		tr.ReadBufferSize = 64 << 10
		o.Client = &http.Client{Transport: tr}
	}
	o.Endpoints = slices.Clone(o.Endpoints)
	c := &Collector{
		o:          o,
		log:        o.Logger.With().Str("component", "collector").Logger(),
		sem:        make(chan struct{}, 1),
		localSem:   make(chan struct{}, 1),
		leaderless: map[groupKey]time.Time{},
		accounts:   map[string][]string{},
	}
	c.setLocal(o.Endpoints)
	return c
}

// Latest returns the last view built, nil before the first sweep.
func (c *Collector) Latest() *View {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.latest
}

// View returns the latest view (with the error its sweep returned) if it
// is younger than 250 ms, else sweeps. Concurrent callers share one sweep.
func (c *Collector) View(ctx context.Context) (*View, error) {
	if v, ok, err := c.fresh(); ok {
		return v, err
	}
	if err := c.acquire(ctx); err != nil {
		return nil, err
	}
	defer c.release()
	if v, ok, err := c.fresh(); ok {
		return v, err
	}
	return c.sweep(ctx, viewFreshness)
}

// ViewSince returns a view whose sweep started at or after since (with the
// error that sweep returned), sweeping only when the latest one is older.
// A caller that must see the effect of its own action passes the time it
// acted; concurrent callers waiting for a sweep share the next one, so
// rapid pollers do not queue a sweep each.
func (c *Collector) ViewSince(ctx context.Context, since time.Time) (*View, error) {
	if v, ok, err := c.since(since); ok {
		return v, err
	}
	if err := c.acquire(ctx); err != nil {
		return nil, err
	}
	defer c.release()
	if v, ok, err := c.since(since); ok {
		return v, err
	}
	return c.sweep(ctx, max(0, c.o.Now().Sub(since)))
}

// since returns the latest view and its error when every read it holds
// started at or after t.
func (c *Collector) since(t time.Time) (v *View, ok bool, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.latest != nil && !c.latestRead.Before(t) {
		return c.latest, true, c.latestErr
	}
	return nil, false, nil
}

// Sweep asks every node at once and builds a new view. A node that does not
// answer is in the view with Reachable false; when no node answers, Sweep
// returns the view together with ErrNoNodeReachable.
func (c *Collector) Sweep(ctx context.Context) (*View, error) {
	return c.sweepWithin(ctx, 0)
}

// sweepWithin is Sweep accepting the peers' reports (see report.go) up to
// maxAge old.
func (c *Collector) sweepWithin(ctx context.Context, maxAge time.Duration) (*View, error) {
	if err := c.acquire(ctx); err != nil {
		return nil, err
	}
	defer c.release()
	return c.sweep(ctx, maxAge)
}

// Run sweeps every Interval until ctx ends, and at once when a node's
// server goes down or comes up (see WatchInterval). Failed sweeps are
// logged and retried at the next tick. A collector with a Self shares its
// sweeps (runShared).
func (c *Collector) Run(ctx context.Context) error {
	if c.o.Self != "" {
		return c.runShared(ctx)
	}
	t := time.NewTicker(c.o.Interval)
	defer t.Stop()
	var watch <-chan time.Time
	if c.o.WatchInterval > 0 {
		w := time.NewTicker(c.o.WatchInterval)
		defer w.Stop()
		watch = w.C
	}
	reach := map[string]bool{}
	if watch != nil {
		// The first look, before the first sweep, so that a node lost
		// right after it is a change.
		c.reachChanged(ctx, reach)
	}
	for {
		if _, err := c.Sweep(ctx); err != nil && ctx.Err() == nil {
			c.log.Warn().Err(err).Msg("sweep failed")
		}
	wait:
		for {
			select {
			case <-ctx.Done():
				return nil
			case <-t.C:
				break wait
			case <-watch:
				if changed := c.reachChanged(ctx, reach); changed != "" {
					c.log.Debug().Str("node", changed).Msg("node reachability changed, sweeping now")
					t.Reset(c.o.Interval)
					break wait
				}
			}
		}
	}
}

// runShared is Run for sidecars that share their sweeps (see report.go).
// Every sidecar reads its own server at the same instants, the multiples
// of Interval on the wall clock, and builds its view a quarter interval
// later from the reads of that instant: its own, and each peer's, asked
// for with a max age of half an interval, which the peer's read at the
// instant meets. A view is then made of reads taken together, as when one
// collector read every server at once, and not of reads up to an interval
// apart (a leadership that moved between two of them would show nowhere,
// or twice). Clocks that differ between pods only widen that instant; a
// peer that missed it reads its server again for the asker.
//
// With a WatchInterval, each sidecar also looks at its own server's
// routes at the multiples of WatchInterval (see linkWatch); the read of
// the instant counts as a look. A look that differs from the one before
// is swept at once, from reads no older than the look.
func (c *Collector) runShared(ctx context.Context) error {
	iv := c.o.Interval
	var w linkWatch
	for {
		at := c.o.Now().Truncate(iv).Add(iv)
		if !c.watchUntil(ctx, &w, at) {
			return nil
		}
		lr, err := c.readLocal(ctx, 0)
		if err != nil && ctx.Err() == nil && !errors.Is(err, ErrNoLocalNode) {
			c.log.Warn().Err(err).Msg("read of the local server failed")
		}
		maxAge := iv / 2
		if lr != nil && c.o.WatchInterval > 0 && w.changed(linkKey(lr.report.err, lr.report.routes)) {
			maxAge = c.o.Now().Sub(at)
		} else {
			sweepAt := at.Add(iv / 4)
			if !c.sleepUntil(ctx, sweepAt) {
				return nil
			}
			if c.o.WatchInterval > 0 && w.changed(c.lookLocal(ctx)) {
				maxAge = c.o.Now().Sub(sweepAt)
			}
		}
		c.sweepShared(ctx, maxAge)
	}
}

// sweepShared sweeps for runShared, with reads no older than maxAge.
func (c *Collector) sweepShared(ctx context.Context, maxAge time.Duration) {
	if _, err := c.sweepWithin(ctx, maxAge); err != nil && ctx.Err() == nil {
		c.log.Warn().Err(err).Msg("sweep failed")
	}
}

// linkWatch is what a sidecar's watch between two sweeps remembers: the
// last look at its own server's routes. A peer whose server stops, or
// comes back, drops or makes its routes with every other server at that
// moment, so a look at the local server's routes (GET /routez, which NATS
// answers from its route table alone) tells a node lost or back without
// asking any other server. Every sidecar looks at the same instants, so
// those that saw a change ask their peers for reads no older than that
// instant and share them. The watch costs each server one request per
// WatchInterval from its own sidecar, whatever the number of pods.
type linkWatch struct {
	last string // the last look's linkKey; "" before the first
}

// changed records a look's linkKey and reports whether it differs from the
// look before; the first look, and a look that could not be made (""),
// are no change.
func (w *linkWatch) changed(key string) bool {
	if key == "" {
		return false
	}
	was := w.last
	w.last = key
	return was != "" && was != key
}

// watchUntil waits until the wall clock reads until, looking at the local
// server at each multiple of WatchInterval before it and sweeping at once
// after a look that changed. False when ctx ended.
func (c *Collector) watchUntil(ctx context.Context, w *linkWatch, until time.Time) bool {
	for iv := c.o.WatchInterval; iv > 0; {
		look := c.o.Now().Truncate(iv).Add(iv)
		if !look.Before(until) {
			break
		}
		if !c.sleepUntil(ctx, look) {
			return false
		}
		if w.changed(c.lookLocal(ctx)) {
			c.log.Debug().Str("links", w.last).Msg("own server's routes changed, sweeping now")
			c.sweepShared(ctx, c.o.Now().Sub(look))
		}
	}
	return c.sleepUntil(ctx, until)
}

// lookLocal reads the local server's /routez and returns its linkKey, ""
// when there is no local node.
func (c *Collector) lookLocal(ctx context.Context) string {
	c.localMu.Lock()
	ep, ok := c.localEp, c.hasLocal
	c.localMu.Unlock()
	if !ok {
		return ""
	}
	ctx, cancel := context.WithTimeout(ctx, min(c.o.WatchInterval, c.o.Timeout))
	defer cancel()
	var rz routezDoc
	err := c.get(ctx, ep.MonitorURL, "/routez", nil, &rz)
	return linkKey(err, rz.remoteNames())
}

// linkKey sums up what a look at a server saw: down, or the sorted names
// of the servers it has routes with.
func linkKey(err error, routes []string) string {
	if err != nil {
		return "down"
	}
	return "up:" + strings.Join(routes, ",")
}

// sleepUntil waits until the wall clock reads at; false when ctx ended
// first.
func (c *Collector) sleepUntil(ctx context.Context, at time.Time) bool {
	d := at.Sub(c.o.Now())
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// reachChanged asks every node at once whether its server is up and
// returns the name of a node whose answer differs from the last look's, ""
// when none does. last holds the last look's answers and is updated; a
// node seen for the first time is no change. It is edge-triggered on its
// own answers, not compared with the view, so that a node that is up but
// fails its sweep does not make every look sweep again.
func (c *Collector) reachChanged(ctx context.Context, last map[string]bool) string {
	eps, err := c.Endpoints(ctx)
	if err != nil {
		return ""
	}
	ctx, cancel := context.WithTimeout(ctx, min(c.o.WatchInterval, c.o.Timeout))
	defer cancel()
	now := make([]bool, len(eps))
	var wg sync.WaitGroup
	for i, ep := range eps {
		wg.Go(func() { now[i] = c.serverUp(ctx, ep) })
	}
	wg.Wait()
	changed := ""
	seen := make(map[string]bool, len(eps))
	for i, ep := range eps {
		seen[ep.Name] = true
		if was, ok := last[ep.Name]; ok && was != now[i] && changed == "" {
			changed = ep.Name
		}
		last[ep.Name] = now[i]
	}
	for name := range last {
		if !seen[name] {
			delete(last, name)
		}
	}
	return changed
}

// serverUp tells whether the node's server answers
// /healthz?js-server-only=true with 200.
func (c *Collector) serverUp(ctx context.Context, ep Endpoint) bool {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet,
		monitorURL(ep.MonitorURL, "/healthz", url.Values{"js-server-only": {"true"}}), nil)
	if err != nil {
		return false
	}
	resp, err := c.o.Client.Do(req)
	if err != nil {
		return false
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, healthzBody))
	_ = resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// fresh returns the latest view and its error when the view is young
// enough to be reused: its oldest read started less than viewFreshness
// ago (a background sweep reuses reads made before it began).
func (c *Collector) fresh() (v *View, ok bool, err error) {
	c.mu.Lock()
	v, err, read := c.latest, c.latestErr, c.latestRead
	c.mu.Unlock()
	if v != nil && c.o.Now().Sub(read) < viewFreshness {
		return v, true, err
	}
	return nil, false, nil
}

func (c *Collector) acquire(ctx context.Context) error {
	select {
	case c.sem <- struct{}{}:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("sweep: %w", ctx.Err())
	}
}

func (c *Collector) release() { <-c.sem }

// sweep reads every node, accepting the peers' reports up to maxAge old
// when they are shared (see report.go). c.sem must be held.
func (c *Collector) sweep(ctx context.Context, maxAge time.Duration) (*View, error) {
	if len(c.o.Endpoints) == 0 {
		return nil, errors.New("sweep: no endpoints")
	}
	from := c.o.Now()
	reports := make([]*nodeReport, len(c.o.Endpoints))
	var wg sync.WaitGroup
	for i, ep := range c.o.Endpoints {
		wg.Go(func() { reports[i] = c.fetchShared(ctx, ep, maxAge) })
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("sweep: %w", err)
	}
	return c.record(ctx, from, reports)
}

// record turns the node reports of a sweep that started asking at from
// into the view, with what the collector remembers from earlier sweeps,
// and keeps it as the latest.
func (c *Collector) record(ctx context.Context, from time.Time, reports []*nodeReport) (*View, error) {
	at := c.o.Now()
	v := buildView(at, reports)
	c.checkRoutes(ctx, v)
	err := fmt.Errorf("sweep of %d nodes: %w", len(reports), ErrNoNodeReachable)
	for _, r := range reports {
		if r.err == nil {
			err = nil
			break
		}
	}

	c.mu.Lock()
	if err == nil {
		keepUnreported(v, c.latest)
		completeLeaderless(v, c.latest)
	}
	c.trackLeaderless(v)
	c.trackHealth(v, reports)
	read := from
	for _, r := range reports {
		if !r.read.IsZero() && r.read.Before(read) {
			read = r.read
		}
	}
	c.latest, c.latestErr, c.latestRead = v, err, read
	c.mu.Unlock()
	return v, err
}

// keepUnreported adds to v the groups of the previous view that no node
// reported this time while a member is unreachable, has its JetStream off
// or is still recovering it (see Node.ListsAllGroups): a stream of one
// replica on a node in maintenance, or on a node that went down or is
// still recovering its streams after a restart or a resume, is not gone
// but unavailable, and the view shows it so (leaderless, its members not
// current) instead of dropping it. So is a group whose other members are
// up but do not report it yet: a node that has just restarted recovers its
// streams after its server answers, and a group of two replicas, one in
// maintenance and one restarting, vanished from the view that way and the
// safety rule let the restarted member go too. A group that every member
// has stopped reporting while all list every group they hold is gone
// (deleted). Once a member reports again, the group is what it reports.
func keepUnreported(v, prev *View) {
	if prev == nil {
		return
	}
	reported := make(map[groupKey]bool, len(v.Groups))
	for i := range v.Groups {
		reported[keyOf(&v.Groups[i])] = true
	}
	down := func(name string) bool {
		n, ok := v.Node(name)
		return ok && !n.ListsAllGroups()
	}
	added := false
	for _, g := range prev.Groups {
		if reported[keyOf(&g)] || len(g.Peers) == 0 || !slices.ContainsFunc(g.Peers, func(p Peer) bool { return down(p.Name) }) {
			continue
		}
		g.Leader, g.LeaderSince, g.LeaderlessSince = "", nil, nil
		g.Peers = slices.Clone(g.Peers)
		for i := range g.Peers {
			g.Peers[i].Leader, g.Peers[i].Current, g.Peers[i].Healthy, g.Peers[i].Own = false, false, false, nil
		}
		g.MemberTerms = nil
		v.Groups = append(v.Groups, g)
		added = true
	}
	if added {
		slices.SortFunc(v.Groups, compareGroups)
	}
}

// completeLeaderless adds to each leaderless group of v the members that
// the previous view had for it and v lacks, not current (offline when
// their node did not answer). A leaderless group's members are what its
// reporters list, and a server whose JetStream has just started reports
// its streams before their Raft nodes run, with no peer but itself: an R2
// group with one member restarting and the other coming back from
// maintenance showed one member only, and the safety rule let the other go
// too. A group with a leader is what its leader lists.
func completeLeaderless(v, prev *View) {
	if prev == nil {
		return
	}
	var before map[groupKey][]Peer
	for i := range v.Groups {
		g := &v.Groups[i]
		if g.Leader != "" {
			continue
		}
		if before == nil {
			before = make(map[groupKey][]Peer, len(prev.Groups))
			for j := range prev.Groups {
				before[keyOf(&prev.Groups[j])] = prev.Groups[j].Peers
			}
		}
		old := before[keyOf(g)]
		add := make([]Peer, len(old))
		for j, p := range old {
			add[j] = Peer{Name: p.Name, Offline: p.Offline}
			if node, known := v.Node(p.Name); known {
				add[j].Offline = !node.Reachable
			}
		}
		g.AddPeers(add...)
	}
}

// trackLeaderless stamps every leaderless group with the time of the first
// sweep that found it so and forgets groups that have a leader again or are
// gone. c.mu must be held.
func (c *Collector) trackLeaderless(v *View) {
	seen := make(map[groupKey]struct{}, len(c.leaderless))
	for i := range v.Groups {
		g := &v.Groups[i]
		if g.Leader != "" {
			continue
		}
		k := keyOf(g)
		seen[k] = struct{}{}
		since, ok := c.leaderless[k]
		if !ok {
			since = v.At
			c.leaderless[k] = since
		}
		g.LeaderlessSince = &since
	}
	for k := range c.leaderless {
		if _, ok := seen[k]; !ok {
			delete(c.leaderless, k)
		}
	}
}

const metaRaftGroup = "_meta_"

// nodeReport is what one node answered in one sweep.
type nodeReport struct {
	ep Endpoint
	// read is when the read of the node's server started, on this
	// collector's clock (for a peer's report, no later than that).
	read   time.Time
	err    error
	varz   varzDoc
	routes []string
	gws    []string
	jsz    jszDoc
	// raft holds this node's Raft state per Raft group name.
	raft map[string]raftzGroupDoc
	// healthz is the node's /healthz verdict, "" when it did not answer.
	healthz string
	// stopping says the node's sidecar readies the server for a shutdown
	// (Collector.SetStopping, shared in its report).
	stopping bool
}

func (r *nodeReport) name() string {
	if r.err == nil && r.varz.Name != "" {
		return r.varz.Name
	}
	return r.ep.Name
}

// fetchNode asks one node for everything in one wave of parallel requests.
// /raftz answers per account, and which accounts the node has streams in
// shows only in its /jsz: the wave asks for the accounts of the previous
// sweep and a second request covers any new one.
func (c *Collector) fetchNode(ctx context.Context, ep Endpoint) *nodeReport {
	r := &nodeReport{ep: ep, read: c.o.Now()}
	ctx, cancel := context.WithTimeout(ctx, c.o.Timeout)
	defer cancel()

	c.mu.Lock()
	known := c.accounts[ep.Name]
	c.mu.Unlock()

	var rz routezDoc
	var gz gatewayzDoc
	var varzErr, routezErr, jszErr, gatewayzErr error
	raft := newRaftFetch(append([]string{""}, known...))
	var wg sync.WaitGroup
	wg.Go(func() { varzErr = c.get(ctx, ep.MonitorURL, "/varz", nil, &r.varz) })
	wg.Go(func() { routezErr = c.get(ctx, ep.MonitorURL, "/routez", nil, &rz) })
	wg.Go(func() { gatewayzErr = c.get(ctx, ep.MonitorURL, "/gatewayz", nil, &gz) })
	wg.Go(func() { r.healthz = c.healthz(ctx, ep) })
	wg.Go(func() { jszErr = c.getJsz(ctx, ep.MonitorURL, &r.jsz) })
	c.fetchRaft(ctx, &wg, ep, raft)
	wg.Wait()
	if err := errors.Join(varzErr, routezErr, jszErr); err != nil {
		r.err = err
		return r
	}
	if gatewayzErr != nil {
		c.log.Debug().Err(gatewayzErr).Str("node", ep.Name).Msg("gatewayz")
	}

	r.setLinks(rz, gz)
	if r.jsz.Disabled {
		return r
	}
	accounts := r.jsz.streamAccounts()
	if missed := newRaftFetch(slices.DeleteFunc(slices.Clone(accounts), func(a string) bool {
		return slices.Contains(known, a)
	})); len(missed.accounts) > 0 {
		c.fetchRaft(ctx, &wg, ep, missed)
		wg.Wait()
		raft.merge(missed)
	}
	c.mu.Lock()
	c.accounts[ep.Name] = accounts
	c.mu.Unlock()
	r.raft = raft.groups()
	return r
}

// setLinks records the names of the servers the node has routes with and
// of the clusters it has outbound gateways to, sorted, each once.
func (r *nodeReport) setLinks(rz routezDoc, gz gatewayzDoc) {
	r.routes = rz.remoteNames()
	r.gws = nil
	for name := range gz.Outbound {
		r.gws = append(r.gws, name)
	}
	slices.Sort(r.gws)
}

// streamAccounts names the accounts with streams on the node: those whose
// /raftz the collector asks for.
func (j *jszDoc) streamAccounts() []string {
	var accounts []string
	for _, a := range j.Accounts {
		if len(a.Streams) > 0 {
			accounts = append(accounts, a.ID)
		}
	}
	return accounts
}

// raftFetch holds the /raftz documents of one node, one per account ("" is
// the system account, the meta group's).
type raftFetch struct {
	accounts []string
	docs     []map[string]map[string]raftzGroupDoc
}

func newRaftFetch(accounts []string) *raftFetch {
	return &raftFetch{accounts: accounts, docs: make([]map[string]map[string]raftzGroupDoc, len(accounts))}
}

func (f *raftFetch) merge(o *raftFetch) {
	f.accounts = append(f.accounts, o.accounts...)
	f.docs = append(f.docs, o.docs...)
}

// groups indexes every Raft group of every document by its group name.
func (f *raftFetch) groups() map[string]raftzGroupDoc {
	n := 0
	for _, d := range f.docs {
		for _, groups := range d {
			n += len(groups)
		}
	}
	out := make(map[string]raftzGroupDoc, n)
	for _, d := range f.docs {
		for _, groups := range d {
			for name, g := range groups {
				out[name] = g
			}
		}
	}
	return out
}

// fetchRaft starts one /raftz request per account of f on wg. Term, commit
// and applied are extras: a failure is logged, never fatal to the node.
func (c *Collector) fetchRaft(ctx context.Context, wg *sync.WaitGroup, ep Endpoint, f *raftFetch) {
	for i, acc := range f.accounts {
		var q url.Values
		if acc != "" {
			q = url.Values{"acc": {acc}}
		}
		wg.Go(func() {
			err := c.get(ctx, ep.MonitorURL, "/raftz", q, &f.docs[i])
			if err != nil && !errors.Is(err, errNotFound) {
				c.log.Debug().Err(err).Str("node", ep.Name).Str("account", acc).Msg("raftz")
			}
		})
	}
}

// getJsz reads a node's /jsz with every account, page by page: NATS lists
// at most a page of accounts per request, sorted by name.
func (c *Collector) getJsz(ctx context.Context, base string, into *jszDoc) error {
	q := url.Values{"accounts": {"true"}, "streams": {"true"}, "consumers": {"true"}, "config": {"true"}, "raft": {"true"},
		"limit": {strconv.Itoa(jszPageSize)}}
	if err := c.get(ctx, base, "/jsz", q, into); err != nil {
		return err
	}
	for len(into.Accounts) < into.Total {
		q.Set("offset", strconv.Itoa(len(into.Accounts)))
		var page jszDoc
		if err := c.get(ctx, base, "/jsz", q, &page); err != nil {
			return fmt.Errorf("accounts from %d: %w", len(into.Accounts), err)
		}
		if len(page.Accounts) == 0 {
			break // accounts went away between the pages
		}
		into.Accounts = append(into.Accounts, page.Accounts...)
	}
	return nil
}

// get decodes the answer of GET base+path?q into into; its errors name
// the path, the node being known to the caller.
func (c *Collector) get(ctx context.Context, base, path string, q url.Values, into any) error {
	if err := getJSON(ctx, c.o.Client, monitorURL(base, path, q), into); err != nil {
		return fmt.Errorf("GET %s: %w", path, err)
	}
	return nil
}

// groupKey identifies a Raft group across nodes and sweeps.
type groupKey struct {
	kind     GroupKind
	account  string
	stream   string
	consumer string
}

func keyOf(g *Group) groupKey {
	return groupKey{kind: g.Kind, account: g.Account, stream: g.Stream, consumer: g.Consumer}
}

// claim is one node's report of a group.
type claim struct {
	node string
	ci   *clusterDoc
	// lastSeq is the last sequence of the node's copy of the stream.
	lastSeq uint64
}

// groupObs gathers what every node said about one group.
type groupObs struct {
	key       groupKey
	raftGroup string
	cluster   string
	ephemeral bool
	replicas  int     // the most replicas a report's configuration gives
	leaders   []claim // nodes that report themselves as leader
	reports   []claim // every node that reports the group
}

// buildView turns the node reports of one sweep into a View.
func buildView(at time.Time, reports []*nodeReport) *View {
	v := &View{At: at, Nodes: make([]Node, 0, len(reports))}
	nodes := make(map[string]*nodeReport, len(reports))
	names := map[string]string{} // Raft node hash -> server name
	for _, r := range reports {
		nodes[r.name()] = r
		names[NodeHash(r.name())] = r.name()
	}

	obs := map[groupKey]*groupObs{}
	// replicas is the asset's configured number of replicas as the report
	// gives it (0: none). A raftless report (see clusterDoc.raftless) says
	// the group is on the node, and nothing of its leader or members.
	observe := func(k groupKey, node string, ci *clusterDoc, lastSeq uint64, ephemeral bool, replicas int) {
		if ci == nil {
			return
		}
		raftless := ci.raftless(replicas)
		o := obs[k]
		if o == nil {
			o = &groupObs{key: k}
			obs[k] = o
		}
		o.ephemeral = o.ephemeral || ephemeral
		o.replicas = max(o.replicas, replicas)
		if o.raftGroup == "" {
			o.raftGroup = ci.RaftGroup
		}
		if o.cluster == "" {
			o.cluster = ci.Name
		}
		cl := claim{node: node, ci: ci, lastSeq: lastSeq}
		o.reports = append(o.reports, cl)
		if ci.Leader == node && !raftless {
			o.leaders = append(o.leaders, cl)
		}
		for _, p := range ci.Replicas {
			if p.Peer != "" && !strings.HasPrefix(p.Name, "Server name unknown") {
				names[p.Peer] = p.Name
			}
		}
	}
	for _, r := range reports {
		if r.err != nil || r.jsz.Disabled {
			continue
		}
		name := r.name()
		if r.jsz.Meta != nil {
			// A copy: the report may be read meanwhile (a sidecar serves
			// its local one to its peers).
			m := *r.jsz.Meta
			m.RaftGroup = metaRaftGroup
			observe(groupKey{kind: KindMeta}, name, &m, 0, false, 0)
		}
		for ai := range r.jsz.Accounts {
			a := &r.jsz.Accounts[ai]
			for si := range a.Streams {
				s := &a.Streams[si]
				observe(groupKey{kind: KindStream, account: a.ID, stream: s.Name}, name, s.Cluster, s.State.LastSeq, false,
					s.replicas())
				for ci := range s.Consumers {
					cs := &s.Consumers[ci]
					observe(groupKey{kind: KindConsumer, account: a.ID, stream: s.Name, consumer: cs.Name}, name, cs.Cluster, 0, cs.ephemeral(),
						cs.replicas(s.replicas()))
				}
			}
		}
	}

	v.Groups = make([]Group, 0, len(obs))
	leads := map[string]int{}
	for _, o := range obs {
		g := o.group(at, nodes, names)
		setMemberTerms(&g, nodes)
		if g.Leader != "" {
			leads[g.Leader]++
		}
		v.Groups = append(v.Groups, g)
	}
	slices.SortFunc(v.Groups, compareGroups)

	for _, r := range reports {
		n := Node{Name: r.name(), DC: r.ep.DC, Reachable: r.err == nil, Stopping: r.stopping, Routes: []string{}}
		if r.err != nil {
			n.Error = r.err.Error()
		} else {
			n.ID = r.varz.ID
			if r.varz.Cluster.Name != "" {
				n.DC = r.varz.Cluster.Name
			}
			n.JetStream = !r.jsz.Disabled
			// A clustered server starts its meta group once it has
			// recovered every stream on its disk.
			n.Recovering = n.JetStream && r.jsz.Meta == nil && r.varz.Cluster.Name != ""
			n.Routes = r.routes
			n.Gateways = r.gws
			n.Leads = leads[n.Name]
			fillNodeFacts(&n, r)
		}
		v.Nodes = append(v.Nodes, n)
	}
	slices.SortFunc(v.Nodes, func(a, b Node) int { return cmp.Compare(a.Name, b.Name) })
	return v
}

var kindOrder = map[GroupKind]int{KindMeta: 0, KindStream: 1, KindConsumer: 2}

func compareGroups(a, b Group) int {
	return cmp.Or(
		cmp.Compare(kindOrder[a.Kind], kindOrder[b.Kind]),
		cmp.Compare(a.Account, b.Account),
		cmp.Compare(a.Stream, b.Stream),
		cmp.Compare(a.Consumer, b.Consumer),
	)
}

// group settles one group, swept at at: its leader, and its peers as that
// leader sees them, corrected by what the sweep knows about the nodes.
func (o *groupObs) group(at time.Time, nodes map[string]*nodeReport, names map[string]string) Group {
	g := Group{
		Kind:      o.key.kind,
		Account:   o.key.account,
		Stream:    o.key.stream,
		Consumer:  o.key.consumer,
		RaftGroup: o.raftGroup,
		Ephemeral: o.ephemeral,
		Replicas:  o.replicas,
	}
	switch g.Kind {
	case KindMeta:
		g.Name = MetaGroupName
	case KindStream:
		g.Name = g.Stream
		g.Cluster = o.cluster
	case KindConsumer:
		g.Name = g.Stream + "/" + g.Consumer
		g.Cluster = o.cluster
	}

	leader, ok := o.pickLeader(nodes)
	if !ok {
		g.Peers = o.leaderlessPeers(nodes, names)
		for _, r := range o.reports {
			if rs, ok := nodes[r.node].raft[o.raftGroup]; ok {
				g.Term = max(g.Term, rs.Term)
				g.Commit = max(g.Commit, rs.Committed)
				g.Applied = max(g.Applied, rs.Applied)
			}
		}
		return g
	}

	g.Leader = leader.node
	lead := leaderState{node: nodes[leader.node]}
	if rs, ok := lead.node.raft[o.raftGroup]; ok {
		g.Term, g.Commit, g.Applied, g.RaftQuorum = rs.Term, rs.Committed, rs.Applied, rs.QuorumNeeded
		lead.known, lead.commit = true, rs.Committed
		if rs.LeaderSince != nil {
			since := *rs.LeaderSince
			g.LeaderSince = &since
			lead.led = at.Sub(since)
		}
	}
	if g.Kind == KindStream {
		g.LastSeq = leader.lastSeq
	}
	g.Peers = make([]Peer, 0, len(leader.ci.Replicas)+1)
	g.Peers = append(g.Peers, Peer{Name: leader.node, Leader: true, Current: true, Healthy: true,
		Own: o.memberState(leader.node, nodes)})
	for _, p := range leader.ci.Replicas {
		if name := peerName(p, names); name != leader.node {
			g.Peers = append(g.Peers, o.peer(name, p, lead, nodes))
		}
	}
	g.Peers = o.addUnlisted(g, lead, nodes, names)
	slices.SortFunc(g.Peers, func(a, b Peer) int { return cmp.Compare(a.Name, b.Name) })
	return g
}

// leaderState is what a group's leader reports of itself, against which
// its members are settled.
type leaderState struct {
	node *nodeReport
	// known is set when the leader's /raftz reported the group, with
	// commit its commit index.
	known  bool
	commit uint64
	// led is how long it has led at the sweep (its /raftz's
	// leader_since), 0 when unknown.
	led time.Duration
}

// peer settles the member name of a group whose leader lead reports it as
// p, corrected by what the sweep knows about its node.
func (o *groupObs) peer(name string, p peerDoc, lead leaderState, nodes map[string]*nodeReport) Peer {
	peer := Peer{Name: name, Current: p.Current, Offline: p.Offline, Active: p.Active, Lag: p.Lag,
		Pending: p.Pending, Own: o.memberState(name, nodes),
		Healthy: !p.Offline && (p.Current || p.Lag <= HealthyLag)}
	switch {
	case peer.Pending:
		// Assigned but not a Raft member: it neither votes nor replicates.
		peer.Current, peer.Healthy = false, false
	case peer.Active == 0 && !peer.Current && lead.led > ActiveThreshold:
		// NATS reports active 0 for a peer the leader never heard from.
		// A working follower answers every append and heartbeat (one a
		// second): one it has not heard from in all the time it has led
		// does not work, whatever its own report says.
		peer.Healthy = false
	case peer.Active == 0 && !peer.Current:
		// NATS reports active 0 (and lag = commit) for a peer the
		// leader never heard from, as for every peer of a leader that
		// has just taken over. The member's own report decides then, as
		// it does for readiness (the route is checked below), against
		// the leader's commit, which must be known.
		peer.Healthy = lead.known && peer.Own != nil && !peer.Own.CatchingUp && peer.Own.Committed+HealthyLag >= lead.commit
	case peer.Active > ActiveThreshold:
		peer.Current, peer.Healthy = false, false
	}
	if r, known := nodes[name]; known {
		switch {
		case r.err != nil:
			peer.Current, peer.Healthy, peer.Offline = false, false, true
		case r.jsz.Disabled, !connected(lead.node, r):
			peer.Current, peer.Healthy = false, false
		}
	}
	return peer
}

// addUnlisted returns g's peers with the members that the leader ln does
// not list but another report shows: a node that reports the group itself,
// or that a follower lists. A leader that has just recovered the group
// from its disk after a restart was seen to list no replica but itself,
// which made a group of two replicas look like one of one replica on that
// leader, and the safety rule then let its other member go. Such a member
// is settled as one the leader reports it never heard from (a zero
// peerDoc: active 0, not current): healthy when its own report shows it as
// far as the leader's commit, else not.
func (o *groupObs) addUnlisted(g Group, lead leaderState, nodes map[string]*nodeReport, names map[string]string) []Peer {
	peers := g.Peers
	add := func(name string) {
		if name != "" && !slices.ContainsFunc(peers, func(p Peer) bool { return p.Name == name }) {
			peers = append(peers, o.peer(name, peerDoc{}, lead, nodes))
		}
	}
	for _, r := range o.reports {
		add(r.node)
		for _, p := range r.ci.Replicas {
			if !p.Pending {
				add(peerName(p, names))
			}
		}
	}
	return peers
}

// memberState is what node itself reports of the group, nil when it did
// not report it.
func (o *groupObs) memberState(node string, nodes map[string]*nodeReport) *MemberState {
	r, ok := nodes[node]
	if !ok || r.err != nil {
		return nil
	}
	rs, ok := r.raft[o.raftGroup]
	if !ok {
		return nil
	}
	ms := &MemberState{Committed: rs.Committed, Applied: rs.Applied, CatchingUp: rs.CatchingUp,
		NoLeaderYet: rs.EverHadLeader != nil && !*rs.EverHadLeader}
	if o.key.kind == KindStream {
		ms.Restoring = rs.Paused
		i := slices.IndexFunc(o.reports, func(c claim) bool { return c.node == node })
		if i < 0 {
			return nil
		}
		ms.LastSeq = o.reports[i].lastSeq
	}
	return ms
}

// pickLeader returns the node whose claim to lead the group is the one to
// believe. Normally one node claims; a leader cut off from its peers may
// keep claiming for a while after the others elected a new one, and the
// higher Raft term wins then.
func (o *groupObs) pickLeader(nodes map[string]*nodeReport) (claim, bool) {
	switch len(o.leaders) {
	case 0:
		return claim{}, false
	case 1:
		return o.leaders[0], true
	}
	best := o.leaders[0]
	bestTerm := nodes[best.node].raft[o.raftGroup].Term
	for _, c := range o.leaders[1:] {
		t := nodes[c.node].raft[o.raftGroup].Term
		if t > bestTerm || (t == bestTerm && c.node < best.node) {
			best, bestTerm = c, t
		}
	}
	return best, true
}

// leaderlessPeers lists the members of a group no node leads, from every
// node's report: without a leader no one knows whether they are current.
func (o *groupObs) leaderlessPeers(nodes map[string]*nodeReport, names map[string]string) []Peer {
	seen := map[string]bool{}
	var peers []Peer
	add := func(name string, offline bool) {
		if name == "" || seen[name] {
			return
		}
		seen[name] = true
		if r, known := nodes[name]; known && r.err != nil {
			offline = true
		}
		peers = append(peers, Peer{Name: name, Offline: offline})
	}
	for _, r := range o.reports {
		add(r.node, false)
		for _, p := range r.ci.Replicas {
			add(peerName(p, names), p.Offline)
		}
	}
	slices.SortFunc(peers, func(a, b Peer) int { return cmp.Compare(a.Name, b.Name) })
	return peers
}

// connected tells whether two reachable nodes of the same cluster have a
// route in both directions. Nodes of different clusters talk through
// gateways; for them the leader's Active alone decides.
func connected(a, b *nodeReport) bool {
	if a == b || a.varz.Cluster.Name != b.varz.Cluster.Name {
		return true
	}
	return routeEachOther(a.name(), a.routes, b.name(), b.routes)
}

func peerName(p peerDoc, names map[string]string) string {
	if n, ok := names[p.Peer]; ok {
		return n
	}
	return p.Name
}

// NodeHash is the Raft node id NATS derives from a server name (the
// server's getHash): eight base-62 digits of its SHA-256. /raftz names
// nodes by it.
func NodeHash(name string) string {
	const digits = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
	sum := sha256.Sum256([]byte(name))
	var b [8]byte
	for i := range b {
		b[i] = digits[int(sum[i]%62)]
	}
	return string(b[:])
}

// SetEndpoints replaces the nodes the collector sweeps, from the next sweep
// on: in Kubernetes mode the pods come and go and change their IPs, and the
// collector follows the pod list. It waits for a sweep in flight to end
// (bounded by ctx). What the collector remembers about a node (Raft
// positions, slow consumers) is kept by name, so a pod that comes back
// under a new IP is compared with what it reported before.
func (c *Collector) SetEndpoints(ctx context.Context, eps []Endpoint) error {
	if err := c.acquire(ctx); err != nil {
		return fmt.Errorf("set endpoints: %w", err)
	}
	defer c.release()
	c.o.Endpoints = slices.Clone(eps)
	c.setLocal(eps)
	return nil
}

// Endpoints returns the nodes the collector sweeps.
func (c *Collector) Endpoints(ctx context.Context) ([]Endpoint, error) {
	if err := c.acquire(ctx); err != nil {
		return nil, fmt.Errorf("endpoints: %w", err)
	}
	defer c.release()
	return slices.Clone(c.o.Endpoints), nil
}

package natsraft

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"time"
)

// Shared sweeps: each sidecar reads its own NATS server and serves what it
// read to the other sidecars, so that every server answers one sweep per
// interval (its own sidecar's) however many pods watch it, instead of one
// per pod. A collector whose endpoints carry a ReportURL asks that URL
// (the peer's GET /local/report) instead of the server, and reads the
// server directly when the peer's sidecar does not answer: an old
// prober, a sidecar restarting, or a pod without one.
//
// Freshness is stated by the asker as a maximum age, a duration, never a
// time: the peer compares it with the age of its report on its own clock,
// so clocks that differ between pods change nothing. A report is reused
// only when its read of the server started no earlier than maxAge before
// the request arrived, which is no earlier than maxAge before the asker
// sent it. Every view a decision rests on therefore holds, for every node,
// a read at least as recent as a sweep of today's design would make:
// View (the safety rule's) asks for reports younger than the freshness it
// grants its own views, ViewSince (hand-offs, catch-up, readiness) for
// reads that started after its since. The background sweeps of Run
// (runShared) read every server at the same instants, so that a view is
// made of reads taken together.

// reportDoc is a node's report on the wire: what one read of its server
// found, in the fields the collector reads (the monitoring documents'
// types, which decode only those).
type reportDoc struct {
	// Name is the node's server name as its sidecar knows it.
	Name string `json:"name"`
	// Age is how old the read was when the report was sent, on the
	// sender's clock. It comes first on the wire (see withAge).
	Age time.Duration `json:"age,omitempty,format:nano"`
	// Error is why the server could not be read; the rest is then empty.
	Error    string                   `json:"error,omitempty"`
	Varz     varzDoc                  `json:"varz"`
	Routes   []string                 `json:"routes"`
	Gateways []string                 `json:"gateways,omitempty"`
	Jsz      jszDoc                   `json:"jsz"`
	Raft     map[string]raftzGroupDoc `json:"raft,omitempty"`
	Healthz  string                   `json:"healthz,omitempty"`
	// Stopping says the sidecar readies the server for a shutdown.
	Stopping bool `json:"stopping,omitempty"`
}

// wire turns a report into its document.
func (r *nodeReport) wire(age time.Duration) reportDoc {
	d := reportDoc{Name: r.ep.Name, Age: age, Varz: r.varz, Routes: r.routes, Gateways: r.gws, Jsz: r.jsz,
		Raft: r.raft, Healthz: r.healthz, Stopping: r.stopping}
	if r.err != nil {
		d.Error = r.err.Error()
	}
	return d
}

// report turns a document back into the report of ep.
func (d *reportDoc) report(ep Endpoint) *nodeReport {
	r := &nodeReport{ep: ep, varz: d.Varz, routes: d.Routes, gws: d.Gateways, jsz: d.Jsz, raft: d.Raft, healthz: d.Healthz,
		stopping: d.Stopping}
	if d.Error != "" {
		r.err = errors.New(d.Error)
	}
	if r.routes == nil {
		r.routes = []string{}
	}
	return r
}

// localRead is the latest read of the local server and its encoding,
// made once for every peer that asks.
type localRead struct {
	from    time.Time // when the read started asking
	at      time.Time // when it ended
	report  *nodeReport
	encoded []byte
}

// ErrNoLocalNode is returned by LocalReport when the collector has no
// node named Self among its endpoints (yet).
var ErrNoLocalNode = errors.New("no local node among the endpoints")

// LocalReport returns the report of the local node (CollectorOptions.Self)
// as JSON: the latest read of its server when that read started no more
// than maxAge ago, else a new read. Callers that arrive while a read is in
// flight share the next one, so a burst of askers costs the server at most
// two reads. It is what GET /local/report serves to the other sidecars.
func (c *Collector) LocalReport(ctx context.Context, maxAge time.Duration) ([]byte, error) {
	lr, err := c.readLocal(ctx, maxAge)
	if err != nil {
		return nil, err
	}
	c.localMu.Lock()
	defer c.localMu.Unlock()
	if lr.encoded == nil {
		b, err := json.Marshal(lr.report.wire(0))
		if err != nil {
			return nil, fmt.Errorf("local report: %w", err)
		}
		lr.encoded = b
	}
	return withAge(lr.encoded, c.o.Now().Sub(lr.from)), nil
}

// withAge returns the encoded report with its age: the only field that
// changes between askers, it is left out of the encoding made once (age
// 0 is omitted) and put first here, so that a report of ten thousand
// groups is not encoded again for every asker.
func withAge(encoded []byte, age time.Duration) []byte {
	head := fmt.Appendf(nil, `{"age":%d,`, int64(max(age, 0)))
	return append(head, encoded[1:]...)
}

// readLocal returns a read of the local server that started no more than
// maxAge before the call, reading it when the latest is older.
func (c *Collector) readLocal(ctx context.Context, maxAge time.Duration) (*localRead, error) {
	arrived := c.o.Now()
	select {
	case c.localSem <- struct{}{}:
	case <-ctx.Done():
		return nil, fmt.Errorf("local report: %w", ctx.Err())
	}
	defer func() { <-c.localSem }()
	c.localMu.Lock()
	lr := c.local
	self, ok := c.localEp, c.hasLocal
	c.localMu.Unlock()
	if lr != nil && !lr.from.Before(arrived.Add(-maxAge)) {
		return lr, nil
	}
	if !ok {
		return nil, ErrNoLocalNode
	}
	from := c.o.Now()
	r := c.fetchNode(ctx, self)
	if err := ctx.Err(); err != nil {
		// The asker gave up (a peer's request timed out, a client hung
		// up) and cut the read short: its failure is not the server's,
		// and is not kept for the next askers.
		return nil, fmt.Errorf("local report: %w", err)
	}
	r.stopping = c.stopping.Load()
	lr = &localRead{from: from, at: c.o.Now(), report: r}
	c.localMu.Lock()
	c.local = lr
	c.localMu.Unlock()
	return lr, nil
}

// SetStopping says whether the local server is being readied for a
// shutdown (a preStop hook): every report of it says so from the next read
// on, which starts at once, so that the other probers' safety rule counts
// it as going.
func (c *Collector) SetStopping(on bool) {
	if c.stopping.Swap(on) == on {
		return
	}
	c.localMu.Lock()
	c.local = nil
	c.localMu.Unlock()
}

// setLocal keeps the endpoint of the local node (CollectorOptions.Self)
// among eps for readLocal.
func (c *Collector) setLocal(eps []Endpoint) {
	c.localMu.Lock()
	defer c.localMu.Unlock()
	c.hasLocal = false
	if c.o.Self == "" {
		return
	}
	for _, ep := range eps {
		if ep.Name == c.o.Self {
			c.localEp, c.hasLocal = ep, true
		}
	}
}

// fetchShared returns the report of ep for a sweep that accepts reads up
// to maxAge old: the local node's from readLocal, a peer's from its
// sidecar (ep.ReportURL), else from its server directly.
func (c *Collector) fetchShared(ctx context.Context, ep Endpoint, maxAge time.Duration) *nodeReport {
	if ep.Name == c.o.Self {
		lr, err := c.readLocal(ctx, maxAge)
		if err == nil {
			return lr.report
		}
		return c.fetchNode(ctx, ep)
	}
	if ep.ReportURL == "" {
		return c.fetchNode(ctx, ep)
	}
	rctx, cancel := context.WithTimeout(ctx, c.o.Timeout)
	defer cancel()
	u := ep.ReportURL + "?" + url.Values{"maxAge": {maxAge.String()}}.Encode()
	var d reportDoc
	sent := c.o.Now()
	err := getJSON(rctx, c.o.Client, u, &d)
	if err == nil && d.Name != ep.Name {
		err = fmt.Errorf("the sidecar reports on %q", d.Name)
	}
	if err == nil && d.Age > maxAge+c.o.Timeout {
		err = fmt.Errorf("the report is %s old, more than the %s asked for", d.Age, maxAge)
	}
	if err != nil {
		if ctx.Err() != nil {
			return &nodeReport{ep: ep, err: ctx.Err()}
		}
		c.log.Debug().Err(err).Str("node", ep.Name).Msg("peer's report unavailable: reading its server")
		c.direct.Add(1)
		return c.fetchNode(ctx, ep)
	}
	c.shared.Add(1)
	r := d.report(ep)
	// The read was Age old when the peer answered, on its clock: it
	// started no later than that before the request was sent.
	r.read = sent.Add(-d.Age)
	return r
}

// SharedStats tells how the peers' reports were got since the collector
// started: from their sidecars, or from their servers directly because
// the sidecar did not answer.
func (c *Collector) SharedStats() (shared, direct int64) {
	return c.shared.Load(), c.direct.Load()
}

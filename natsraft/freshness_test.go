package natsraft

// The freshness of the views the safety rule, catch-up and readiness
// judge, when a sweep reuses reads made before it began.

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"
)

// switchableStub serves the monitoring documents of one single-node server
// whose JetStream can be switched off (quiesced) and whose answers can be
// slowed down.
func switchableStub(t *testing.T, name string) (srv *httptest.Server, quiesced *atomic.Bool, delay *atomic.Int64) {
	t.Helper()
	quiesced, delay = new(atomic.Bool), new(atomic.Int64)
	srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if d := time.Duration(delay.Load()); d > 0 {
			select {
			case <-time.After(d):
			case <-r.Context().Done():
				return
			}
		}
		var doc any
		switch r.URL.Path {
		case "/varz":
			doc = map[string]any{"server_id": "ID-" + name, "server_name": name, "cluster": map[string]any{"name": "dc1"}}
		case "/routez":
			doc = map[string]any{"routes": []any{}}
		case "/healthz":
			doc = map[string]any{"status": "ok"}
		case "/jsz":
			if quiesced.Load() {
				doc = map[string]any{"server_id": "ID-" + name, "disabled": true}
			} else {
				doc = map[string]any{"server_id": "ID-" + name,
					"meta_cluster": map[string]any{"name": "dc1", "leader": name}}
			}
		case "/raftz":
			doc = map[string]any{}
		default:
			http.NotFound(w, r)
			return
		}
		_ = json.NewEncoder(w).Encode(doc)
	}))
	t.Cleanup(srv.Close)
	return srv, quiesced, delay
}

func fakeClock() (func() time.Time, func(time.Duration)) {
	var mu sync.Mutex
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	return func() time.Time { mu.Lock(); defer mu.Unlock(); return now },
		func(d time.Duration) { mu.Lock(); defer mu.Unlock(); now = now.Add(d) }
}

// TestViewSinceHoldsNoEarlierRead: ViewSince(t) gives reads that started
// after t (catch-up, readiness). A background sweep of runShared (maxAge
// Interval/2) that starts after t but reuses the local read made before t
// is not such a view: a node quiesced in between must not look caught up.
func TestViewSinceHoldsNoEarlierRead(t *testing.T) {
	srv, quiesced, _ := switchableStub(t, "n0")
	clock, advance := fakeClock()
	c := NewCollector(CollectorOptions{
		Endpoints: []Endpoint{{Name: "n0", DC: "dc1", MonitorURL: srv.URL}},
		Self:      "n0", Now: clock, Logger: zerolog.Nop(),
	})
	// The read of the instant (runShared: readLocal(ctx, 0)): JetStream on.
	_, err := c.readLocal(t.Context(), 0)
	require.NoError(t, err)

	// The node is quiesced; then the caller acts and asks for a view of
	// reads made after it acted.
	quiesced.Store(true)
	advance(100 * time.Millisecond)
	since := clock()

	// The background sweep of the instant, at instant+Interval/4, wins the
	// sweep semaphore first (DefaultCollectorInterval/2 as runShared asks).
	advance(150 * time.Millisecond)
	_, err = c.sweepWithin(t.Context(), DefaultCollectorInterval/2)
	require.NoError(t, err)

	v, err := c.ViewSince(t.Context(), since)
	require.NoError(t, err)
	n, _ := v.Node("n0")
	ready, _ := v.NodeReady("n0")
	require.False(t, n.JetStream || ready,
		"ViewSince(since) served a read made %s before since: JetStream %v, NodeReady %v (the server had JetStream off at since)",
		100*time.Millisecond, n.JetStream, ready)
}

// TestViewReusesNoOlderRead: the safety rule's View holds reads no older
// than viewFreshness, also when the latest view was recorded less than
// that ago from reads a background sweep reused (up to Interval/2 older
// than its start).
func TestViewReusesNoOlderRead(t *testing.T) {
	srv, quiesced, _ := switchableStub(t, "n0")
	clock, advance := fakeClock()
	c := NewCollector(CollectorOptions{
		Endpoints: []Endpoint{{Name: "n0", DC: "dc1", MonitorURL: srv.URL}},
		Self:      "n0", Now: clock, Logger: zerolog.Nop(),
	})
	_, err := c.readLocal(t.Context(), 0) // the read of the instant
	require.NoError(t, err)
	quiesced.Store(true) // the state changes right after it
	advance(250 * time.Millisecond)
	_, err = c.sweepWithin(t.Context(), DefaultCollectorInterval/2) // runShared's sweep
	require.NoError(t, err)
	advance(200 * time.Millisecond)

	v, err := c.View(t.Context()) // the safety rule's view, 450 ms after the read
	require.NoError(t, err)
	n, _ := v.Node("n0")
	require.False(t, n.JetStream, "View served a read %s old (viewFreshness %s)", 450*time.Millisecond, viewFreshness)
}

// TestAbandonedLocalReadIsNotKept: a peer that gives up on its
// /local/report (its sweep's context ends, its 2 s timeout passes) cuts the
// read of the local server short; that failed read is not kept, or every
// sweep within maxAge, this node's own included, would see the node
// unreachable.
func TestAbandonedLocalReadIsNotKept(t *testing.T) {
	srv, _, delay := switchableStub(t, "n0")
	c := NewCollector(CollectorOptions{
		Endpoints: []Endpoint{{Name: "n0", DC: "dc1", MonitorURL: srv.URL}},
		Self:      "n0", Timeout: 2 * time.Second, Logger: zerolog.Nop(),
	})
	delay.Store(int64(200 * time.Millisecond))
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	_, _ = c.LocalReport(ctx, 0) // a peer's request, abandoned
	cancel()
	delay.Store(0)

	v, err := c.sweepWithin(t.Context(), DefaultCollectorInterval/2)
	n, _ := v.Node("n0")
	require.True(t, err == nil && n.Reachable, "the server answers, but the view says: %v / %s", err, n.Error)
}

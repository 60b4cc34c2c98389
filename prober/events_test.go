package prober_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/prober-dev/prober/events"
	"github.com/prober-dev/prober/maintenance"
	"github.com/prober-dev/prober/natsraft"
	"github.com/prober-dev/prober/prober"
)

func withEvents(h *events.Hub, heartbeat time.Duration) serverOption {
	return func(o *prober.Options, _ *testServer) { o.Events, o.Heartbeat = h, heartbeat }
}

// sseStream reads frames off an open GET /events.
type sseStream struct {
	resp *http.Response
	rd   *events.Reader
}

// openEvents sends GET /events with header (may be nil) and query, and
// returns the open stream; it is closed at the end of the test.
func openEvents(t *testing.T, ts *testServer, query string, header http.Header) *sseStream {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, ts.base+"/events"+query, nil)
	require.NoError(t, err)
	for k, vs := range header {
		req.Header[k] = vs
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	t.Cleanup(func() { _ = resp.Body.Close() })
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("GET /events%s: %d %s", query, resp.StatusCode, b)
	}
	assert.Equal(t, "text/event-stream", resp.Header.Get("Content-Type"))
	assert.Equal(t, "no-cache", resp.Header.Get("Cache-Control"))
	return &sseStream{resp: resp, rd: events.NewReader(resp.Body)}
}

// next reads the next frame; io.EOF when the stream ended.
func (s *sseStream) next(t *testing.T) (events.Frame, error) {
	t.Helper()
	return s.rd.Next()
}

// nextEvent skips frames without an event and returns the next event,
// failing the test when the stream ends or nothing comes in time.
func (s *sseStream) nextEvent(t *testing.T) events.Frame {
	t.Helper()
	type result struct {
		f   events.Frame
		err error
	}
	ch := make(chan result, 1)
	go func() {
		for {
			f, err := s.next(t)
			if err != nil || f.Type != "" {
				ch <- result{f, err}
				return
			}
		}
	}()
	select {
	case r := <-ch:
		require.NoError(t, r.err)
		return r.f
	case <-time.After(10 * time.Second):
		_ = s.resp.Body.Close()
		t.Fatal("no event within 10s")
		return events.Frame{}
	}
}

func publishStates(t *testing.T, h *events.Hub, n int) []events.Event {
	t.Helper()
	var out []events.Event
	for i := range n {
		ev, err := h.Publish(events.TypeState, events.StateChange{ResourceVersion: strconv.Itoa(i + 1), Previous: strconv.Itoa(i)})
		require.NoError(t, err)
		out = append(out, ev)
	}
	return out
}

func TestEventsStream(t *testing.T) {
	h := events.NewHub(events.HubOptions{})
	ts := mustOpenServer(t, withEvents(h, time.Hour))
	s := openEvents(t, ts, "", nil)

	first, err := s.next(t)
	require.NoError(t, err)
	assert.Equal(t, strconv.FormatUint(h.LastID(), 10), first.ID, "the stream starts by saying where it resumes from")
	assert.Empty(t, first.Type)

	ev, err := h.Publish(events.TypePhase, events.PhaseChange{Pod: "n1", DC: "east", Phase: maintenance.PhaseFencing, Previous: maintenance.PhaseHandingOff, InMaintenance: true})
	require.NoError(t, err)
	f := s.nextEvent(t)
	assert.Equal(t, strconv.FormatUint(ev.ID, 10), f.ID)
	assert.Equal(t, events.TypePhase, f.Type)
	var pc events.PhaseChange
	require.NoError(t, json.Unmarshal(f.Data, &pc))
	assert.Equal(t, maintenance.PhaseFencing, pc.Phase)
	assert.Equal(t, "n1", pc.Pod)
}

func TestEventsResume(t *testing.T) {
	h := events.NewHub(events.HubOptions{})
	ts := mustOpenServer(t, withEvents(h, time.Hour))
	evs := publishStates(t, h, 5)
	for _, tc := range []struct {
		name   string
		query  string
		header http.Header
	}{
		{name: "Last-Event-ID header", header: http.Header{"Last-Event-ID": {strconv.FormatUint(evs[1].ID, 10)}}},
		{name: "lastEventId query parameter", query: "?lastEventId=" + strconv.FormatUint(evs[1].ID, 10)},
		{name: "the header wins over the query", query: "?lastEventId=1", header: http.Header{"Last-Event-ID": {strconv.FormatUint(evs[1].ID, 10)}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := openEvents(t, ts, tc.query, tc.header)
			for _, want := range evs[2:] {
				f := s.nextEvent(t)
				assert.Equal(t, strconv.FormatUint(want.ID, 10), f.ID)
				assert.Equal(t, string(want.Data), string(f.Data))
			}
		})
	}
	t.Run("then the new events", func(t *testing.T) {
		s := openEvents(t, ts, "", http.Header{"Last-Event-ID": {strconv.FormatUint(h.LastID(), 10)}})
		more := publishStates(t, h, 1)
		assert.Equal(t, strconv.FormatUint(more[0].ID, 10), s.nextEvent(t).ID)
	})
}

func TestEventsResetWhenTooOld(t *testing.T) {
	h := events.NewHub(events.HubOptions{History: 4})
	ts := mustOpenServer(t, withEvents(h, time.Hour))
	evs := publishStates(t, h, 10)

	s := openEvents(t, ts, "", http.Header{"Last-Event-ID": {strconv.FormatUint(evs[0].ID, 10)}})
	f := s.nextEvent(t)
	assert.Equal(t, events.TypeReset, f.Type)
	assert.Equal(t, strconv.FormatUint(evs[9].ID, 10), f.ID, "the reset resumes after the newest event")
	var r events.Reset
	require.NoError(t, json.Unmarshal(f.Data, &r))
	assert.Contains(t, r.Reason, "no longer kept")
	more := publishStates(t, h, 1)
	assert.Equal(t, strconv.FormatUint(more[0].ID, 10), s.nextEvent(t).ID, "no replay after a reset")

	t.Run("an id of an earlier run", func(t *testing.T) {
		s := openEvents(t, ts, "?lastEventId=17", nil)
		assert.Equal(t, events.TypeReset, s.nextEvent(t).Type)
	})
}

// TestEventsSlowClientDropped: a client that reads nothing while many
// events are published is dropped with a last dropped event; publishing
// never waits for it.
func TestEventsSlowClientDropped(t *testing.T) {
	h := events.NewHub(events.HubOptions{ClientBuffer: 8})
	ts := mustOpenServer(t, withEvents(h, time.Hour))
	slow := openEvents(t, ts, "", nil)
	_, err := slow.next(t) // the id frame: the subscription is in
	require.NoError(t, err)

	big := strings.Repeat("x", 32<<10)
	const n = 1500 // ~48 MiB: more than the socket buffers hold
	start := time.Now()
	for i := range n {
		_, err := h.Publish(events.TypePhase, events.PhaseChange{Pod: "n1", Message: big + strconv.Itoa(i)})
		require.NoError(t, err)
	}
	took := time.Since(start)
	t.Logf("published %d events of 32 KiB in %s", n, took)
	assert.Less(t, took, 10*time.Second, "publishing waited for the client")

	var got int
	var last events.Frame
	for {
		f, err := slow.next(t)
		if err == io.EOF {
			break
		}
		require.NoError(t, err)
		if f.Type != "" {
			got++
			last = f
		}
	}
	assert.Equal(t, events.TypeDropped, last.Type, "the last event says why")
	assert.Empty(t, last.ID, "a dropped event has no id: the client resumes after the last event it got")
	var d events.Dropped
	require.NoError(t, json.Unmarshal(last.Data, &d))
	assert.Contains(t, d.Reason, "too slow")
	assert.Less(t, got, n, "the slow client did not get every event")
	t.Logf("the slow client got %d events before it was dropped", got-1)
}

func TestEventsHeartbeat(t *testing.T) {
	h := events.NewHub(events.HubOptions{})
	ts := mustOpenServer(t, withEvents(h, 20*time.Millisecond))
	s := openEvents(t, ts, "", nil)
	for i := 0; ; i++ {
		f, err := s.next(t)
		require.NoError(t, err)
		if len(f.Comments) == 1 && f.Comments[0] == "heartbeat" && f.ID == "" && f.Type == "" {
			return
		}
		require.Less(t, i, 3, "no heartbeat in the first frames: %+v", f)
	}
}

// TestEventsAuth: /events asks what /raft asks: a token from a remote
// caller, and the get verb.
func TestEventsAuth(t *testing.T) {
	f := &fakeAuth{}
	h := events.NewHub(events.HubOptions{})
	ts := mustOpenServer(t, withAuth(f.options()), withEvents(h, time.Hour))
	for _, path := range []string{"/raft", "/events"} {
		rec := serve(ts, http.MethodGet, path, remoteAddr, "", "")
		assert.Equal(t, http.StatusUnauthorized, rec.Code, "%s without a token", path)
		assert.Contains(t, rec.Body.String(), maintenance.EUnauthorized)
		rec = serve(ts, http.MethodGet, path, remoteAddr, "Bearer "+garbageToken, "")
		assert.Equal(t, http.StatusUnauthorized, rec.Code, "%s with a bad token", path)
	}

	// A reader may: the stream starts (and ends with the request).
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	req := httptest.NewRequestWithContext(ctx, http.MethodGet, "/events", nil)
	req.RemoteAddr = remoteAddr
	req.Header.Set("Authorization", "Bearer "+readerToken)
	rec := httptest.NewRecorder()
	ts.Handler().ServeHTTP(rec, req)
	assert.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
	assert.Equal(t, "text/event-stream", rec.Header().Get("Content-Type"))
	assert.Contains(t, rec.Body.String(), "id: ")
}

// TestEventsEndWhenAccessIsRevoked checks that an open stream outlives no
// revoke: its caller's permission is looked at again on each heartbeat,
// and once it is withdrawn the stream ends with a last event saying why.
// A check that cannot be made (the API server does not answer) keeps it.
func TestEventsEndWhenAccessIsRevoked(t *testing.T) {
	var allowed, unavailable atomic.Bool
	allowed.Store(true)
	auth := prober.AuthOptions{
		Authenticator: authnFunc(func(context.Context, string) (prober.User, bool, error) {
			return prober.User{Name: "eve"}, true, nil
		}),
		Authorizer: authzFunc(func(_ context.Context, _ prober.User, verb string) (bool, string, error) {
			if unavailable.Load() {
				return false, "", prober.ErrAuthUnavailable
			}
			return allowed.Load() && verb == "get", "", nil
		}),
		LoopbackNeedsToken: true, // the test's listener is on loopback
	}
	h := events.NewHub(events.HubOptions{})
	ts := mustOpenServer(t, withAuth(auth), withEvents(h, 20*time.Millisecond))
	st := openEvents(t, ts, "", http.Header{"Authorization": {"Bearer some-token-0123456789"}})

	unavailable.Store(true)
	for range 3 { // heartbeats go on: the stream is kept
		f, err := st.next(t)
		require.NoError(t, err)
		require.Empty(t, f.Type, "frame %+v", f)
	}
	unavailable.Store(false)
	allowed.Store(false) // the RoleBinding is removed
	f := st.nextEvent(t)
	assert.Equal(t, events.TypeDropped, f.Type)
	assert.Contains(t, string(f.Data), "access revoked: eve may no longer get it")
	_, err := st.next(t)
	assert.ErrorIs(t, err, io.EOF, "the stream ends")
}

func TestEventsBadRequests(t *testing.T) {
	h := events.NewHub(events.HubOptions{})
	ts := mustOpenServer(t, withEvents(h, time.Hour))
	for _, tc := range []struct {
		name   string
		query  string
		header string
	}{
		{name: "a header that is no number", header: "abc"},
		{name: "a negative query", query: "?lastEventId=-1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, err := http.NewRequest(http.MethodGet, ts.base+"/events"+tc.query, nil)
			require.NoError(t, err)
			if tc.header != "" {
				req.Header.Set("Last-Event-ID", tc.header)
			}
			resp, err := http.DefaultClient.Do(req)
			require.NoError(t, err)
			defer resp.Body.Close()
			assert.Equal(t, http.StatusBadRequest, resp.StatusCode)
			var e prober.ErrorResponse
			require.NoError(t, json.NewDecoder(resp.Body).Decode(&e))
			assert.Equal(t, maintenance.EInvalid, e.Error.Code)
			assert.Contains(t, e.Error.Message, "event id")
		})
	}
	t.Run("HEAD answers the headers only", func(t *testing.T) {
		resp, body := ts.do(t, http.MethodHead, "/events", "")
		assert.Equal(t, http.StatusOK, resp.StatusCode)
		assert.Equal(t, "text/event-stream", resp.Header.Get("Content-Type"))
		assert.Empty(t, body)
	})
	t.Run("no hub", func(t *testing.T) {
		ts := mustOpenServer(t)
		resp, body := ts.do(t, http.MethodGet, "/events", "")
		assert.Equal(t, http.StatusServiceUnavailable, resp.StatusCode, string(body))
	})
}

// TestEventsCloseEndsStreams: closing the server ends the open streams at
// once instead of waiting for them.
func TestEventsCloseEndsStreams(t *testing.T) {
	h := events.NewHub(events.HubOptions{})
	ts := mustOpenServer(t, withEvents(h, time.Hour))
	streams := []*sseStream{openEvents(t, ts, "", nil), openEvents(t, ts, "", nil)}
	for _, s := range streams {
		_, err := s.next(t)
		require.NoError(t, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	start := time.Now()
	require.NoError(t, ts.Close(ctx))
	assert.Less(t, time.Since(start), 2*time.Second)
	for _, s := range streams {
		_, err := s.next(t)
		assert.ErrorIs(t, err, io.EOF)
	}
}

// TestEventsMetrics: a stream counts as a request, with no latency (it
// lasts as long as its client).
func TestEventsMetrics(t *testing.T) {
	h := events.NewHub(events.HubOptions{})
	ts := mustOpenServer(t, withEvents(h, time.Hour))
	s := openEvents(t, ts, "", nil)
	_, err := s.next(t)
	require.NoError(t, err)
	require.NoError(t, s.resp.Body.Close())

	deadline := time.Now().Add(10 * time.Second)
	for {
		_, body := ts.do(t, http.MethodGet, "/metrics", "")
		text := string(body)
		if strings.Contains(text, `prober_http_requests_total{code="200",method="GET",route="/events"} 1`) {
			assert.NotContains(t, text, `prober_http_request_duration_seconds_count{method="GET",route="/events"}`)
			return
		}
		require.True(t, time.Now().Before(deadline), "no request of /events counted:\n%s", text)
		time.Sleep(20 * time.Millisecond)
	}
}

// A request that waits for a phase answers once the events say the phases
// changed, not at its next look: with the looks an hour apart, only the
// events can end the waits before their deadline.
func TestWaitFollowsEvents(t *testing.T) {
	h := events.NewHub(events.HubOptions{})
	ts := mustOpenServer(t, withEvents(h, time.Hour), func(o *prober.Options, _ *testServer) { o.WaitPoll = time.Hour })
	w := events.NewWatcher(events.WatcherOptions{
		Hub: h, Store: ts.store, Latest: func() *natsraft.View { return ts.view },
		Interval: time.Hour, Logger: zerolog.Nop(),
	})
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { defer close(done); _ = w.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	ts.playReconciler(t)

	for _, step := range []struct {
		method, path, body string
		phase              maintenance.Phase
	}{
		{"PUT", "/pods/n0?wait=30s", `{"reason":"kernel"}`, maintenance.PhaseInMaintenance},
		{"DELETE", "/pods/n0?wait=30s", "", maintenance.PhaseActive},
	} {
		resp, b := ts.do(t, step.method, step.path, step.body)
		require.Equal(t, http.StatusOK, resp.StatusCode, "%s %s: %s", step.method, step.path, b)
		var pc prober.PodChange
		require.NoError(t, json.Unmarshal(b, &pc))
		assert.Equal(t, step.phase, pc.Phase, "%s %s", step.method, step.path)
	}
}

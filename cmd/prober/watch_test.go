package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/prober-dev/prober/events"
	"github.com/prober-dev/prober/maintenance"
	"github.com/prober-dev/prober/natsraft"
	"github.com/prober-dev/prober/prober"
)

// fakeProber is an API of one pod, nats-1 in dc1, whose phase the test
// sets, with an event stream the test feeds (or none, as an older prober).
type fakeProber struct {
	*httptest.Server
	noEvents bool

	mu       sync.Mutex
	pod      maintenance.PodView
	gets     int // GET /pods/nats-1 and /dcs/dc1
	streams  int // GET /events answered 200
	requests []string

	fetched    chan struct{} // a value after each GET of the pod
	subscribed chan struct{} // a value when a stream is open
	events     chan string   // frames to send on the stream
}

func newFakeProber(t *testing.T, noEvents bool) *fakeProber {
	t.Helper()
	f := &fakeProber{
		noEvents:   noEvents,
		pod:        maintenance.PodView{Pod: "nats-1", DC: "dc1", Phase: maintenance.PhaseActive, Raft: maintenance.PodRaft{Leads: []string{}, Current: true, Reachable: true}},
		fetched:    make(chan struct{}, 1000),
		subscribed: make(chan struct{}, 10),
		events:     make(chan string, 100),
	}
	f.Server = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.Close)
	return f
}

func (f *fakeProber) serve(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	f.requests = append(f.requests, r.Method+" "+r.URL.Path)
	pv := f.pod
	f.mu.Unlock()
	answer := func(status int, v any) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_ = json.NewEncoder(w).Encode(v)
	}
	fetched := func() {
		f.mu.Lock()
		f.gets++
		f.mu.Unlock()
		f.fetched <- struct{}{}
	}
	switch r.Method + " " + r.URL.Path {
	case "PUT /pods/nats-1":
		pv := f.setPhase(maintenance.PhaseRequested, true)
		pv.RequestedBy = "test"
		answer(http.StatusAccepted, prober.PodChange{PodView: pv, Changed: true})
	case "GET /pods/nats-1":
		answer(http.StatusOK, pv)
		fetched()
	case "GET /dcs/dc1":
		answer(http.StatusOK, prober.DCView{DC: "dc1", Pods: []maintenance.PodView{pv}})
		fetched()
	case "GET /raft":
		answer(http.StatusOK, prober.RaftResponse{View: &natsraft.View{At: time.Now(),
			Nodes: []natsraft.Node{{Name: "nats-1", DC: "dc1", Reachable: true, JetStream: true}}}})
	case "GET /events":
		if f.noEvents {
			answer(http.StatusNotFound, prober.ErrorResponse{Error: maintenance.Error{Code: maintenance.ENotFound, Message: "no route for /events"}})
			return
		}
		f.mu.Lock()
		f.streams++
		f.mu.Unlock()
		w.Header().Set("Content-Type", "text/event-stream")
		_, _ = fmt.Fprint(w, "retry: 2000\n: stream\nid: 1\n\n")
		w.(http.Flusher).Flush()
		f.subscribed <- struct{}{}
		for {
			select {
			case <-r.Context().Done():
				return
			case frame := <-f.events:
				_, _ = fmt.Fprint(w, frame)
				w.(http.Flusher).Flush()
			}
		}
	default:
		answer(http.StatusNotFound, prober.ErrorResponse{Error: maintenance.Error{Code: maintenance.ENotFound, Message: "no route"}})
	}
}

// setPhase sets the pod's phase and returns its view.
func (f *fakeProber) setPhase(p maintenance.Phase, inMaintenance bool) maintenance.PodView {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.pod.Phase, f.pod.InMaintenance = p, inMaintenance
	if inMaintenance {
		f.pod.Via = maintenance.SourcePod
	}
	return f.pod
}

// move sets the phase and sends its event, as the watcher would.
func (f *fakeProber) move(id int, p, prev maintenance.Phase) {
	f.setPhase(p, true)
	data, _ := json.Marshal(events.PhaseChange{Pod: "nats-1", DC: "dc1", Phase: p, Previous: prev, InMaintenance: true, Via: maintenance.SourcePod})
	f.events <- fmt.Sprintf("id: %d\nevent: phase\ndata: %s\n\n", id, data)
}

func (f *fakeProber) counts() (gets, streams int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.gets, f.streams
}

func waitSignal(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(10 * time.Second):
		t.Fatalf("no %s within 10s", what)
	}
}

// quiet requires that nothing comes on ch for a while: what it checks is
// that nothing happens, which takes waiting.
func quiet(t *testing.T, ch <-chan struct{}, d time.Duration, what string) {
	t.Helper()
	select {
	case <-ch:
		t.Fatalf("%s", what)
	case <-time.After(d):
	}
}

// finished returns the result of a command once it has ended, at
// InMaintenance.
func finished(t *testing.T, done <-chan result) result {
	t.Helper()
	select {
	case r := <-done:
		require.Equal(t, 0, r.code, r)
		return r
	case <-time.After(10 * time.Second):
		t.Fatal("the command did not end at InMaintenance")
		return result{}
	}
}

// TestCLIWaitFollowsEvents: "maintenance on --wait" opens the event stream
// after its PUT, reads the pod once to catch up, and then only after each
// of its phase events — it does not poll every 100 ms. The output is the
// same as when polling.
func TestCLIWaitFollowsEvents(t *testing.T) {
	f := newFakeProber(t, false)
	done := make(chan result, 1)
	go func() { done <- run("maintenance", "on", "nats-1", "--wait", "60s", "--server", f.URL) }()

	waitSignal(t, f.subscribed, "event stream")
	waitSignal(t, f.fetched, "catch-up read")
	quiet(t, f.fetched, 500*time.Millisecond, "the pod was read again without an event: polling")
	id := 2
	prev := maintenance.PhaseRequested
	for _, p := range []maintenance.Phase{maintenance.PhaseHandingOff, maintenance.PhaseFencing, maintenance.PhaseInMaintenance} {
		f.move(id, p, prev)
		waitSignal(t, f.fetched, "read after the "+string(p)+" event")
		id, prev = id+1, p
	}
	r := finished(t, done)
	gets, streams := f.counts()
	assert.Equal(t, 1, streams)
	assert.Equal(t, 4, gets, "one read to catch up, one per event")
	out := lines(r.stdout)
	assert.Equal(t, "pod nats-1: maintenance requested by test", out[0])
	assert.Equal(t, []maintenance.Phase{maintenance.PhaseRequested, maintenance.PhaseHandingOff, maintenance.PhaseFencing, maintenance.PhaseInMaintenance},
		progress(t, r.stdout, "nats-1"))
	assert.Regexp(t, `^pod nats-1 is in maintenance \(\d+\.\ds\)$`, out[len(out)-1])
}

// TestCLIWaitPollsWithoutEvents: against a prober without /events (404),
// "--wait" polls as before.
func TestCLIWaitPollsWithoutEvents(t *testing.T) {
	f := newFakeProber(t, true)
	done := make(chan result, 1)
	go func() { done <- run("maintenance", "on", "nats-1", "--wait", "60s", "--server", f.URL) }()
	for range 3 {
		waitSignal(t, f.fetched, "a poll")
	}
	f.setPhase(maintenance.PhaseFencing, true)
	for range 3 {
		waitSignal(t, f.fetched, "a poll")
	}
	f.setPhase(maintenance.PhaseInMaintenance, true)
	r := finished(t, done)
	gets, streams := f.counts()
	assert.Zero(t, streams)
	assert.GreaterOrEqual(t, gets, 7)
	assert.Equal(t, []maintenance.Phase{maintenance.PhaseRequested, maintenance.PhaseFencing, maintenance.PhaseInMaintenance},
		progress(t, r.stdout, "nats-1"))
	assert.Empty(t, r.stderr)
}

// lockedBuffer is an output the command writes while the test reads it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestCLIStatusWatch: "status --watch" prints the status, then again
// after each event, under a line saying what changed; a server without
// an event stream is polled.
func TestCLIStatusWatch(t *testing.T) {
	for _, noEvents := range []bool{false, true} {
		t.Run(fmt.Sprintf("no events %v", noEvents), func(t *testing.T) {
			f := newFakeProber(t, noEvents)
			api, err := newClient(f.URL, "")
			require.NoError(t, err)
			var out, errOut lockedBuffer
			x := &cli{api: api, out: &out, errOut: &errOut, now: time.Now}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- x.watchStatus(ctx, false) }()

			if !noEvents {
				waitSignal(t, f.subscribed, "event stream")
			}
			poll(t, 10*time.Second, "the first status", func() (bool, string) {
				return strings.Contains(out.String(), "MAINTENANCE:"), out.String()
			})
			if noEvents {
				f.setPhase(maintenance.PhaseFencing, true)
			} else {
				f.move(2, maintenance.PhaseFencing, maintenance.PhaseRequested)
			}
			poll(t, 10*time.Second, "the status again", func() (bool, string) {
				return strings.Contains(out.String(), "MAINTENANCE:  nats-1 (Fencing)"), out.String()
			})
			cancel()
			select {
			case err := <-done:
				assert.NoError(t, err, "Ctrl-C ends a watch")
			case <-time.After(10 * time.Second):
				t.Fatal("the watch did not end")
			}
			if noEvents {
				assert.Regexp(t, `(?m)^--- \d\d:\d\d:\d\d $`, out.String())
			} else {
				assert.Regexp(t, `(?m)^--- \d\d:\d\d:\d\d nats-1 Fencing$`, out.String())
			}
			assert.Empty(t, errOut.String())
		})
	}
}

// TestCLIConcernsStateEvents: status --watch prints again when an entry
// changed without a phase event (a PUT again with a new reason or TTL),
// not when a status was refreshed alone; --wait on pods ignores both.
func TestCLIConcernsStateEvents(t *testing.T) {
	state := func(changed ...string) events.Frame {
		data, err := json.Marshal(events.StateChange{ResourceVersion: "8", Previous: "7", Changed: changed})
		require.NoError(t, err)
		return events.Frame{ID: "7", HasID: true, Type: events.TypeState, Data: data}
	}
	what, ok := concerns(state(events.SectionPods, events.SectionStatus), nil)
	assert.True(t, ok, "an entry changed")
	assert.Equal(t, "entries changed (resourceVersion 8)", what)
	_, ok = concerns(state(events.SectionDCs), nil)
	assert.True(t, ok, "a dc entry changed")
	_, ok = concerns(state(events.SectionStatus), nil)
	assert.False(t, ok, "a status refreshed alone")
	_, ok = concerns(state(events.SectionRollouts), nil)
	assert.False(t, ok, "a rollout's progress shows in its phase events")
	_, ok = concerns(state(events.SectionPods), []string{"nats-1"})
	assert.False(t, ok, "a wait on pods follows their phases")
}

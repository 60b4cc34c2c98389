package app_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/prober-dev/prober/events"
	"github.com/prober-dev/prober/maintenance"
)

// appStream is an open GET /events of a live app, read in the background.
type appStream struct {
	frames chan events.Frame
	done   chan error
	cancel context.CancelFunc
}

// openStream opens GET /events of the API at base with token ("" for
// none) and Last-Event-ID lastID (none when ""). It ends with the test.
func openStream(tb testing.TB, base, token, lastID string) *appStream {
	tb.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/events", nil)
	require.NoError(tb, err)
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := (&http.Client{}).Do(req)
	require.NoError(tb, err)
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		cancel()
		require.FailNow(tb, "GET /events", "%d %s", resp.StatusCode, b)
	}
	s := &appStream{frames: make(chan events.Frame, 1024), done: make(chan error, 1), cancel: cancel}
	go func() {
		defer resp.Body.Close()
		rd := events.NewReader(resp.Body)
		for {
			f, err := rd.Next()
			if err != nil {
				s.done <- err
				close(s.frames)
				return
			}
			s.frames <- f
		}
	}()
	tb.Cleanup(cancel)
	return s
}

// phasesUntil reads events until pod reaches phase and returns the phase
// events of pod and the ids of every event, in order.
func (s *appStream) phasesUntil(t *testing.T, pod string, phase maintenance.Phase, timeout time.Duration) ([]events.PhaseChange, []events.Frame) {
	t.Helper()
	var phases []events.PhaseChange
	var all []events.Frame
	deadline := time.After(timeout)
	for {
		select {
		case f, ok := <-s.frames:
			require.True(t, ok, "the stream ended; phases so far %v", phases)
			if f.Type == "" {
				continue
			}
			all = append(all, f)
			require.NotEqual(t, events.TypeReset, f.Type)
			require.NotEqual(t, events.TypeDropped, f.Type)
			if f.Type != events.TypePhase {
				continue
			}
			var pc events.PhaseChange
			require.NoError(t, json.Unmarshal(f.Data, &pc))
			if pc.Pod != pod {
				continue
			}
			phases = append(phases, pc)
			if pc.Phase == phase {
				return phases, all
			}
		case <-deadline:
			t.Fatalf("%s not %s within %s; phase events %v", pod, phase, timeout, phases)
		}
	}
}

// requirePhaseChain checks that each phase event names the one before it
// as its previous phase, and that the phases come in the order given (a
// subsequence of it: Requested may be too quick to be seen; a phase may
// come again with another message, or as the entry comes or goes — the
// pod's phase stays the reported one until its reconciler moves).
func requirePhaseChain(t *testing.T, got []events.PhaseChange, from maintenance.Phase, order []maintenance.Phase) {
	t.Helper()
	require.NotEmpty(t, got)
	prev := from
	i := 0
	for _, pc := range got {
		assert.Equal(t, prev, pc.Previous, "previous of %s", pc.Phase)
		prev = pc.Phase
		j := slices.Index(order[i:], pc.Phase)
		require.GreaterOrEqual(t, j, 0, "phase %s out of order in %v", pc.Phase, got)
		i += j
	}
}

// TestAppEvents runs the embedded default: a PUT /pods/<pod> produces its
// phase events through to InMaintenance, in order, with the state events;
// a stream resumed from an id replays the rest; the DELETE brings it back
// to Active; closing the app ends the streams.
func TestAppEvents(t *testing.T) {
	running := startApp(t, t.TempDir(), nil)
	running.requireClean()
	s := openStream(t, running.base, "", "")

	running.call(http.MethodPut, "/pods/nats-1", `{"reason":"events"}`, http.StatusAccepted, nil)
	entering, all := s.phasesUntil(t, "nats-1", maintenance.PhaseInMaintenance, 60*time.Second)
	requirePhaseChain(t, entering, maintenance.PhaseActive, []maintenance.Phase{
		maintenance.PhaseActive, maintenance.PhaseRequested, maintenance.PhaseHandingOff, maintenance.PhaseFencing, maintenance.PhaseInMaintenance,
	})
	for _, pc := range entering {
		assert.True(t, pc.InMaintenance)
		assert.Equal(t, maintenance.SourcePod, pc.Via)
		assert.Equal(t, "dc1", pc.DC)
	}
	var ids []uint64
	types := map[string]int{}
	for _, f := range all {
		id, err := strconv.ParseUint(f.ID, 10, 64)
		require.NoError(t, err, "event id %q", f.ID)
		ids = append(ids, id)
		types[f.Type]++
	}
	for i := 1; i < len(ids); i++ {
		assert.Equal(t, ids[i-1]+1, ids[i], "ids increase by one")
	}
	assert.Positive(t, types[events.TypeState], "the stored document changed: %v", types)
	t.Logf("events on the way in: %v", types)

	t.Run("resume replays the rest in order", func(t *testing.T) {
		first := all[0].ID
		r := openStream(t, running.base, "", first)
		var replayed []string
		deadline := time.After(10 * time.Second)
		for len(replayed) < len(all)-1 {
			select {
			case f := <-r.frames:
				if f.Type != "" {
					replayed = append(replayed, f.ID)
				}
			case <-deadline:
				t.Fatalf("replayed %v", replayed)
			}
		}
		var want []string
		for _, f := range all[1:] {
			want = append(want, f.ID)
		}
		assert.Equal(t, want, replayed)
	})

	running.call(http.MethodDelete, "/pods/nats-1", "", http.StatusAccepted, nil)
	leaving, _ := s.phasesUntil(t, "nats-1", maintenance.PhaseActive, 60*time.Second)
	requirePhaseChain(t, leaving, maintenance.PhaseInMaintenance, []maintenance.Phase{
		maintenance.PhaseInMaintenance, maintenance.PhaseUnfencing, maintenance.PhaseCatchingUp, maintenance.PhaseActive,
	})
	assert.False(t, leaving[len(leaving)-1].InMaintenance)

	begin := time.Now()
	running.Stop()
	select {
	case <-s.done:
	case <-time.After(5 * time.Second):
		t.Fatal("the stream did not end with the app")
	}
	t.Logf("app with an open stream stopped in %.1fs", time.Since(begin).Seconds())
}

// testSidecarEvents: a sidecar's /events asks what /raft asks (a token
// allowed to get the maintenance ConfigMap), and streams the phases of
// another pod, whose own sidecar does the work, through to InMaintenance
// and back.
func testSidecarEvents(t *testing.T, e *scEnv) {
	const pod = "nats-1"
	e.requireClean(t)
	via := e.sidecars["nats-0"]
	for _, tc := range []struct {
		token string
		want  int
	}{{"", http.StatusUnauthorized}, {e.stranger, http.StatusForbidden}} {
		code, body := e.call(t, via, tc.token, http.MethodGet, "/events", "")
		assert.Equal(t, tc.want, code, body)
	}
	s := openStream(t, via.base, e.viewer, "")

	e.call(t, via, e.operator, http.MethodPut, "/pods/"+pod, `{"reason":"events"}`)
	entering, _ := s.phasesUntil(t, pod, maintenance.PhaseInMaintenance, 60*time.Second)
	requirePhaseChain(t, entering, maintenance.PhaseActive, []maintenance.Phase{
		maintenance.PhaseActive, maintenance.PhaseRequested, maintenance.PhaseHandingOff, maintenance.PhaseFencing, maintenance.PhaseInMaintenance,
	})
	e.call(t, via, e.operator, http.MethodDelete, "/pods/"+pod, "")
	leaving, _ := s.phasesUntil(t, pod, maintenance.PhaseActive, 60*time.Second)
	requirePhaseChain(t, leaving, maintenance.PhaseInMaintenance, []maintenance.Phase{
		maintenance.PhaseInMaintenance, maintenance.PhaseUnfencing, maintenance.PhaseCatchingUp, maintenance.PhaseActive,
	})
	e.requireClean(t)
}

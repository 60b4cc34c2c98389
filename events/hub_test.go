package events_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/prober-dev/prober/events"
)

// publishN publishes n numbered events and returns them.
func publishN(t *testing.T, h *events.Hub, n int) []events.Event {
	t.Helper()
	out := make([]events.Event, 0, n)
	for i := range n {
		ev, err := h.Publish(events.TypeState, events.StateChange{ResourceVersion: string(rune('a' + i%26))})
		require.NoError(t, err)
		out = append(out, ev)
	}
	return out
}

func ids(evs []events.Event) []uint64 {
	out := make([]uint64, 0, len(evs))
	for _, ev := range evs {
		out = append(out, ev.ID)
	}
	return out
}

// receive takes n events from s within a deadline.
func receive(t *testing.T, s *events.Subscription, n int) []events.Event {
	t.Helper()
	var out []events.Event
	deadline := time.After(5 * time.Second)
	for len(out) < n {
		select {
		case ev, ok := <-s.C():
			require.True(t, ok, "subscription ended after %d of %d events", len(out), n)
			out = append(out, ev)
		case <-deadline:
			t.Fatalf("got %d of %d events", len(out), n)
		}
	}
	return out
}

func TestEventsHubIDsIncrease(t *testing.T) {
	start := time.Date(2026, 12, 6, 3, 0, 0, 0, time.UTC)
	h := events.NewHub(events.HubOptions{Now: func() time.Time { return start }})
	assert.Equal(t, uint64(start.UnixMicro()), h.LastID(), "the first id follows the start time")
	evs := publishN(t, h, 5)
	for i, ev := range evs {
		assert.Equal(t, uint64(start.UnixMicro())+uint64(i)+1, ev.ID)
		var sc events.StateChange
		require.NoError(t, json.Unmarshal(ev.Data, &sc))
	}
	assert.Equal(t, evs[4].ID, h.LastID())
}

func TestEventsHubResume(t *testing.T) {
	h := events.NewHub(events.HubOptions{History: 8})
	evs := publishN(t, h, 6)

	t.Run("after a kept event: the rest is replayed, then the new ones", func(t *testing.T) {
		s := h.Subscribe(evs[2].ID, true)
		defer s.Close()
		assert.False(t, s.Reset)
		assert.Equal(t, ids(evs[3:]), ids(s.Replay))
		assert.Equal(t, evs[5].ID, s.From)
		next := publishN(t, h, 2)
		assert.Equal(t, ids(next), ids(receive(t, s, 2)))
	})
	t.Run("at the newest: nothing to replay", func(t *testing.T) {
		s := h.Subscribe(h.LastID(), true)
		defer s.Close()
		assert.False(t, s.Reset)
		assert.Empty(t, s.Replay)
	})
	t.Run("without an id: new events only", func(t *testing.T) {
		s := h.Subscribe(0, false)
		defer s.Close()
		assert.False(t, s.Reset)
		assert.Empty(t, s.Replay)
		next := publishN(t, h, 1)
		assert.Equal(t, ids(next), ids(receive(t, s, 1)))
	})
}

func TestEventsHubResetWhenTooOld(t *testing.T) {
	h := events.NewHub(events.HubOptions{History: 4})
	evs := publishN(t, h, 10) // keeps evs[6:]
	for _, tc := range []struct {
		name   string
		lastID uint64
		reset  bool
		replay []events.Event
	}{
		{name: "the event before the oldest kept one", lastID: evs[5].ID, replay: evs[6:]},
		{name: "an event no longer kept", lastID: evs[4].ID, reset: true},
		{name: "the first event", lastID: evs[0].ID, reset: true},
		{name: "an id of an earlier run", lastID: 42, reset: true},
		{name: "an id this hub has not reached", lastID: evs[9].ID + 1, reset: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := h.Subscribe(tc.lastID, true)
			defer s.Close()
			assert.Equal(t, tc.reset, s.Reset)
			assert.Equal(t, ids(tc.replay), ids(s.Replay))
			assert.Equal(t, evs[9].ID, s.From)
		})
	}
	t.Run("an empty hub has nothing before its start", func(t *testing.T) {
		h := events.NewHub(events.HubOptions{})
		assert.False(t, h.Subscribe(h.LastID(), true).Reset)
		assert.True(t, h.Subscribe(h.LastID()-1, true).Reset)
	})
}

// TestEventsHubSlowClientDropped: a subscriber that reads nothing is
// dropped once its buffer is full, with the reason, while publishing goes
// on without waiting and the other subscribers get every event.
func TestEventsHubSlowClientDropped(t *testing.T) {
	h := events.NewHub(events.HubOptions{ClientBuffer: 4})
	slow := h.Subscribe(0, false)
	fast := h.Subscribe(0, false)
	var published, fastGot []events.Event
	deadline := time.Now().Add(5 * time.Second)
	for range 100 {
		// Each Publish returns at once although slow reads nothing; fast
		// reads each event as it comes.
		published = append(published, publishN(t, h, 1)...)
		fastGot = append(fastGot, receive(t, fast, 1)...)
		require.True(t, time.Now().Before(deadline), "publishing is slow")
	}
	assert.Equal(t, ids(published), ids(fastGot))
	assert.Empty(t, fast.Dropped())

	var slowGot []events.Event
	for ev := range slow.C() { // closed after its buffer
		slowGot = append(slowGot, ev)
	}
	assert.Equal(t, ids(published[:4]), ids(slowGot), "the slow client keeps what its buffer held")
	assert.Contains(t, slow.Dropped(), "too slow")

	fast.Close()
	fast.Close()
}

func TestEventsHubClose(t *testing.T) {
	h := events.NewHub(events.HubOptions{})
	s := h.Subscribe(0, false)
	h.Close()
	_, ok := <-s.C()
	assert.False(t, ok)
	assert.Empty(t, s.Dropped(), "closing is not dropping")
	_, err := h.Publish(events.TypeState, events.StateChange{})
	assert.Error(t, err)
	_, ok = <-h.Subscribe(0, false).C()
	assert.False(t, ok)
}

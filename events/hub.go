// Package events is the prober's stream of what happens, as it happens:
// phase changes of the pods, changes of the stored state, findings of the
// diagnosis raised and cleared, and Raft leadership changes. The Hub keeps
// the last events in a ring buffer and fans them out to subscribers, each
// with a bounded buffer, so that publishing never waits for a reader; the
// Watcher derives the events by comparing successive cluster views and
// stored documents. GET /events (package prober) serves a subscription as
// Server-Sent Events.
package events

import (
	"encoding/json"
	"fmt"
	"sync"
	"time"

	"github.com/rs/zerolog"
)

// DefaultHistory is how many events a Hub keeps for resuming subscribers.
const DefaultHistory = 1024

// DefaultClientBuffer is how many events a subscriber may fall behind
// before it is dropped.
const DefaultClientBuffer = 256

// Event is one thing that happened. IDs increase by one from event to
// event; the first one of a process follows its start time in microseconds
// since the epoch, so that an ID from an earlier run of the prober is never
// taken for one of this run.
type Event struct {
	ID   uint64
	Type string
	// Data is the event's JSON document, on one line.
	Data json.RawMessage
}

// HubOptions configures a Hub.
type HubOptions struct {
	// History is how many events are kept for resuming; DefaultHistory
	// when 0.
	History int
	// ClientBuffer is each subscriber's buffer; DefaultClientBuffer when 0.
	ClientBuffer int
	// Now is the clock the first ID is taken from; time.Now when nil.
	Now    func() time.Time
	Logger zerolog.Logger
}

// Hub keeps the last events and hands them to subscribers. Publish never
// blocks: a subscriber whose buffer is full is dropped, with the reason.
type Hub struct {
	log    zerolog.Logger
	buffer int

	mu     sync.Mutex
	ring   []Event // circular; ring[(start+i)%len(ring)] for i < n
	start  int
	n      int
	last   uint64 // ID of the newest event; the base before the first
	subs   map[*Subscription]struct{}
	closed bool
}

// NewHub returns an empty hub.
func NewHub(o HubOptions) *Hub {
	if o.History <= 0 {
		o.History = DefaultHistory
	}
	if o.ClientBuffer <= 0 {
		o.ClientBuffer = DefaultClientBuffer
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Hub{
		log:    o.Logger,
		buffer: o.ClientBuffer,
		ring:   make([]Event, o.History),
		last:   uint64(max(0, o.Now().UnixMicro())),
		subs:   map[*Subscription]struct{}{},
	}
}

// LastID returns the ID of the newest event: where a subscriber that has
// seen everything so far resumes from.
func (h *Hub) LastID() uint64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.last
}

// Publish records an event of type typ with data (encoded as JSON) and
// hands it to every subscriber without waiting: one whose buffer is full
// is dropped. It returns the event; an event that cannot be encoded is
// logged and not published.
func (h *Hub) Publish(typ string, data any) (Event, error) {
	raw, err := json.Marshal(data)
	if err != nil {
		h.log.Error().Err(err).Str("type", typ).Msg("event not published")
		return Event{}, fmt.Errorf("event %s: %w", typ, err)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return Event{}, fmt.Errorf("event %s: hub is closed", typ)
	}
	h.last++
	ev := Event{ID: h.last, Type: typ, Data: raw}
	if h.n < len(h.ring) {
		h.ring[(h.start+h.n)%len(h.ring)] = ev
		h.n++
	} else {
		h.ring[h.start] = ev
		h.start = (h.start + 1) % len(h.ring)
	}
	for s := range h.subs {
		select {
		case s.c <- ev:
		default:
			s.reason = fmt.Sprintf("too slow: %d events behind, the client buffer is full", len(s.c))
			h.drop(s)
		}
	}
	return ev, nil
}

// drop ends s; the caller holds h.mu.
func (h *Hub) drop(s *Subscription) {
	if _, ok := h.subs[s]; !ok {
		return
	}
	delete(h.subs, s)
	close(s.c)
}

// Subscription is one reader of a Hub: the events it missed (Replay), then
// the new ones on C.
type Subscription struct {
	// From is the ID of the newest event when it subscribed: Replay ends
	// with it, and C starts after it.
	From uint64
	// Replay holds the kept events after the ID the subscriber resumed
	// from, oldest first.
	Replay []Event
	// Reset is true when the ID resumed from is no longer kept (or is not
	// one of this hub's): events were lost, and the subscriber should load
	// the whole state again. Replay is empty then.
	Reset bool

	hub    *Hub
	c      chan Event
	reason string // why it was dropped; set under hub.mu before c is closed
}

// Subscribe starts a subscription. With resume, it replays the kept events
// after lastID, or says Reset when events after lastID are no longer kept;
// without, it starts with the next event. A closed hub gives a
// subscription whose C is closed.
func (h *Hub) Subscribe(lastID uint64, resume bool) *Subscription {
	h.mu.Lock()
	defer h.mu.Unlock()
	s := &Subscription{From: h.last, hub: h, c: make(chan Event, h.buffer)}
	if resume && lastID != h.last {
		oldest := h.last - uint64(h.n) + 1 // the first kept event's ID
		if lastID+1 < oldest || lastID > h.last {
			s.Reset = true
		} else {
			for i := int(lastID + 1 - oldest); i < h.n; i++ {
				s.Replay = append(s.Replay, h.ring[(h.start+i)%len(h.ring)])
			}
		}
	}
	if h.closed {
		close(s.c)
		return s
	}
	h.subs[s] = struct{}{}
	return s
}

// C receives the events after From. It is closed when the subscription is
// dropped (see Dropped), closed, or the hub closes.
func (s *Subscription) C() <-chan Event { return s.c }

// Dropped says why the hub dropped the subscription, "" when it did not.
// Read it once C is closed.
func (s *Subscription) Dropped() string {
	s.hub.mu.Lock()
	defer s.hub.mu.Unlock()
	return s.reason
}

// Close ends the subscription; it is safe to call more than once.
func (s *Subscription) Close() {
	s.hub.mu.Lock()
	defer s.hub.mu.Unlock()
	s.hub.drop(s)
}

// Close ends every subscription and refuses new events.
func (h *Hub) Close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.closed = true
	for s := range h.subs {
		h.drop(s)
	}
}

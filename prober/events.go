package prober

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/prober-dev/prober/events"
	"github.com/prober-dev/prober/maintenance"
)

// DefaultHeartbeat is how often GET /events sends a comment line while no
// event comes, so that proxies and clients see the stream is alive.
const DefaultHeartbeat = 15 * time.Second

// eventsWriteTimeout bounds one write to an event stream: a client that
// reads nothing for that long is gone.
const eventsWriteTimeout = 10 * time.Second

// eventsRetry is the reconnection delay the stream asks its clients for,
// in milliseconds.
const eventsRetry = 2000

const eventsPath = "/events"

func (s *Server) registerEventRoutes() {
	s.route(eventsPath, methods{http.MethodGet: s.handleEvents}, s.authenticate)
}

// lastEventID reads where the client resumes from: the Last-Event-ID
// header, else the lastEventId query parameter (EventSource clients
// cannot set headers on a first connection). ok is false when neither is
// given.
func lastEventID(r *http.Request) (id uint64, ok bool, err error) {
	v := r.Header.Get("Last-Event-ID")
	name := "Last-Event-ID header"
	if v == "" {
		v = r.URL.Query().Get("lastEventId")
		name = "lastEventId"
	}
	if v = strings.TrimSpace(v); v == "" {
		return 0, false, nil
	}
	id, err = strconv.ParseUint(v, 10, 64)
	if err != nil {
		return 0, false, maintenance.Errorf(maintenance.EInvalid, "%s %q: want an event id (a decimal number)", name, v)
	}
	return id, true, nil
}

// handleEvents handles GET /events: the events of the hub as Server-Sent
// Events. It starts with the events after Last-Event-ID (or a reset event
// when they are no longer kept), then streams new ones, with a heartbeat
// comment while nothing happens. A client too slow to keep up gets a last
// dropped event; the stream ends when the server closes.
func (s *Server) handleEvents(w http.ResponseWriter, r *http.Request) {
	if s.events == nil {
		s.writeError(w, r, maintenance.Errorf(maintenance.EUnavailable, "no event stream is configured"))
		return
	}
	lastID, resume, err := lastEventID(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	h.Set("X-Content-Type-Options", "nosniff")
	if r.Method == http.MethodHead {
		w.WriteHeader(http.StatusOK)
		return
	}
	sub := s.events.Subscribe(lastID, resume)
	defer sub.Close()

	rc := http.NewResponseController(w)
	// The server's read timeout would end the request's context while the
	// stream goes on: a stream reads nothing more.
	_ = rc.SetReadDeadline(time.Time{})
	var buf bytes.Buffer
	send := func() bool {
		_ = rc.SetWriteDeadline(time.Now().Add(eventsWriteTimeout))
		_, err := w.Write(buf.Bytes())
		buf.Reset()
		if err == nil {
			err = rc.Flush()
		}
		if err != nil {
			s.log.Debug().Err(err).Msg("event stream ended by the client")
			return false
		}
		return true
	}

	fmt.Fprintf(&buf, "retry: %d\n", eventsRetry)
	switch {
	case sub.Reset:
		writeEvent(&buf, events.Event{ID: sub.From, Type: events.TypeReset,
			Data: eventData(events.Reset{Reason: fmt.Sprintf("event %d is no longer kept: reload the whole state", lastID)})})
	case len(sub.Replay) == 0:
		// An id without data dispatches nothing, but sets where the
		// client resumes from.
		fmt.Fprintf(&buf, ": stream\nid: %d\n\n", sub.From)
	}
	for _, ev := range sub.Replay {
		writeEvent(&buf, ev)
	}
	if !send() {
		return
	}

	heartbeat := time.NewTicker(s.heartbeat)
	defer heartbeat.Stop()
	for {
		select {
		case <-r.Context().Done():
			return
		case <-s.closing:
			return
		case <-heartbeat.C:
			// A stream outlives any cached verdict: the caller's token and
			// permission are looked at again (from the caches, mostly),
			// and a revoked caller's stream ends.
			if ok, why := s.stillAuthorized(r); !ok {
				s.log.Info().Str("remote", r.RemoteAddr).Str("reason", why).Msg("event stream ended: access revoked")
				writeEvent(&buf, events.Event{Type: events.TypeDropped, Data: eventData(events.Dropped{Reason: "access revoked: " + why})})
				send()
				return
			}
			buf.WriteString(": heartbeat\n\n")
		case ev, ok := <-sub.C():
			if !ok {
				if reason := sub.Dropped(); reason != "" {
					s.log.Info().Str("remote", r.RemoteAddr).Str("reason", reason).Msg("event stream dropped")
					// No id: the client resumes after the last event it got.
					writeEvent(&buf, events.Event{Type: events.TypeDropped, Data: eventData(events.Dropped{Reason: reason})})
					send()
				}
				return
			}
			writeEvent(&buf, ev)
		}
		if !send() {
			return
		}
	}
}

// writeEvent writes ev in the text/event-stream format; an ID of 0 is left
// out.
func writeEvent(buf *bytes.Buffer, ev events.Event) {
	if ev.ID != 0 {
		fmt.Fprintf(buf, "id: %d\n", ev.ID)
	}
	fmt.Fprintf(buf, "event: %s\n", ev.Type)
	for line := range bytes.SplitSeq(ev.Data, []byte("\n")) {
		fmt.Fprintf(buf, "data: %s\n", line)
	}
	buf.WriteByte('\n')
}

// eventData encodes the data of an event the server makes itself: a
// struct of strings, which always encodes.
func eventData(v any) json.RawMessage {
	b, _ := json.Marshal(v)
	return b
}

package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/prober-dev/prober/events"
)

// eventResync is how often a command that follows the event stream reads
// the state again although no event came: the Raft numbers it shows
// (lag) change without an event, and a lost event costs at most this.
const eventResync = 2 * time.Second

// watchPoll is how often "prober status --watch" polls a server without
// an event stream.
const watchPoll = 2 * time.Second

// events opens GET /events and returns the stream's frames on a channel,
// closed when the stream ends (or ctx does). An error means no stream: an
// older prober without /events answers 404, and the caller polls instead.
func (c *client) events(ctx context.Context) (<-chan events.Frame, error) {
	u := *c.base
	u.Path += "/events"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, fmt.Errorf("GET /events: %w", err)
	}
	req.Header.Set("Accept", "text/event-stream")
	req.Header.Set("User-Agent", "prober-cli")
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	// No overall timeout: the stream stays open for as long as the
	// command follows it.
	resp, err := (&http.Client{Transport: c.http.Transport}).Do(req)
	if err != nil {
		return nil, fmt.Errorf("GET /events: %w", err)
	}
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		defer resp.Body.Close()
		return nil, decodeAPIError(resp.StatusCode, nil)
	}
	frames := make(chan events.Frame)
	go func() {
		defer close(frames)
		defer resp.Body.Close()
		rd := events.NewReader(resp.Body)
		for {
			f, err := rd.Next()
			if err != nil {
				return
			}
			select {
			case frames <- f:
			case <-ctx.Done():
				return
			}
		}
	}()
	return frames, nil
}

// wake is a reason to read the state again.
type wake struct {
	// what describes the event; "" for a resync or a poll.
	what string
	// poll is set when there is no event stream to follow.
	poll bool
}

// changes tells a command when to read the state again: at once (to catch
// up with what happened before the stream was open), after an event that
// concerns it (a phase change of one of pods, any event when pods is
// empty, a reset or a dropped stream), at least every eventResync, and
// every poll when the server has no event stream (or it ended). It stops
// when ctx ends.
func (x *cli) changes(ctx context.Context, pods []string, poll time.Duration) <-chan wake {
	out := make(chan wake, 1)
	frames, err := x.api.events(ctx)
	go func() {
		defer close(out)
		every := eventResync
		if err != nil {
			frames, every = nil, poll
		}
		tick := time.NewTicker(every)
		defer tick.Stop()
		send := func(what string) bool {
			select {
			case out <- wake{what: what, poll: frames == nil}:
			case <-ctx.Done():
				return false
			}
			return true
		}
		// The first read catches up with what happened before the stream
		// was open.
		if !send("") {
			return
		}
		for {
			select {
			case <-ctx.Done():
				return
			case f, ok := <-frames:
				if !ok {
					// The stream ended (the server restarts, say): poll.
					frames = nil
					tick.Reset(poll)
					continue
				}
				if what, ok := concerns(f, pods); ok && !send(what) {
					return
				}
			case <-tick.C:
				if !send("") {
					return
				}
			}
		}
	}()
	return out
}

// concerns says whether an event is one a command following pods reads
// the state again for, and describes it.
func concerns(f events.Frame, pods []string) (string, bool) {
	switch f.Type {
	case events.TypePhase:
		var pc events.PhaseChange
		if json.Unmarshal(f.Data, &pc) != nil {
			return "", false
		}
		if len(pods) > 0 && !slices.Contains(pods, pc.Pod) {
			return "", false
		}
		return fmt.Sprintf("%s %s%s", pc.Pod, pc.Phase, messageSuffix(pc.Message)), true
	case events.TypeLeader:
		var lc events.LeaderChange
		if len(pods) > 0 || json.Unmarshal(f.Data, &lc) != nil {
			return "", false
		}
		return fmt.Sprintf("%s leader %s -> %s", lc.Group, orNone(lc.OldLeader), orNone(lc.NewLeader)), true
	case events.TypeFinding:
		var fc events.FindingChange
		if len(pods) > 0 || json.Unmarshal(f.Data, &fc) != nil {
			return "", false
		}
		return fmt.Sprintf("finding %s: %s", fc.Change, fc.Finding.Summary), true
	case events.TypeState:
		// The entries (reason, who, expiry) show in the status and change
		// without a phase event when an entry is put again; a status
		// refreshed alone is news to no one.
		var sc events.StateChange
		if len(pods) > 0 || json.Unmarshal(f.Data, &sc) != nil ||
			!slices.ContainsFunc(sc.Changed, func(s string) bool { return s == events.SectionPods || s == events.SectionDCs }) {
			return "", false
		}
		return "entries changed (resourceVersion " + sc.ResourceVersion + ")", true
	case events.TypeReset, events.TypeDropped:
		return f.Type, true
	}
	return "", false
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

// watchStatus prints the status, then again after every change the event
// stream reports (each time under a line with the time and what changed;
// with --json, one document after the other), until ctx ends: the way to
// leave it is Ctrl-C. A server without an event stream is polled.
func (x *cli) watchStatus(ctx context.Context, asJSON bool) error {
	changes := x.changes(ctx, nil, watchPoll)
	first := true
	for {
		var what []string
		poll := false
		take := func(c wake) {
			poll = c.poll
			if c.what != "" {
				what = append(what, c.what)
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case c, ok := <-changes:
			if !ok {
				return nil
			}
			take(c)
		}
		// Changes come in bursts (a pod's phases, the leaderships it hands
		// off): show them at once.
	burst:
		for {
			select {
			case c, ok := <-changes:
				if !ok {
					break burst
				}
				take(c)
			default:
				break burst
			}
		}
		if !first && len(what) == 0 && !poll {
			// A resync: the events say when something changed.
			continue
		}
		if !first && !asJSON {
			fmt.Fprintf(x.out, "\n--- %s %s\n", x.now().Format(time.TimeOnly), strings.Join(what, "; "))
		}
		first = false
		if err := x.status(ctx, asJSON); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			fmt.Fprintf(x.errOut, "prober: %v\n", err)
		}
	}
}

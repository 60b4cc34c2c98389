package prober

import (
	"context"
	"net/http"
	"time"

	"github.com/prober-dev/prober/events"
	"github.com/prober-dev/prober/maintenance"
)

// DryRunResponse is the answer to a PUT with dryRun=true: the verdict of
// the safety rule, nothing written.
type DryRunResponse struct {
	DryRun bool `json:"dryRun"`
	Safe   bool `json:"safe"`
	// Changed tells whether the request would change the stored state.
	Changed    bool                    `json:"changed"`
	Violations []maintenance.Violation `json:"violations"`
	// Warnings are the ephemeral consumers the pods would take down with
	// them: no reason to refuse, their clients make new ones.
	Warnings []maintenance.Violation `json:"warnings,omitempty"`
	Pods     []maintenance.PodView   `json:"pods"`
}

func dryRunResponse(res maintenance.Result) DryRunResponse {
	out := DryRunResponse{
		DryRun:     true,
		Safe:       len(res.Violations) == 0,
		Changed:    res.Changed,
		Violations: res.Violations,
		Warnings:   res.Warnings,
		Pods:       res.Pods,
	}
	if out.Violations == nil {
		out.Violations = []maintenance.Violation{}
	}
	if out.Pods == nil {
		out.Pods = []maintenance.PodView{}
	}
	return out
}

// settle waits up to wait for every pod to reach g and returns the last
// views seen and whether they reached it. It asks fetch again at each
// phase or stored-state event and every waitPoll (events may be off, or
// drop a reader). It gives up early when the request ends or the
// server closes. A failed poll keeps the views it had: the answer is then
// 202 and the client asks again.
func (s *Server) settle(ctx context.Context, pods []maintenance.PodView, wait time.Duration,
	fetch func(context.Context) ([]maintenance.PodView, error), g maintenance.Goal,
) ([]maintenance.PodView, bool) {
	if g.All(pods) || wait <= 0 {
		return pods, g.All(pods)
	}
	deadline := time.NewTimer(wait)
	defer deadline.Stop()
	tick := time.NewTicker(s.waitPoll)
	defer tick.Stop()
	var changed <-chan events.Event
	if s.events != nil {
		sub := s.events.Subscribe(0, false)
		defer sub.Close()
		changed = sub.C()
	}
	for {
		select {
		case <-ctx.Done():
			return pods, false
		case <-s.closing:
			return pods, false
		case <-deadline.C:
			return pods, false
		case ev, ok := <-changed:
			if !ok {
				changed = nil
				continue
			}
			if ev.Type != events.TypePhase && ev.Type != events.TypeState {
				continue
			}
		case <-tick.C:
		}
		next, err := fetch(ctx)
		if err != nil {
			s.log.Debug().Err(err).Msg("poll phase")
			continue
		}
		pods = next
		if g.All(pods) {
			return pods, true
		}
	}
}

// serveEnter is the body of PUT /pods/{pod} and /dcs/{dc}: parse the query
// and the request, enter, and answer a dry run at once, anything else
// through answer.
func (s *Server) serveEnter(w http.ResponseWriter, r *http.Request,
	enter func(context.Context, maintenance.Request) (maintenance.Result, error),
	answer func(maintenance.Result, changeQuery),
) {
	q, err := parseChangeQuery(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	req, err := parseEnterRequest(w, r, q)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	res, err := enter(r.Context(), req)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if res.DryRun {
		s.writeJSON(w, r, http.StatusOK, dryRunResponse(res))
		return
	}
	answer(res, q)
}

// serveExit is the body of DELETE /pods/{pod} and /dcs/{dc}: parse the
// query (a dry run is refused; restoreLeaders=false gives no leadership
// back), exit as the caller, answer through answer.
func (s *Server) serveExit(w http.ResponseWriter, r *http.Request,
	exit func(ctx context.Context, x maintenance.Exit) (maintenance.Result, error),
	answer func(maintenance.Result, changeQuery),
) {
	q, err := parseChangeQuery(r, "restoreLeaders")
	if err == nil {
		err = noDryRun(q)
	}
	restore, given, berr := parseBool(r, "restoreLeaders")
	if err == nil {
		err = berr
	}
	if err == nil {
		err = noBody(w, r, "its options are query parameters (?restoreLeaders=false, ?wait=30s)")
	}
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	res, err := exit(r.Context(), maintenance.Exit{RequestedBy: requestedBy(r), KeepLeadersAway: given && !restore})
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	answer(res, q)
}

// answerChange answers a PUT or DELETE: 200 when the pods are at the goal,
// else 202 with Location pointing where to follow the phase.
func (s *Server) answerChange(w http.ResponseWriter, r *http.Request, location string, done bool, body any) {
	status := http.StatusOK
	if !done {
		w.Header().Set("Location", location)
		status = http.StatusAccepted
	}
	s.writeJSON(w, r, status, body)
}

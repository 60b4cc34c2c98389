package prober

import (
	"context"
	"net/http"
	"time"

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
	Pods       []maintenance.PodView   `json:"pods"`
}

func dryRunResponse(res maintenance.Result) DryRunResponse {
	out := DryRunResponse{
		DryRun:     true,
		Safe:       len(res.Violations) == 0,
		Changed:    res.Changed,
		Violations: res.Violations,
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

// settle waits up to wait for every pod to reach g, polling fetch, and
// returns the last views seen and whether they reached it. It gives up
// early when the request ends or the server closes. A failed poll keeps
// the views it had: the answer is then 202 and the client asks again.
func (s *Server) settle(ctx context.Context, pods []maintenance.PodView, wait time.Duration,
	fetch func(context.Context) ([]maintenance.PodView, error), g maintenance.Goal,
) ([]maintenance.PodView, bool) {
	if g.All(pods) || wait <= 0 {
		return pods, g.All(pods)
	}
	deadline := time.NewTimer(wait)
	defer deadline.Stop()
	tick := time.NewTicker(pollInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return pods, false
		case <-s.closing:
			return pods, false
		case <-deadline.C:
			return pods, false
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

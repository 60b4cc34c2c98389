package prober

import (
	"context"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/prober-dev/prober/maintenance"
	"github.com/prober-dev/prober/natsraft"
)

// Probe paths. They stay open when authentication comes.
const (
	livezPath  = "/livez"
	readyzPath = "/readyz"
)

// readyTimeout bounds the cluster view a readiness check may wait for.
const readyTimeout = 3 * time.Second

// ProbeResponse is the answer of a probe that passes.
type ProbeResponse struct {
	Status string `json:"status"`
	// Pod is the pod asked about with ?pod=.
	Pod string `json:"pod,omitempty"`
	// Pods gives, without ?pod=, each pod's readiness: "ready" or why not.
	Pods map[string]string `json:"pods,omitempty"`
}

// Readiness answers /readyz for the pods a prober serves: the local pod of
// a sidecar, every node of the embedded default.
type Readiness interface {
	// Pods names the pods, sorted.
	Pods() []string
	// PodReady tells whether pod is ready and, when not, why.
	PodReady(ctx context.Context, pod string) (ready bool, why string)
}

// ViewReadiness is readiness read from the reconcilers and the cluster
// view: a pod is ready when its reconciler says so (not in maintenance, back
// from it) and the view counts its node caught up in every Raft group it
// belongs to (natsraft.View.NodeReady) — so a node that restarted on its
// own is not ready until it has caught up either.
type ViewReadiness struct {
	// Local maps each pod to its reconciler's Ready.
	Local map[string]func() (bool, string)
	// Views gives the cluster view.
	Views maintenance.ViewSource
}

// Pods implements Readiness.
func (r *ViewReadiness) Pods() []string {
	out := make([]string, 0, len(r.Local))
	for pod := range r.Local {
		out = append(out, pod)
	}
	slices.Sort(out)
	return out
}

// PodReady implements Readiness.
func (r *ViewReadiness) PodReady(ctx context.Context, pod string) (bool, string) {
	local, ok := r.Local[pod]
	if !ok {
		return false, "unknown pod " + pod
	}
	if ok, why := local(); !ok {
		if why == "" {
			why = "not ready"
		}
		return false, why
	}
	if r.Views == nil {
		return true, ""
	}
	ctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	v, err := latestOrFresh(ctx, r.Views, time.Now())
	if v == nil {
		return false, "no cluster view: " + errText(err)
	}
	ready, why := v.NodeReady(pod)
	if ready {
		return true, ""
	}
	// A probe that fails takes the pod out of its Service, so "not ready"
	// is confirmed on a view swept after this one: a sweep taken in the
	// middle of a hand-off, or one whose read of a server failed, must not
	// make a caught-up pod flap. "Ready" needs no second look.
	if sv, ok := r.Views.(natsraft.SinceViewer); ok {
		if fresh, _ := sv.ViewSince(ctx, v.At); fresh != nil && fresh != v {
			return fresh.NodeReady(pod)
		}
	}
	return false, why
}

func errText(err error) string {
	if err == nil {
		return "none yet"
	}
	return err.Error()
}

func (s *Server) registerProbeRoutes() {
	s.route(livezPath, methods{http.MethodGet: s.handleLivez})
	s.route(readyzPath, methods{http.MethodGet: s.handleReadyz})
}

// handleLivez handles GET /livez: the process serves HTTP. It stays 200
// through maintenance and catch-up.
func (s *Server) handleLivez(w http.ResponseWriter, r *http.Request) {
	s.writeJSON(w, r, http.StatusOK, ProbeResponse{Status: "ok"})
}

// handleReadyz handles GET /readyz[?pod=<name>]: 503 with the reason while
// the pod (without ?pod=, any pod) is not ready — in maintenance, or not
// caught up in its Raft groups.
func (s *Server) handleReadyz(w http.ResponseWriter, r *http.Request) {
	if s.readiness == nil {
		s.writeJSON(w, r, http.StatusOK, ProbeResponse{Status: "ready"})
		return
	}
	pods := s.readiness.Pods()
	if pod := r.URL.Query().Get("pod"); pod != "" {
		if !slices.Contains(pods, pod) {
			s.writeError(w, r, maintenance.Errorf(maintenance.ENotFound, "pod %s is not one this prober serves (%s)",
				pod, strings.Join(pods, ", ")))
			return
		}
		if ok, why := s.readiness.PodReady(r.Context(), pod); !ok {
			s.writeError(w, r, maintenance.Errorf(maintenance.EUnavailable, "%s is not ready: %s", pod, why))
			return
		}
		s.writeJSON(w, r, http.StatusOK, ProbeResponse{Status: "ready", Pod: pod})
		return
	}
	report := make(map[string]string, len(pods))
	var notReady []string
	for _, pod := range pods {
		ok, why := s.readiness.PodReady(r.Context(), pod)
		if ok {
			report[pod] = "ready"
			continue
		}
		report[pod] = why
		notReady = append(notReady, pod+": "+why)
	}
	if len(notReady) > 0 {
		e := maintenance.Errorf(maintenance.EUnavailable, "not ready: %s", strings.Join(notReady, "; "))
		e.Details = report
		s.writeError(w, r, e)
		return
	}
	s.writeJSON(w, r, http.StatusOK, ProbeResponse{Status: "ready", Pods: report})
}

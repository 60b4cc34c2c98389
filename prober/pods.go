package prober

import (
	"context"
	"net/http"
	"net/url"

	"github.com/gorilla/mux"

	"github.com/prober-dev/prober/maintenance"
)

// PodChange is the answer to PUT and DELETE /pods/{pod}: the pod, and what
// the change did.
type PodChange struct {
	maintenance.PodView
	Changed bool `json:"changed"`
	// Forced and Violations tell which groups force overrode.
	Forced     bool                    `json:"forced,omitempty"`
	Violations []maintenance.Violation `json:"violations,omitempty"`
	// Warnings are the ephemeral consumers that go down with the pods.
	Warnings []maintenance.Violation `json:"warnings,omitempty"`
}

// PodList is the answer to GET /pods: every pod of the cluster view.
type PodList struct {
	Pods []maintenance.PodView `json:"pods"`
}

func (s *Server) registerPodRoutes() {
	s.route("/pods", methods{http.MethodGet: s.handleListPods}, s.authenticate)
	s.route("/pods/{pod}", methods{
		http.MethodGet:    s.handleGetPod,
		http.MethodPut:    s.handlePutPod,
		http.MethodDelete: s.handleDeletePod,
	}, s.authenticate)
}

// handleListPods handles GET /pods: the view of every pod, by name, as
// GET /pods/{pod} shows each (the status page loads them in one request).
func (s *Server) handleListPods(w http.ResponseWriter, r *http.Request) {
	pods, err := s.svc.Pods(r.Context())
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	s.writeJSON(w, r, http.StatusOK, PodList{Pods: nonNil(pods)})
}

// handleGetPod handles GET /pods/{pod}.
func (s *Server) handleGetPod(w http.ResponseWriter, r *http.Request) {
	pv, err := s.svc.Pod(r.Context(), mux.Vars(r)["pod"])
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	s.writeJSON(w, r, http.StatusOK, pv)
}

// handlePutPod handles PUT /pods/{pod}: maintenance for one pod.
func (s *Server) handlePutPod(w http.ResponseWriter, r *http.Request) {
	pod := mux.Vars(r)["pod"]
	s.serveEnter(w, r, func(ctx context.Context, req maintenance.Request) (maintenance.Result, error) {
		return s.svc.EnterPod(ctx, pod, req)
	}, func(res maintenance.Result, q changeQuery) {
		s.answerPod(w, r, pod, res, q, maintenance.Goal{Enter: true})
	})
}

// handleDeletePod handles DELETE /pods/{pod}: bring one pod back.
func (s *Server) handleDeletePod(w http.ResponseWriter, r *http.Request) {
	pod := mux.Vars(r)["pod"]
	s.serveExit(w, r, func(ctx context.Context, x maintenance.Exit) (maintenance.Result, error) {
		return s.svc.ExitPodWith(ctx, pod, x)
	}, func(res maintenance.Result, q changeQuery) {
		s.answerPod(w, r, pod, res, q, maintenance.Goal{})
	})
}

func (s *Server) answerPod(w http.ResponseWriter, r *http.Request, pod string, res maintenance.Result, q changeQuery, g maintenance.Goal) {
	pods, done := s.settle(r.Context(), res.Pods, q.wait, func(ctx context.Context) ([]maintenance.PodView, error) {
		pv, err := s.svc.Pod(ctx, pod)
		return []maintenance.PodView{pv}, err
	}, g)
	body := PodChange{Changed: res.Changed, Forced: res.Forced, Violations: res.Violations, Warnings: res.Warnings}
	if len(pods) > 0 {
		body.PodView = pods[0]
	}
	s.answerChange(w, r, "/pods/"+url.PathEscape(pod), done, body)
}

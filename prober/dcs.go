package prober

import (
	"context"
	"net/http"
	"net/url"

	"github.com/gorilla/mux"

	"github.com/prober-dev/prober/maintenance"
)

// DCView is the answer to GET /dcs/{dc}: every pod of the dc.
type DCView struct {
	DC   string                `json:"dc"`
	Pods []maintenance.PodView `json:"pods"`
}

// DCChange is the answer to PUT and DELETE /dcs/{dc}.
type DCChange struct {
	DC      string                `json:"dc"`
	Pods    []maintenance.PodView `json:"pods"`
	Changed bool                  `json:"changed"`
	// Forced and Violations tell which groups force overrode.
	Forced     bool                    `json:"forced,omitempty"`
	Violations []maintenance.Violation `json:"violations,omitempty"`
	// Warnings are the ephemeral consumers that go down with the pods.
	Warnings []maintenance.Violation `json:"warnings,omitempty"`
}

func (s *Server) registerDCRoutes() {
	s.route("/dcs/{dc}", methods{
		http.MethodGet:    s.handleGetDC,
		http.MethodPut:    s.handlePutDC,
		http.MethodDelete: s.handleDeleteDC,
	}, s.authenticate)
}

// handleGetDC handles GET /dcs/{dc}.
func (s *Server) handleGetDC(w http.ResponseWriter, r *http.Request) {
	dc := mux.Vars(r)["dc"]
	pods, err := s.svc.DC(r.Context(), dc)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	s.writeJSON(w, r, http.StatusOK, DCView{DC: dc, Pods: nonNil(pods)})
}

// handlePutDC handles PUT /dcs/{dc}: maintenance for every pod of a dc,
// with one safety check over the whole set.
func (s *Server) handlePutDC(w http.ResponseWriter, r *http.Request) {
	dc := mux.Vars(r)["dc"]
	s.serveEnter(w, r, func(ctx context.Context, req maintenance.Request) (maintenance.Result, error) {
		return s.svc.EnterDC(ctx, dc, req)
	}, func(res maintenance.Result, q changeQuery) {
		s.answerDC(w, r, dc, res, q, maintenance.Goal{Enter: true, DC: true})
	})
}

// handleDeleteDC handles DELETE /dcs/{dc}: bring a dc back.
func (s *Server) handleDeleteDC(w http.ResponseWriter, r *http.Request) {
	dc := mux.Vars(r)["dc"]
	s.serveExit(w, r, func(ctx context.Context, x maintenance.Exit) (maintenance.Result, error) {
		return s.svc.ExitDCWith(ctx, dc, x)
	}, func(res maintenance.Result, q changeQuery) {
		s.answerDC(w, r, dc, res, q, maintenance.Goal{DC: true})
	})
}

func (s *Server) answerDC(w http.ResponseWriter, r *http.Request, dc string, res maintenance.Result, q changeQuery, g maintenance.Goal) {
	pods, done := s.settle(r.Context(), res.Pods, q.wait, func(ctx context.Context) ([]maintenance.PodView, error) {
		return s.svc.DC(ctx, dc)
	}, g)
	s.answerChange(w, r, "/dcs/"+url.PathEscape(dc), done, DCChange{
		DC: dc, Pods: nonNil(pods), Changed: res.Changed, Forced: res.Forced, Violations: res.Violations, Warnings: res.Warnings,
	})
}

func nonNil(pods []maintenance.PodView) []maintenance.PodView {
	if pods == nil {
		return []maintenance.PodView{}
	}
	return pods
}

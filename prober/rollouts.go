package prober

import (
	"bytes"
	"net/http"
	"net/url"

	"github.com/gorilla/mux"

	"github.com/prober-dev/prober/maintenance"
)

// RolloutList is the answer to GET /rollouts.
type RolloutList struct {
	Rollouts []maintenance.RolloutView `json:"rollouts"`
}

func (s *Server) registerRolloutRoutes() {
	s.route("/rollouts", methods{
		http.MethodGet: s.handleListRollouts,
	}, s.authenticate)
	s.route("/rollouts/{name}", methods{
		http.MethodGet:    s.handleGetRollout,
		http.MethodPut:    s.handlePutRollout,
		http.MethodDelete: s.handleDeleteRollout,
	}, s.authenticate)
}

// handleListRollouts handles GET /rollouts: every stored rollout.
func (s *Server) handleListRollouts(w http.ResponseWriter, r *http.Request) {
	list, err := s.svc.Rollouts(r.Context())
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	s.writeJSON(w, r, http.StatusOK, RolloutList{Rollouts: list})
}

// handleGetRollout handles GET /rollouts/{name}: its state and each pod's
// progress.
func (s *Server) handleGetRollout(w http.ResponseWriter, r *http.Request) {
	v, err := s.svc.Rollout(r.Context(), mux.Vars(r)["name"])
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	s.writeJSON(w, r, http.StatusOK, v)
}

// handlePutRollout handles PUT /rollouts/{name}: start a rolling
// maintenance. 201 with Location when it starts, 200 when the same one
// already runs (or is done).
func (s *Server) handlePutRollout(w http.ResponseWriter, r *http.Request) {
	name := mux.Vars(r)["name"]
	if err := knownParams(r); err != nil {
		s.writeError(w, r, err)
		return
	}
	raw, err := readBody(w, r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	var spec maintenance.RolloutSpec
	if len(bytes.TrimSpace(raw)) > 0 {
		if err := maintenance.DecodeStrict(raw, &spec); err != nil {
			s.writeError(w, r, maintenance.Errorf(maintenance.EInvalid, "invalid request body: %v", err))
			return
		}
	}
	ch, err := s.svc.StartRollout(r.Context(), name, spec, requestedBy(r))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	status := http.StatusOK
	if ch.Created {
		status = http.StatusCreated
		w.Header().Set("Location", "/rollouts/"+url.PathEscape(name))
	}
	s.writeJSON(w, r, status, ch.Rollout)
}

// handleDeleteRollout handles DELETE /rollouts/{name}: stop a rollout (202
// while the pod having its turn comes back), or delete a finished one's
// record (200).
func (s *Server) handleDeleteRollout(w http.ResponseWriter, r *http.Request) {
	name := mux.Vars(r)["name"]
	err := knownParams(r)
	if err == nil {
		err = noBody(w, r, "it stops the rollout, or deletes a finished one's record")
	}
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	v, err := s.svc.StopRollout(r.Context(), name, requestedBy(r))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	s.answerChange(w, r, "/rollouts/"+url.PathEscape(name), v.State.Finished(), v)
}

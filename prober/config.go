package prober

import (
	"net/http"
)

func (s *Server) registerConfigRoutes() {
	s.route("/config", methods{
		http.MethodGet: s.handleGetConfig,
		http.MethodPut: s.handlePutConfig,
	}, s.authenticate)
}

// handleGetConfig handles GET /config: the whole stored document with its
// resourceVersion.
func (s *Server) handleGetConfig(w http.ResponseWriter, r *http.Request) {
	doc, err := s.svc.Config(r.Context())
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	s.writeJSON(w, r, http.StatusOK, doc)
}

// handlePutConfig handles the bare PUT /config, which older clients send to
// read the configuration: it answers as GET does. A body is refused, since
// the state changes only through /pods and /dcs.
func (s *Server) handlePutConfig(w http.ResponseWriter, r *http.Request) {
	if err := noBody(w, r, "change the state through /pods/{pod} and /dcs/{dc}"); err != nil {
		s.writeError(w, r, err)
		return
	}
	s.handleGetConfig(w, r)
}

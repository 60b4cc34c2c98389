package prober

import (
	"bytes"
	"net/http"

	"github.com/prober-dev/prober/maintenance"
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
	raw, err := readBody(w, r)
	if err == nil && len(bytes.TrimSpace(raw)) > 0 {
		err = maintenance.Errorf(maintenance.EInvalid,
			"PUT /config takes no body: change the state through /pods/{pod} and /dcs/{dc}")
	}
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	s.handleGetConfig(w, r)
}

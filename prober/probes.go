package prober

import (
	"net/http"

	"github.com/prober-dev/prober/maintenance"
)

// Probe paths. They stay open when authentication comes.
const (
	livezPath  = "/livez"
	readyzPath = "/readyz"
)

// ProbeResponse is the answer of a probe that passes.
type ProbeResponse struct {
	Status string `json:"status"`
}

func (s *Server) registerProbeRoutes() {
	s.route(livezPath, methods{http.MethodGet: s.handleLivez})
	s.route(readyzPath, methods{http.MethodGet: s.handleReadyz})
}

// handleLivez handles GET /livez: the process serves HTTP.
func (s *Server) handleLivez(w http.ResponseWriter, r *http.Request) {
	s.writeJSON(w, r, http.StatusOK, ProbeResponse{Status: "ok"})
}

// handleReadyz handles GET /readyz: 503 with the reason while the local node
// is not ready (in maintenance or catching up).
func (s *Server) handleReadyz(w http.ResponseWriter, r *http.Request) {
	if s.ready != nil {
		if ok, why := s.ready(); !ok {
			if why == "" {
				why = "not ready"
			}
			s.writeError(w, r, maintenance.Errorf(maintenance.EUnavailable, "%s", why))
			return
		}
	}
	s.writeJSON(w, r, http.StatusOK, ProbeResponse{Status: "ready"})
}

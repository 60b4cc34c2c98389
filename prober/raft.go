package prober

import (
	"context"
	"net/http"

	"github.com/prober-dev/prober/maintenance"
	"github.com/prober-dev/prober/natsraft"
)

// RaftResponse is the answer to GET /raft: the cluster view, its age, and
// the diagnosis — what is wrong, with evidence and remedy (see
// natsraft.Diagnose). Each node's routes make the route matrix.
type RaftResponse struct {
	*natsraft.View
	// AgeSeconds is how old the view is.
	AgeSeconds float64 `json:"ageSeconds"`
	// Findings lists the diagnosed problems, most severe first; empty when
	// the cluster is healthy.
	Findings []natsraft.Finding `json:"findings"`
}

func (s *Server) registerRaftRoutes() {
	s.route("/raft", methods{http.MethodGet: s.handleRaft}, s.authenticate)
}

// Raft builds the answer of GET /raft.
func (s *Server) Raft(ctx context.Context) (*RaftResponse, error) {
	if s.views == nil {
		return nil, maintenance.Errorf(maintenance.EUnavailable, "no cluster view is configured")
	}
	v, err := maintenance.ClusterView(ctx, s.views, s.log)
	if err != nil {
		return nil, err
	}
	now := s.now()
	findings := natsraft.Diagnose(v, natsraft.DiagnoseOptions{Now: now, Maintenance: outOfService(v, s.document(ctx), s.dcOf(), now)})
	if findings == nil {
		findings = []natsraft.Finding{}
	}
	return &RaftResponse{View: v, AgeSeconds: max(0, now.Sub(v.At).Seconds()), Findings: findings}, nil
}

// handleRaft handles GET /raft.
func (s *Server) handleRaft(w http.ResponseWriter, r *http.Request) {
	resp, err := s.Raft(r.Context())
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	s.writeJSON(w, r, http.StatusOK, resp)
}

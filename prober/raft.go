package prober

import (
	"context"
	"maps"
	"net/http"
	"slices"
	"time"

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
	// Draining names the pods draining: routed and serving, leading
	// nothing while their drain lasts.
	Draining []string `json:"draining"`
	// LeaderSkew is, per dc, most minus fewest leaderships of its pods
	// that can lead (see POST /balance).
	LeaderSkew []maintenance.DCSkew `json:"leaderSkew"`
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
	doc := s.document(ctx)
	findings := s.diagnose(v, doc, now)
	if findings == nil {
		findings = []natsraft.Finding{}
	}
	sv := s.serviceView(v)
	draining := slices.Sorted(maps.Keys(maintenance.Draining(sv, doc, now)))
	if draining == nil {
		draining = []string{}
	}
	return &RaftResponse{View: v, AgeSeconds: max(0, now.Sub(v.At).Seconds()), Findings: findings,
		Draining:   draining,
		LeaderSkew: maintenance.LeaderSkew(sv, doc, now)}, nil
}

// Diagnose returns the findings of v as GET /raft shows them: the pods out
// of service by doc at now are in maintenance, not lost. The event watcher
// compares them from one view to the next.
func (s *Server) Diagnose(v *natsraft.View, doc *maintenance.Document, now time.Time) []natsraft.Finding {
	return s.diagnose(v, doc, now)
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

package prober

import (
	"net/http"

	"github.com/prober-dev/prober/maintenance"
)

func (s *Server) registerBalanceRoutes() {
	s.route("/balance", methods{http.MethodPost: s.handleBalance}, s.authenticate)
}

// handleBalance handles POST /balance?dc=<dc>&to=<pod>&dryRun=true: even
// out the leaderships of the healthy pods of a dc (every pod without dc),
// one hand-off at a time — with to, only by moves to that pod (it takes its
// share) — and answer the moves and the skew before and after.
func (s *Server) handleBalance(w http.ResponseWriter, r *http.Request) {
	err := knownParams(r, "dc", "to", "dryRun")
	var dry bool
	if err == nil {
		dry, _, err = parseBool(r, "dryRun")
	}
	if err == nil {
		err = noBody(w, r, "its options are query parameters (?dc=, ?to=, ?dryRun=true)")
	}
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	q := r.URL.Query()
	if q.Has("dc") && q.Get("dc") == "" {
		s.writeError(w, r, maintenance.Errorf(maintenance.EInvalid, "invalid dc name: empty (leave dc out to balance every pod)"))
		return
	}
	if q.Has("to") && q.Get("to") == "" {
		s.writeError(w, r, maintenance.Errorf(maintenance.EInvalid, "invalid pod name in to: empty (leave to out to balance among all)"))
		return
	}
	res, err := s.svc.Balance(r.Context(), maintenance.BalanceRequest{DC: q.Get("dc"), To: q.Get("to"), DryRun: dry, RequestedBy: requestedBy(r)})
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	s.writeJSON(w, r, http.StatusOK, res)
}

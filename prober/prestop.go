package prober

import (
	"context"
	"net/http"
	"time"

	"github.com/prober-dev/prober/maintenance"
)

// preStopPath is the route the NATS container's preStop hook calls
// (`prober prestop`) from inside the pod.
const preStopPath = "/local/prestop"

// MaxPreStopTimeout caps the timeout query parameter of POST
// /local/prestop: no grace period of a pod is longer in practice, and a
// hook must never hold a pod's termination for ever.
const MaxPreStopTimeout = 5 * time.Minute

// PreStopper readies the local NATS node for its server's shutdown within
// timeout (see maintenance.PreStop); the sidecar provides it. It returns
// an error only when there is no local node to act on.
type PreStopper func(ctx context.Context, timeout time.Duration) (maintenance.PreStopReport, error)

func (s *Server) registerPreStopRoutes() {
	s.route(preStopPath, methods{http.MethodPost: s.handlePreStop}, s.loopbackOnly, s.authenticate)
}

// loopbackOnly answers 403 to any caller not on the loopback interface:
// the route acts on the pod's own NATS server, and only the pod itself
// (its preStop hook) has a reason to call it. A token does not open it to
// other pods; with AuthOptions.LoopbackNeedsToken a loopback caller needs
// one too (authenticate, after this).
func (s *Server) loopbackOnly(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !isLoopback(r.RemoteAddr) {
			s.log.Info().Str("path", r.URL.Path).Str("remote", r.RemoteAddr).Msg("forbidden: local route called from outside the pod")
			s.writeError(w, r, maintenance.Errorf(maintenance.EForbidden, "%s is served on the loopback interface only", r.URL.Path))
			return
		}
		next.ServeHTTP(w, r)
	})
}

// handlePreStop handles POST /local/prestop[?timeout=25s]: hand off every
// leadership of the local node, quiesce its JetStream and move its clients,
// within timeout (maintenance.DefaultPreStopTimeout by default, at most
// MaxPreStopTimeout), then answer 200 with what was done — also when a
// step failed (complete is false then, and errors says why): the server
// stops anyway, and the hook must let it. Nothing is stored. 404 when this
// prober has no local node (the embedded default).
func (s *Server) handlePreStop(w http.ResponseWriter, r *http.Request) {
	err := knownParams(r, "timeout")
	var timeout time.Duration
	if err == nil {
		timeout, err = durationParam(r, "timeout", maintenance.DefaultPreStopTimeout, MaxPreStopTimeout, false, "25s")
	}
	if err == nil {
		err = noBody(w, r, "its option is a query parameter (?timeout=25s)")
	}
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if s.preStop == nil {
		s.writeError(w, r, maintenance.Errorf(maintenance.ENotFound, "this prober has no local NATS server to stop (embedded mode)"))
		return
	}
	rep, err := s.preStop(r.Context(), timeout)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	s.writeJSON(w, r, http.StatusOK, rep)
}

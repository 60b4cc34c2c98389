package prober

import (
	"context"
	"errors"
	"net"
	"net/http"
	"time"

	"github.com/prober-dev/prober/maintenance"
	"github.com/prober-dev/prober/natsraft"
)

// reportPath is the route where a sidecar serves the report of its own
// NATS server to the other sidecars (see natsraft/report.go).
const reportPath = "/local/report"

// MaxReportAge caps the maxAge query parameter of GET /local/report.
const MaxReportAge = time.Minute

// LocalReporter returns the report of the local NATS server as JSON, read
// no more than maxAge ago (natsraft.Collector.LocalReport).
type LocalReporter interface {
	LocalReport(ctx context.Context, maxAge time.Duration) ([]byte, error)
}

// sharedStater is a LocalReporter that also counts how the peers' reports
// were got (natsraft.Collector.SharedStats), for /metrics.
type sharedStater interface {
	SharedStats() (shared, direct int64)
}

// registerReportRoutes serves GET /local/report to the NATS pods only
// (peersOnly), without a token: it carries a subset of what the NATS
// server's own monitoring port (/varz, /routez, /jsz, /raftz, /healthz)
// serves without authentication, and the install's NetworkPolicy admits
// that port from the NATS pods only, while the API's port is open to
// every caller with a token.
func (s *Server) registerReportRoutes() {
	s.route(reportPath, methods{http.MethodGet: s.handleReport}, s.peersOnly)
}

// peersOnly answers 403 to any caller that is neither on the loopback
// interface nor at the IP of one of the NATS pods (Options.PeerIP).
func (s *Server) peersOnly(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !isLoopback(r.RemoteAddr) {
			host, _, err := net.SplitHostPort(r.RemoteAddr)
			if err != nil || s.peerIP == nil || !s.peerIP(host) {
				// Not an attack as a rule: a pod just started whose IP
				// the pod watch has not brought yet, or a caller holding
				// a peer's old IP that now belongs to this pod. The
				// caller reads the server directly instead.
				s.log.Info().Str("path", r.URL.Path).Str("remote", r.RemoteAddr).Msg("local report refused: the caller is not among the NATS pods discovered")
				s.writeError(w, r, maintenance.Errorf(maintenance.EForbidden, "%s is served to the NATS pods only", r.URL.Path))
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

// handleReport handles GET /local/report?maxAge=1.5s: the report of the
// local server, read again unless the latest read started no more than
// maxAge before the request arrived (0, the default, always reads). 404
// when this prober has no local node (the embedded default), 503 while
// its local server is not among the pods yet.
func (s *Server) handleReport(w http.ResponseWriter, r *http.Request) {
	maxAge, err := durationParam(r, "maxAge", 0, MaxReportAge, true, "1.5s")
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if s.reports == nil {
		s.writeError(w, r, maintenance.Errorf(maintenance.ENotFound, "this prober has no local node to report on"))
		return
	}
	b, err := s.reports.LocalReport(r.Context(), maxAge)
	switch {
	case errors.Is(err, natsraft.ErrNoLocalNode):
		s.writeError(w, r, maintenance.Errorf(maintenance.EUnavailable, "the local node is not known yet"))
		return
	case err != nil:
		s.writeError(w, r, maintenance.Errorf(maintenance.EUnavailable, "local report: %v", err))
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(b)
}

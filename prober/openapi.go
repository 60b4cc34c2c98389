package prober

import (
	"bytes"
	_ "embed"
	"net/http"
)

// openAPIPath is where the API description is served. It stays open, as
// the probes do.
const openAPIPath = "/openapi.json"

// openAPIDocument is the OpenAPI 3.1 description of every route, parameter,
// body and error. It is written by hand; a test walks the router and checks
// that every route and method is in it, and validates live answers against
// its schemas.
//
//go:embed openapi.json
var openAPIDocument []byte

// OpenAPI returns the OpenAPI 3.1 description of the API (a JSON document),
// as GET /openapi.json serves it.
func OpenAPI() []byte { return bytes.Clone(openAPIDocument) }

func (s *Server) registerOpenAPIRoutes() {
	s.route(openAPIPath, methods{http.MethodGet: s.handleOpenAPI})
}

// handleOpenAPI handles GET /openapi.json.
func (s *Server) handleOpenAPI(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("Cache-Control", "no-cache")
	if r.Method == http.MethodHead {
		w.WriteHeader(http.StatusOK)
		return
	}
	if _, err := w.Write(openAPIDocument); err != nil {
		s.log.Debug().Err(err).Str("path", r.URL.Path).Msg("write response")
	}
}

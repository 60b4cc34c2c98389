package prober

import (
	"net/http"
	"testing"
)

// Handler returns the whole handler, middleware included, for the tests
// that serve requests without a listener.
func (s *Server) Handler() http.Handler { return s.handler }

// APIDoc is the OpenAPI document with its validator, for the external
// tests that walk a live application.
type APIDoc = apiDoc

// MustAPIDoc loads the served OpenAPI document.
func MustAPIDoc(t *testing.T) *APIDoc { return mustAPIDoc(t) }

// ValidateAnswer checks an answer against the document.
func (d *apiDoc) ValidateAnswer(method, path string, status int, header http.Header, body []byte) error {
	return d.validateAnswer(method, path, status, header, body)
}

// Find names the documented operation ("METHOD /path/{template}") that
// serves method and path.
func (d *apiDoc) Find(method, path string) (string, bool) {
	o, ok := d.find(method, path)
	return o.method + " " + o.path, ok
}

// Operations names every documented operation, as Find does.
func (d *apiDoc) Operations() []string {
	var out []string
	for _, o := range d.operations() {
		out = append(out, o.method+" "+o.path)
	}
	return out
}

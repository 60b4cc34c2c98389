package prober

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"net/http"
	"time"
)

// The status page: static files embedded in the binary, served without
// auth (they hold no data); the data the page loads comes from the API
// routes, with the API's auth.
const (
	pagePath      = "/"
	pageScriptURL = "/page/status.js"
	pageStyleURL  = "/page/status.css"
)

// PageCSP is the Content-Security-Policy of the status page and its
// assets: scripts and styles from the prober only, never inline, and
// requests only to the prober itself.
const PageCSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

//go:embed page/index.html page/status.js page/status.css
var pageFiles embed.FS

// pageAsset is one embedded file with its media type and entity tag.
type pageAsset struct {
	body        []byte
	contentType string
	etag        string
}

// mustAsset reads an embedded file; a missing one is a build mistake.
func mustAsset(name, contentType string) pageAsset {
	b, err := pageFiles.ReadFile(name)
	if err != nil {
		panic("prober: embedded page asset " + name + ": " + err.Error())
	}
	sum := sha256.Sum256(b)
	return pageAsset{body: b, contentType: contentType, etag: `"` + hex.EncodeToString(sum[:8]) + `"`}
}

func (s *Server) registerPageRoutes() {
	for path, a := range map[string]pageAsset{
		pagePath:      mustAsset("page/index.html", "text/html; charset=utf-8"),
		pageScriptURL: mustAsset("page/status.js", "text/javascript; charset=utf-8"),
		pageStyleURL:  mustAsset("page/status.css", "text/css; charset=utf-8"),
	} {
		s.route(path, methods{http.MethodGet: s.serveAsset(a)})
	}
}

// serveAsset handles GET / (the status page) and GET /page/status.js and
// /page/status.css (its script and style). The files change only with the
// binary: clients revalidate each time (no-cache) against the entity tag
// and mostly get a 304.
func (s *Server) serveAsset(a pageAsset) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Type", a.contentType)
		h.Set("Cache-Control", "no-cache")
		h.Set("ETag", a.etag)
		h.Set("Content-Security-Policy", PageCSP)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Referrer-Policy", "no-referrer")
		// The files are small: always whole (200 or 304), never a 206.
		r.Header.Del("Range")
		http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(a.body))
	}
}

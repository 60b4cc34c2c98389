package prober_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/prober-dev/prober/maintenance"
	"github.com/prober-dev/prober/prober"
)

// TestStatusPageAssets checks how the status page's files are served: open
// to callers that the API refuses, with their media type, revalidation, an
// entity tag and a strict Content-Security-Policy; and that the page loads
// nothing inline.
func TestStatusPageAssets(t *testing.T) {
	tokens, err := prober.ParseStaticTokens(strings.NewReader("page-token-0123456789abcdef,alice\n"))
	require.NoError(t, err)
	s := prober.NewServer(prober.Options{Addr: "127.0.0.1:0", Logger: zerolog.Nop(),
		Auth: prober.AuthOptions{Authenticator: tokens, Authorizer: prober.StaticAuthorizer{}}})

	serve := func(method, path string, header http.Header) *httptest.ResponseRecorder {
		t.Helper()
		req := httptest.NewRequest(method, path, nil)
		require.NotContains(t, req.RemoteAddr, "127.0.0.1", "the caller must not be trusted as loopback")
		for k, v := range header {
			req.Header[k] = v
		}
		rec := httptest.NewRecorder()
		s.Handler().ServeHTTP(rec, req)
		return rec
	}

	for _, tc := range []struct {
		path, contentType, contains string
	}{
		{path: "/", contentType: "text/html; charset=utf-8", contains: `<script src="/page/status.js" defer></script>`},
		{path: "/page/status.js", contentType: "text/javascript; charset=utf-8", contains: `fetch("/events"`},
		{path: "/page/status.css", contentType: "text/css; charset=utf-8", contains: "dialog"},
	} {
		t.Run(tc.path, func(t *testing.T) {
			rec := serve(http.MethodGet, tc.path, nil)
			require.Equal(t, http.StatusOK, rec.Code, "served without a token: %s", rec.Body)
			h := rec.Header()
			assert.Equal(t, tc.contentType, h.Get("Content-Type"))
			assert.Equal(t, "no-cache", h.Get("Cache-Control"))
			assert.Equal(t, prober.PageCSP, h.Get("Content-Security-Policy"))
			assert.Equal(t, "nosniff", h.Get("X-Content-Type-Options"))
			assert.Equal(t, "DENY", h.Get("X-Frame-Options"))
			assert.Equal(t, "no-referrer", h.Get("Referrer-Policy"))
			assert.Contains(t, rec.Body.String(), tc.contains)
			etag := h.Get("ETag")
			require.Regexp(t, `^"[0-9a-f]{16}"$`, etag)

			again := serve(http.MethodGet, tc.path, http.Header{"If-None-Match": {etag}})
			assert.Equal(t, http.StatusNotModified, again.Code)
			assert.Empty(t, again.Body.Bytes())

			ranged := serve(http.MethodGet, tc.path, http.Header{"Range": {"bytes=0-9"}})
			assert.Equal(t, http.StatusOK, ranged.Code, "always the whole file")
			assert.Equal(t, rec.Body.String(), ranged.Body.String())

			head := serve(http.MethodHead, tc.path, nil)
			assert.Equal(t, http.StatusOK, head.Code)
			assert.Equal(t, tc.contentType, head.Header().Get("Content-Type"))
			assert.Empty(t, head.Body.Bytes())

			post := serve(http.MethodPost, tc.path, nil)
			assert.Equal(t, http.StatusMethodNotAllowed, post.Code)
			assert.Equal(t, "GET, HEAD", post.Header().Get("Allow"))
		})
	}

	t.Run("the CSP forbids inline script and style", func(t *testing.T) {
		for _, directive := range []string{"default-src 'none'", "script-src 'self'", "style-src 'self'", "connect-src 'self'", "frame-ancestors 'none'"} {
			assert.Contains(t, prober.PageCSP, directive)
		}
		assert.NotContains(t, prober.PageCSP, "unsafe-inline")
		assert.NotContains(t, prober.PageCSP, "unsafe-eval")
		html := serve(http.MethodGet, "/", nil).Body.String()
		assert.NotRegexp(t, `<script>|<script [^>]*>[^<]`, html, "inline script")
		assert.NotContains(t, html, "<style")
		assert.NotContains(t, html, "style=")
		assert.NotRegexp(t, ` on[a-z]+=`, html, "inline event handler")
	})

	t.Run("the data still needs the token", func(t *testing.T) {
		for _, path := range []string{"/pods", "/config", "/raft", "/events"} {
			assert.Equal(t, http.StatusUnauthorized, serve(http.MethodGet, path, nil).Code, path)
		}
	})

	t.Run("the script keeps the token out of URLs", func(t *testing.T) {
		js := serve(http.MethodGet, "/page/status.js", nil).Body.String()
		assert.Contains(t, js, `h.Authorization = "Bearer " + t`)
		assert.Contains(t, js, "sessionStorage")
		assert.NotContains(t, js, "EventSource", "EventSource cannot send the Authorization header")
		assert.NotContains(t, js, "localStorage")
		assert.NotContains(t, js, "innerHTML", "data goes into the page as text only")
	})
}

// TestListPods checks GET /pods: every pod of the view, by name, as GET
// /pods/{pod} shows each.
func TestListPods(t *testing.T) {
	ts := mustOpenServer(t)
	ts.seed(t, func(d *maintenance.Document) {
		d.Pods["n2"] = maintenance.Entry{Reason: "kernel", RequestedBy: "alice", Since: time.Now()}
	})
	resp, b := ts.do(t, http.MethodGet, "/pods", "")
	require.Equal(t, http.StatusOK, resp.StatusCode, "%s", b)
	assert.Equal(t, "application/json", resp.Header.Get("Content-Type"))
	var list prober.PodList
	require.NoError(t, json.Unmarshal(b, &list))
	var names []string
	for _, pv := range list.Pods {
		names = append(names, pv.Pod)
		_, one := ts.do(t, http.MethodGet, "/pods/"+pv.Pod, "")
		var want maintenance.PodView
		require.NoError(t, json.Unmarshal(one, &want))
		assert.Equal(t, want, pv, pv.Pod)
	}
	assert.Equal(t, []string{"n0", "n1", "n2", "w0"}, names)
	assert.True(t, list.Pods[2].InMaintenance)
	assert.Equal(t, "kernel", list.Pods[2].Reason)
	assert.Equal(t, []string{"ORDERS"}, list.Pods[1].Raft.Leads)

	resp, b = ts.do(t, http.MethodDelete, "/pods", "")
	assert.Equal(t, http.StatusMethodNotAllowed, resp.StatusCode, "%s", b)
}

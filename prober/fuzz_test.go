package prober_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/prober-dev/prober/filestore"
	"github.com/prober-dev/prober/maintenance"
	"github.com/prober-dev/prober/prober"
)

// fuzzNow is the clock of FuzzMaintenanceAPI, so that what a request
// stores does not depend on when it runs.
var fuzzNow = time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)

// fuzzMethods and fuzzRoutes are what the method and route bytes of
// FuzzMaintenanceAPI pick from; the name is appended to the route as sent.
var (
	fuzzMethods = []string{http.MethodGet, http.MethodHead, http.MethodPut, http.MethodDelete,
		http.MethodPost, http.MethodPatch, http.MethodOptions}
	fuzzRoutes = []string{"/pods/", "/dcs/", "/config"}
)

// fuzzAnswerStatuses are the statuses the maintenance routes may answer;
// anything else (a 500 above all) is a finding.
var fuzzAnswerStatuses = []int{200, 201, 202, 400, 401, 403, 404, 405, 409, 413, 503}

// fuzzStates are the stored files a request of FuzzMaintenanceAPI starts
// from, picked by its state byte: an empty document, pods and a dc in and
// on their way into or out of maintenance (n0..n2 in east, w0 in west, as
// cluster() has them), an expired entry, and two files that do not decode.
func fuzzStates(tb testing.TB) [][]byte {
	tb.Helper()
	at := func(d time.Duration) *time.Time {
		t := fuzzNow.Add(d)
		return &t
	}
	docs := []func(d *maintenance.Document){
		func(*maintenance.Document) {},
		func(d *maintenance.Document) {
			d.Pods["n1"] = maintenance.Entry{Reason: "kernel", RequestedBy: "ops", Since: *at(-time.Hour)}
			d.Status["n1"] = maintenance.Status{Phase: maintenance.PhaseInMaintenance, ObservedAt: *at(-time.Minute),
				PhaseSince: *at(-time.Minute), Entry: "pod.n1"}
		},
		func(d *maintenance.Document) {
			d.DCs["west"] = maintenance.Entry{Reason: "rack", Since: *at(-time.Minute), ExpiresAt: at(time.Hour)}
			d.Status["w0"] = maintenance.Status{Phase: maintenance.PhaseFencing, ObservedAt: fuzzNow, PhaseSince: fuzzNow,
				Entry: "dc.west"}
		},
		func(d *maintenance.Document) {
			d.Pods["n2"] = maintenance.Entry{Reason: "old", Since: *at(-2 * time.Hour), ExpiresAt: at(-time.Minute)}
			d.Status["n2"] = maintenance.Status{Phase: maintenance.PhaseFailed, Message: "hand off: timeout",
				ObservedAt: fuzzNow, PhaseSince: fuzzNow}
		},
		func(d *maintenance.Document) {
			d.Pods["n0"] = maintenance.Entry{Reason: "forced", Since: *at(-time.Hour), Force: true, Evacuate: true}
			d.Status["n0"] = maintenance.Status{Phase: maintenance.PhaseCatchingUp, ObservedAt: fuzzNow, PhaseSince: fuzzNow,
				Evacuated: []string{"APP/ORDERS"}}
		},
	}
	var states [][]byte
	for _, edit := range docs {
		d := maintenance.NewDocument()
		edit(d)
		data, err := d.Data()
		require.NoError(tb, err)
		b, err := json.Marshal(map[string]any{"resourceVersion": "3", "data": data})
		require.NoError(tb, err)
		states = append(states, b)
	}
	return append(states,
		[]byte("not json at all"),
		[]byte(`{"resourceVersion":"3","data":{"pod.Nats_0":"{}"}}`))
}

// fuzzRequest builds the request as the server would read it off the
// wire; nil when net/http would refuse it before any handler runs.
func fuzzRequest(method, target, token string, body []byte, remote bool) *http.Request {
	var raw bytes.Buffer
	raw.WriteString(method + " " + target + " HTTP/1.1\r\nHost: prober\r\n")
	if token != "" {
		raw.WriteString("Authorization: Bearer " + token + "\r\n")
	}
	raw.WriteString("Content-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n")
	raw.Write(body)
	req, err := http.ReadRequest(bufio.NewReader(&raw))
	if err != nil {
		return nil
	}
	req.RemoteAddr = "127.0.0.1:40000"
	if remote {
		req.RemoteAddr = "192.0.2.7:40000"
	}
	return req
}

// FuzzMaintenanceAPI sends arbitrary requests to the maintenance routes of
// the whole handler (middleware included) over a real file store and the
// cluster view of the other tests: the method and the route picked from a
// list, the name after the route, the query and the body as sent, from one
// of fuzzStates, from loopback or not, with a token or none. Whatever the
// request, the server does not panic and answers JSON with a status of
// fuzzAnswerStatuses; an error has the one error shape with the status of
// its code; a 405 says what is allowed and a 202 where to follow; a
// refusal, a read and a dry run leave the stored file as it was, byte for
// byte; and what a request stores decodes.
//
// The server is closed before the first request, so that a request with
// wait answers at once, as it does while the server shuts down; the wait
// value is still parsed. The seeds are in testdata/fuzz/FuzzMaintenanceAPI;
// `make fuzz` runs it.
func FuzzMaintenanceAPI(f *testing.F) {
	path := filepath.Join(f.TempDir(), "maintenance.json")
	store, err := filestore.Open(path, filestore.Options{PollInterval: time.Hour, Logger: zerolog.Nop()})
	require.NoError(f, err)
	f.Cleanup(func() { assert.NoError(f, store.Close()) })
	view := cluster()
	clock := func() time.Time { return fuzzNow }
	srv := prober.NewServer(prober.Options{
		Service: &maintenance.Service{Store: store, Views: staticView(view), Now: clock, Logger: zerolog.Nop()},
		Views:   staticView(view),
		Now:     clock,
		Logger:  zerolog.Nop(),
	})
	require.NoError(f, srv.Close(context.Background()))
	handler := srv.Handler()
	states := fuzzStates(f)
	// A body over the limit, too big for a seed file.
	f.Add(uint8(2), uint8(0), "n1", "", bytes.Repeat([]byte(" "), prober.MaxBodyBytes+1), uint8(0), false, "")

	f.Fuzz(func(t *testing.T, method, route uint8, name, query string, body []byte, state uint8, remote bool, token string) {
		initial := states[int(state)%len(states)]
		require.NoError(t, os.WriteFile(path, initial, 0o644))
		target := fuzzRoutes[int(route)%len(fuzzRoutes)] + name
		if query != "" {
			target += "?" + query
		}
		req := fuzzRequest(fuzzMethods[int(method)%len(fuzzMethods)], target, token, body, remote)
		if req == nil {
			return
		}
		rec := httptest.NewRecorder()
		handler.ServeHTTP(rec, req)
		status, answer := rec.Code, rec.Body.Bytes()
		after, err := os.ReadFile(path)
		require.NoError(t, err)

		require.Contains(t, fuzzAnswerStatuses, status, "%s %q: %s", req.Method, target, answer)
		assert.Equal(t, "application/json", rec.Header().Get("Content-Type"))
		if req.Method == http.MethodHead {
			assert.Empty(t, answer)
		} else {
			require.True(t, json.Valid(answer), "%s %q: not JSON: %q", req.Method, target, answer)
		}
		switch status {
		case http.StatusMethodNotAllowed:
			assert.NotEmpty(t, rec.Header().Get("Allow"))
		case http.StatusAccepted:
			assert.NotEmpty(t, rec.Header().Get("Location"))
		}
		unchanged := status >= 400 || req.Method == http.MethodGet || req.Method == http.MethodHead
		if status >= 400 && req.Method != http.MethodHead {
			var e prober.ErrorResponse
			require.NoError(t, maintenance.DecodeStrict(answer, &e), "error shape: %s", answer)
			assert.Equal(t, status, prober.ErrorStatus(e.Error.Code), "code %q", e.Error.Code)
			assert.NotEmpty(t, e.Error.Message)
		}
		if status == http.StatusOK && req.Method == http.MethodPut {
			var dry struct {
				DryRun bool `json:"dryRun"`
			}
			if json.Unmarshal(answer, &dry) == nil && dry.DryRun {
				unchanged = true
			}
		}
		if unchanged {
			require.Equal(t, string(initial), string(after), "%s %q answered %d and changed the stored state: %s",
				req.Method, target, status, answer)
		}
		if !slices.Equal(initial, after) {
			_, err := store.Get(context.Background())
			require.NoError(t, err, "what a request stored does not decode: %s", after)
		}
	})
}

package prober_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/prober-dev/prober/filestore"
	"github.com/prober-dev/prober/maintenance"
	"github.com/prober-dev/prober/natsraft"
	"github.com/prober-dev/prober/prober"
)

// viewFunc is a ViewSource made of a function.
type viewFunc func(ctx context.Context) (*natsraft.View, error)

func (f viewFunc) View(ctx context.Context) (*natsraft.View, error) { return f(ctx) }

func staticView(v *natsraft.View) maintenance.ViewSource {
	return viewFunc(func(context.Context) (*natsraft.View, error) { return v, nil })
}

func node(name, dc string) natsraft.Node {
	return natsraft.Node{Name: name, DC: dc, Reachable: true, JetStream: true}
}

// group builds a healthy group led by its first peer.
func group(kind natsraft.GroupKind, name string, peers ...string) natsraft.Group {
	g := natsraft.Group{Kind: kind, Name: name, Leader: peers[0], Term: 2}
	if kind != natsraft.KindMeta {
		g.Account = "APP"
	}
	for i, p := range peers {
		g.Peers = append(g.Peers, natsraft.Peer{Name: p, Leader: i == 0, Current: true, Healthy: true})
	}
	return g
}

// cluster is four nodes: n0..n2 in dc east, w0 in dc west; a meta group of
// the four (quorum 3) and an R3 stream ORDERS in east, led by n1.
func cluster() *natsraft.View {
	return &natsraft.View{
		At:    time.Now(),
		Nodes: []natsraft.Node{node("n0", "east"), node("n1", "east"), node("n2", "east"), node("w0", "west")},
		Groups: []natsraft.Group{
			group(natsraft.KindMeta, natsraft.MetaGroupName, "n0", "n1", "n2", "w0"),
			group(natsraft.KindStream, "ORDERS", "n1", "n0", "n2"),
		},
	}
}

// syncBuffer is a log sink the server's goroutines may share.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

type testServer struct {
	*prober.Server
	store *filestore.Store
	path  string
	view  *natsraft.View
	base  string
	logs  *syncBuffer
}

type serverOption func(*prober.Options, *testServer)

func withViews(v maintenance.ViewSource) serverOption {
	return func(o *prober.Options, _ *testServer) { o.Views = v; o.Service.Views = v }
}

// mustOpenServer opens a server on 127.0.0.1:0 over a real file store and
// the cluster view; it is closed at the end of the test.
func mustOpenServer(tb testing.TB, opts ...serverOption) *testServer {
	tb.Helper()
	ts := &testServer{path: filepath.Join(tb.TempDir(), "maintenance.json"), view: cluster(), logs: &syncBuffer{}}
	store, err := filestore.Open(ts.path, filestore.Options{PollInterval: 20 * time.Millisecond})
	require.NoError(tb, err)
	tb.Cleanup(func() { assert.NoError(tb, store.Close()) })
	ts.store = store
	log := zerolog.New(ts.logs)
	o := prober.Options{
		Addr: "127.0.0.1:0",
		Service: &maintenance.Service{
			Store: store, Views: staticView(ts.view), Logger: log,
		},
		Views:  staticView(ts.view),
		Logger: log,
	}
	for _, opt := range opts {
		opt(&o, ts)
	}
	ts.Server = prober.NewServer(o)
	require.NoError(tb, ts.Open())
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		assert.NoError(tb, ts.Close(ctx))
	})
	ts.base = "http://" + ts.Addr()
	return ts
}

// do sends a request and returns the answer with its body read.
func (ts *testServer) do(tb testing.TB, method, path, body string) (*http.Response, []byte) {
	tb.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, ts.base+path, rd)
	require.NoError(tb, err)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(tb, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(tb, err)
	return resp, b
}

func (ts *testServer) seed(tb testing.TB, fn func(d *maintenance.Document)) {
	tb.Helper()
	_, err := ts.store.Update(context.Background(), func(d *maintenance.Document) error {
		fn(d)
		return nil
	})
	require.NoError(tb, err)
}

func (ts *testServer) doc(tb testing.TB) *maintenance.Document {
	tb.Helper()
	d, err := ts.store.Get(context.Background())
	require.NoError(tb, err)
	return d
}

// playReconciler plays every node's reconciler: at each tick it moves each
// pod one phase toward what the document desires, as the real ones report
// it, and removes the status once the pod is Active again.
func (ts *testServer) playReconciler(tb testing.TB) {
	tb.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	tb.Cleanup(func() { cancel(); <-done })
	next := func(want bool, st maintenance.Status, has bool) (maintenance.Phase, bool) {
		switch {
		case want && !has:
			return maintenance.PhaseHandingOff, true
		case want && st.Phase == maintenance.PhaseHandingOff:
			return maintenance.PhaseFencing, true
		case want && st.Phase == maintenance.PhaseFencing:
			return maintenance.PhaseInMaintenance, true
		case want && st.Phase != maintenance.PhaseInMaintenance:
			return maintenance.PhaseHandingOff, true
		case !want && has && st.Phase == maintenance.PhaseUnfencing:
			return maintenance.PhaseCatchingUp, true
		case !want && has && st.Phase == maintenance.PhaseCatchingUp:
			return maintenance.PhaseActive, true
		case !want && has:
			return maintenance.PhaseUnfencing, true
		}
		return "", false
	}
	go func() {
		defer close(done)
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			_, err := ts.store.Update(ctx, func(d *maintenance.Document) error {
				now := time.Now()
				for _, n := range ts.view.Nodes {
					_, _, want := d.Desired(n.Name, n.DC, now)
					st, has := d.Status[n.Name]
					phase, move := next(want, st, has)
					switch {
					case !move:
					case phase == maintenance.PhaseActive:
						delete(d.Status, n.Name)
					default:
						d.Status[n.Name] = maintenance.Status{Phase: phase, ObservedAt: now, PhaseSince: now}
					}
				}
				return nil
			})
			if err != nil && ctx.Err() == nil {
				tb.Errorf("play reconciler: %v", err)
				return
			}
		}
	}()
}

func decodeError(tb testing.TB, b []byte) maintenance.Error {
	tb.Helper()
	var body struct {
		Error maintenance.Error `json:"error"`
	}
	require.NoError(tb, json.Unmarshal(b, &body), "body: %s", b)
	return body.Error
}

func TestRoutes(t *testing.T) {
	big := `{"reason":"` + strings.Repeat("x", prober.MaxBodyBytes) + `"}`
	inMaintenance := func(pods ...string) func(d *maintenance.Document) {
		return func(d *maintenance.Document) {
			for _, p := range pods {
				d.Pods[p] = maintenance.Entry{Reason: "seeded", Since: time.Now()}
			}
		}
	}
	for _, tc := range []struct {
		name         string
		method, path string
		body         string
		seed         func(d *maintenance.Document)
		status       int
		code         string // error code, "" for success
		allow        string
		check        func(t *testing.T, b []byte)
	}{
		{
			name: "get pod", method: "GET", path: "/pods/n1", status: 200,
			check: func(t *testing.T, b []byte) {
				var pv maintenance.PodView
				require.NoError(t, json.Unmarshal(b, &pv))
				assert.Equal(t, "n1", pv.Pod)
				assert.Equal(t, "east", pv.DC)
				assert.Equal(t, maintenance.PhaseActive, pv.Phase)
				assert.Equal(t, []string{"ORDERS"}, pv.Raft.Leads)
				assert.Equal(t, 2, pv.Raft.Groups)
			},
		},
		{name: "get pod bad name", method: "GET", path: "/pods/Nats_1", status: 400, code: maintenance.EInvalid},
		{name: "get unknown pod", method: "GET", path: "/pods/n9", status: 404, code: maintenance.ENotFound},
		{name: "unknown route", method: "GET", path: "/nodes/n0", status: 404, code: maintenance.ENotFound},
		{name: "pods without a name", method: "GET", path: "/pods/", status: 404, code: maintenance.ENotFound},
		{name: "POST pod", method: "POST", path: "/pods/n0", status: 405, code: maintenance.EMethod, allow: "DELETE, GET, HEAD, PUT"},
		{name: "PATCH dc", method: "PATCH", path: "/dcs/east", status: 405, code: maintenance.EMethod, allow: "DELETE, GET, HEAD, PUT"},
		{name: "DELETE config", method: "DELETE", path: "/config", status: 405, code: maintenance.EMethod, allow: "GET, HEAD, PUT"},
		{name: "PUT raft", method: "PUT", path: "/raft", status: 405, code: maintenance.EMethod, allow: "GET, HEAD"},
		{name: "POST livez", method: "POST", path: "/livez", status: 405, code: maintenance.EMethod, allow: "GET, HEAD"},
		{name: "unknown body field", method: "PUT", path: "/pods/n0", body: `{"reason":"x","ttl":"1h","color":"red"}`, status: 400, code: maintenance.EInvalid},
		{name: "a body key twice", method: "PUT", path: "/pods/n0", body: `{"reason":"r","force":false,"force":true}`, status: 400, code: maintenance.EInvalid},
		{name: "a body key in another case", method: "PUT", path: "/pods/n0", body: `{"Reason":"r"}`, status: 400, code: maintenance.EInvalid},
		{name: "a rollout's key twice", method: "PUT", path: "/rollouts/r", body: `{"hold":"5m","hold":"1s"}`, status: 400, code: maintenance.EInvalid},
		{name: "malformed body", method: "PUT", path: "/pods/n0", body: `{"reason":`, status: 400, code: maintenance.EInvalid},
		{name: "trailing body", method: "PUT", path: "/pods/n0", body: `{"reason":"x"} {}`, status: 400, code: maintenance.EInvalid},
		{name: "ttl not a duration", method: "PUT", path: "/pods/n0", body: `{"ttl":"soon"}`, status: 400, code: maintenance.EInvalid},
		{name: "ttl a number", method: "PUT", path: "/pods/n0", body: `{"ttl":30}`, status: 400, code: maintenance.EInvalid},
		{name: "ttl below 1s", method: "PUT", path: "/pods/n0", body: `{"ttl":"500ms"}`, status: 400, code: maintenance.EInvalid},
		{name: "bad wait", method: "PUT", path: "/pods/n0?wait=forever", status: 400, code: maintenance.EInvalid},
		{name: "negative wait", method: "DELETE", path: "/pods/n0?wait=-1s", status: 400, code: maintenance.EInvalid},
		{name: "bad dryRun", method: "PUT", path: "/pods/n0?dryRun=maybe", status: 400, code: maintenance.EInvalid},
		{name: "dryRun on DELETE", method: "DELETE", path: "/pods/n0?dryRun=true", status: 400, code: maintenance.EInvalid},
		{
			name: "misspelt dryRun", method: "PUT", path: "/pods/n0?dryrun=true", status: 400, code: maintenance.EInvalid,
			check: func(t *testing.T, b []byte) {
				assert.Contains(t, decodeError(t, b).Message, `unknown query parameter "dryrun": PUT /pods/n0 takes dryRun, wait`)
			},
		},
		{name: "misspelt dryRun of a dc", method: "PUT", path: "/dcs/east?dry-run", status: 400, code: maintenance.EInvalid},
		// URL.Query drops a pair that does not parse: the dry run would
		// be lost and the change made for real.
		{
			name: "a ; in the query", method: "PUT", path: "/pods/n0?dryRun=true;wait=5s", status: 400, code: maintenance.EInvalid,
			check: func(t *testing.T, b []byte) {
				assert.Contains(t, decodeError(t, b).Message, "separate parameters with &")
			},
		},
		{name: "a bad escape in the query", method: "PUT", path: "/pods/n0?dryRun=tru%e", status: 400, code: maintenance.EInvalid},
		{name: "a ; in a balance's query", method: "POST", path: "/balance?dryRun=true;dc=east", status: 400, code: maintenance.EInvalid},
		{
			name: "dryRun given twice", method: "PUT", path: "/pods/n0?dryRun=false&dryRun=true", status: 400, code: maintenance.EInvalid,
			check: func(t *testing.T, b []byte) {
				assert.Contains(t, decodeError(t, b).Message, `query parameter "dryRun" given 2 times`)
			},
		},
		{
			name: "a body on DELETE", method: "DELETE", path: "/pods/n0", body: `{"restoreLeaders":false}`, seed: inMaintenance("n0"),
			status: 400, code: maintenance.EInvalid,
			check: func(t *testing.T, b []byte) {
				assert.Contains(t, decodeError(t, b).Message, "DELETE /pods/n0 takes no body: its options are query parameters")
			},
		},
		{name: "a body on DELETE of a dc", method: "DELETE", path: "/dcs/east", body: `{"restoreLeaders":false}`, status: 400, code: maintenance.EInvalid},
		{name: "a body on a balance", method: "POST", path: "/balance?dryRun=true", body: `{"dc":"east"}`, status: 400, code: maintenance.EInvalid},
		{name: "a body on DELETE of a rollout", method: "DELETE", path: "/rollouts/r", body: `{}`, status: 400, code: maintenance.EInvalid},
		{name: "a blank body on DELETE", method: "DELETE", path: "/pods/n0", body: " \n", seed: inMaintenance("n0"), status: 200},
		{
			name: "misspelt restoreLeaders", method: "DELETE", path: "/pods/n0?restoreleaders=false", seed: inMaintenance("n0"),
			status: 400, code: maintenance.EInvalid,
			check: func(t *testing.T, b []byte) {
				assert.Contains(t, decodeError(t, b).Message, "takes dryRun, wait, restoreLeaders")
			},
		},
		{name: "dryRun on a rollout", method: "PUT", path: "/rollouts/r?dryRun=true", body: `{"hold":"5m"}`, status: 400, code: maintenance.EInvalid},
		{name: "unknown balance parameter", method: "POST", path: "/balance?dryrun", status: 400, code: maintenance.EInvalid},
		{name: "force without reason", method: "PUT", path: "/pods/n0", body: `{"force":true}`, status: 400, code: maintenance.EInvalid},
		{name: "keepEvacuated without evacuate", method: "PUT", path: "/pods/n0", body: `{"keepEvacuated":true}`, status: 400, code: maintenance.EInvalid},
		{name: "put bad name", method: "PUT", path: "/pods/Nats_1", status: 400, code: maintenance.EInvalid},
		{name: "put a dot-dot name", method: "PUT", path: "/pods/%2e%2e", status: 400, code: maintenance.EInvalid},
		{name: "get a dot name", method: "GET", path: "/pods/.", status: 400, code: maintenance.EInvalid},
		{name: "put a dot-dot dc", method: "PUT", path: "/dcs/..", status: 400, code: maintenance.EInvalid},
		{name: "body too large", method: "PUT", path: "/pods/n0", body: big, status: 413, code: maintenance.ETooLarge},
		{name: "put unknown pod", method: "PUT", path: "/pods/n9", status: 404, code: maintenance.ENotFound},
		{name: "delete unknown pod", method: "DELETE", path: "/pods/n9", status: 404, code: maintenance.ENotFound},
		{
			name: "unsafe", method: "PUT", path: "/pods/n1", body: `{"reason":"kernel"}`,
			seed: inMaintenance("n0"), status: 409, code: maintenance.EUnsafe,
			check: func(t *testing.T, b []byte) {
				e := decodeError(t, b)
				assert.Contains(t, e.Message, natsraft.MetaGroupName)
				assert.Contains(t, e.Message, "ORDERS")
				var body struct {
					Error struct {
						Details []maintenance.Violation `json:"details"`
					} `json:"error"`
				}
				require.NoError(t, json.Unmarshal(b, &body))
				var groups []string
				for _, v := range body.Error.Details {
					groups = append(groups, v.Group)
				}
				assert.ElementsMatch(t, []string{natsraft.MetaGroupName, "ORDERS"}, groups)
			},
		},
		{
			name: "unsafe dc", method: "PUT", path: "/dcs/east", status: 409, code: maintenance.EUnsafe,
		},
		{
			name: "dry run unsafe", method: "PUT", path: "/pods/n1?dryRun=true", seed: inMaintenance("n0"), status: 200,
			check: func(t *testing.T, b []byte) {
				var dr prober.DryRunResponse
				require.NoError(t, json.Unmarshal(b, &dr))
				assert.True(t, dr.DryRun)
				assert.False(t, dr.Safe)
				assert.Len(t, dr.Violations, 2)
			},
		},
		{
			name: "dry run safe", method: "PUT", path: "/dcs/west?dryRun", status: 200,
			check: func(t *testing.T, b []byte) {
				assert.JSONEq(t, `[]`, string(jsonField(t, b, "violations")))
				assert.JSONEq(t, `true`, string(jsonField(t, b, "safe")))
			},
		},
		{
			name: "pod held by its dc", method: "DELETE", path: "/pods/w0",
			seed:   func(d *maintenance.Document) { d.DCs["west"] = maintenance.Entry{Since: time.Now()} },
			status: 409, code: maintenance.EConflict,
			check: func(t *testing.T, b []byte) {
				assert.Contains(t, decodeError(t, b).Message, "DELETE /dcs/west")
			},
		},
		{
			name: "get dc", method: "GET", path: "/dcs/east", seed: inMaintenance("n2"), status: 200,
			check: func(t *testing.T, b []byte) {
				var v prober.DCView
				require.NoError(t, json.Unmarshal(b, &v))
				assert.Equal(t, "east", v.DC)
				require.Len(t, v.Pods, 3)
				assert.True(t, v.Pods[2].InMaintenance)
				assert.Equal(t, maintenance.PhaseRequested, v.Pods[2].Phase)
			},
		},
		{name: "get dc by prefix", method: "GET", path: "/dcs/eas", status: 404, code: maintenance.ENotFound},
		{name: "get dc bad name", method: "GET", path: "/dcs/east!", status: 400, code: maintenance.EInvalid},
		{name: "get dc with a NATS cluster name", method: "GET", path: "/dcs/US_East", status: 404, code: maintenance.ENotFound},
		{
			name: "get config", method: "GET", path: "/config", seed: inMaintenance("n2"), status: 200,
			check: func(t *testing.T, b []byte) {
				var d maintenance.Document
				require.NoError(t, json.Unmarshal(b, &d))
				assert.Equal(t, "seeded", d.Pods["n2"].Reason)
				assert.NotEmpty(t, d.ResourceVersion)
			},
		},
		{
			name: "bare put config", method: "PUT", path: "/config", seed: inMaintenance("n2"), status: 200,
			check: func(t *testing.T, b []byte) {
				var d maintenance.Document
				require.NoError(t, json.Unmarshal(b, &d))
				assert.Contains(t, d.Pods, "n2")
			},
		},
		{name: "put config with a body", method: "PUT", path: "/config", body: `{"pods":{}}`, status: 400, code: maintenance.EInvalid},
		{
			name: "raft", method: "GET", path: "/raft", status: 200,
			check: func(t *testing.T, b []byte) {
				var v natsraft.View
				require.NoError(t, json.Unmarshal(b, &v))
				assert.Len(t, v.Nodes, 4)
				require.Len(t, v.Groups, 2)
				assert.Equal(t, "ORDERS", v.Groups[1].Name)
				assert.Contains(t, string(b), `"ageSeconds"`)
			},
		},
		{name: "livez", method: "GET", path: "/livez", status: 200},
		{name: "readyz", method: "GET", path: "/readyz", status: 200},
		{name: "head readyz", method: "HEAD", path: "/readyz", status: 200},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ts := mustOpenServer(t)
			if tc.seed != nil {
				ts.seed(t, tc.seed)
			}
			before := ts.doc(t)
			resp, b := ts.do(t, tc.method, tc.path, tc.body)
			require.Equal(t, tc.status, resp.StatusCode, "body: %s", b)
			if tc.method != http.MethodHead {
				assert.Equal(t, "application/json", resp.Header.Get("Content-Type"))
			}
			if tc.allow != "" {
				assert.Equal(t, tc.allow, resp.Header.Get("Allow"))
			}
			if tc.code != "" {
				e := decodeError(t, b)
				assert.Equal(t, tc.code, e.Code)
				assert.NotEmpty(t, e.Message)
				assert.Equal(t, before, ts.doc(t), "an error writes nothing")
			}
			if tc.check != nil {
				tc.check(t, b)
			}
		})
	}
}

// jsonField returns the raw value of a top-level field of a JSON object.
func jsonField(t *testing.T, b []byte, name string) json.RawMessage {
	t.Helper()
	var m map[string]json.RawMessage
	require.NoError(t, json.Unmarshal(b, &m), "body: %s", b)
	v, ok := m[name]
	require.True(t, ok, "no %q in %s", name, b)
	return v
}

func TestPutDeleteWait(t *testing.T) {
	t.Run("pod reaches its phase", func(t *testing.T) {
		ts := mustOpenServer(t)
		ts.playReconciler(t)
		for _, step := range []struct {
			method, path, body string
			phase              maintenance.Phase
			changed            bool
		}{
			{"PUT", "/pods/n0?wait=10s", `{"reason":"kernel","ttl":"1h"}`, maintenance.PhaseInMaintenance, true},
			{"PUT", "/pods/n0", `{"reason":"kernel"}`, maintenance.PhaseInMaintenance, false},
			{"PUT", "/pods/n0", ``, maintenance.PhaseInMaintenance, false},
			{"DELETE", "/pods/n0?wait=10s", ``, maintenance.PhaseActive, true},
			{"DELETE", "/pods/n0", ``, maintenance.PhaseActive, false},
		} {
			resp, b := ts.do(t, step.method, step.path, step.body)
			require.Equal(t, http.StatusOK, resp.StatusCode, "%s %s: %s", step.method, step.path, b)
			var pc prober.PodChange
			require.NoError(t, json.Unmarshal(b, &pc))
			assert.Equal(t, "n0", pc.Pod)
			assert.Equal(t, step.phase, pc.Phase, "%s %s", step.method, step.path)
			assert.Equal(t, step.changed, pc.Changed, "%s %s", step.method, step.path)
			assert.Equal(t, step.method == "PUT", pc.InMaintenance)
			if step.method == "PUT" {
				assert.Equal(t, "kernel", pc.Reason)
				assert.Equal(t, prober.LoopbackUser, pc.RequestedBy)
				assert.NotNil(t, pc.ExpiresAt)
			}
			assert.Empty(t, resp.Header.Get("Location"))
		}
		assert.Empty(t, ts.doc(t).Status, "a pod that is Active again has no status")
	})

	t.Run("dc reaches its phase", func(t *testing.T) {
		ts := mustOpenServer(t)
		ts.playReconciler(t)
		resp, b := ts.do(t, "PUT", "/dcs/west?wait=10s", `{"reason":"rack"}`)
		require.Equal(t, http.StatusOK, resp.StatusCode, "%s", b)
		var dc prober.DCChange
		require.NoError(t, json.Unmarshal(b, &dc))
		require.Len(t, dc.Pods, 1)
		assert.Equal(t, "dc", dc.Pods[0].Via)
		assert.Equal(t, maintenance.PhaseInMaintenance, dc.Pods[0].Phase)

		resp, b = ts.do(t, "DELETE", "/dcs/west?wait=10s", "")
		require.Equal(t, http.StatusOK, resp.StatusCode, "%s", b)
		require.NoError(t, json.Unmarshal(b, &dc))
		assert.True(t, dc.Changed)
		assert.Equal(t, maintenance.PhaseActive, dc.Pods[0].Phase)
	})

	t.Run("202 while the phase moves", func(t *testing.T) {
		for _, tc := range []struct {
			path, location string
			wait           time.Duration
		}{
			{"/pods/n0", "/pods/n0", 0},
			{"/pods/n0?wait=300ms", "/pods/n0", 300 * time.Millisecond},
			{"/dcs/west?wait=200ms", "/dcs/west", 200 * time.Millisecond},
		} {
			t.Run(tc.path, func(t *testing.T) {
				ts := mustOpenServer(t) // no reconciler: the phase stays Requested
				start := time.Now()
				resp, b := ts.do(t, "PUT", tc.path, `{"reason":"kernel"}`)
				require.Equal(t, http.StatusAccepted, resp.StatusCode, "%s", b)
				assert.GreaterOrEqual(t, time.Since(start), tc.wait)
				assert.Equal(t, tc.location, resp.Header.Get("Location"))
				assert.Contains(t, string(b), `"phase": "Requested"`)

				del := strings.Split(tc.path, "?")[0]
				resp, b = ts.do(t, "DELETE", del, "")
				require.Equal(t, http.StatusOK, resp.StatusCode, "never picked up, so Active at once: %s", b)
			})
		}
	})

	t.Run("a pod held by its own entry does not hold the dc back", func(t *testing.T) {
		ts := mustOpenServer(t)
		ts.seed(t, func(d *maintenance.Document) {
			d.DCs["east"] = maintenance.Entry{Since: time.Now(), Force: true, Reason: "power"}
			d.Pods["n2"] = maintenance.Entry{Since: time.Now(), Reason: "disk"}
		})
		ts.playReconciler(t)
		resp, b := ts.do(t, "DELETE", "/dcs/east?wait=30s", "")
		require.Equal(t, http.StatusOK, resp.StatusCode, "%s", b)
		var dc prober.DCChange
		require.NoError(t, json.Unmarshal(b, &dc))
		require.Len(t, dc.Pods, 3)
		assert.Equal(t, maintenance.PhaseActive, dc.Pods[0].Phase)
		assert.Equal(t, maintenance.PhaseActive, dc.Pods[1].Phase)
		assert.True(t, dc.Pods[2].InMaintenance)
		assert.Equal(t, "pod", dc.Pods[2].Via)
	})
}

func TestForced(t *testing.T) {
	ts := mustOpenServer(t)
	ts.seed(t, func(d *maintenance.Document) { d.Pods["n0"] = maintenance.Entry{Since: time.Now()} })
	resp, b := ts.do(t, "PUT", "/pods/n1", `{"reason":"disk on fire","force":true}`)
	require.Equal(t, http.StatusAccepted, resp.StatusCode, "%s", b)
	var pc prober.PodChange
	require.NoError(t, json.Unmarshal(b, &pc))
	assert.True(t, pc.Forced)
	assert.True(t, pc.Force)
	assert.Len(t, pc.Violations, 2)
	assert.True(t, ts.doc(t).Pods["n1"].Force, "force is recorded")
}

// TestConcurrentPuts sends two PUTs of different pods of an R3 stream at
// once: exactly one may pass.
func TestConcurrentPuts(t *testing.T) {
	ts := mustOpenServer(t)
	for round := range 5 {
		ts.seed(t, func(d *maintenance.Document) { clear(d.Pods) })
		var wg sync.WaitGroup
		statuses := make([]int, 2)
		for i, pod := range []string{"n0", "n1"} {
			wg.Go(func() {
				resp, _ := ts.do(t, "PUT", "/pods/"+pod, `{"reason":"race"}`)
				statuses[i] = resp.StatusCode
			})
		}
		wg.Wait()
		assert.ElementsMatch(t, []int{http.StatusAccepted, http.StatusConflict}, statuses, "round %d", round)
		assert.Len(t, ts.doc(t).Pods, 1, "round %d", round)
	}
}

func TestRequestedBy(t *testing.T) {
	for _, tc := range []struct {
		remote, want string
		status       int
	}{
		{"127.0.0.1:4000", "loopback", http.StatusAccepted},
		{"127.8.9.10:4000", "loopback", http.StatusAccepted},
		{"[::1]:4000", "loopback", http.StatusAccepted},
		{"[::ffff:127.0.0.1]:4000", "loopback", http.StatusAccepted},
		// Without an authenticator only loopback callers are served.
		{"10.1.2.3:4000", "", http.StatusUnauthorized},
		{"[fd00::7]:4000", "", http.StatusUnauthorized},
	} {
		t.Run(tc.remote, func(t *testing.T) {
			ts := mustOpenServer(t)
			req, err := http.NewRequest("PUT", "/pods/n0", strings.NewReader(`{"reason":"kernel"}`))
			require.NoError(t, err)
			req.RemoteAddr = tc.remote
			rec := newRecorder()
			ts.Handler().ServeHTTP(rec, req)
			require.Equal(t, tc.status, rec.status, "%s", rec.body.String())
			entry, ok := ts.doc(t).Pods["n0"]
			assert.Equal(t, tc.want != "", ok)
			assert.Equal(t, tc.want, entry.RequestedBy)
		})
	}
}

func writeFile(path, content string) error { return os.WriteFile(path, []byte(content), 0o600) }

// recorder is a minimal ResponseWriter for calling the handler directly.
type recorder struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func newRecorder() *recorder { return &recorder{header: http.Header{}} }

func (r *recorder) Header() http.Header { return r.header }

func (r *recorder) WriteHeader(code int) {
	if r.status == 0 {
		r.status = code
	}
}

func (r *recorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	return r.body.Write(b)
}

func TestErrorsAreContained(t *testing.T) {
	t.Run("panic", func(t *testing.T) {
		ts := mustOpenServer(t, withViews(viewFunc(func(context.Context) (*natsraft.View, error) {
			panic("collector bug")
		})))
		resp, b := ts.do(t, "GET", "/pods/n0", "")
		require.Equal(t, http.StatusInternalServerError, resp.StatusCode)
		e := decodeError(t, b)
		assert.Equal(t, maintenance.EInternal, e.Code)
		assert.Equal(t, "internal error", e.Message)
		assert.Contains(t, ts.logs.String(), "collector bug")
		resp, _ = ts.do(t, "GET", "/livez", "")
		assert.Equal(t, http.StatusOK, resp.StatusCode, "still serving")
	})

	t.Run("internal error is only logged", func(t *testing.T) {
		ts := mustOpenServer(t)
		// A directory where the file was: the store cannot read it.
		require.NoError(t, os.Remove(ts.path))
		require.NoError(t, os.Mkdir(ts.path, 0o755))
		resp, b := ts.do(t, "GET", "/config", "")
		require.Equal(t, http.StatusInternalServerError, resp.StatusCode)
		e := decodeError(t, b)
		assert.Equal(t, "internal error", e.Message)
		assert.NotContains(t, string(b), ts.path)
		assert.Contains(t, ts.logs.String(), ts.path)
	})

	t.Run("stored state unreadable", func(t *testing.T) {
		for name, content := range map[string]string{
			"not json":      "not json",
			"no pod name":   `{"resourceVersion":"3","data":{"pod.Nats_0":"{}"}}`,
			"bad evacuated": `{"resourceVersion":"3","data":{"status.n1":"{\"phase\":\"Fencing\",\"evacuated\":[\"x\"]}"}}`,
		} {
			t.Run(name, func(t *testing.T) {
				ts := mustOpenServer(t)
				require.NoError(t, writeFile(ts.path, content))
				for _, rq := range [][3]string{
					{"GET", "/config", ""}, {"GET", "/pods/n1", ""}, {"PUT", "/pods/n1", `{"reason":"r"}`},
					{"DELETE", "/dcs/east", ""}, {"PUT", "/dcs/west?dryRun=true", ""},
				} {
					resp, b := ts.do(t, rq[0], rq[1], rq[2])
					require.Equal(t, http.StatusServiceUnavailable, resp.StatusCode, "%s %s: %s", rq[0], rq[1], b)
					e := decodeError(t, b)
					assert.Equal(t, maintenance.EUnavailable, e.Code)
					assert.Contains(t, e.Message, "stored maintenance state is unreadable")
					assert.NotContains(t, string(b), ts.path)
				}
				b, err := os.ReadFile(ts.path)
				require.NoError(t, err)
				assert.Equal(t, content, string(b), "never overwritten")
			})
		}
	})

	t.Run("view unavailable", func(t *testing.T) {
		ts := mustOpenServer(t, withViews(viewFunc(func(context.Context) (*natsraft.View, error) {
			return nil, errors.New("no sweep yet")
		})))
		for _, path := range []string{"/raft", "/pods/n0", "/dcs/east"} {
			resp, b := ts.do(t, "GET", path, "")
			require.Equal(t, http.StatusServiceUnavailable, resp.StatusCode, path)
			assert.Equal(t, maintenance.EUnavailable, decodeError(t, b).Code)
		}
	})
}

func TestReadyz(t *testing.T) {
	why := "pod n0 is InMaintenance"
	local := &localReady{ok: false, why: why}
	ts := mustOpenServer(t, withReadiness(&prober.ViewReadiness{
		Local: map[string]func() (bool, string){"n0": local.Ready},
	}))
	resp, b := ts.do(t, "GET", "/readyz", "")
	require.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
	e := decodeError(t, b)
	assert.Equal(t, maintenance.EUnavailable, e.Code)
	assert.Equal(t, "not ready: n0: "+why, e.Message)

	local.set(true, "")
	resp, _ = ts.do(t, "GET", "/readyz", "")
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	resp, _ = ts.do(t, "GET", "/livez", "")
	assert.Equal(t, http.StatusOK, resp.StatusCode)
}

func TestAccessLog(t *testing.T) {
	ts := mustOpenServer(t)
	ts.do(t, "GET", "/pods/n1", "")
	ts.do(t, "POST", "/pods/n1", "")
	ts.do(t, "GET", "/nowhere", "")
	var lines []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(ts.logs.String()), "\n") {
		var m map[string]any
		require.NoError(t, json.Unmarshal([]byte(l), &m), l)
		if m["message"] == "request" {
			lines = append(lines, m)
		}
	}
	require.Len(t, lines, 3)
	for i, want := range []struct {
		route  string
		status float64
	}{
		{"/pods/{pod}", 200},
		{"/pods/{pod}", 405},
		{"", 404},
	} {
		assert.Equal(t, want.route, lines[i]["route"])
		assert.Equal(t, want.status, lines[i]["status"])
	}
	assert.Equal(t, "loopback", lines[0]["user"])
}

func TestServerLifecycle(t *testing.T) {
	t.Run("addr in use fails at Open", func(t *testing.T) {
		ts := mustOpenServer(t)
		other := prober.NewServer(prober.Options{Addr: ts.Addr(), Service: &maintenance.Service{}, Logger: zerolog.Nop()})
		assert.Error(t, other.Open())
	})

	t.Run("close answers waiting requests", func(t *testing.T) {
		ts := mustOpenServer(t)
		got := make(chan int, 1)
		go func() {
			req, _ := http.NewRequest("PUT", ts.base+"/pods/n0?wait=10m", nil)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				got <- -1
				return
			}
			resp.Body.Close()
			got <- resp.StatusCode
		}()
		require.Eventually(t, func() bool {
			_, ok := ts.doc(t).Pods["n0"]
			return ok
		}, 5*time.Second, 10*time.Millisecond, "the PUT wrote its entry and is waiting")

		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		start := time.Now()
		require.NoError(t, ts.Close(ctx))
		assert.Less(t, time.Since(start), 4*time.Second, "well before the 5s shutdown deadline")
		assert.Equal(t, http.StatusAccepted, <-got)
	})

	t.Run("open, wait, close", func(t *testing.T) {
		store, err := filestore.Open(filepath.Join(t.TempDir(), "m.json"), filestore.Options{})
		require.NoError(t, err)
		defer store.Close()
		s := prober.NewServer(prober.Options{
			Addr:    "127.0.0.1:0",
			Service: &maintenance.Service{Store: store, Views: staticView(cluster()), Logger: zerolog.Nop()},
			Logger:  zerolog.Nop(),
		})
		require.NoError(t, s.Open())
		done := make(chan error, 1)
		go func() { done <- s.Wait(context.Background()) }()
		require.Eventually(t, func() bool { return !strings.HasSuffix(s.Addr(), ":0") }, 5*time.Second, 5*time.Millisecond)
		resp, err := http.Get("http://" + s.Addr() + "/raft")
		require.NoError(t, err)
		resp.Body.Close()
		assert.Equal(t, http.StatusOK, resp.StatusCode, "Views defaults to the service's")
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		require.NoError(t, s.Close(ctx))
		select {
		case err := <-done:
			assert.NoError(t, err)
		case <-time.After(6 * time.Second):
			t.Fatal("Wait did not return")
		}
		_, err = http.Get("http://" + s.Addr() + "/livez")
		assert.Error(t, err, "closed")
	})
}

// TestPutPodWarns checks that the answer of a PUT of a pod names the
// ephemeral consumers it takes down (warnings), as the dry run and the
// PUT of a dc do.
func TestPutPodWarns(t *testing.T) {
	ts := mustOpenServer(t)
	eph := group(natsraft.KindConsumer, "ORDERS/watch", "n0")
	eph.Ephemeral = true
	ts.view.Groups = append(ts.view.Groups, eph)
	resp, b := ts.do(t, "PUT", "/pods/n0", `{"reason":"kernel"}`)
	require.Equal(t, http.StatusAccepted, resp.StatusCode, "%s", b)
	var pc prober.PodChange
	require.NoError(t, json.Unmarshal(b, &pc))
	require.Len(t, pc.Warnings, 1, "%s", b)
	assert.Equal(t, "ORDERS/watch", pc.Warnings[0].Group)
	assert.Empty(t, pc.Violations)
}

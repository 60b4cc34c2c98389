package prober_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/prober-dev/prober/maintenance"
	"github.com/prober-dev/prober/prober"
)

// authnFunc is an Authenticator made of a function.
type authnFunc func(ctx context.Context, token string) (prober.User, bool, error)

func (f authnFunc) Authenticate(ctx context.Context, token string) (prober.User, bool, error) {
	return f(ctx, token)
}

// authzFunc is an Authorizer made of a function.
type authzFunc func(ctx context.Context, u prober.User, verb string) (bool, string, error)

func (f authzFunc) Authorize(ctx context.Context, u prober.User, verb string) (bool, string, error) {
	return f(ctx, u, verb)
}

// tokenReviews is a TokenReviewInterface made of a function.
type tokenReviews func(ctx context.Context, tr *authenticationv1.TokenReview) (*authenticationv1.TokenReview, error)

func (f tokenReviews) Create(ctx context.Context, tr *authenticationv1.TokenReview, _ metav1.CreateOptions) (*authenticationv1.TokenReview, error) {
	return f(ctx, tr)
}

// accessReviews is a SubjectAccessReviewInterface made of a function.
type accessReviews func(ctx context.Context, sar *authorizationv1.SubjectAccessReview) (*authorizationv1.SubjectAccessReview, error)

func (f accessReviews) Create(ctx context.Context, sar *authorizationv1.SubjectAccessReview, _ metav1.CreateOptions) (*authorizationv1.SubjectAccessReview, error) {
	return f(ctx, sar)
}

// fakeClock is a clock that moves only when told.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// Tokens of the middleware tests. Each is long enough to be found in a log
// if it leaked.
const (
	writerToken  = "writer-token-9f8e7d6c5b4a"
	readerToken  = "reader-token-1a2b3c4d5e6f"
	downToken    = "down-token-0011223344556677"
	brokenToken  = "broken-token-8899aabbccdd"
	sarDownToken = "sardown-token-ffeeddccbbaa"
	garbageToken = "garbage-token-deadbeefcafe"
)

// fakeAuth authenticates the tokens above: alice may do everything, bob
// only get; "down" and "sardown" stand for an API server that does not
// answer (at authentication and at authorization), "broken" for a
// misconfigured one. It records the verbs it was asked about.
type fakeAuth struct {
	mu    sync.Mutex
	verbs []string
}

func (f *fakeAuth) options() prober.AuthOptions {
	return prober.AuthOptions{
		Authenticator: authnFunc(func(_ context.Context, token string) (prober.User, bool, error) {
			switch token {
			case writerToken:
				return prober.User{Name: "alice", Groups: []string{"ops"}}, true, nil
			case readerToken:
				return prober.User{Name: "bob"}, true, nil
			case sarDownToken:
				return prober.User{Name: "carol"}, true, nil
			case downToken:
				return prober.User{}, false, fmt.Errorf("token review: %w: connection refused", prober.ErrAuthUnavailable)
			case brokenToken:
				return prober.User{}, false, errors.New("token review: forbidden")
			}
			return prober.User{}, false, nil
		}),
		Authorizer: f.authorizer(),
	}
}

func (f *fakeAuth) authorizer() prober.Authorizer {
	return authzFunc(func(_ context.Context, u prober.User, verb string) (bool, string, error) {
		f.mu.Lock()
		f.verbs = append(f.verbs, verb)
		f.mu.Unlock()
		switch u.Name {
		case "alice":
			return true, "", nil
		case "bob":
			return verb == prober.VerbGet, "RBAC: internal policy detail", nil
		case "carol":
			return false, "", fmt.Errorf("subject access review: %w", prober.ErrAuthUnavailable)
		}
		return false, "unknown", nil
	})
}

func (f *fakeAuth) asked() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.verbs...)
}

func withAuth(a prober.AuthOptions) serverOption {
	return func(o *prober.Options, _ *testServer) { o.Auth = a }
}

// serve sends one request through the whole handler as if it came from
// remote.
func serve(ts *testServer, method, path, remote, authorization, body string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	req.RemoteAddr = remote
	if authorization != "" {
		req.Header.Set("Authorization", authorization)
	}
	rec := httptest.NewRecorder()
	ts.Handler().ServeHTTP(rec, req)
	return rec
}

const remoteAddr = "10.1.2.3:40000"

func TestAuthMiddleware(t *testing.T) {
	bearer := func(tok string) string { return "Bearer " + tok }
	for _, tc := range []struct {
		name          string
		auth          func(f *fakeAuth) prober.AuthOptions // nil: f.options()
		method, path  string
		remote        string
		authorization string
		status        int
		code          string   // error code, "" for success
		message       string   // exact error message, when set
		wwwAuth       string   // WWW-Authenticate, when set
		requestedBy   string   // requestedBy of n0 afterwards, when set
		verbs         []string // verbs asked of the authorizer
	}{
		{name: "loopback without token", method: "PUT", path: "/pods/n0", remote: "127.0.0.1:5000",
			status: 202, requestedBy: prober.LoopbackUser},
		{name: "loopback anywhere in 127/8", method: "GET", path: "/pods/n0", remote: "127.8.9.10:5000", status: 200},
		{name: "ipv6 loopback", method: "GET", path: "/pods/n0", remote: "[::1]:5000", status: 200},
		{name: "ipv4-mapped loopback", method: "GET", path: "/pods/n0", remote: "[::ffff:127.0.0.1]:5000", status: 200},
		{name: "loopback with token records the user and is not authorized", method: "PUT", path: "/pods/n0",
			remote: "127.0.0.1:5000", authorization: bearer(readerToken), status: 202, requestedBy: "bob"},
		{name: "loopback with a bad token", method: "GET", path: "/pods/n0", remote: "127.0.0.1:5000",
			authorization: bearer(garbageToken), status: 401, code: maintenance.EUnauthorized, message: "Unauthorized"},
		{name: "remote without token", method: "GET", path: "/pods/n0", remote: remoteAddr,
			status: 401, code: maintenance.EUnauthorized, wwwAuth: `Bearer realm="prober"`},
		{name: "ipv4-mapped remote without token", method: "GET", path: "/raft", remote: "[::ffff:10.1.2.3]:5000",
			status: 401, code: maintenance.EUnauthorized},
		{name: "unparsable remote address is not loopback", method: "GET", path: "/pods/n0", remote: "pipe",
			status: 401, code: maintenance.EUnauthorized},
		{name: "basic auth is not a bearer token", method: "GET", path: "/pods/n0", remote: remoteAddr,
			authorization: "Basic YWxpY2U6c2VjcmV0", status: 401, code: maintenance.EUnauthorized, message: "Unauthorized",
			wwwAuth: `Bearer realm="prober", error="invalid_token"`},
		{name: "empty bearer token", method: "GET", path: "/pods/n0", remote: remoteAddr,
			authorization: "Bearer ", status: 401, code: maintenance.EUnauthorized, message: "Unauthorized"},
		{name: "garbage token", method: "GET", path: "/pods/n0", remote: remoteAddr,
			authorization: bearer(garbageToken), status: 401, code: maintenance.EUnauthorized, message: "Unauthorized",
			wwwAuth: `Bearer realm="prober", error="invalid_token"`},
		{name: "writer puts", method: "PUT", path: "/pods/n0", remote: remoteAddr,
			authorization: bearer(writerToken), status: 202, requestedBy: "alice", verbs: []string{"update"}},
		{name: "bearer scheme is case-insensitive", method: "PUT", path: "/pods/n0", remote: remoteAddr,
			authorization: "bearer " + writerToken, status: 202, requestedBy: "alice", verbs: []string{"update"}},
		{name: "reader gets", method: "GET", path: "/pods/n0", remote: remoteAddr,
			authorization: bearer(readerToken), status: 200, verbs: []string{"get"}},
		{name: "reader heads", method: "HEAD", path: "/pods/n0", remote: remoteAddr,
			authorization: bearer(readerToken), status: 200, verbs: []string{"get"}},
		{name: "reader reads /raft", method: "GET", path: "/raft", remote: remoteAddr,
			authorization: bearer(readerToken), status: 200, verbs: []string{"get"}},
		{name: "reader lists /pods", method: "GET", path: "/pods", remote: remoteAddr,
			authorization: bearer(readerToken), status: 200, verbs: []string{"get"}},
		{name: "reader may send the bare PUT /config, which only reads", method: "PUT", path: "/config", remote: remoteAddr,
			authorization: bearer(readerToken), status: 200, verbs: []string{"get"}},
		{name: "reader may not put", method: "PUT", path: "/pods/n0", remote: remoteAddr,
			authorization: bearer(readerToken), status: 403, code: maintenance.EForbidden,
			message: `Forbidden: user "bob" may not update the maintenance API`, verbs: []string{"update"}},
		{name: "reader may not delete", method: "DELETE", path: "/dcs/east", remote: remoteAddr,
			authorization: bearer(readerToken), status: 403, code: maintenance.EForbidden, verbs: []string{"update"}},
		{name: "token review unavailable", method: "GET", path: "/pods/n0", remote: remoteAddr,
			authorization: bearer(downToken), status: 503, code: maintenance.EUnavailable},
		{name: "token review misconfigured", method: "GET", path: "/pods/n0", remote: remoteAddr,
			authorization: bearer(brokenToken), status: 500, code: maintenance.EInternal, message: "internal error"},
		{name: "access review unavailable", method: "GET", path: "/pods/n0", remote: remoteAddr,
			authorization: bearer(sarDownToken), status: 503, code: maintenance.EUnavailable, verbs: []string{"get"}},
		{name: "no authenticator: remote token refused", auth: func(*fakeAuth) prober.AuthOptions { return prober.AuthOptions{} },
			method: "GET", path: "/pods/n0", remote: remoteAddr, authorization: bearer(writerToken),
			status: 401, code: maintenance.EUnauthorized, message: "Unauthorized"},
		{name: "no authenticator: loopback token ignored", auth: func(*fakeAuth) prober.AuthOptions { return prober.AuthOptions{} },
			method: "PUT", path: "/pods/n0", remote: "127.0.0.1:5000", authorization: bearer(writerToken),
			status: 202, requestedBy: prober.LoopbackUser},
		{name: "no authorizer fails closed",
			auth: func(f *fakeAuth) prober.AuthOptions {
				o := f.options()
				o.Authorizer = nil
				return o
			},
			method: "GET", path: "/pods/n0", remote: remoteAddr, authorization: bearer(writerToken),
			status: 403, code: maintenance.EForbidden},
		{name: "loopback needs a token when told so",
			auth: func(f *fakeAuth) prober.AuthOptions {
				o := f.options()
				o.LoopbackNeedsToken = true
				return o
			},
			method: "GET", path: "/pods/n0", remote: "127.0.0.1:5000", status: 401, code: maintenance.EUnauthorized},
		{name: "loopback with a token is authorized when loopback is not trusted",
			auth: func(f *fakeAuth) prober.AuthOptions {
				o := f.options()
				o.LoopbackNeedsToken = true
				return o
			},
			method: "PUT", path: "/pods/n0", remote: "127.0.0.1:5000", authorization: bearer(readerToken),
			status: 403, code: maintenance.EForbidden, verbs: []string{"update"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := &fakeAuth{}
			auth := f.options()
			if tc.auth != nil {
				auth = tc.auth(f)
			}
			ts := mustOpenServer(t, withAuth(auth))
			rec := serve(ts, tc.method, tc.path, tc.remote, tc.authorization, "")
			body := rec.Body.Bytes()
			require.Equal(t, tc.status, rec.Code, "body: %s", body)
			if tc.code != "" {
				e := decodeError(t, body)
				assert.Equal(t, tc.code, e.Code)
				if tc.message != "" {
					assert.Equal(t, tc.message, e.Message)
				}
				assert.NotContains(t, string(body), "internal policy detail", "the authorizer's reason is for the log only")
			}
			if tc.wwwAuth != "" {
				assert.Equal(t, tc.wwwAuth, rec.Header().Get("WWW-Authenticate"))
			}
			if tc.requestedBy != "" {
				assert.Equal(t, tc.requestedBy, ts.doc(t).Pods["n0"].RequestedBy)
			}
			assert.Equal(t, tc.verbs, f.asked())
			for _, tok := range []string{writerToken, readerToken, downToken, brokenToken, sarDownToken, garbageToken} {
				assert.NotContains(t, ts.logs.String(), tok, "a token leaked into the log")
			}
		})
	}
}

func TestAuthForbiddenDetails(t *testing.T) {
	ts := mustOpenServer(t, withAuth((&fakeAuth{}).options()))
	rec := serve(ts, "DELETE", "/pods/n0", remoteAddr, "Bearer "+readerToken, "")
	require.Equal(t, http.StatusForbidden, rec.Code, "body: %s", rec.Body)
	var body struct {
		Error struct {
			Code    string                  `json:"code"`
			Details prober.ForbiddenDetails `json:"details"`
		} `json:"error"`
	}
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &body))
	assert.Equal(t, prober.ForbiddenDetails{User: "bob", Verb: "update", Resource: "the maintenance API"}, body.Error.Details)
	assert.Contains(t, ts.logs.String(), "internal policy detail", "the authorizer's reason is logged")
}

func TestAuthOpenPaths(t *testing.T) {
	ts := mustOpenServer(t, withAuth((&fakeAuth{}).options()))
	for _, path := range []string{"/livez", "/readyz", "/metrics", "/openapi.json", "/", "/page/status.js", "/page/status.css"} {
		for _, authorization := range []string{"", "Bearer " + garbageToken} {
			t.Run(path+" "+fmt.Sprint(authorization != ""), func(t *testing.T) {
				rec := serve(ts, "GET", path, remoteAddr, authorization, "")
				assert.Equal(t, http.StatusOK, rec.Code, "body: %s", rec.Body)
			})
		}
	}
}

// TestAuthLogsMaskTokens checks that the failures are logged with a
// fingerprint of the token and never the token.
func TestAuthLogsMaskTokens(t *testing.T) {
	ts := mustOpenServer(t, withAuth((&fakeAuth{}).options()))
	for _, tok := range []string{garbageToken, garbageToken, downToken, brokenToken, writerToken} {
		serve(ts, "GET", "/pods/n0", remoteAddr, "Bearer "+tok, "")
	}
	logs := ts.logs.String()
	for _, tok := range []string{garbageToken, downToken, brokenToken, writerToken} {
		assert.NotContains(t, logs, tok)
	}
	var ids []string
	for _, line := range strings.Split(strings.TrimSpace(logs), "\n") {
		var ev struct {
			Message string `json:"message"`
			Token   string `json:"token"`
		}
		require.NoError(t, json.Unmarshal([]byte(line), &ev), "log line %s", line)
		if ev.Message == "unauthorized: token rejected" {
			ids = append(ids, ev.Token)
		}
	}
	require.Len(t, ids, 2, "logs:\n%s", logs)
	assert.Regexp(t, regexp.MustCompile(`^[0-9a-f]{12}$`), ids[0])
	assert.Equal(t, ids[0], ids[1], "the same token has the same fingerprint")
	assert.Contains(t, logs, "authentication unavailable")
	assert.Contains(t, logs, "authentication failed")
}

func TestTokenReviewAuthenticator(t *testing.T) {
	const token = "a-service-account-token-0123456789"
	valid := func(_ context.Context, tr *authenticationv1.TokenReview) (*authenticationv1.TokenReview, error) {
		out := tr.DeepCopy()
		out.Status = authenticationv1.TokenReviewStatus{
			Authenticated: true,
			User: authenticationv1.UserInfo{
				Username: "system:serviceaccount:nats:ops", UID: "uid-1",
				Groups: []string{"system:serviceaccounts", "system:serviceaccounts:nats"},
				Extra:  map[string]authenticationv1.ExtraValue{"authentication.kubernetes.io/pod-name": {"p"}},
			},
			Audiences: tr.Spec.Audiences,
		}
		return out, nil
	}
	invalid := func(_ context.Context, tr *authenticationv1.TokenReview) (*authenticationv1.TokenReview, error) {
		out := tr.DeepCopy()
		out.Status = authenticationv1.TokenReviewStatus{Error: "token has expired"}
		return out, nil
	}
	unavailable := func(context.Context, *authenticationv1.TokenReview) (*authenticationv1.TokenReview, error) {
		return nil, apierrors.NewServiceUnavailable("etcd is down")
	}
	forbidden := func(context.Context, *authenticationv1.TokenReview) (*authenticationv1.TokenReview, error) {
		return nil, apierrors.NewForbidden(schema.GroupResource{Group: "authentication.k8s.io", Resource: "tokenreviews"}, "", errors.New("no"))
	}
	hang := func(ctx context.Context, _ *authenticationv1.TokenReview) (*authenticationv1.TokenReview, error) {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	type step struct {
		advance time.Duration
		ok      bool
		calls   int // total calls of the fake after the step
		errIs   error
		errNot  error
		errAny  bool
	}
	for _, tc := range []struct {
		name   string
		review func(context.Context, *authenticationv1.TokenReview) (*authenticationv1.TokenReview, error)
		opts   prober.TokenReviewOptions
		steps  []step
	}{
		{name: "valid answer cached for the allow TTL", review: valid, steps: []step{
			{ok: true, calls: 1}, {ok: true, calls: 1}, {advance: 9 * time.Second, ok: true, calls: 1},
			{advance: time.Second, ok: true, calls: 2}, {ok: true, calls: 2},
		}},
		{name: "invalid answer cached for the deny TTL", review: invalid, steps: []step{
			{calls: 1}, {advance: 1900 * time.Millisecond, calls: 1}, {advance: 100 * time.Millisecond, calls: 2},
		}},
		{name: "custom TTL", review: valid, opts: prober.TokenReviewOptions{AllowTTL: time.Minute}, steps: []step{
			{ok: true, calls: 1}, {advance: 59 * time.Second, ok: true, calls: 1}, {advance: time.Second, ok: true, calls: 2},
		}},
		{name: "no caching", review: valid, opts: prober.TokenReviewOptions{AllowTTL: -1, DenyTTL: -1}, steps: []step{
			{ok: true, calls: 1}, {ok: true, calls: 2},
		}},
		{name: "unavailable is not cached", review: unavailable, steps: []step{
			{errIs: prober.ErrAuthUnavailable, calls: 1}, {errIs: prober.ErrAuthUnavailable, calls: 2},
		}},
		{name: "refused is a misconfiguration", review: forbidden, steps: []step{
			{errAny: true, errNot: prober.ErrAuthUnavailable, calls: 1},
		}},
		{name: "a hung API server times out as unavailable", review: hang,
			opts: prober.TokenReviewOptions{Timeout: 20 * time.Millisecond}, steps: []step{
				{errIs: prober.ErrAuthUnavailable, calls: 1},
			}},
		{name: "audience sent and matched", review: valid, opts: prober.TokenReviewOptions{Audiences: []string{"prober"}},
			steps: []step{{ok: true, calls: 1}}},
		{name: "audience mismatch",
			review: func(ctx context.Context, tr *authenticationv1.TokenReview) (*authenticationv1.TokenReview, error) {
				out, err := valid(ctx, tr)
				out.Status.Audiences = []string{"https://kubernetes.default.svc"}
				return out, err
			},
			opts: prober.TokenReviewOptions{Audiences: []string{"prober"}}, steps: []step{{calls: 1}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clock := newFakeClock()
			logs := &syncBuffer{}
			var mu sync.Mutex
			calls := 0
			o := tc.opts
			o.Now = clock.Now
			o.Logger = zerolog.New(logs)
			a := prober.NewTokenReviewAuthenticator(tokenReviews(func(ctx context.Context, tr *authenticationv1.TokenReview) (*authenticationv1.TokenReview, error) {
				mu.Lock()
				calls++
				mu.Unlock()
				assert.Equal(t, token, tr.Spec.Token)
				assert.Equal(t, tc.opts.Audiences, tr.Spec.Audiences)
				return tc.review(ctx, tr)
			}), o)
			for i, s := range tc.steps {
				clock.Add(s.advance)
				u, ok, err := a.Authenticate(context.Background(), token)
				switch {
				case s.errIs != nil:
					require.ErrorIs(t, err, s.errIs, "step %d", i)
				case s.errAny:
					require.Error(t, err, "step %d", i)
					assert.NotErrorIs(t, err, s.errNot, "step %d", i)
				default:
					require.NoError(t, err, "step %d", i)
				}
				assert.Equal(t, s.ok, ok, "step %d", i)
				if s.ok {
					assert.Equal(t, prober.User{
						Name: "system:serviceaccount:nats:ops", UID: "uid-1",
						Groups: []string{"system:serviceaccounts", "system:serviceaccounts:nats"},
						Extra:  map[string][]string{"authentication.kubernetes.io/pod-name": {"p"}},
					}, u, "step %d", i)
					u.Groups[0] = "system:masters" // must not reach the cache
				}
				if err != nil {
					assert.NotContains(t, err.Error(), token)
				}
				mu.Lock()
				assert.Equal(t, s.calls, calls, "calls after step %d", i)
				mu.Unlock()
			}
			assert.NotContains(t, logs.String(), token)
		})
	}
}

func TestTokenReviewAuthenticatorLogsWhy(t *testing.T) {
	const token = "an-expired-token-0123456789abcdef"
	logs := &syncBuffer{}
	a := prober.NewTokenReviewAuthenticator(tokenReviews(func(_ context.Context, tr *authenticationv1.TokenReview) (*authenticationv1.TokenReview, error) {
		out := tr.DeepCopy()
		out.Status.Error = "[invalid bearer token, service account token has expired]"
		return out, nil
	}), prober.TokenReviewOptions{Logger: zerolog.New(logs)})
	_, ok, err := a.Authenticate(context.Background(), token)
	require.NoError(t, err)
	assert.False(t, ok)
	assert.Contains(t, logs.String(), "service account token has expired")
	assert.Regexp(t, `"token":"[0-9a-f]{12}"`, logs.String())
	assert.NotContains(t, logs.String(), token)
}

func TestTokenReviewAuthenticatorCacheIsBounded(t *testing.T) {
	calls := 0
	a := prober.NewTokenReviewAuthenticator(tokenReviews(func(_ context.Context, tr *authenticationv1.TokenReview) (*authenticationv1.TokenReview, error) {
		calls++
		out := tr.DeepCopy()
		out.Status.Authenticated = true
		out.Status.User.Username = "u-" + tr.Spec.Token
		return out, nil
	}), prober.TokenReviewOptions{CacheSize: 2})
	tokens := []string{"token-one-0123456789", "token-two-0123456789", "token-three-0123456789"}
	for _, tok := range tokens {
		u, ok, err := a.Authenticate(context.Background(), tok)
		require.NoError(t, err)
		require.True(t, ok)
		assert.Equal(t, "u-"+tok, u.Name)
	}
	require.Equal(t, 3, calls)
	for _, tok := range tokens {
		u, ok, err := a.Authenticate(context.Background(), tok)
		require.NoError(t, err)
		require.True(t, ok)
		assert.Equal(t, "u-"+tok, u.Name)
	}
	assert.Greater(t, calls, 3, "three tokens cannot all be in a cache of two")
}

func TestTokenReviewAuthenticatorEvictsClosestToExpiry(t *testing.T) {
	clock := newFakeClock()
	var calls []string
	a := prober.NewTokenReviewAuthenticator(tokenReviews(func(_ context.Context, tr *authenticationv1.TokenReview) (*authenticationv1.TokenReview, error) {
		calls = append(calls, tr.Spec.Token)
		out := tr.DeepCopy()
		if strings.HasPrefix(tr.Spec.Token, "valid") {
			out.Status.Authenticated = true
			out.Status.User.Username = "u-" + tr.Spec.Token
		}
		return out, nil
	}), prober.TokenReviewOptions{CacheSize: 2, AllowTTL: time.Hour, DenyTTL: time.Minute, Now: clock.Now})
	steps := []struct {
		token     string
		wantCalls []string
	}{
		{"valid-long-lived-0123456789", []string{"valid-long-lived-0123456789"}},
		{"bogus-short-lived-0123456789", []string{"valid-long-lived-0123456789", "bogus-short-lived-0123456789"}},
		// Full: the denial expires first and makes room.
		{"valid-newcomer-0123456789", []string{"valid-long-lived-0123456789", "bogus-short-lived-0123456789", "valid-newcomer-0123456789"}},
		{"valid-long-lived-0123456789", []string{"valid-long-lived-0123456789", "bogus-short-lived-0123456789", "valid-newcomer-0123456789"}},
		{"bogus-short-lived-0123456789", []string{"valid-long-lived-0123456789", "bogus-short-lived-0123456789", "valid-newcomer-0123456789", "bogus-short-lived-0123456789"}},
	}
	for i, st := range steps {
		clock.Add(time.Second)
		_, _, err := a.Authenticate(context.Background(), st.token)
		require.NoError(t, err)
		assert.Equal(t, st.wantCalls, calls, "step %d", i)
	}
}

func TestTokenReviewAuthenticatorCollapsesConcurrentReviews(t *testing.T) {
	const token = "valid-burst-token-0123456789"
	const callers = 20
	var calls atomic.Int64
	release := make(chan struct{})
	a := prober.NewTokenReviewAuthenticator(tokenReviews(func(_ context.Context, tr *authenticationv1.TokenReview) (*authenticationv1.TokenReview, error) {
		calls.Add(1)
		<-release
		out := tr.DeepCopy()
		out.Status.Authenticated = true
		out.Status.User.Username = "burst"
		return out, nil
	}), prober.TokenReviewOptions{})
	var wg sync.WaitGroup
	names := make([]string, callers)
	for i := range callers {
		wg.Go(func() {
			u, ok, err := a.Authenticate(context.Background(), token)
			assert.NoError(t, err)
			assert.True(t, ok)
			names[i] = u.Name
		})
	}
	require.Eventually(t, func() bool { return calls.Load() == 1 }, 10*time.Second, time.Millisecond)
	close(release)
	wg.Wait()
	// Callers that joined the flight share its answer, later ones find it
	// cached: never a second review.
	assert.Equal(t, int64(1), calls.Load())
	for i, n := range names {
		assert.Equal(t, "burst", n, "caller %d", i)
	}

	t.Run("a caller whose context ends stops waiting", func(t *testing.T) {
		block := make(chan struct{})
		defer close(block)
		b := prober.NewTokenReviewAuthenticator(tokenReviews(func(context.Context, *authenticationv1.TokenReview) (*authenticationv1.TokenReview, error) {
			<-block
			return nil, errors.New("unreachable")
		}), prober.TokenReviewOptions{})
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		_, _, err := b.Authenticate(ctx, token)
		assert.ErrorIs(t, err, prober.ErrAuthUnavailable)
		assert.ErrorIs(t, err, context.DeadlineExceeded)
	})
}

func TestSubjectAccessReviewAuthorizer(t *testing.T) {
	alice := prober.User{Name: "alice", UID: "uid-a", Groups: []string{"ops"}, Extra: map[string][]string{"scopes": {"a", "b"}}}
	clock := newFakeClock()
	logs := &syncBuffer{}
	var asked []authorizationv1.SubjectAccessReviewSpec
	a := prober.NewSubjectAccessReviewAuthorizer(accessReviews(func(_ context.Context, sar *authorizationv1.SubjectAccessReview) (*authorizationv1.SubjectAccessReview, error) {
		asked = append(asked, sar.Spec)
		out := sar.DeepCopy()
		switch {
		case sar.Spec.User == "down":
			return nil, apierrors.NewTimeoutError("slow", 1)
		case sar.Spec.User == "evil":
			out.Status = authorizationv1.SubjectAccessReviewStatus{Allowed: true, Denied: true, Reason: "contradiction"}
		case sar.Spec.User == "mallory":
			// One authorizer denied, another failed: a denial.
			out.Status = authorizationv1.SubjectAccessReviewStatus{Denied: true, Reason: "policy", EvaluationError: "webhook timed out"}
		case sar.Spec.ResourceAttributes.Verb == "get":
			out.Status = authorizationv1.SubjectAccessReviewStatus{Allowed: true, Reason: "RBAC: allowed by RoleBinding"}
		default:
			out.Status = authorizationv1.SubjectAccessReviewStatus{EvaluationError: "webhook timed out"}
		}
		return out, nil
	}), prober.SubjectAccessReviewOptions{Namespace: "nats", Name: "prober-maintenance", Now: clock.Now, Logger: zerolog.New(logs)})
	assert.Equal(t, "configmap nats/prober-maintenance", a.Resource())

	type step struct {
		user    prober.User
		verb    string
		advance time.Duration
		allowed bool
		reason  string
		asks    int
		err     bool
	}
	for i, s := range []step{
		{user: alice, verb: "get", allowed: true, reason: "RBAC: allowed by RoleBinding", asks: 1},
		{user: alice, verb: "get", allowed: true, reason: "RBAC: allowed by RoleBinding", asks: 1},
		// No decision and an evaluation error: unavailable (503), as the
		// API server answers 500, and asked again each time.
		{user: alice, verb: "update", err: true, asks: 2},
		{user: alice, verb: "update", err: true, asks: 3},
		{user: prober.User{Name: "mallory"}, verb: "update", reason: "policy; evaluation error: webhook timed out", asks: 4},
		{user: prober.User{Name: "mallory"}, verb: "update", advance: 1500 * time.Millisecond, reason: "policy; evaluation error: webhook timed out", asks: 4},
		{user: prober.User{Name: "mallory"}, verb: "update", advance: 500 * time.Millisecond, reason: "policy; evaluation error: webhook timed out", asks: 5},
		{user: prober.User{Name: "alice", UID: "uid-a", Groups: []string{"ops", "admins"}}, verb: "get",
			allowed: true, reason: "RBAC: allowed by RoleBinding", asks: 6},
		{user: alice, verb: "get", advance: 8 * time.Second, allowed: true, reason: "RBAC: allowed by RoleBinding", asks: 7},
		{user: prober.User{Name: "evil"}, verb: "get", reason: "contradiction", asks: 8},
		{user: prober.User{Name: "down"}, verb: "get", err: true, asks: 9},
		{user: prober.User{Name: "down"}, verb: "get", err: true, asks: 10},
	} {
		clock.Add(s.advance)
		allowed, reason, err := a.Authorize(context.Background(), s.user, s.verb)
		if s.err {
			require.ErrorIs(t, err, prober.ErrAuthUnavailable, "step %d", i)
		} else {
			require.NoError(t, err, "step %d", i)
		}
		assert.Equal(t, s.allowed, allowed, "step %d", i)
		assert.Equal(t, s.reason, reason, "step %d", i)
		assert.Len(t, asked, s.asks, "reviews after step %d", i)
	}
	require.NotEmpty(t, asked)
	assert.Equal(t, authorizationv1.SubjectAccessReviewSpec{
		ResourceAttributes: &authorizationv1.ResourceAttributes{
			Namespace: "nats", Verb: "get", Version: "v1", Resource: "configmaps", Name: "prober-maintenance",
		},
		User: "alice", UID: "uid-a", Groups: []string{"ops"},
		Extra: map[string]authorizationv1.ExtraValue{"scopes": {"a", "b"}},
	}, asked[0])
	assert.Contains(t, logs.String(), "webhook timed out")
}

func TestSubjectAccessReviewAuthorizerDefaults(t *testing.T) {
	a := prober.NewSubjectAccessReviewAuthorizer(nil, prober.SubjectAccessReviewOptions{Name: "custom"})
	assert.Equal(t, "configmap default/custom", a.Resource())
	assert.Panics(t, func() { prober.NewSubjectAccessReviewAuthorizer(nil, prober.SubjectAccessReviewOptions{}) },
		"the ConfigMap's name is a wiring mistake to leave out")
}

func TestParseStaticTokens(t *testing.T) {
	const secret = "s3cr3t-token-value-0123456789"
	for _, tc := range []struct {
		name  string
		file  string
		users []string
		err   string
	}{
		{name: "users and groups, comments and blank lines", file: "# operators\n\n" + secret + ",alice\n" +
			"  another-token-0123456789 , bob , readonly , audit \n", users: []string{"alice", "bob"}},
		{name: "crlf line ends", file: secret + ",alice\r\n", users: []string{"alice"}},
		{name: "no user", file: secret + "\n", err: "line 1: want token,user[,group...]"},
		{name: "empty user", file: "# x\n" + secret + ", \n", err: "line 2: empty user name"},
		{name: "short token", file: "short,alice\n", err: "line 1: token shorter than 16 characters"},
		{name: "token with whitespace", file: "abc def ghi jkl mno,alice\n", err: "line 1: token contains whitespace"},
		{name: "empty group", file: secret + ",alice,,ops\n", err: "line 1: empty group name"},
		{name: "duplicate token", file: secret + ",alice\n" + secret + ",bob\n", err: "line 2: same token as line 1"},
		{name: "no tokens", file: "# nothing\n", err: "no tokens"},
		{name: "every bad line reported", file: "x\n" + secret + ",\n", err: "line 1: want token,user[,group...]\nline 2: empty user name"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tokens, err := prober.ParseStaticTokens(strings.NewReader(tc.file))
			if tc.err != "" {
				require.Error(t, err)
				assert.Equal(t, tc.err, err.Error())
				assert.NotContains(t, err.Error(), secret)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.users, tokens.Users())
		})
	}
}

func TestLoadStaticTokens(t *testing.T) {
	_, err := prober.LoadStaticTokens(t.TempDir() + "/missing")
	require.Error(t, err)
	assert.Contains(t, err.Error(), "token file")
}

func TestStaticTokens(t *testing.T) {
	tokens, err := prober.ParseStaticTokens(strings.NewReader(
		"alice-token-0123456789abcdef,alice\nbob-token-0123456789abcdef,bob,readonly,audit\n"))
	require.NoError(t, err)
	for _, tc := range []struct {
		token string
		ok    bool
		user  prober.User
	}{
		{token: "alice-token-0123456789abcdef", ok: true, user: prober.User{Name: "alice"}},
		{token: "bob-token-0123456789abcdef", ok: true, user: prober.User{Name: "bob", Groups: []string{"readonly", "audit"}}},
		{token: "alice-token-0123456789abcde"},
		{token: "alice-token-0123456789abcdefX"},
		{token: "ALICE-TOKEN-0123456789ABCDEF"},
		{token: ""},
	} {
		t.Run(tc.token, func(t *testing.T) {
			u, ok, err := tokens.Authenticate(context.Background(), tc.token)
			require.NoError(t, err)
			assert.Equal(t, tc.ok, ok)
			assert.Equal(t, tc.user, u)
		})
	}
}

func TestStaticAuthorizer(t *testing.T) {
	rw := prober.User{Name: "alice"}
	ro := prober.User{Name: "bob", Groups: []string{"audit", prober.ReadOnlyGroup}}
	for _, tc := range []struct {
		user    prober.User
		verb    string
		allowed bool
	}{
		{rw, prober.VerbGet, true},
		{rw, prober.VerbUpdate, true},
		{ro, prober.VerbGet, true},
		{ro, prober.VerbUpdate, false},
		{rw, "delete", false},
	} {
		t.Run(tc.user.Name+" "+tc.verb, func(t *testing.T) {
			allowed, reason, err := prober.StaticAuthorizer{}.Authorize(context.Background(), tc.user, tc.verb)
			require.NoError(t, err)
			assert.Equal(t, tc.allowed, allowed)
			assert.NotEmpty(t, reason)
		})
	}
}

// TestStaticTokensThroughTheAPI runs the standalone set-up end to end: a
// token file, a read-only user and a read-write one.
func TestStaticTokensThroughTheAPI(t *testing.T) {
	path := t.TempDir() + "/tokens"
	require.NoError(t, os.WriteFile(path, []byte("# standalone\nops-token-0123456789abcdef,ops\nview-token-0123456789abcdef,viewer,readonly\n"), 0o600))
	tokens, err := prober.LoadStaticTokens(path)
	require.NoError(t, err)
	ts := mustOpenServer(t, withAuth(prober.AuthOptions{Authenticator: tokens, Authorizer: prober.StaticAuthorizer{}}))
	for _, tc := range []struct {
		method, token string
		status        int
	}{
		{"GET", "view-token-0123456789abcdef", 200},
		{"PUT", "view-token-0123456789abcdef", 403},
		{"PUT", "ops-token-0123456789abcdef", 202},
		{"PUT", "ops-token-0123456789abcdeX", 401},
	} {
		rec := serve(ts, tc.method, "/pods/n0", remoteAddr, "Bearer "+tc.token, "")
		assert.Equal(t, tc.status, rec.Code, "%s with %s: %s", tc.method, tc.token[:4], rec.Body)
	}
	assert.Equal(t, "ops", ts.doc(t).Pods["n0"].RequestedBy)
}

package prober

import (
	"bufio"
	"container/heap"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode"

	"github.com/gorilla/mux"
	"github.com/rs/zerolog"
	"golang.org/x/sync/singleflight"
	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	authenticationv1client "k8s.io/client-go/kubernetes/typed/authentication/v1"
	authorizationv1client "k8s.io/client-go/kubernetes/typed/authorization/v1"

	"github.com/prober-dev/prober/maintenance"
)

// The verbs the authorization middleware asks about: the RBAC verbs on the
// maintenance ConfigMap that a request needs. GET and HEAD (and the bare
// PUT /config, which only reads) need get; PUT and DELETE need update.
const (
	VerbGet    = "get"
	VerbUpdate = "update"
)

// Defaults of TokenReviewOptions and SubjectAccessReviewOptions.
const (
	// DefaultAuthAllowTTL is how long a successful review is reused: a
	// revoked token or a removed RoleBinding takes effect within it.
	DefaultAuthAllowTTL = 10 * time.Second
	// DefaultAuthDenyTTL is how long a refusal is reused: short, so that a
	// newly granted permission works almost at once, but long enough that
	// a client retrying with a bad token does not hammer the API server.
	DefaultAuthDenyTTL = 2 * time.Second
	// DefaultAuthCacheSize bounds the entries of each cache, so that a
	// stream of made-up tokens cannot grow it without bound.
	DefaultAuthCacheSize = 4096
	// DefaultReviewTimeout bounds one TokenReview or SubjectAccessReview,
	// so that a hung API server turns into a 503 rather than a hung client.
	DefaultReviewTimeout = 5 * time.Second
)

// MinStaticTokenLength is the shortest token StaticTokens accepts.
const MinStaticTokenLength = 16

// ReadOnlyGroup is the group of static users that may only read: for them
// StaticAuthorizer allows get and refuses update.
const ReadOnlyGroup = "readonly"

// ErrAuthUnavailable marks an error of an Authenticator or Authorizer that
// could not reach its backend (the API server did not answer, timed out or
// failed); the API answers it with 503 and the client may retry. Any other
// error is a misconfiguration and is answered with 500.
var ErrAuthUnavailable = errors.New("authentication backend unavailable")

// Authenticator turns a bearer token into a user. ok is false for a token
// that is not valid; err is for a token that could not be checked.
type Authenticator interface {
	Authenticate(ctx context.Context, token string) (u User, ok bool, err error)
}

// Authorizer decides whether u may do verb (VerbGet or VerbUpdate) on the
// maintenance state. reason explains the decision for the log; it is never
// shown to the client.
type Authorizer interface {
	Authorize(ctx context.Context, u User, verb string) (allowed bool, reason string, err error)
}

// resourceNamer is implemented by an Authorizer that can name what it
// guards, for the message of a 403.
type resourceNamer interface {
	Resource() string
}

// AuthOptions says who may call the protected routes (/pods, /dcs, /config,
// /raft). /livez, /readyz, /metrics and /openapi.json are always open.
//
// A caller on the loopback interface (kubectl port-forward, or a container
// of the same pod) is trusted: without a token it is the user "loopback",
// with one the token is authenticated, so that requestedBy records who it
// is, but not authorized. Any other caller needs `Authorization: Bearer
// <token>`, which the Authenticator checks (401 otherwise) and then the
// Authorizer (403 otherwise).
type AuthOptions struct {
	// Authenticator checks bearer tokens. Nil means that no token can be
	// checked: only loopback callers are served, and a token they send is
	// ignored.
	Authenticator Authenticator
	// Authorizer decides what an authenticated, non-loopback caller may
	// do. Nil refuses them everything (403): authorization fails closed.
	Authorizer Authorizer
	// LoopbackNeedsToken stops trusting the loopback interface. Set it when
	// traffic from outside the pod reaches the prober through a local
	// proxy (a service-mesh sidecar connects from 127.0.0.6, for one).
	LoopbackNeedsToken bool
}

// readPUTRoute is the route whose PUT only reads (the bare PUT /config of
// older clients), so it needs get and not update.
const readPUTRoute = "/config"

// WithAuthentication puts the caller in the request context (see
// AuthOptions) or answers 401, and 503 when the token could not be checked.
// Clients learn only "Unauthorized"; why is logged, with the token shown
// only as a fingerprint.
func (s *Server) WithAuthentication(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		loopback := !s.auth.LoopbackNeedsToken && isLoopback(r.RemoteAddr)
		token, hasHeader := bearerToken(r)
		log := s.log.With().Str("method", r.Method).Str("path", r.URL.Path).Str("remote", r.RemoteAddr).Logger()
		switch {
		case !hasHeader && loopback:
			s.serveAs(w, r, next, User{Name: LoopbackUser, Loopback: true})
			return
		case !hasHeader:
			log.Info().Msg("unauthorized: no bearer token")
			w.Header().Set("WWW-Authenticate", `Bearer realm="prober"`)
			s.writeError(w, r, maintenance.Errorf(maintenance.EUnauthorized,
				"Unauthorized: send Authorization: Bearer <token>"))
			return
		case s.auth.Authenticator == nil && loopback:
			log.Debug().Msg("no authenticator configured: the token of a loopback caller is ignored")
			s.serveAs(w, r, next, User{Name: LoopbackUser, Loopback: true})
			return
		}
		var (
			u   User
			ok  bool
			err error
		)
		id := tokenID(token)
		switch {
		case token == "":
			log.Info().Msg("unauthorized: Authorization header is not a bearer token")
		case s.auth.Authenticator == nil:
			log.Info().Str("token", id).Msg("unauthorized: no authenticator configured, only loopback callers are served")
		default:
			u, ok, err = s.auth.Authenticator.Authenticate(r.Context(), token)
		}
		if err != nil {
			s.authError(w, r, log.With().Str("token", id).Logger(), "authentication", err)
			return
		}
		if !ok || u.Name == "" {
			if token != "" && s.auth.Authenticator != nil {
				log.Info().Str("token", id).Msg("unauthorized: token rejected")
			}
			w.Header().Set("WWW-Authenticate", `Bearer realm="prober", error="invalid_token"`)
			s.writeError(w, r, maintenance.Errorf(maintenance.EUnauthorized, "Unauthorized"))
			return
		}
		u.Loopback = loopback
		log.Debug().Str("token", id).Str("user", u.Name).Bool("loopback", loopback).Msg("authenticated")
		s.serveAs(w, r, next, u)
	})
}

// stillAuthorized says whether the caller of a request that lasts (the
// event stream) may still make it: its token still authenticates and its
// user is still allowed the verb, as WithAuthentication and
// WithAuthorization decided when it began; why says what ended. A check
// that cannot be made now (the API server does not answer) keeps the
// request: it is looked at again later.
func (s *Server) stillAuthorized(r *http.Request) (ok bool, why string) {
	u, known := UserFromContext(r.Context())
	if !known || u.Loopback {
		return true, ""
	}
	token, _ := bearerToken(r)
	if s.auth.Authenticator == nil || token == "" {
		return false, "no token can be checked"
	}
	log := s.log.With().Str("path", r.URL.Path).Str("remote", r.RemoteAddr).Str("token", tokenID(token)).Logger()
	now, valid, err := s.auth.Authenticator.Authenticate(r.Context(), token)
	if err != nil {
		log.Warn().Err(err).Msg("re-authentication of a lasting request failed; kept until the next look")
		return true, ""
	}
	if !valid || now.Name == "" {
		return false, "the token is no longer valid"
	}
	if s.auth.Authorizer == nil {
		return false, "no authorizer configured"
	}
	allowed, _, err := s.auth.Authorizer.Authorize(r.Context(), now, requestVerb(r))
	if err != nil {
		log.Warn().Err(err).Msg("re-authorization of a lasting request failed; kept until the next look")
		return true, ""
	}
	if !allowed {
		return false, fmt.Sprintf("%s may no longer %s it", now.Name, requestVerb(r))
	}
	return true, ""
}

// WithAuthorization lets the user that WithAuthentication put in the
// context through if the Authorizer allows the request's verb, and answers
// 403 naming the verb and the resource otherwise. Loopback callers are
// trusted and not asked about. The authorizer's reason goes to the log
// only: with webhook authorizers it can describe the cluster's policy.
func (s *Server) WithAuthorization(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u, ok := UserFromContext(r.Context())
		if !ok {
			s.log.Error().Str("path", r.URL.Path).Msg("authorization without authentication: no user in the request context")
			s.writeJSON(w, r, http.StatusInternalServerError, internalErrorBody)
			return
		}
		if u.Loopback {
			next.ServeHTTP(w, r)
			return
		}
		verb := requestVerb(r)
		log := s.log.With().Str("method", r.Method).Str("path", r.URL.Path).Str("remote", r.RemoteAddr).
			Str("user", u.Name).Str("verb", verb).Logger()
		var (
			allowed bool
			reason  = "no authorizer configured"
			err     error
		)
		if s.auth.Authorizer != nil {
			allowed, reason, err = s.auth.Authorizer.Authorize(r.Context(), u, verb)
		}
		if err != nil {
			s.authError(w, r, log, "authorization", err)
			return
		}
		if !allowed {
			resource := "the maintenance API"
			if n, ok := s.auth.Authorizer.(resourceNamer); ok {
				resource = n.Resource()
			}
			log.Info().Str("reason", reason).Msg("forbidden")
			s.writeError(w, r, &maintenance.Error{
				Code:    maintenance.EForbidden,
				Message: fmt.Sprintf("Forbidden: user %q may not %s %s", u.Name, verb, resource),
				Details: ForbiddenDetails{User: u.Name, Verb: verb, Resource: resource},
			})
			return
		}
		next.ServeHTTP(w, r)
	})
}

// ForbiddenDetails is the details of a 403: who was refused what.
type ForbiddenDetails struct {
	User     string `json:"user"`
	Verb     string `json:"verb"`
	Resource string `json:"resource"`
}

// serveAs serves r as u.
func (s *Server) serveAs(w http.ResponseWriter, r *http.Request, next http.Handler, u User) {
	if info := infoFrom(r.Context()); info != nil {
		info.user = u.Name
	}
	next.ServeHTTP(w, r.WithContext(ContextWithUser(r.Context(), u)))
}

// authError answers an error of the Authenticator or Authorizer: 503 when
// the backend is unavailable, else 500; the error is logged.
func (s *Server) authError(w http.ResponseWriter, r *http.Request, log zerolog.Logger, what string, err error) {
	switch {
	case r.Context().Err() != nil:
		s.writeError(w, r, r.Context().Err())
	case errors.Is(err, ErrAuthUnavailable):
		log.Warn().Err(err).Msg(what + " unavailable")
		w.Header().Set("Retry-After", "1")
		s.writeError(w, r, maintenance.Errorf(maintenance.EUnavailable, "%s is unavailable, try again", what))
	default:
		log.Error().Err(err).Msg(what + " failed")
		s.writeJSON(w, r, http.StatusInternalServerError, internalErrorBody)
	}
}

// bearerToken returns the token of the Authorization header and whether the
// header is there at all. A header that is not "Bearer <token>" gives an
// empty token.
func bearerToken(r *http.Request) (string, bool) {
	h := r.Header.Get("Authorization")
	if h == "" {
		return "", false
	}
	scheme, token, ok := strings.Cut(strings.TrimSpace(h), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", true
	}
	token = strings.TrimSpace(token)
	if strings.ContainsAny(token, " \t") {
		return "", true
	}
	return token, true
}

// requestVerb is the RBAC verb that r needs.
func requestVerb(r *http.Request) string {
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		return VerbGet
	case http.MethodPut:
		if route := mux.CurrentRoute(r); route != nil {
			if tpl, err := route.GetPathTemplate(); err == nil && tpl == readPUTRoute {
				return VerbGet
			}
		}
	}
	return VerbUpdate
}

// tokenKey is a per-process secret: the caches are keyed, and the logs show
// tokens, by an HMAC under it, so that neither holds anything from which a
// token, even a short one, could be recovered offline.
var tokenKey = func() []byte {
	k := make([]byte, 32)
	_, _ = rand.Read(k) // never fails (crypto/rand aborts the process instead)
	return k
}()

// tokenDigest is the cache key of a token.
func tokenDigest(token string) [32]byte {
	m := hmac.New(sha256.New, tokenKey)
	m.Write([]byte(token))
	var d [32]byte
	m.Sum(d[:0])
	return d
}

// tokenID is how the logs name a token: the first 12 hex digits of its
// digest, the same for the same token during the life of the process.
func tokenID(token string) string {
	if token == "" {
		return ""
	}
	d := tokenDigest(token)
	return hex.EncodeToString(d[:6])
}

// ttlCache is a small map of results that expire, bounded in size. A heap
// orders the entries by expiry: expired ones are dropped from its top, and
// when the cache is full the entry closest to expiry makes room, each in
// O(log n) under the lock.
type ttlCache[V any] struct {
	mu  sync.Mutex
	max int
	now func() time.Time
	m   map[[32]byte]*ttlEntry[V]
	h   ttlHeap[V]
}

type ttlEntry[V any] struct {
	k       [32]byte
	v       V
	expires time.Time
	i       int // index in the heap
}

func newTTLCache[V any](max int, now func() time.Time) *ttlCache[V] {
	return &ttlCache[V]{max: max, now: now, m: map[[32]byte]*ttlEntry[V]{}}
}

func (c *ttlCache[V]) get(k [32]byte) (V, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[k]
	if ok && c.now().Before(e.expires) {
		return e.v, true
	}
	if ok {
		c.remove(e)
	}
	var zero V
	return zero, false
}

func (c *ttlCache[V]) put(k [32]byte, v V, ttl time.Duration) {
	if ttl <= 0 || c.max <= 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.now()
	if e, ok := c.m[k]; ok {
		e.v, e.expires = v, now.Add(ttl)
		heap.Fix(&c.h, e.i)
		return
	}
	for len(c.h) > 0 && !now.Before(c.h[0].expires) {
		c.remove(c.h[0])
	}
	if len(c.m) >= c.max {
		c.remove(c.h[0])
	}
	e := &ttlEntry[V]{k: k, v: v, expires: now.Add(ttl)}
	c.m[k] = e
	heap.Push(&c.h, e)
}

// remove drops e from the map and the heap; c.mu is held.
func (c *ttlCache[V]) remove(e *ttlEntry[V]) {
	delete(c.m, e.k)
	heap.Remove(&c.h, e.i)
}

// ttlHeap is a min-heap of entries by expiry (container/heap).
type ttlHeap[V any] []*ttlEntry[V]

func (h ttlHeap[V]) Len() int           { return len(h) }
func (h ttlHeap[V]) Less(i, j int) bool { return h[i].expires.Before(h[j].expires) }
func (h ttlHeap[V]) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].i, h[j].i = i, j
}

func (h *ttlHeap[V]) Push(x any) {
	e := x.(*ttlEntry[V])
	e.i = len(*h)
	*h = append(*h, e)
}

func (h *ttlHeap[V]) Pop() any {
	old := *h
	e := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	return e
}

// reviewCache holds the common options of both reviews.
type reviewCache struct {
	AllowTTL  time.Duration
	DenyTTL   time.Duration
	CacheSize int
	Timeout   time.Duration
	Now       func() time.Time
}

func (o *reviewCache) complete() {
	if o.AllowTTL == 0 {
		o.AllowTTL = DefaultAuthAllowTTL
	}
	if o.DenyTTL == 0 {
		o.DenyTTL = DefaultAuthDenyTTL
	}
	if o.CacheSize == 0 {
		o.CacheSize = DefaultAuthCacheSize
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultReviewTimeout
	}
	if o.Now == nil {
		o.Now = time.Now
	}
}

// reviewError classifies an error of a review request: refused by the API
// server (our own credentials or RBAC are wrong, the API is not served) is
// a misconfiguration, anything else (unreachable, timed out, overloaded)
// ErrAuthUnavailable.
func reviewError(what string, err error) error {
	switch {
	case apierrors.IsForbidden(err), apierrors.IsUnauthorized(err):
		return fmt.Errorf("%s refused by the API server (the prober's ServiceAccount needs create on "+
			"tokenreviews and subjectaccessreviews, e.g. a binding to system:auth-delegator): %w", what, err)
	case apierrors.IsNotFound(err), apierrors.IsBadRequest(err), apierrors.IsInvalid(err), apierrors.IsMethodNotSupported(err):
		return fmt.Errorf("%s refused by the API server: %w", what, err)
	}
	return fmt.Errorf("%s: %w: %w", what, ErrAuthUnavailable, err)
}

// TokenReviewOptions configures a TokenReviewAuthenticator.
type TokenReviewOptions struct {
	// Audiences, when set, are sent with each review, and a token is valid
	// only if the API server finds it issued for one of them.
	Audiences []string
	// AllowTTL and DenyTTL are how long a valid and an invalid answer is
	// reused; zero means DefaultAuthAllowTTL and DefaultAuthDenyTTL, a
	// negative value no caching.
	AllowTTL time.Duration
	DenyTTL  time.Duration
	// CacheSize bounds the cache; zero means DefaultAuthCacheSize, a
	// negative value no caching.
	CacheSize int
	// Timeout bounds one review; zero means DefaultReviewTimeout.
	Timeout time.Duration
	// Logger receives why a token was rejected (tokens only as
	// fingerprints).
	Logger zerolog.Logger
	// Now is the clock of the cache; time.Now when nil.
	Now func() time.Time
}

// TokenReviewAuthenticator checks bearer tokens with the API server's
// TokenReview API: ServiceAccount tokens (from the TokenRequest API or a
// projected volume) and whatever else the cluster authenticates. Answers
// are cached by a keyed digest of the token, never the token itself.
type TokenReviewAuthenticator struct {
	client    authenticationv1client.TokenReviewInterface
	audiences []string
	o         reviewCache
	log       zerolog.Logger
	cache     *ttlCache[authnResult]
	flights   singleflight.Group
}

type authnResult struct {
	user User
	ok   bool
}

// NewTokenReviewAuthenticator returns an Authenticator over client, which
// is clientset.AuthenticationV1().TokenReviews(). The prober's own identity
// needs create on tokenreviews (ClusterRole system:auth-delegator).
func NewTokenReviewAuthenticator(client authenticationv1client.TokenReviewInterface, o TokenReviewOptions) *TokenReviewAuthenticator {
	rc := reviewCache{AllowTTL: o.AllowTTL, DenyTTL: o.DenyTTL, CacheSize: o.CacheSize, Timeout: o.Timeout, Now: o.Now}
	rc.complete()
	return &TokenReviewAuthenticator{
		client:    client,
		audiences: slices.Clone(o.Audiences),
		o:         rc,
		log:       o.Logger,
		cache:     newTTLCache[authnResult](rc.CacheSize, rc.Now),
	}
}

// Authenticate reviews token, or answers from the cache.
func (a *TokenReviewAuthenticator) Authenticate(ctx context.Context, token string) (User, bool, error) {
	key := tokenDigest(token)
	res, err := collapse(ctx, &a.flights, a.cache, key, func(ctx context.Context) (authnResult, error) {
		return a.review(ctx, key, token)
	})
	if err != nil {
		return User{}, false, err
	}
	return res.user.clone(), res.ok, nil
}

// collapse answers from cache, else runs review once for all the
// concurrent callers asking about the same key: a burst of requests with
// one new token costs one review. The flight looks at the cache again
// before reviewing: a caller that missed the cache just as the previous
// flight stored its answer and ended must not start a second review. The
// review runs detached from the first caller's cancellation (it is bounded
// by its own timeout); each caller stops waiting when its own ctx ends.
func collapse[V any](ctx context.Context, g *singleflight.Group, cache *ttlCache[V], key [32]byte, review func(context.Context) (V, error)) (V, error) {
	if v, ok := cache.get(key); ok {
		return v, nil
	}
	ch := g.DoChan(string(key[:]), func() (any, error) {
		if v, ok := cache.get(key); ok {
			return v, nil
		}
		return review(context.WithoutCancel(ctx))
	})
	select {
	case <-ctx.Done():
		var zero V
		return zero, fmt.Errorf("review: %w: %w", ErrAuthUnavailable, ctx.Err())
	case r := <-ch:
		if r.Err != nil {
			var zero V
			return zero, r.Err
		}
		return r.Val.(V), nil
	}
}

// review asks the API server about token and caches the answer.
func (a *TokenReviewAuthenticator) review(ctx context.Context, key [32]byte, token string) (authnResult, error) {
	id := hex.EncodeToString(key[:6])
	rctx, cancel := context.WithTimeout(ctx, a.o.Timeout)
	defer cancel()
	review, err := a.client.Create(rctx, &authenticationv1.TokenReview{
		Spec: authenticationv1.TokenReviewSpec{Token: token, Audiences: a.audiences},
	}, metav1.CreateOptions{})
	if err != nil {
		return authnResult{}, reviewError("token review of "+id, err)
	}
	st := review.Status
	log := a.log.With().Str("token", id).Logger()
	var res authnResult
	switch {
	case !st.Authenticated:
		log.Info().Str("error", st.Error).Msg("token review: not authenticated")
	case st.User.Username == "":
		log.Warn().Msg("token review: authenticated without a user name")
	case len(a.audiences) > 0 && !intersects(a.audiences, st.Audiences):
		log.Info().Strs("want", a.audiences).Strs("got", st.Audiences).Msg("token review: audience mismatch")
	default:
		res = authnResult{ok: true, user: User{
			Name:   st.User.Username,
			UID:    st.User.UID,
			Groups: slices.Clone(st.User.Groups),
			Extra:  extraFromReview(st.User.Extra),
		}}
	}
	ttl := a.o.DenyTTL
	if res.ok {
		ttl = a.o.AllowTTL
	}
	a.cache.put(key, res, ttl)
	return res, nil
}

func intersects(a, b []string) bool {
	for _, x := range a {
		if slices.Contains(b, x) {
			return true
		}
	}
	return false
}

func extraFromReview(e map[string]authenticationv1.ExtraValue) map[string][]string {
	if len(e) == 0 {
		return nil
	}
	out := make(map[string][]string, len(e))
	for k, v := range e {
		out[k] = slices.Clone([]string(v))
	}
	return out
}

// clone copies u so that a cached user is never shared with a request.
func (u User) clone() User {
	u.Groups = slices.Clone(u.Groups)
	if u.Extra != nil {
		extra := make(map[string][]string, len(u.Extra))
		for k, v := range u.Extra {
			extra[k] = slices.Clone(v)
		}
		u.Extra = extra
	}
	return u
}

// SubjectAccessReviewOptions configures a SubjectAccessReviewAuthorizer.
type SubjectAccessReviewOptions struct {
	// Namespace of the maintenance ConfigMap, the pod's own; empty means
	// "default", as for the ConfigMap store.
	Namespace string
	// Name of the maintenance ConfigMap; required.
	Name string
	// AllowTTL and DenyTTL are how long an allowed and a denied answer is
	// reused; zero means DefaultAuthAllowTTL and DefaultAuthDenyTTL, a
	// negative value no caching.
	AllowTTL time.Duration
	DenyTTL  time.Duration
	// CacheSize bounds the cache; zero means DefaultAuthCacheSize, a
	// negative value no caching.
	CacheSize int
	// Timeout bounds one review; zero means DefaultReviewTimeout.
	Timeout time.Duration
	// Logger receives the evaluation errors the API server reports.
	Logger zerolog.Logger
	// Now is the clock of the cache; time.Now when nil.
	Now func() time.Time
}

// SubjectAccessReviewAuthorizer asks the API server whether a user may get
// or update the maintenance ConfigMap: RBAC on that one object is the
// permission model of the API. Answers are cached per user and verb.
type SubjectAccessReviewAuthorizer struct {
	client    authorizationv1client.SubjectAccessReviewInterface
	namespace string
	name      string
	o         reviewCache
	log       zerolog.Logger
	cache     *ttlCache[authzResult]
	flights   singleflight.Group
}

type authzResult struct {
	allowed bool
	reason  string
}

// NewSubjectAccessReviewAuthorizer returns an Authorizer over client, which
// is clientset.AuthorizationV1().SubjectAccessReviews(). The prober's own
// identity needs create on subjectaccessreviews (ClusterRole
// system:auth-delegator).
func NewSubjectAccessReviewAuthorizer(client authorizationv1client.SubjectAccessReviewInterface, o SubjectAccessReviewOptions) *SubjectAccessReviewAuthorizer {
	if o.Name == "" {
		panic("prober: NewSubjectAccessReviewAuthorizer needs the name of the maintenance ConfigMap")
	}
	rc := reviewCache{AllowTTL: o.AllowTTL, DenyTTL: o.DenyTTL, CacheSize: o.CacheSize, Timeout: o.Timeout, Now: o.Now}
	rc.complete()
	a := &SubjectAccessReviewAuthorizer{
		client:    client,
		namespace: o.Namespace,
		name:      o.Name,
		o:         rc,
		log:       o.Logger,
		cache:     newTTLCache[authzResult](rc.CacheSize, rc.Now),
	}
	if a.namespace == "" {
		a.namespace = "default"
	}
	return a
}

// Resource names the guarded object: "configmap <namespace>/<name>".
func (a *SubjectAccessReviewAuthorizer) Resource() string {
	return "configmap " + a.namespace + "/" + a.name
}

// Authorize asks whether u may do verb on the maintenance ConfigMap, or
// answers from the cache.
func (a *SubjectAccessReviewAuthorizer) Authorize(ctx context.Context, u User, verb string) (bool, string, error) {
	key, err := accessKey(u, verb)
	if err != nil {
		return false, "", err
	}
	res, err := collapse(ctx, &a.flights, a.cache, key, func(ctx context.Context) (authzResult, error) {
		return a.review(ctx, key, u, verb)
	})
	if err != nil {
		return false, "", err
	}
	return res.allowed, res.reason, nil
}

// review asks the API server whether u may do verb and caches the answer.
func (a *SubjectAccessReviewAuthorizer) review(ctx context.Context, key [32]byte, u User, verb string) (authzResult, error) {
	spec := authorizationv1.SubjectAccessReviewSpec{
		ResourceAttributes: &authorizationv1.ResourceAttributes{
			Namespace: a.namespace,
			Verb:      verb,
			Version:   "v1",
			Resource:  "configmaps",
			Name:      a.name,
		},
		User:   u.Name,
		Groups: slices.Clone(u.Groups),
		UID:    u.UID,
	}
	if len(u.Extra) > 0 {
		spec.Extra = make(map[string]authorizationv1.ExtraValue, len(u.Extra))
		for k, v := range u.Extra {
			spec.Extra[k] = slices.Clone(v)
		}
	}
	rctx, cancel := context.WithTimeout(ctx, a.o.Timeout)
	defer cancel()
	review, err := a.client.Create(rctx, &authorizationv1.SubjectAccessReview{Spec: spec}, metav1.CreateOptions{})
	if err != nil {
		return authzResult{}, reviewError(fmt.Sprintf("subject access review (%s %s for %s)", verb, a.Resource(), u.Name), err)
	}
	st := review.Status
	res := authzResult{allowed: st.Allowed && !st.Denied, reason: st.Reason}
	if !res.allowed && !st.Denied && st.EvaluationError != "" {
		// No authorizer decided, and one failed (a webhook that timed
		// out): the API server itself answers 500 then. Unavailable, not
		// a denial, and not cached.
		a.log.Warn().Str("user", u.Name).Str("verb", verb).Str("error", st.EvaluationError).
			Msg("subject access review: no decision, evaluation error")
		return authzResult{}, fmt.Errorf("subject access review (%s %s for %s): no decision: %w: %s",
			verb, a.Resource(), u.Name, ErrAuthUnavailable, st.EvaluationError)
	}
	if st.EvaluationError != "" {
		a.log.Warn().Str("user", u.Name).Str("verb", verb).Str("error", st.EvaluationError).
			Msg("subject access review: evaluation error")
		res.reason = strings.TrimPrefix(res.reason+"; evaluation error: "+st.EvaluationError, "; ")
	}
	ttl := a.o.DenyTTL
	if res.allowed {
		ttl = a.o.AllowTTL
	}
	a.cache.put(key, res, ttl)
	return res, nil
}

// accessKey is the cache key of a question: the user's every attribute and
// the verb.
func accessKey(u User, verb string) ([32]byte, error) {
	b, err := json.Marshal(struct {
		V string              `json:"v"`
		N string              `json:"n"`
		U string              `json:"u"`
		G []string            `json:"g"`
		E map[string][]string `json:"e"`
	}{verb, u.Name, u.UID, u.Groups, u.Extra})
	if err != nil {
		return [32]byte{}, fmt.Errorf("authorization cache key: %w", err)
	}
	return sha256.Sum256(b), nil
}

// StaticTokens authenticates the bearer tokens listed in a file, for
// installs without Kubernetes (the --token-file flag). Each line that is not
// blank and does not start with '#' reads
//
//	token,user[,group...]
//
// with a token of at least MinStaticTokenLength characters and no
// whitespace or commas (e.g. `openssl rand -hex 32`). Only SHA-256 digests
// of the tokens are kept, and a token is compared with every one of them in
// constant time, so that neither the time taken nor an early exit tells an
// attacker how close a guess came. Pair it with StaticAuthorizer.
type StaticTokens struct {
	entries []staticToken
}

type staticToken struct {
	digest [sha256.Size]byte
	user   User
}

// LoadStaticTokens reads a token file (see StaticTokens).
func LoadStaticTokens(path string) (*StaticTokens, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("token file: %w", err)
	}
	defer f.Close()
	t, err := ParseStaticTokens(f)
	if err != nil {
		return nil, fmt.Errorf("token file %s: %w", path, err)
	}
	return t, nil
}

// ParseStaticTokens reads the lines of a token file (see StaticTokens).
// Errors name the line, never the token.
func ParseStaticTokens(r io.Reader) (*StaticTokens, error) {
	t := &StaticTokens{}
	seen := map[[sha256.Size]byte]int{}
	sc := bufio.NewScanner(r)
	var errs []error
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		fields := strings.Split(line, ",")
		for i := range fields {
			fields[i] = strings.TrimSpace(fields[i])
		}
		token := fields[0]
		switch {
		case len(fields) < 2:
			errs = append(errs, fmt.Errorf("line %d: want token,user[,group...]", n))
			continue
		case len(token) < MinStaticTokenLength:
			errs = append(errs, fmt.Errorf("line %d: token shorter than %d characters", n, MinStaticTokenLength))
			continue
		case strings.ContainsFunc(token, unicode.IsSpace):
			errs = append(errs, fmt.Errorf("line %d: token contains whitespace", n))
			continue
		case fields[1] == "":
			errs = append(errs, fmt.Errorf("line %d: empty user name", n))
			continue
		case slices.Contains(fields[2:], ""):
			errs = append(errs, fmt.Errorf("line %d: empty group name", n))
			continue
		}
		d := sha256.Sum256([]byte(token))
		if prev, dup := seen[d]; dup {
			errs = append(errs, fmt.Errorf("line %d: same token as line %d", n, prev))
			continue
		}
		seen[d] = n
		u := User{Name: fields[1]}
		if len(fields) > 2 {
			u.Groups = slices.Clone(fields[2:])
		}
		t.entries = append(t.entries, staticToken{digest: d, user: u})
	}
	if err := sc.Err(); err != nil {
		errs = append(errs, fmt.Errorf("read: %w", err))
	}
	if len(errs) == 0 && len(t.entries) == 0 {
		errs = append(errs, errors.New("no tokens"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return t, nil
}

// Users returns the user names, in file order (for a startup log line).
func (t *StaticTokens) Users() []string {
	names := make([]string, len(t.entries))
	for i, e := range t.entries {
		names[i] = e.user.Name
	}
	return names
}

// Authenticate compares token with every listed token in constant time.
func (t *StaticTokens) Authenticate(_ context.Context, token string) (User, bool, error) {
	d := sha256.Sum256([]byte(token))
	found, idx := 0, 0
	for i := range t.entries {
		eq := subtle.ConstantTimeCompare(d[:], t.entries[i].digest[:])
		idx = subtle.ConstantTimeSelect(eq, i, idx)
		found |= eq
	}
	if found == 0 {
		return User{}, false, nil
	}
	return t.entries[idx].user.clone(), true, nil
}

// StaticAuthorizer authorizes the users of StaticTokens: every one of them
// may get, and every one but the members of ReadOnlyGroup may update.
type StaticAuthorizer struct{}

// Authorize allows get to all and update to users outside ReadOnlyGroup.
func (StaticAuthorizer) Authorize(_ context.Context, u User, verb string) (bool, string, error) {
	switch {
	case verb == VerbGet:
		return true, "static token", nil
	case slices.Contains(u.Groups, ReadOnlyGroup):
		return false, "static token in group " + ReadOnlyGroup, nil
	case verb == VerbUpdate:
		return true, "static token", nil
	}
	return false, "unknown verb " + verb, nil
}

// Resource names what the static tokens guard.
func (StaticAuthorizer) Resource() string { return "the maintenance API" }

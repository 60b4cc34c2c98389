// Package prober is the HTTP API of the prober on :8889: the maintenance
// routes (/pods, /dcs, /config), the cluster's Raft health (/raft), the
// event stream (/events) and the probes (/livez, /readyz). Handlers only
// parse requests and render answers; the use cases live in
// maintenance.Service, the cluster view in the natsraft collector and the
// events in package events.
package prober

import (
	"context"
	"errors"
	"fmt"
	stdlog "log"
	"net"
	"net/http"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/mux"
	"github.com/rs/zerolog"

	"github.com/prober-dev/prober/events"
	"github.com/prober-dev/prober/maintenance"
)

// DefaultAddr is where the API listens when Options.Addr is empty.
const DefaultAddr = ":8889"

// Options configures a Server.
type Options struct {
	// Addr is the TCP address to listen on; DefaultAddr when empty. ":0"
	// picks a free port (see Server.Addr).
	Addr string
	// Listener, when set, is served instead of a listener on Addr: one
	// handed over by the caller (a test that breaks it, say).
	Listener net.Listener
	// Service carries out the maintenance requests.
	Service *maintenance.Service
	// Views serves /raft; Service.Views when nil.
	Views maintenance.ViewSource
	// DCs returns the dc of the pods whose dc is not their NATS cluster
	// name (in Kubernetes mode, the pod's dc label), by pod name: the dc
	// the maintenance service and the stored document use. /raft and the
	// diagnosis keep the NATS cluster names, which routes and gateways
	// follow; what is desired for a node, and the dc label of its
	// metrics, use this one. Nil means every dc is the NATS cluster name.
	DCs func() map[string]string
	// ClusterPort is the NATS route port, which the diagnosis's remedies
	// name; 0 means natsraft.DefaultClusterPort.
	ClusterPort int
	// Readiness answers /readyz per pod (?pod=<name>) and for every pod;
	// nil means always ready.
	Readiness Readiness
	// Auth says who may call the maintenance routes and /raft; the zero
	// value serves loopback callers only (see AuthOptions).
	Auth AuthOptions
	// PreStop serves POST /local/prestop; nil answers 404 (no local node).
	PreStop PreStopper
	// Reports serves GET /local/report, the local server's report for the
	// other sidecars; nil answers 404 (no local node).
	Reports LocalReporter
	// PeerIP tells whether ip is one of the NATS pods', to which (and to
	// loopback) GET /local/report is served; nil serves loopback only.
	PeerIP func(ip string) bool
	// Events serves GET /events; nil answers 503 (no event stream).
	Events *events.Hub
	// Heartbeat is how often an idle event stream sends a comment line;
	// DefaultHeartbeat when 0.
	Heartbeat time.Duration
	// WaitPoll is how often a request that waits for a phase (?wait=)
	// looks again when no event says the phases changed; DefaultWaitPoll
	// when 0.
	WaitPoll time.Duration
	Logger   zerolog.Logger
	// Now is the clock; time.Now when nil.
	Now func() time.Time
}

// Server is the HTTP API. It owns the router; each resource file registers
// its routes and handlers.
type Server struct {
	svc         *maintenance.Service
	dcs         func() map[string]string
	views       maintenance.ViewSource
	readiness   Readiness
	preStop     PreStopper
	reports     LocalReporter
	peerIP      func(ip string) bool
	events      *events.Hub
	heartbeat   time.Duration
	waitPoll    time.Duration
	auth        AuthOptions
	metrics     *metrics
	log         zerolog.Logger
	now         func() time.Time
	addr        string
	clusterPort int
	listener    net.Listener

	router  *mux.Router
	handler http.Handler
	srv     *http.Server

	// closing is closed when Close starts, so that requests waiting for a
	// phase answer at once and the shutdown stays short.
	closing   chan struct{}
	closeOnce sync.Once

	mu       sync.Mutex
	ln       net.Listener
	serveErr chan error // receives Serve's error (nil after Close) once
}

// NewServer builds the server and its routes; Open starts it.
func NewServer(o Options) *Server {
	s := &Server{
		svc:         o.Service,
		dcs:         o.DCs,
		views:       o.Views,
		readiness:   o.Readiness,
		preStop:     o.PreStop,
		reports:     o.Reports,
		peerIP:      o.PeerIP,
		events:      o.Events,
		heartbeat:   o.Heartbeat,
		waitPoll:    o.WaitPoll,
		auth:        o.Auth,
		log:         o.Logger,
		now:         o.Now,
		addr:        o.Addr,
		clusterPort: o.ClusterPort,
		listener:    o.Listener,
		router:      mux.NewRouter(),
		closing:     make(chan struct{}),
	}
	if s.views == nil && s.svc != nil {
		s.views = s.svc.Views
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.heartbeat <= 0 {
		s.heartbeat = DefaultHeartbeat
	}
	if s.waitPoll <= 0 {
		s.waitPoll = DefaultWaitPoll
	}
	if s.addr == "" {
		s.addr = DefaultAddr
	}
	s.router.NotFoundHandler = http.HandlerFunc(s.handleNotFound)
	// A path is matched as sent, never cleaned: gorilla/mux would answer
	// /pods/.. (or /pods/%2e%2e) with a redirect to /, where a bad name
	// deserves the same JSON 400 as any other.
	s.router.SkipClean(true)

	s.registerPodRoutes()
	s.registerDCRoutes()
	s.registerConfigRoutes()
	s.registerRolloutRoutes()
	s.registerRaftRoutes()
	s.registerEventRoutes()
	s.registerPageRoutes()
	s.registerBalanceRoutes()
	s.registerProbeRoutes()
	s.registerPreStopRoutes()
	s.registerReportRoutes()
	s.registerOpenAPIRoutes()
	s.metrics = newMetrics(s)
	s.registerMetricsRoutes()

	s.handler = s.accessLog(s.instrument(s.recoverPanics(s.router)))
	s.srv = &http.Server{
		Handler:           s.handler,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		// No WriteTimeout: a request may wait up to MaxWait for a phase.
		ErrorLog: stdlog.New(s.log.With().Str("component", "http").Logger(), "", 0),
	}
	return s
}

// Open binds the port, so that an address in use fails here, and serves in
// the background.
func (s *Server) Open() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln != nil {
		return fmt.Errorf("http server: already open on %s", s.ln.Addr())
	}
	ln, err := s.listener, error(nil)
	if ln == nil {
		ln, err = net.Listen("tcp", s.addr)
	}
	if err != nil {
		return fmt.Errorf("http server: listen on %s: %w", s.addr, err)
	}
	s.ln = ln
	s.serveErr = make(chan error, 1)
	go func() {
		err := s.srv.Serve(ln)
		if errors.Is(err, http.ErrServerClosed) {
			err = nil
		} else {
			s.log.Error().Err(err).Msg("http server stopped")
		}
		s.serveErr <- err
	}()
	s.log.Info().Str("addr", ln.Addr().String()).Msg("http server listening")
	return nil
}

// Addr returns the bound address once open, else the configured one.
func (s *Server) Addr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln != nil {
		return s.ln.Addr().String()
	}
	return s.addr
}

// Close shuts the server down gracefully: requests waiting for a phase
// answer at once with what they have, the others finish. When ctx ends
// first the remaining connections are closed hard.
func (s *Server) Close(ctx context.Context) error {
	s.closeOnce.Do(func() { close(s.closing) })
	if err := s.srv.Shutdown(ctx); err != nil {
		_ = s.srv.Close()
		return fmt.Errorf("http server: shutdown: %w", err)
	}
	return nil
}

// Wait blocks until the server stops serving or ctx ends. It returns the
// error that stopped Serve (nil after Close, or when ctx ended first), so
// that an app running the server in its run group ends when serving
// fails.
func (s *Server) Wait(ctx context.Context) error {
	s.mu.Lock()
	serveErr := s.serveErr
	s.mu.Unlock()
	if serveErr == nil {
		return errors.New("http server: not open")
	}
	select {
	case err := <-serveErr:
		if err != nil {
			return fmt.Errorf("http server: %w", err)
		}
		return nil
	case <-ctx.Done():
		return nil
	}
}

// methods maps HTTP methods to the handlers of one route.
type methods map[string]http.HandlerFunc

// route registers path with a handler per method. A method that the route
// does not have is answered 405 with an Allow header; HEAD is served by
// GET. middleware wraps the handlers (not the 405), innermost last.
func (s *Server) route(path string, m methods, middleware ...func(http.Handler) http.Handler) {
	handlers := map[string]http.Handler{}
	for method, h := range m {
		var wrapped http.Handler = h
		for i := len(middleware) - 1; i >= 0; i-- {
			wrapped = middleware[i](wrapped)
		}
		handlers[method] = wrapped
	}
	if h, ok := handlers[http.MethodGet]; ok && handlers[http.MethodHead] == nil {
		handlers[http.MethodHead] = h
	}
	allowed := make([]string, 0, len(handlers))
	for method := range handlers {
		allowed = append(allowed, method)
	}
	slices.Sort(allowed)
	allow := strings.Join(allowed, ", ")

	s.router.Handle(path, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if info := infoFrom(r.Context()); info != nil {
			info.route = path
		}
		h, ok := handlers[r.Method]
		if !ok {
			w.Header().Set("Allow", allow)
			s.writeError(w, r, maintenance.Errorf(maintenance.EMethod,
				"method %s is not allowed on %s (allowed: %s)", r.Method, path, allow))
			return
		}
		h.ServeHTTP(w, r)
	}))
}

// handleNotFound answers every path that has no route.
func (s *Server) handleNotFound(w http.ResponseWriter, r *http.Request) {
	s.writeError(w, r, maintenance.Errorf(maintenance.ENotFound, "no route for %s", r.URL.Path))
}

// requestInfo is filled in while a request goes down the chain and read by
// the access log on the way back.
type requestInfo struct {
	route string
	user  string
}

type infoKey struct{}

func infoFrom(ctx context.Context) *requestInfo {
	info, _ := ctx.Value(infoKey{}).(*requestInfo)
	return info
}

// statusWriter remembers the status and size of the answer.
type statusWriter struct {
	http.ResponseWriter
	status int
	bytes  int64
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(b)
	w.bytes += int64(n)
	return n, err
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// accessLog logs one line per request with the route template; probes at
// debug level so that they do not drown the rest.
func (s *Server) accessLog(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := s.now()
		info := &requestInfo{}
		sw := &statusWriter{ResponseWriter: w}
		next.ServeHTTP(sw, r.WithContext(context.WithValue(r.Context(), infoKey{}, info)))

		ev := s.log.Info()
		switch {
		case sw.status >= 500:
			ev = s.log.Warn()
		case info.route == livezPath || info.route == readyzPath || info.route == metricsPath:
			ev = s.log.Debug()
		}
		ev.Str("method", r.Method).Str("route", info.route).Str("path", r.URL.Path).
			Int("status", sw.status).Int64("bytes", sw.bytes).Dur("duration", s.now().Sub(start)).
			Str("remote", r.RemoteAddr).Str("user", info.user).Msg("request")
	})
}

// recoverPanics turns a panicking handler into a 500 and a logged stack,
// never a crash; when the handler had already written its header, the
// response is aborted instead (http.ErrAbortHandler), so that a truncated
// body is never taken for a whole one.
func (s *Server) recoverPanics(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sw, ok := w.(*statusWriter)
		if !ok {
			sw = &statusWriter{ResponseWriter: w}
		}
		defer func() {
			v := recover()
			if v == nil {
				return
			}
			if v == http.ErrAbortHandler {
				panic(v)
			}
			s.log.Error().Str("panic", fmt.Sprint(v)).Str("method", r.Method).Str("path", r.URL.Path).
				Bytes("stack", debug.Stack()).Msg("handler panicked")
			if sw.status != 0 {
				// The status and part of the body are out: a 500 can no
				// longer be sent, and finishing normally would pass a
				// truncated body off as complete. Abort the response so
				// that the client sees a broken connection or stream.
				panic(http.ErrAbortHandler)
			}
			s.writeJSON(sw, r, http.StatusInternalServerError, internalErrorBody)
		}()
		next.ServeHTTP(sw, r)
	})
}

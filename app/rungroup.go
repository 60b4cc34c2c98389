package app

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/prober-dev/prober/prober"
	"github.com/rs/zerolog"
)

// ShutdownBudget bounds an application's shutdown: the API server's close
// (requests waiting for a phase answer at once, the others finish), after
// which the other parts are told to stop.
const ShutdownBudget = 10 * time.Second

// serving is the part of an application that tests and callers wait on:
// the API server, once it serves.
type serving struct {
	mu      sync.Mutex
	started chan struct{}
	server  *prober.Server
}

// Started returns a channel closed once the API is serving.
func (s *serving) Started() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.started == nil {
		s.started = make(chan struct{})
	}
	return s.started
}

// Addr returns the API's bound address once Started is closed.
func (s *serving) Addr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.server == nil {
		return ""
	}
	return s.server.Addr()
}

// start records srv as serving and closes Started.
func (s *serving) start(srv *prober.Server) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.server = srv
	if s.started == nil {
		s.started = make(chan struct{})
	}
	close(s.started)
}

// closeServer returns the stop function of a run group that serves srv: it
// closes the server within ShutdownBudget, even when ctx has ended.
func closeServer(ctx context.Context, srv *prober.Server, log zerolog.Logger) func() {
	return func() {
		shutdownCtx, done := context.WithTimeout(context.WithoutCancel(ctx), ShutdownBudget)
		defer done()
		if err := srv.Close(shutdownCtx); err != nil {
			log.Warn().Err(err).Msg("close API")
		}
	}
}

// runGroup runs the long-running parts of an app under one context: the
// first part that fails ends the group, and Wait shuts down in order.
type runGroup struct {
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	failed chan struct{}
	once   sync.Once
	err    error
}

func newRunGroup(ctx context.Context) *runGroup {
	ctx, cancel := context.WithCancel(ctx)
	return &runGroup{ctx: ctx, cancel: cancel, failed: make(chan struct{})}
}

// Go runs run in the group. An error other than the group's cancellation
// ends the group, and is the one Wait returns if it is the first.
func (g *runGroup) Go(name string, run func(context.Context) error) {
	g.wg.Go(func() {
		err := run(g.ctx)
		if err == nil || (errors.Is(err, context.Canceled) && g.ctx.Err() != nil) {
			return
		}
		g.once.Do(func() {
			g.err = fmt.Errorf("%s: %w", name, err)
			close(g.failed)
		})
	})
}

// Wait blocks until parent ends or a part fails, then calls stop (the
// part that must end first, such as the HTTP server, so that no request
// meets a stopped part), cancels the other parts and waits for them. It
// returns the first failure, nil when parent ended.
func (g *runGroup) Wait(parent context.Context, stop func()) error {
	select {
	case <-parent.Done():
	case <-g.failed:
	}
	// From here on the parts end because they are told to: what they
	// return is not the group's failure.
	g.once.Do(func() {})
	if stop != nil {
		stop()
	}
	g.cancel()
	g.wg.Wait()
	return g.err
}

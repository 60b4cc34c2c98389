package prober

import (
	"context"
	"errors"
	"fmt"
	"sync"
)

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

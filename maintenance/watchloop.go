package maintenance

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/rs/zerolog"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/apimachinery/pkg/watch"
)

// ListWatch is what WatchLoop follows: one kind of object, listed and then
// watched from the list's resourceVersion.
type ListWatch struct {
	// List reads the current state, applies it and returns the list's
	// resourceVersion to watch from. Its error is logged and paced by the
	// back-off.
	List func(ctx context.Context) (resourceVersion string, err error)
	// Watch opens a watch with opts, to which it adds its selectors; opts
	// already carry the resourceVersion, bookmarks and the timeout.
	Watch func(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error)
	// Event applies an Added, Modified or Deleted event; an error ends the
	// watch, and the loop lists again after the back-off.
	Event func(ev watch.Event) error
	// Bookmark, if set, is told of every bookmark: the API server is
	// reachable and nothing changed.
	Bookmark func()
	// Live, if set, is told true when a watch is established and false
	// when it ends.
	Live func(established bool)
}

// WatchLoopOptions paces WatchLoop.
type WatchLoopOptions struct {
	// Name prefixes the errors of a watch ("watch <Name>: ...").
	Name string
	// WatchTimeout is the lifetime of one watch request (at least 1s); the
	// loop then opens the next one from where it left off.
	WatchTimeout time.Duration
	// Grace is added to WatchTimeout for the client-side deadline, which
	// only guards against an API server that hangs without closing.
	Grace time.Duration
	// Backoff paces listing again after a failed list or watch; it resets
	// once a watch makes progress.
	Backoff wait.Backoff
	// Logger receives the failures.
	Logger zerolog.Logger
}

// errWatchEndedEarly ends a watch that closed before delivering anything
// and well before its timeout: re-watching at once could spin, so the loop
// lists again after the back-off.
var errWatchEndedEarly = errors.New("the watch ended early without events")

// WatchLoop lists and watches lw until ctx ends: each watch resumes from
// the last resourceVersion seen when the previous one ends; an expired
// resourceVersion (410 Gone) lists again at once; any other failure, or a
// watch that closes at once without delivering anything, lists again after
// a growing back-off, so an unreachable API server is not hammered and a
// watch that keeps closing does not spin.
func WatchLoop(ctx context.Context, lw ListWatch, o WatchLoopOptions) {
	delay := o.Backoff.DelayFunc()
	for ctx.Err() == nil {
		rv, err := lw.List(ctx)
		for err == nil {
			var progressed bool
			rv, progressed, err = watchOnce(ctx, lw, o, rv)
			if progressed {
				delay = o.Backoff.DelayFunc()
			}
		}
		if ctx.Err() != nil {
			return
		}
		if apierrors.IsResourceExpired(err) || apierrors.IsGone(err) {
			o.Logger.Debug().Err(err).Msg("watch expired, listing again")
			continue
		}
		d := delay()
		o.Logger.Warn().Err(err).Dur("retryIn", d).Msg("watch failed")
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// watchOnce follows lw from resourceVersion rv until the watch ends. It
// returns the resourceVersion to resume from, whether the watch delivered
// or ended normally (so the back-off can reset), and nil if the watch
// simply ended, or the error that ended it.
func watchOnce(ctx context.Context, lw ListWatch, o WatchLoopOptions, rv string) (string, bool, error) {
	where := "watch"
	if o.Name != "" {
		where += " " + o.Name
	}
	secs := max(int64(o.WatchTimeout/time.Second), 1)
	wctx, cancel := context.WithTimeout(ctx, o.WatchTimeout+o.Grace)
	defer cancel()
	wi, err := lw.Watch(wctx, metav1.ListOptions{
		ResourceVersion:     rv,
		AllowWatchBookmarks: true,
		TimeoutSeconds:      &secs,
	})
	if err != nil {
		return rv, false, fmt.Errorf("%s: %w", where, err)
	}
	defer wi.Stop()
	started := time.Now()
	if lw.Live != nil {
		lw.Live(true)
		defer lw.Live(false)
	}
	progressed := false
	for {
		var ev watch.Event
		var ok bool
		select {
		case <-wctx.Done():
			return rv, progressed, fmt.Errorf("%s: %w", where, wctx.Err())
		case ev, ok = <-wi.ResultChan():
		}
		if !ok {
			// Ended by the server's timeout, or by a broken connection: in
			// both cases resume from rv; a failure shows on the next call.
			// A watch that ends at once with nothing delivered is not a
			// normal end: re-watching at once would spin.
			if !progressed && time.Since(started) < time.Duration(secs)*time.Second/2 {
				return rv, false, errWatchEndedEarly
			}
			return rv, true, nil
		}
		switch ev.Type {
		case watch.Added, watch.Modified, watch.Deleted:
			obj, err := meta.Accessor(ev.Object)
			if err != nil {
				return rv, progressed, fmt.Errorf("%s: unexpected %T in a %s event", where, ev.Object, ev.Type)
			}
			if err := lw.Event(ev); err != nil {
				return rv, progressed, fmt.Errorf("%s: %w", where, err)
			}
			rv, progressed = obj.GetResourceVersion(), true
		case watch.Bookmark:
			if obj, err := meta.Accessor(ev.Object); err == nil {
				rv = obj.GetResourceVersion()
			}
			if lw.Bookmark != nil {
				lw.Bookmark()
			}
			progressed = true
		case watch.Error:
			return rv, progressed, fmt.Errorf("%s: %w", where, apierrors.FromObject(ev.Object))
		}
	}
}

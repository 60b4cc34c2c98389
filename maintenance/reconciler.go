package maintenance

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/rs/zerolog"
)

// Defaults of ReconcilerOptions.
const (
	DefaultResync      = 5 * time.Second
	DefaultCatchUpPoll = 200 * time.Millisecond
	DefaultStepTimeout = 2 * time.Minute
)

const (
	// recRetryBase and recRetryCap bound the backoff after a failed step or an
	// unreadable store: 100ms, 200ms, 400ms … 5s.
	recRetryBase = 100 * time.Millisecond
	recRetryCap  = 5 * time.Second
	// recCatchUpReportInterval throttles status writes whose only change is the
	// catch-up detail, which can change on every poll.
	recCatchUpReportInterval = time.Second
)

// recErrUnchanged aborts a Store.Update whose function found nothing to change,
// so that no write (and no watch event for every reconciler) happens.
var recErrUnchanged = errors.New("unchanged")

// ReconcilerOptions configures a Reconciler. Store and Node are required.
type ReconcilerOptions struct {
	Store Store
	Node  Node
	// DC is the node's datacenter, so that a "dc.<dc>" entry applies to it.
	DC string
	// Resync is the period of a full re-derivation when nothing else wakes
	// the reconciler up; it is also how often ObservedAt is refreshed while
	// in maintenance. Default DefaultResync.
	Resync time.Duration
	// CatchUpPoll is how often Node.CaughtUp is asked while catching up.
	// Default DefaultCatchUpPoll.
	CatchUpPoll time.Duration
	// StepTimeout bounds one call into the Node, so that a hung step turns
	// into a Failed status and a retry. Default DefaultStepTimeout.
	StepTimeout time.Duration
	// Now is the clock (TTL expiry, status timestamps). Default time.Now.
	Now    func() time.Time
	Logger zerolog.Logger
}

// Reconciler drives one local NATS node to the state the Store asks for: into
// maintenance (hand off, quiesce, move clients, fence) while a "pod.<pod>" or
// "dc.<dc>" entry is in force, out of it (unfence, resume, catch up)
// otherwise, and reports each phase in "status.<pod>". Every pass re-derives
// the next action from the desired entry and the node's observed state, never
// from the stored phase alone, so a restart or a lost event converges again.
type Reconciler struct {
	store       Store
	node        Node
	pod, dc     string
	resync      time.Duration
	catchUpPoll time.Duration
	stepTimeout time.Duration
	now         func() time.Time
	log         zerolog.Logger

	// Owned by the Run goroutine. handedOff and movedClients remember the
	// steps of the current entering attempt that leave no observable trace on
	// the node; they are forgotten after a failure, so a retry hands off
	// again (leaderships may have come back in the meantime).
	entering     bool
	handedOff    bool
	movedClients bool
	failures     int
	// seen is the resourceVersion of the document the current decision is
	// based on; lastWritten that of this reconciler's last write when it
	// held nothing but its own change to seen, else "".
	seen        string
	lastWritten string

	mu         sync.Mutex
	phase      Phase
	ready      bool
	readyMsg   string
	everSynced bool
}

// NewReconciler returns a Reconciler for o.Node. It panics if o.Store or
// o.Node is nil, which is a wiring mistake.
func NewReconciler(o ReconcilerOptions) *Reconciler {
	if o.Store == nil || o.Node == nil {
		panic("maintenance: NewReconciler needs a Store and a Node")
	}
	if o.Resync <= 0 {
		o.Resync = DefaultResync
	}
	if o.CatchUpPoll <= 0 {
		o.CatchUpPoll = DefaultCatchUpPoll
	}
	if o.StepTimeout <= 0 {
		o.StepTimeout = DefaultStepTimeout
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	pod := o.Node.Name()
	return &Reconciler{
		store:       o.Store,
		node:        o.Node,
		pod:         pod,
		dc:          o.DC,
		resync:      o.Resync,
		catchUpPoll: o.CatchUpPoll,
		stepTimeout: o.StepTimeout,
		now:         o.Now,
		log:         o.Logger.With().Str("pod", pod).Str("dc", o.DC).Logger(),
		readyMsg:    "maintenance state not read yet",
	}
}

// Ready reports whether the local node may serve: false while it is desired
// or observed in maintenance, while it leaves maintenance until it has caught
// up, and before the maintenance state could be read once. The message says
// why.
func (r *Reconciler) Ready() (bool, string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.ready, r.readyMsg
}

// Phase returns the phase last reported for the local node, "" before the
// first pass.
func (r *Reconciler) Phase() Phase {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.phase
}

// Run reconciles on every change of the store, every Resync, at the earliest
// TTL expiry and, while a phase is in progress, right after each step. It
// blocks until ctx ends and then returns nil; the node is left as it is.
func (r *Reconciler) Run(ctx context.Context) error {
	r.log.Info().Dur("resync", r.resync).Msg("reconciler started")
	defer r.log.Info().Msg("reconciler stopped")

	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	var (
		watch       <-chan struct{}
		watchRetry  time.Time
		watchFailed bool
	)
	for {
		if watch == nil && !time.Now().Before(watchRetry) {
			w, err := r.store.Watch(ctx)
			switch {
			case err != nil && ctx.Err() == nil:
				if !watchFailed {
					r.log.Warn().Err(err).Msg("watch maintenance state; relying on resync")
				}
				watchFailed = true
				watchRetry = time.Now().Add(r.resync)
			case err == nil:
				watch, watchFailed = w, false
			}
		}

		delay, retry := r.sync(ctx)
		if ctx.Err() != nil {
			return nil
		}
		timer.Reset(delay)
	wait:
		for {
			select {
			case <-ctx.Done():
				return nil
			case <-timer.C:
				break wait
			case _, ok := <-watch:
				if !ok {
					watch, watchRetry = nil, time.Now().Add(recRetryBase)
					continue
				}
				// While backing off, the reconciler's own Failed write
				// must not cut the backoff short (that would retry a
				// persistent failure in a tight loop); a change by anyone
				// else, such as a DELETE, is acted on at once.
				if retry && r.onlyOwnWrites(ctx) {
					continue
				}
				break wait
			}
		}
	}
}

// onlyOwnWrites reports whether the stored document is still the one this
// reconciler wrote last (or cannot be read, so that there is nothing new to
// act on).
func (r *Reconciler) onlyOwnWrites(ctx context.Context) bool {
	doc, err := r.store.Get(ctx)
	return err != nil || (r.lastWritten != "" && doc.ResourceVersion == r.lastWritten)
}

// sync is one level-triggered pass: it reads the document, takes at most one
// step towards the desired state and returns when to pass again, and whether
// that is a retry after a failure.
func (r *Reconciler) sync(ctx context.Context) (delay time.Duration, retry bool) {
	doc, err := r.store.Get(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return 0, false
		}
		// Without the document nothing is known about the desired state:
		// the node stays exactly as it is, fenced or not.
		r.failures++
		r.log.Warn().Err(err).Int("attempt", r.failures).Msg("read maintenance state; keeping the node as it is")
		r.storeUnreadable(err)
		return r.backoff(), true
	}
	r.seen = doc.ResourceVersion
	now := r.now()
	if recHasExpired(doc, now) {
		stored, err := r.write(ctx, func(d *Document) error {
			if !d.Expire(now) {
				return recErrUnchanged
			}
			return nil
		})
		switch {
		case err == nil:
			r.log.Info().Msg("expired maintenance entries removed")
			doc = stored
		case !errors.Is(err, recErrUnchanged) && ctx.Err() == nil:
			// Desired ignores expired entries, so this only delays the
			// cleanup of the document, not the decision.
			r.log.Warn().Err(err).Msg("remove expired maintenance entries")
		}
	}

	entry, source, desired := doc.Desired(r.pod, r.dc, now)
	status, hasStatus := doc.Status[r.pod]
	fenced, quiesced := r.node.Fenced(), r.node.Quiesced()
	if desired != r.entering {
		// The direction changed (or this is the first pass): start afresh.
		r.entering, r.handedOff, r.movedClients, r.failures = desired, false, false, 0
	}

	if desired {
		delay, err = r.enter(ctx, entry, source, status, hasStatus, fenced, quiesced, now)
	} else {
		delay, err = r.leave(ctx, status, hasStatus, fenced, quiesced, now)
	}
	if err != nil {
		if ctx.Err() != nil {
			return 0, false
		}
		r.failures++
		r.handedOff, r.movedClients = false, false
		r.fail(ctx, err)
		return r.backoff(), true
	}
	if next, ok := recNextExpiry(doc, now); ok && next < delay {
		delay = next
	}
	return delay, false
}

// recStepError is a failed call into the Node: it is reported as Failed.
// Store errors are not (the status could not be written anyway).
type recStepError struct{ err error }

func (e *recStepError) Error() string { return e.err.Error() }
func (e *recStepError) Unwrap() error { return e.err }

// enter takes the next step into maintenance.
func (r *Reconciler) enter(ctx context.Context, entry Entry, source string, st Status, hasStatus, fenced, quiesced bool, now time.Time) (time.Duration, error) {
	// key names the entry in force, as stored: "pod.<pod>" or "dc.<dc>".
	key := "pod." + r.pod
	if source == SourceDC {
		key = "dc." + r.dc
	}
	why := key
	if entry.Reason != "" {
		why = fmt.Sprintf("%s: %s", key, entry.Reason)
	}
	if fenced && quiesced {
		r.setReady(false, fmt.Sprintf("in maintenance (%s)", key))
		if err := r.report(ctx, PhaseInMaintenance, "fenced and quiesced ("+why+")", now); err != nil {
			return 0, err
		}
		r.handedOff, r.movedClients, r.failures = false, false, 0
		return r.refreshIn(st, hasStatus, PhaseInMaintenance, now), nil
	}
	r.setReady(false, fmt.Sprintf("entering maintenance (%s)", key))
	if !hasStatus || !recEnteringPhase(st.Phase) {
		// A new request: show that it has been seen before acting on it.
		if err := r.report(ctx, PhaseRequested, "maintenance requested ("+why+")", now); err != nil {
			return 0, err
		}
	}
	switch {
	case !r.handedOff && !fenced && !quiesced:
		if err := r.step(ctx, PhaseHandingOff, "handing off Raft leaderships", now, "hand off", r.node.HandOff); err != nil {
			return 0, err
		}
		r.handedOff = true
	case !quiesced:
		if err := r.step(ctx, PhaseFencing, "quiescing JetStream", now, "quiesce", r.node.Quiesce); err != nil {
			return 0, err
		}
		if !r.node.Quiesced() {
			return 0, &recStepError{fmt.Errorf("quiesce %s: JetStream still enabled after quiesce", r.pod)}
		}
	case !r.movedClients && !fenced:
		if err := r.step(ctx, PhaseFencing, "moving clients to peers", now, "move clients", r.node.MoveClients); err != nil {
			return 0, err
		}
		r.movedClients = true
	default:
		if err := r.step(ctx, PhaseFencing, "fencing from peers", now, "fence", r.node.Fence); err != nil {
			return 0, err
		}
		if !r.node.Fenced() {
			return 0, &recStepError{fmt.Errorf("fence %s: node not fenced after fence", r.pod)}
		}
	}
	return 0, nil
}

// leave takes the next step out of maintenance.
func (r *Reconciler) leave(ctx context.Context, st Status, hasStatus, fenced, quiesced bool, now time.Time) (time.Duration, error) {
	switch {
	case fenced:
		r.setReady(false, "leaving maintenance: unfencing")
		if err := r.step(ctx, PhaseUnfencing, "lifting the fence", now, "unfence", r.node.Unfence); err != nil {
			return 0, err
		}
		if r.node.Fenced() {
			return 0, &recStepError{fmt.Errorf("unfence %s: node still fenced after unfence", r.pod)}
		}
		return 0, nil
	case quiesced:
		r.setReady(false, "leaving maintenance: resuming JetStream")
		if err := r.step(ctx, PhaseUnfencing, "resuming JetStream", now, "resume", r.node.Resume); err != nil {
			return 0, err
		}
		if r.node.Quiesced() {
			return 0, &recStepError{fmt.Errorf("resume %s: JetStream still disabled after resume", r.pod)}
		}
		return 0, nil
	case hasStatus:
		return r.catchUp(ctx, st, now)
	default:
		r.failures = 0
		r.setPhase(PhaseActive)
		r.setReady(true, "active")
		return r.resync, nil
	}
}

// catchUp polls Node.CaughtUp once; the status is removed (Active) once the
// node's groups are current.
func (r *Reconciler) catchUp(ctx context.Context, st Status, now time.Time) (time.Duration, error) {
	msg := "waiting for Raft groups to catch up"
	if st.Phase == PhaseCatchingUp {
		msg = st.Message
	}
	if err := r.report(ctx, PhaseCatchingUp, msg, now); err != nil {
		return 0, err
	}
	r.setReady(false, "leaving maintenance: catching up")
	sctx, cancel := context.WithTimeout(ctx, r.stepTimeout)
	ok, detail, err := r.node.CaughtUp(sctx)
	cancel()
	if err != nil {
		return 0, &recStepError{fmt.Errorf("catch up %s: %w", r.pod, err)}
	}
	if !ok {
		if detail == "" {
			detail = "not caught up yet"
		}
		r.setReady(false, "leaving maintenance: catching up: "+detail)
		if err := r.report(ctx, PhaseCatchingUp, detail, r.now()); err != nil {
			return 0, err
		}
		return r.catchUpPoll, nil
	}
	_, err = r.write(ctx, func(d *Document) error {
		if _, ok := d.Status[r.pod]; !ok {
			return recErrUnchanged
		}
		delete(d.Status, r.pod)
		return nil
	})
	if err != nil && !errors.Is(err, recErrUnchanged) {
		return 0, fmt.Errorf("remove status.%s: %w", r.pod, err)
	}
	r.log.Info().Str("phase", string(PhaseActive)).Msg("caught up, maintenance left")
	r.failures = 0
	r.setPhase(PhaseActive)
	r.setReady(true, "active")
	return r.resync, nil
}

// step reports phase/msg and then runs fn, bounded by the step timeout. The
// status is written first so that a GET shows what is being done; if it
// cannot be written, the step does not run.
func (r *Reconciler) step(ctx context.Context, phase Phase, msg string, now time.Time, op string, fn func(context.Context) error) error {
	if err := r.report(ctx, phase, msg, now); err != nil {
		return err
	}
	r.log.Debug().Str("phase", string(phase)).Str("step", op).Msg("step")
	sctx, cancel := context.WithTimeout(ctx, r.stepTimeout)
	defer cancel()
	if err := fn(sctx); err != nil {
		return &recStepError{fmt.Errorf("%s %s: %w", op, r.pod, err)}
	}
	return nil
}

// fail reports a failed step as Failed with its message, stamped when the
// step gave up (a hung step may have taken StepTimeout); a store error is
// only logged (writing the status would fail the same way).
func (r *Reconciler) fail(ctx context.Context, err error) {
	var se *recStepError
	if !errors.As(err, &se) {
		r.log.Warn().Err(err).Int("attempt", r.failures).Msg("write maintenance status; retrying")
		return
	}
	r.log.Warn().Err(err).Int("attempt", r.failures).Msg("maintenance step failed; retrying")
	r.setReady(false, "maintenance step failed: "+err.Error())
	if werr := r.report(ctx, PhaseFailed, err.Error(), r.now()); werr != nil && ctx.Err() == nil {
		r.log.Warn().Err(werr).Msg("report failed step")
	}
}

// report writes status.<pod> unless the only change would be ObservedAt and
// the stored one is younger than Resync (no write storms from resyncs). A
// catch-up detail alone is written at most every recCatchUpReportInterval.
func (r *Reconciler) report(ctx context.Context, phase Phase, msg string, now time.Time) error {
	var prev Phase
	_, err := r.write(ctx, func(d *Document) error {
		cur, ok := d.Status[r.pod]
		prev = ""
		if ok {
			prev = cur.Phase
		}
		since := now
		if ok && cur.Phase == phase {
			age := now.Sub(cur.ObservedAt)
			if cur.Message == msg && age < r.resync {
				return recErrUnchanged
			}
			if phase == PhaseCatchingUp && age < recCatchUpReportInterval {
				return recErrUnchanged
			}
			since = cur.PhaseSince
		}
		if d.Status == nil {
			d.Status = make(map[string]Status)
		}
		d.Status[r.pod] = Status{Phase: phase, Message: msg, ObservedAt: now, PhaseSince: since}
		return nil
	})
	if err != nil && !errors.Is(err, recErrUnchanged) {
		return fmt.Errorf("write status.%s (%s): %w", r.pod, phase, err)
	}
	if err == nil && prev != phase {
		r.log.Info().Str("phase", string(phase)).Str("from", string(prev)).Str("message", msg).Msg("phase")
	}
	r.setPhase(phase)
	return nil
}

// write is Store.Update that also remembers whether the stored result holds
// nothing but this reconciler's own change to the document it decided on, so
// that the watch event of that write alone does not count as news.
func (r *Reconciler) write(ctx context.Context, fn func(*Document) error) (*Document, error) {
	var base string
	stored, err := r.store.Update(ctx, func(d *Document) error {
		base = d.ResourceVersion
		return fn(d)
	})
	if err != nil {
		return nil, err
	}
	if base == r.seen {
		r.seen, r.lastWritten = stored.ResourceVersion, stored.ResourceVersion
	} else {
		r.lastWritten = ""
	}
	return stored, nil
}

// refreshIn returns when ObservedAt of a stable phase is due for refresh.
func (r *Reconciler) refreshIn(st Status, hasStatus bool, phase Phase, now time.Time) time.Duration {
	if !hasStatus || st.Phase != phase {
		return r.resync
	}
	d := st.ObservedAt.Add(r.resync).Sub(now)
	if d <= 0 || d > r.resync {
		return r.resync
	}
	return d
}

// storeUnreadable updates readiness when the document cannot be read: a
// node that is fenced or quiesced stays not ready; otherwise the last
// verdict stands, so that a store outage does not take every node out.
func (r *Reconciler) storeUnreadable(err error) {
	inMaintenance := r.node.Fenced() || r.node.Quiesced()
	r.mu.Lock()
	defer r.mu.Unlock()
	switch {
	case inMaintenance:
		r.ready, r.readyMsg = false, "in maintenance; maintenance state unreadable: "+err.Error()
	case !r.everSynced:
		r.ready, r.readyMsg = false, "maintenance state unreadable: "+err.Error()
	}
}

func (r *Reconciler) backoff() time.Duration {
	d := recRetryBase
	for i := 1; i < r.failures && d < recRetryCap; i++ {
		d *= 2
	}
	return min(d, recRetryCap)
}

func (r *Reconciler) setPhase(p Phase) {
	r.mu.Lock()
	r.phase = p
	r.mu.Unlock()
}

func (r *Reconciler) setReady(ready bool, msg string) {
	r.mu.Lock()
	r.ready, r.readyMsg, r.everSynced = ready, msg, true
	r.mu.Unlock()
}

// recEnteringPhase reports whether p belongs to an attempt to enter maintenance
// (Failed included, so that a retry does not start over at Requested).
func recEnteringPhase(p Phase) bool {
	switch p {
	case PhaseRequested, PhaseHandingOff, PhaseFencing, PhaseInMaintenance, PhaseFailed:
		return true
	}
	return false
}

func recHasExpired(d *Document, now time.Time) bool {
	for _, m := range []map[string]Entry{d.Pods, d.DCs} {
		for _, e := range m {
			if e.Expired(now) {
				return true
			}
		}
	}
	return false
}

// recNextExpiry returns the time until the earliest future expiry of any entry.
func recNextExpiry(doc *Document, now time.Time) (time.Duration, bool) {
	var (
		next  time.Duration
		found bool
	)
	for _, m := range []map[string]Entry{doc.Pods, doc.DCs} {
		for _, e := range m {
			if e.ExpiresAt == nil || !e.ExpiresAt.After(now) {
				continue
			}
			if in := e.ExpiresAt.Sub(now); !found || in < next {
				next, found = in, true
			}
		}
	}
	return next, found
}

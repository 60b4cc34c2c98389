package maintenance

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prober-dev/prober/natsraft"
	"github.com/rs/zerolog"
)

// Defaults of ReconcilerOptions.
const (
	DefaultResync = 5 * time.Second
	// DefaultCatchUpPoll asks for a view at most 100 ms old each time:
	// sweeps come faster only while a node catches up, and a node that
	// has caught up is ready about 0.1 s later, not 0.2 s.
	DefaultCatchUpPoll = 100 * time.Millisecond
	DefaultStepTimeout = 2 * time.Minute
	DefaultSafetyPoll  = time.Second
	DefaultMoveTimeout = 30 * time.Minute
	// DefaultDrainPoll is how often a draining node looks for a
	// leadership it regained (an election may pick it at any time).
	DefaultDrainPoll = 500 * time.Millisecond
	// DefaultReportRetention is how long the status of a node back from
	// maintenance keeps the report of its give-back (phase Active).
	DefaultReportRetention = time.Minute
)

const (
	// retryBase and retryCap bound the backoff after a failed step or an
	// unreadable store: 100ms, 200ms, 400ms … 5s.
	retryBase = 100 * time.Millisecond
	retryCap  = 5 * time.Second
	// catchUpReportInterval throttles status writes whose only change is the
	// catch-up detail, which can change on every poll.
	catchUpReportInterval = time.Second
	// statusListMax bounds the groups or streams a status message names,
	// "and N more" standing for the rest: the message is stored in the
	// state document (a ConfigMap holds at most 1 MiB) for every pod, and a
	// node of a large cluster may lead, or be held back by, thousands.
	statusListMax = 10
)

// errUnchanged aborts a Store.Update whose function found nothing to change,
// so that no write (and no watch event for every reconciler) happens.
var errUnchanged = errors.New("unchanged")

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
	Now func() time.Time
	// Views gives the cluster view with each node's dc as the Service sees
	// it. With it, an entry that is not forced is judged by the safety rule
	// again right before each step that takes the node away (hand off,
	// quiesce, fence), against the cluster as it is then: a peer that fell
	// over since the request was accepted holds the node back, at
	// Requested, until it is safe again. Without it (tests of the steps
	// alone) nothing is judged again.
	Views ViewSource
	// SafetyPoll is how often a node held back by the safety rule looks
	// again. Default DefaultSafetyPoll.
	SafetyPoll time.Duration
	// MoveTimeout bounds moving the streams of one replica off the node
	// and back (Evacuate, Restore), which copies their data. Default
	// DefaultMoveTimeout.
	MoveTimeout time.Duration
	// DrainPoll is how often a draining node looks whether it leads
	// something again, and moves it off. Default DefaultDrainPoll.
	DrainPoll time.Duration
	// ReportRetention is how long the give-back report stays in the
	// status (phase Active) before the status is removed. Default
	// DefaultReportRetention.
	ReportRetention time.Duration
	Logger          zerolog.Logger
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
	views       ViewSource
	safetyPoll  time.Duration
	moveTimeout time.Duration
	drainPoll   time.Duration
	retention   time.Duration
	log         zerolog.Logger

	// Owned by the Run goroutine. handedOff and movedClients remember the
	// steps of the current entering attempt that leave no observable trace on
	// the node; they are forgotten after a failure, so a retry hands off
	// again (leaderships may have come back in the meantime).
	entering     bool
	inForce      string // while entering, the key of the entry in force
	evacuated    bool   // this attempt moved the streams of one replica off
	handedOff    bool
	movedClients bool
	// snapshotted is set once this entering attempt has recorded the
	// leaderships the node held (Status.Leaders).
	snapshotted bool
	// mode and restore are, while entering, what the status reports:
	// ModeDrain once a drain has the node routed and serving, and the
	// entry's RestoreLeaders.
	mode    string
	restore *bool
	// forcedPast is set when a forced entry went on past a hand-off that
	// could not move everything: what stayed goes down with the node, as
	// the request said, and is not handed off again.
	forcedPast bool
	// inByForce is set while the node is in maintenance under a forced
	// entry. When that entry ends and one that is not forced still wants
	// the node out, the rule is judged as for a node entering: the entry
	// left may keep the node out only if that is safe. releasing is set
	// while it comes back because it was not (unfenced, resumed, caught
	// up); it then waits at Requested, held back, like any node the rule
	// holds back. inByForce is stored with the status (Status.InByForce)
	// and read back after a restart; it stays set while the node comes
	// back, so that a prober restarted on the way, which finds releasing
	// unset, judges the entry again.
	inByForce, releasing bool
	// resumed is set once the node has been brought back into service
	// outside leave (a drain lifting the fence a fence entry put up, a
	// hold resuming the JetStream it had quiesced): it is not ready again
	// before it has caught up.
	resumed bool
	// fenceVerified is set once this process has seen the fence of the
	// node verified from the peers' side (Node.Fence returned), and unset
	// when the fence is lifted. A fence found in place without it (its
	// check failed, or a prober restarted, or the pod was held at boot)
	// is verified again before the node is reported InMaintenance.
	fenceVerified bool
	failures      int
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
	if o.SafetyPoll <= 0 {
		o.SafetyPoll = DefaultSafetyPoll
	}
	if o.MoveTimeout <= 0 {
		o.MoveTimeout = DefaultMoveTimeout
	}
	if o.DrainPoll <= 0 {
		o.DrainPoll = DefaultDrainPoll
	}
	if o.ReportRetention <= 0 {
		o.ReportRetention = DefaultReportRetention
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
		views:       o.Views,
		safetyPoll:  o.SafetyPoll,
		moveTimeout: o.MoveTimeout,
		drainPoll:   o.DrainPoll,
		retention:   o.ReportRetention,
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
					watch, watchRetry = nil, time.Now().Add(retryBase)
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
	if hasExpired(doc, now) {
		stored, err := r.write(ctx, func(d *Document) error {
			if !d.Expire(now) {
				return errUnchanged
			}
			return nil
		})
		switch {
		case err == nil:
			r.log.Info().Msg("expired maintenance entries removed")
			doc = stored
		case !errors.Is(err, errUnchanged) && ctx.Err() == nil:
			// Desired ignores expired entries, so this only delays the
			// cleanup of the document, not the decision.
			r.log.Warn().Err(err).Msg("remove expired maintenance entries")
		}
	}

	entry, source, desired := doc.Desired(r.pod, r.dc, now)
	if desired && !entry.Force && doc.ForcedFence(r.pod, r.dc, now) {
		// The pod's own entry wins, but its dc's forced fence wants the
		// pod out too whatever the safety rule says: holding the pod
		// back on its own entry's verdict would strand the dc's request.
		entry.Force = true
	}
	status, hasStatus := doc.Status[r.pod]
	if desired != r.entering {
		// The direction changed (or this is the first pass): start afresh.
		r.entering, r.failures = desired, 0
		r.newAttempt()
		r.inByForce, r.releasing = desired && hasStatus && status.InByForce, false
	}
	fenced, err := r.node.Fenced()
	quiesced := r.node.Quiesced()
	switch {
	case err != nil:
		// Whether the node is fenced cannot be told: acting either way
		// would be a guess. The node stays as it is.
		err = &stepError{err: fmt.Errorf("read the fence of %s: %w", r.pod, err)}
	case desired:
		delay, err = r.enter(ctx, doc, entry, source, status, hasStatus, fenced, quiesced, now)
	default:
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
	if next, ok := nextExpiry(doc, now); ok && next < delay {
		delay = next
	}
	return delay, false
}

// stepError is a failed call into the Node: it is reported as Failed.
// Store errors are not (the status could not be written anyway).
type stepError struct {
	err error
	// serving says the node still serves as it did: a drain's step that
	// failed after the node was found caught up takes it out of nothing,
	// so its readiness stays.
	serving bool
}

// serving marks err, when a stepError, as a failure that leaves the node
// serving.
func serving(err error) error {
	var se *stepError
	if errors.As(err, &se) {
		se.serving = true
	}
	return err
}

func (e *stepError) Error() string { return e.err.Error() }
func (e *stepError) Unwrap() error { return e.err }

// enter takes the next step into maintenance.
func (r *Reconciler) enter(ctx context.Context, doc *Document, entry Entry, source string, st Status, hasStatus, fenced, quiesced bool, now time.Time) (time.Duration, error) {
	// key names the entry in force, as stored: "pod.<pod>" or "dc.<dc>".
	key := "pod." + r.pod
	if source == SourceDC {
		key = "dc." + r.dc
	}
	r.inForce = key
	r.mode = ModeFence
	why := key
	if entry.Reason != "" {
		why = fmt.Sprintf("%s: %s", key, entry.Reason)
	}
	if entry.Drain() {
		if !fenced && !quiesced {
			// Routed and serving, as a drain keeps it: nothing a force
			// took in is left to judge or to bring back.
			r.inByForce, r.releasing = false, false
		}
		return r.drain(ctx, doc, entry, key, why, st, hasStatus, fenced, quiesced, now)
	}
	if r.releasing && entry.Force {
		// Forced again on the way back (the entry, or its dc's forced
		// fence): the pod goes in whatever the rule says, from wherever
		// the way back got to.
		r.log.Info().Str("entry", key).Msg("forced again while coming back: going in")
		r.releasing = false
		r.newAttempt()
	}
	if r.releasing {
		if fenced || quiesced || (hasStatus && (st.Phase == PhaseUnfencing || st.Phase == PhaseCatchingUp)) {
			return r.leave(ctx, st, hasStatus, fenced, quiesced, now)
		}
		// Back (caught up, leaderships given back, streams moved back):
		// going in again on the entry left is a new attempt, with a roles
		// snapshot and an evacuation of its own.
		r.releasing = false
		r.newAttempt()
	}
	if !fenced && !quiesced {
		// Not in (any more): nothing a force took in is left to judge.
		r.inByForce = false
	}
	if fenced && quiesced && !entry.Force && r.inByForce {
		violations, cost, err := r.judge(ctx, doc, false, now)
		if err != nil {
			return 0, err
		}
		if len(violations) > 0 {
			r.log.Warn().Str("entry", key).Strs("groups", groupNames(violations)).
				Msgf("the forced entry has ended and %s alone would "+cost+": coming back", key, len(violations))
			// inByForce stays set, and stored, until the node is back: a
			// prober restarted on the way judges again and goes on.
			r.releasing = true
			return r.leave(ctx, st, hasStatus, fenced, quiesced, now)
		}
		r.inByForce = false
	}
	if fenced && quiesced {
		r.inByForce = r.inByForce || entry.Force
		r.setReady(false, fmt.Sprintf("in maintenance (%s)", key))
		if !r.fenceVerified {
			// Fence is idempotent and returns once the cut is verified
			// from both ends; the phase is not changed for it, so that a
			// restarted prober does not show a pod long in maintenance
			// as fencing again.
			vctx, cancel := context.WithTimeout(ctx, r.stepTimeout)
			err := r.node.Fence(vctx)
			cancel()
			if err != nil {
				return 0, &stepError{err: fmt.Errorf("verify the fence of %s: %w", r.pod, err)}
			}
			r.fenceVerified = true
		}
		if err := r.report(ctx, PhaseInMaintenance, "fenced and quiesced ("+why+")", now); err != nil {
			return 0, err
		}
		r.handedOff, r.movedClients, r.forcedPast, r.failures = false, false, false, 0
		return r.refreshIn(st, hasStatus, PhaseInMaintenance, now), nil
	}
	if entry.Evacuate && !r.evacuated && !fenced && !quiesced {
		// Moving a stream costs it nothing, so it comes before the safety
		// rule is judged again: the streams it moves are then no reason to
		// hold the node back.
		r.setReady(false, fmt.Sprintf("entering maintenance (%s)", key))
		// Each stream is recorded before its move starts: a prober killed
		// during a long evacuation must not forget what to move back, and
		// the next attempt finishes a move cut short (the stream then has
		// more than one replica and is no longer found as a single). A
		// stream recorded but never moved is on the node already when the
		// exit moves it back.
		var record func(string) error
		if !entry.KeepEvacuated {
			record = func(stream string) error { return r.recordEvacuated(ctx, []string{stream}) }
		}
		if err := r.stepWithin(ctx, r.moveTimeout, PhaseHandingOff, "moving streams of one replica off", now, "evacuate", func(ctx context.Context) error {
			_, err := r.node.Evacuate(ctx, st.Evacuated, record)
			return err
		}); err != nil {
			return 0, err
		}
		r.evacuated = true
		return 0, nil
	}
	if !fenced && !entry.Force {
		if held, delay, err := r.holdIfUnsafe(ctx, doc, key, quiesced, false, now); held || err != nil {
			return delay, err
		}
	}
	r.setReady(false, fmt.Sprintf("entering maintenance (%s)", key))
	if !hasStatus || !enteringPhase(st.Phase) || r.heldBack(st) {
		// A new request (or one the safety rule held back until now):
		// show that it has been seen before acting on it.
		if err := r.report(ctx, PhaseRequested, "maintenance requested ("+why+")", now); err != nil {
			return 0, err
		}
	}
	switch {
	case !r.handedOff && !fenced && !quiesced:
		if err := r.snapshot(ctx, st); err != nil {
			return 0, err
		}
		scope := r.scope(ctx, doc, true, now)
		if err := r.step(ctx, PhaseHandingOff, "handing off Raft leaderships", now, "hand off", func(ctx context.Context) error {
			return r.node.HandOff(ctx, scope)
		}); err != nil {
			var se *stepError
			if !entry.Force || !errors.As(err, &se) || ctx.Err() != nil {
				return 0, err
			}
			// Forced: a group with no other peer to lead it (the last
			// members of a group all forced in) cannot be handed off, and
			// waiting for it would strand the node short of what was asked.
			r.log.Warn().Err(err).Msg("forced maintenance goes on without a complete hand-off")
			r.forcedPast = true
		}
		r.handedOff = true
	case !quiesced:
		// A leadership may have come back since the hand-off: quiesce only
		// a node that leads nothing, else hand off again.
		if !fenced && !r.forcedPast {
			leads, err := r.node.Leads(ctx, natsraft.Scope{Leaving: true})
			if err != nil {
				return 0, &stepError{err: fmt.Errorf("read what %s leads: %w", r.pod, err)}
			}
			if len(leads) > 0 {
				r.log.Info().Strs("groups", leads).Msg("leads again after the hand-off; handing off again")
				r.handedOff = false
				return 0, nil
			}
		}
		// Nor, unless forced, a node restoring a snapshot: NATS's shutdown
		// would wait for it.
		if wait, err := r.awaitRestore(ctx, entry, now); wait > 0 || err != nil {
			return wait, err
		}
		if err := r.recordDark(ctx, doc, now); err != nil {
			return 0, err
		}
		if err := r.step(ctx, PhaseFencing, "quiescing JetStream", now, "quiesce", r.node.Quiesce); err != nil {
			return 0, err
		}
		if !r.node.Quiesced() {
			return 0, &stepError{err: fmt.Errorf("quiesce %s: JetStream still enabled after quiesce", r.pod)}
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
		if ok, err := r.node.Fenced(); err != nil || !ok {
			return 0, &stepError{err: fmt.Errorf("fence %s: node not fenced after fence (%v)", r.pod, err)}
		}
		r.fenceVerified = true
	}
	return 0, nil
}

// awaitRestore says how long a node entering maintenance waits before it
// is quiesced, 0 when it need not: while streams of it restore a snapshot
// from their leader (Node.Restoring), which NATS's JetStream shutdown waits
// for, it waits at Fencing, saying why, and looks again every SafetyPoll.
// A catch-up from a leader in reach ends on its own; one whose leader is
// away (fenced, down) would hold the shutdown as long. A forced entry does
// not wait: the node is quiesced and the shutdown's end is left to NATS
// (JetStream is off as it begins; the fence follows).
func (r *Reconciler) awaitRestore(ctx context.Context, entry Entry, now time.Time) (time.Duration, error) {
	streams, err := r.node.Restoring(ctx)
	switch {
	case err != nil:
		return 0, &stepError{err: fmt.Errorf("read what %s restores: %w", r.pod, err)}
	case len(streams) == 0:
		return 0, nil
	case entry.Force:
		r.log.Warn().Strs("streams", streams).
			Msg("forced: quiescing while streams restore a snapshot; NATS's JetStream shutdown ends when their catch-up does")
		return 0, nil
	}
	msg := fmt.Sprintf("waiting for %s to restore a snapshot from the leader before quiescing JetStream (NATS's shutdown would wait for it)",
		natsraft.JoinBounded(streams, statusListMax, ", "))
	if err := r.report(ctx, PhaseFencing, msg, now); err != nil {
		return 0, err
	}
	return r.safetyPoll, nil
}

// drain takes the next step of a leadership-only maintenance: a node
// still fenced or quiesced (the entry was a fence before) is brought back
// first; then every leadership it holds is moved off, and looked for again
// every DrainPoll, since an election may hand one back at any time. The
// node stays routed, current and ready throughout; it reaches
// InMaintenance (mode drain) once it leads nothing a hand-off can move.
func (r *Reconciler) drain(ctx context.Context, doc *Document, entry Entry, key, why string, st Status, hasStatus, fenced, quiesced bool, now time.Time) (time.Duration, error) {
	switch {
	case fenced:
		r.setReady(false, fmt.Sprintf("draining (%s): lifting the fence first", key))
		r.fenceVerified = false
		if err := r.step(ctx, PhaseUnfencing, "lifting the fence: the entry asks for a drain", now, "unfence", r.node.Unfence); err != nil {
			return 0, err
		}
		if still, err := r.node.Fenced(); err != nil || still {
			return 0, &stepError{err: fmt.Errorf("unfence %s: node still fenced after unfence (%v)", r.pod, err)}
		}
		r.resumed = true
		return 0, nil
	case quiesced:
		r.setReady(false, fmt.Sprintf("draining (%s): resuming JetStream first", key))
		if err := r.step(ctx, PhaseUnfencing, "resuming JetStream: the entry asks for a drain", now, "resume", r.node.Resume); err != nil {
			return 0, err
		}
		if r.node.Quiesced() {
			return 0, &stepError{err: fmt.Errorf("resume %s: JetStream still disabled after resume", r.pod)}
		}
		r.resumed = true
		return 0, nil
	}
	r.mode = ModeDrain
	if ok, err := r.readyOnceCaughtUp(ctx, fmt.Sprintf("draining (%s)", key)); err != nil || !ok {
		return r.catchUpPoll, err
	}
	settled := hasStatus && (st.Phase == PhaseHandingOff || st.Phase == PhaseInMaintenance)
	if !entry.Force && !settled {
		if held, delay, err := r.holdIfUnsafe(ctx, doc, key, false, true, now); held || err != nil {
			return delay, err
		}
	}
	r.setReady(true, fmt.Sprintf("draining (%s): routed and serving, leading nothing", key))
	if !hasStatus || !enteringPhase(st.Phase) || r.heldBack(st) {
		if err := r.report(ctx, PhaseRequested, "drain requested ("+why+")", now); err != nil {
			return 0, err
		}
	}
	if err := r.snapshot(ctx, st); err != nil {
		return 0, serving(err)
	}
	leads, err := r.node.Leads(ctx, natsraft.Scope{})
	if err != nil {
		return 0, serving(&stepError{err: fmt.Errorf("read what %s leads: %w", r.pod, err)})
	}
	if len(leads) > 0 {
		phase, msg := PhaseHandingOff, "moving leaderships off: "+natsraft.JoinBounded(leads, statusListMax, ", ")
		if hasStatus && st.Phase == PhaseInMaintenance {
			// A leadership an election gave back: the node stays in
			// maintenance while it moves off again.
			phase, msg = PhaseInMaintenance, "moving a regained leadership off: "+natsraft.JoinBounded(leads, statusListMax, ", ")
			r.log.Info().Strs("groups", leads).Msg("leads again while draining; moving off")
		}
		scope := r.scope(ctx, doc, false, now)
		if err := r.step(ctx, phase, msg, now, "hand off", func(ctx context.Context) error {
			return r.node.HandOff(ctx, scope)
		}); err != nil {
			var se *stepError
			if !entry.Force || !errors.As(err, &se) || ctx.Err() != nil {
				return 0, serving(err)
			}
			// Forced: a leadership no healthy peer can take (its other
			// members are down, or draining too) stays here; the rest
			// moved. The pod is drained but for it, and tries again.
			r.failures++
			r.log.Warn().Err(err).Msg("forced drain goes on without a complete hand-off")
			if err := r.report(ctx, PhaseInMaintenance, "drained but for what no healthy peer can take: "+err.Error()+" ("+why+")", now); err != nil {
				return 0, err
			}
			return r.backoff(), nil
		}
		return 0, nil
	}
	if err := r.report(ctx, PhaseInMaintenance, "drained: leads nothing, routed and serving ("+why+")", now); err != nil {
		return 0, err
	}
	r.failures = 0
	return r.drainPoll, nil
}

// newAttempt forgets what the current attempt at entering (or leaving) has
// done, so that the next pass starts from the node's own state.
func (r *Reconciler) newAttempt() {
	r.handedOff, r.movedClients, r.evacuated = false, false, false
	r.snapshotted, r.forcedPast, r.resumed = false, false, false
}

// snapshot records, once per entering attempt and before the first
// hand-off, the leaderships the node holds (Status.Leaders), unless the
// status already holds a snapshot of this maintenance.
func (r *Reconciler) snapshot(ctx context.Context, st Status) error {
	if r.snapshotted {
		return nil
	}
	if len(st.Leaders) > 0 && enteringPhase(st.Phase) {
		r.snapshotted = true
		return nil
	}
	leaders, err := r.node.Leaders(ctx)
	if err != nil {
		return &stepError{err: fmt.Errorf("read what %s leads: %w", r.pod, err)}
	}
	if len(leaders) > 0 {
		if _, err := r.amendStatus(ctx, "record the leaderships of "+r.pod, func(st *Status) bool {
			if len(st.Leaders) > 0 {
				return false
			}
			st.Leaders = leaders
			return true
		}); err != nil {
			return err
		}
		r.log.Info().Strs("groups", leaders).Msg("roles snapshot taken")
	}
	r.snapshotted = true
	return nil
}

// recordDark records in the status, before the node quiesces, the groups
// that will then have no member serving (Status.Dark): every other member
// is out of service or on its way out, or its node does not serve. No
// server reports such a group afterwards, and the safety rule judges it
// from the record. Without a view it records nothing and says so: the
// quiesce is not held for it.
func (r *Reconciler) recordDark(ctx context.Context, doc *Document, now time.Time) error {
	if r.views == nil {
		return nil
	}
	view, err := r.views.View(ctx)
	if err != nil || view == nil {
		r.log.Warn().AnErr("view", err).Msg("no cluster view: the groups left with no member serving go unrecorded")
		return nil
	}
	dark := darkGroups(view, r.pod, OutOfService(view, doc, now))
	if len(dark) == 0 {
		return nil
	}
	wrote, err := r.amendStatus(ctx, "record the groups "+r.pod+" leaves with no member serving", func(st *Status) bool {
		next := mergeGroups(cloneGroupRefs(st.Dark), dark)
		if len(next) == len(st.Dark) {
			return false
		}
		st.Dark = next
		return true
	})
	if wrote {
		r.log.Info().Int("groups", len(dark)).Msg("groups left with no member serving recorded")
	}
	return err
}

// darkGroups returns the groups of view that pod is a member of and whose
// other members are all in busy or not serving.
func darkGroups(view *natsraft.View, pod string, busy map[string]bool) []GroupRef {
	serving := map[string]bool{}
	for _, n := range view.Nodes {
		serving[n.Name] = n.Reachable && n.JetStream
	}
	var out []GroupRef
	for _, g := range view.Groups {
		member, lit := false, false
		for _, p := range g.Peers {
			switch {
			case p.Name == pod:
				member = true
			case !busy[p.Name] && serving[p.Name] && !p.Offline:
				lit = true
			}
		}
		if member && !lit {
			peers := g.PeerNames()
			slices.Sort(peers)
			out = append(out, GroupRef{Kind: g.Kind, Account: g.Account, Group: g.Name, Peers: peers})
		}
	}
	return out
}

// heldMessage starts the status message of a node the safety rule holds
// back.
const heldMessage = "held back: "

// heldBack reports whether st says the safety rule held the node back.
func (r *Reconciler) heldBack(st Status) bool {
	return st.Phase == PhaseRequested && strings.HasPrefix(st.Message, heldMessage)
}

// holdIfUnsafe judges the safety rule again for the local pod against the
// cluster as it is now, with every other pod out of service as the
// document says. When entering now would cost a group its quorum the node
// is held back: JetStream is resumed if it was already quiesced (the fence
// is not up yet, so the node can still serve), the status says Requested
// and why, the node stays ready, and the reconciler looks again every
// SafetyPoll.
func (r *Reconciler) holdIfUnsafe(ctx context.Context, doc *Document, key string, quiesced, drain bool, now time.Time) (bool, time.Duration, error) {
	violations, cost, err := r.judge(ctx, doc, drain, now)
	if err != nil || len(violations) == 0 {
		return false, 0, err
	}
	msg := fmt.Sprintf("%s%s now would "+cost+" (%s): %s", heldMessage, key, len(violations),
		natsraft.JoinBounded(groupNames(violations), statusListMax, ", "),
		natsraft.JoinBounded(reasons(violations), statusListMax, "; "))
	if quiesced {
		if err := r.step(ctx, PhaseRequested, msg+"; resuming JetStream", now, "resume", r.node.Resume); err != nil {
			return false, 0, err
		}
		r.resumed = true
	}
	r.handedOff, r.movedClients = false, false
	ready, err := r.readyOnceCaughtUp(ctx, "maintenance requested but "+msg)
	if err != nil {
		return false, 0, err
	}
	if err := r.report(ctx, PhaseRequested, msg, now); err != nil {
		return false, 0, err
	}
	if !ready {
		return true, min(r.safetyPoll, r.catchUpPoll), nil
	}
	return true, r.safetyPoll, nil
}

// readyOnceCaughtUp reports the node ready (why says what it does) unless
// it was resumed outside leave and has not caught up since: then it stays
// not ready, with what is behind, and ok is false.
func (r *Reconciler) readyOnceCaughtUp(ctx context.Context, why string) (ok bool, err error) {
	if r.resumed {
		caught, detail, err := r.caughtUp(ctx)
		if err != nil {
			return false, err
		}
		if !caught {
			r.setReady(false, why+"; catching up: "+detail)
			return false, nil
		}
		r.resumed = false
	}
	r.setReady(true, why)
	return true, nil
}

// judge judges the safety rule for the node taking itself out of service
// (drain: out of the leaderships) now, counting the nodes the cluster view
// and doc say are out already. cost describes a violation, with a %d for
// their count. Without views nothing is judged.
func (r *Reconciler) judge(ctx context.Context, doc *Document, drain bool, now time.Time) (violations []Violation, cost string, err error) {
	if r.views == nil {
		return nil, "", nil
	}
	view, err := ClusterView(ctx, r.views, r.log)
	if err != nil {
		return nil, "", &stepError{err: fmt.Errorf("judge the safety of %s: %w", r.pod, err)}
	}
	out, draining := othersOut(view, doc, r.pod, now)
	if drain {
		return JudgeDrain(view, []string{r.pod}, out, draining).Violations,
			"leave %d Raft group(s) no peer to lead them", nil
	}
	return CheckSafety(withDark(view, doc), []string{r.pod}, out), "cost %d Raft group(s) their quorum", nil
}

// recordEvacuated adds streams to the status's list of streams to move
// back when the node leaves maintenance.
func (r *Reconciler) recordEvacuated(ctx context.Context, streams []string) error {
	_, err := r.amendStatus(ctx, "record the streams moved off "+r.pod, func(st *Status) bool {
		before := len(st.Evacuated)
		for _, s := range streams {
			if !slices.Contains(st.Evacuated, s) {
				st.Evacuated = append(st.Evacuated, s)
			}
		}
		return len(st.Evacuated) > before
	})
	return err
}

// amendStatus applies change to the node's stored status; change says
// whether it changed anything. A node without a status, or a change of
// nothing, writes nothing. It reports whether it wrote; what names the
// change in an error.
func (r *Reconciler) amendStatus(ctx context.Context, what string, change func(*Status) bool) (bool, error) {
	_, err := r.write(ctx, func(d *Document) error {
		st, ok := d.Status[r.pod]
		if !ok || !change(&st) {
			return errUnchanged
		}
		d.Status[r.pod] = st
		return nil
	})
	switch {
	case errors.Is(err, errUnchanged):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("%s: %w", what, err)
	}
	return true, nil
}

// scope is the Scope of the pod's hand-off (see HandOffScope). Without a
// view it names the pods with an entry or a status of their own.
func (r *Reconciler) scope(ctx context.Context, doc *Document, leaving bool, now time.Time) natsraft.Scope {
	var view *natsraft.View
	if r.views != nil {
		view, _ = r.views.View(ctx)
	}
	return HandOffScope(view, doc, r.pod, leaving, now)
}

// HandOffScope is the Scope of pod's hand-off as the document says: it
// avoids every other pod out of service (on its way into maintenance, in
// it, or not back yet), and knows the other pods draining, which a drain
// never moves a leadership to.
func HandOffScope(view *natsraft.View, doc *Document, pod string, leaving bool, now time.Time) natsraft.Scope {
	out, draining := othersOut(view, doc, pod, now)
	return natsraft.Scope{Avoid: out, Draining: draining, Leaving: leaving}
}

// othersOut names, sorted, the pods other than pod that doc says are out
// of service (OutOfService), and those draining (Draining): what a
// judgement of pod's own maintenance, or its hand-off, counts as gone.
func othersOut(view *natsraft.View, doc *Document, pod string, now time.Time) (out, draining []string) {
	busy, drains := OutOfService(view, doc, now), Draining(view, doc, now)
	delete(busy, pod)
	delete(drains, pod)
	return slices.Sorted(maps.Keys(busy)), slices.Sorted(maps.Keys(drains))
}

// reasons returns each violation's reason.
func reasons(vs []Violation) []string {
	out := make([]string, len(vs))
	for i, v := range vs {
		out[i] = v.Reason
	}
	return out
}

// leave takes the next step out of maintenance.
func (r *Reconciler) leave(ctx context.Context, st Status, hasStatus, fenced, quiesced bool, now time.Time) (time.Duration, error) {
	switch {
	case fenced:
		r.setReady(false, "leaving maintenance: unfencing")
		r.fenceVerified = false
		if err := r.step(ctx, PhaseUnfencing, "lifting the fence", now, "unfence", r.node.Unfence); err != nil {
			return 0, err
		}
		if still, err := r.node.Fenced(); err != nil || still {
			return 0, &stepError{err: fmt.Errorf("unfence %s: node still fenced after unfence (%v)", r.pod, err)}
		}
		return 0, nil
	case quiesced:
		r.setReady(false, "leaving maintenance: resuming JetStream")
		if err := r.step(ctx, PhaseUnfencing, "resuming JetStream", now, "resume", r.node.Resume); err != nil {
			return 0, err
		}
		if r.node.Quiesced() {
			return 0, &stepError{err: fmt.Errorf("resume %s: JetStream still disabled after resume", r.pod)}
		}
		return 0, nil
	case hasStatus && st.Phase == PhaseActive:
		return r.retire(ctx, st, now)
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
	// A drained node stayed routed and serving: it stays ready.
	serving := st.Mode == ModeDrain
	r.setReady(serving, "leaving maintenance: catching up")
	ok, detail, err := r.caughtUp(ctx)
	if err != nil {
		return 0, err
	}
	if !ok {
		r.setReady(serving, "leaving maintenance: catching up: "+detail)
		if err := r.report(ctx, PhaseCatchingUp, detail, r.now()); err != nil {
			return 0, err
		}
		return r.catchUpPoll, nil
	}
	if len(st.Evacuated) > 0 {
		// The streams moved off for this maintenance go back now that the
		// node has caught up; the status, which lists them, goes only then.
		var back []string
		if err := r.stepWithin(ctx, r.moveTimeout, PhaseCatchingUp, "moving streams of one replica back: "+natsraft.JoinBounded(st.Evacuated, statusListMax, ", "), r.now(), "restore",
			func(ctx context.Context) error {
				var err error
				back, err = r.node.Restore(ctx, st.Evacuated)
				return err
			}); err != nil {
			return 0, err
		}
		r.log.Info().Strs("streams", back).Msg("streams of one replica moved back")
	}
	if len(st.Leaders) > 0 {
		return r.giveBack(ctx, st)
	}
	_, err = r.write(ctx, func(d *Document) error {
		if _, ok := d.Status[r.pod]; !ok {
			return errUnchanged
		}
		delete(d.Status, r.pod)
		return nil
	})
	if err != nil && !errors.Is(err, errUnchanged) {
		return 0, fmt.Errorf("remove status.%s: %w", r.pod, err)
	}
	r.log.Info().Str("phase", string(PhaseActive)).Msg("caught up, maintenance left")
	r.failures = 0
	r.setPhase(PhaseActive)
	r.setReady(true, "active")
	return r.resync, nil
}

// caughtUp asks Node.CaughtUp once, within the step timeout; detail is
// never empty when the node has not caught up.
func (r *Reconciler) caughtUp(ctx context.Context) (ok bool, detail string, err error) {
	sctx, cancel := context.WithTimeout(ctx, r.stepTimeout)
	defer cancel()
	ok, detail, err = r.node.CaughtUp(sctx)
	if err != nil {
		return false, "", &stepError{err: fmt.Errorf("catch up %s: %w", r.pod, err)}
	}
	if !ok && detail == "" {
		detail = "not caught up yet"
	}
	return ok, detail, nil
}

// giveBack moves the leaderships of the roles snapshot back to the node,
// now that it has caught up (unless the entry or the exit said
// restoreLeaders false), and reports what went back and what did not in
// the status, phase Active, which stays for ReportRetention so that the
// answer of the exit can show it.
func (r *Reconciler) giveBack(ctx context.Context, st Status) (time.Duration, error) {
	var given []string
	var notGiven []natsraft.NotGivenBack
	if st.RestoreLeaders == nil || *st.RestoreLeaders {
		if err := r.step(ctx, PhaseCatchingUp, "giving leaderships back: "+natsraft.JoinBounded(st.Leaders, statusListMax, ", "), r.now(), "give back",
			func(ctx context.Context) error {
				var err error
				given, notGiven, err = r.node.GiveBack(ctx, st.Leaders)
				return err
			}); err != nil {
			return 0, err
		}
	} else {
		for _, g := range st.Leaders {
			notGiven = append(notGiven, natsraft.NotGivenBack{Group: g, Why: natsraft.NotBackNotAsked})
		}
	}
	msg := fmt.Sprintf("back: gave %d of %d leadership(s) back", len(given), len(st.Leaders))
	now := r.now()
	_, err := r.write(ctx, func(d *Document) error {
		if _, ok := d.Status[r.pod]; !ok {
			return errUnchanged
		}
		d.Status[r.pod] = Status{Phase: PhaseActive, Message: msg, ObservedAt: now, PhaseSince: now,
			GivenBack: given, NotGivenBack: notGiven}
		return nil
	})
	if err != nil && !errors.Is(err, errUnchanged) {
		return 0, fmt.Errorf("report the give-back of %s: %w", r.pod, err)
	}
	r.log.Info().Str("phase", string(PhaseActive)).Strs("givenBack", given).Int("notGivenBack", len(notGiven)).
		Msg("caught up, maintenance left")
	r.failures = 0
	r.setPhase(PhaseActive)
	r.setReady(true, "active")
	return r.retention, nil
}

// retire removes the status of a node back from maintenance once its
// give-back report has been shown for ReportRetention.
func (r *Reconciler) retire(ctx context.Context, st Status, now time.Time) (time.Duration, error) {
	r.failures = 0
	r.setPhase(PhaseActive)
	r.setReady(true, "active")
	if left := st.ObservedAt.Add(r.retention).Sub(now); left > 0 {
		return min(left, r.resync), nil
	}
	_, err := r.write(ctx, func(d *Document) error {
		if cur, ok := d.Status[r.pod]; !ok || cur.Phase != PhaseActive {
			return errUnchanged
		}
		delete(d.Status, r.pod)
		return nil
	})
	if err != nil && !errors.Is(err, errUnchanged) {
		return 0, fmt.Errorf("remove status.%s: %w", r.pod, err)
	}
	return r.resync, nil
}

// step reports phase/msg and then runs fn, bounded by the step timeout. The
// status is written first so that a GET shows what is being done; if it
// cannot be written, the step does not run.
func (r *Reconciler) step(ctx context.Context, phase Phase, msg string, now time.Time, op string, fn func(context.Context) error) error {
	return r.stepWithin(ctx, r.stepTimeout, phase, msg, now, op, fn)
}

// stepWithin is step bounded by timeout instead of the step timeout.
func (r *Reconciler) stepWithin(ctx context.Context, timeout time.Duration, phase Phase, msg string, now time.Time, op string, fn func(context.Context) error) error {
	if err := r.reportStep(ctx, phase, msg, now, true); err != nil {
		return err
	}
	r.log.Debug().Str("phase", string(phase)).Str("step", op).Msg("step")
	sctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if err := fn(sctx); err != nil {
		return &stepError{err: fmt.Errorf("%s %s: %w", op, r.pod, err)}
	}
	return nil
}

// fail reports a failed step as Failed with its message, stamped when the
// step gave up (a hung step may have taken StepTimeout); a store error is
// only logged (writing the status would fail the same way).
func (r *Reconciler) fail(ctx context.Context, err error) {
	var se *stepError
	if !errors.As(err, &se) {
		r.log.Warn().Err(err).Int("attempt", r.failures).Msg("write maintenance status; retrying")
		return
	}
	r.log.Warn().Err(err).Int("attempt", r.failures).Msg("maintenance step failed; retrying")
	if !se.serving {
		r.setReady(false, "maintenance step failed: "+err.Error())
	}
	if werr := r.report(ctx, PhaseFailed, err.Error(), r.now()); werr != nil && ctx.Err() == nil {
		r.log.Warn().Err(werr).Msg("report failed step")
	}
}

// report writes status.<pod> unless the only change would be ObservedAt and
// the stored one is younger than Resync (no write storms from resyncs). A
// catch-up detail alone is written at most every catchUpReportInterval.
func (r *Reconciler) report(ctx context.Context, phase Phase, msg string, now time.Time) error {
	return r.reportStep(ctx, phase, msg, now, false)
}

// reportStep is report; a step (the give-back, the move back of streams)
// is no catch-up detail and is written whatever the throttle says, or the
// status would show the detail before it while the step runs.
func (r *Reconciler) reportStep(ctx context.Context, phase Phase, msg string, now time.Time, step bool) error {
	var prev Phase
	_, err := r.write(ctx, func(d *Document) error {
		cur, ok := d.Status[r.pod]
		prev = ""
		if ok {
			prev = cur.Phase
		}
		since := now
		next := cur.clone()
		next.Entry, next.InByForce = "", false
		if r.entering {
			next.Entry, next.Mode, next.InByForce = r.inForce, r.mode, r.inByForce
			// The entry's choice as stored now: an exit written meanwhile
			// (with restoreLeaders=false, say) is not undone.
			if e, _, desired := d.Desired(r.pod, r.dc, now); desired {
				next.RestoreLeaders = cloneBool(e.RestoreLeaders)
			}
			if next.Mode == ModeFence {
				next.Mode = ""
			}
			if !ok || cur.Phase == PhaseActive {
				// A new maintenance: the report of the last one goes.
				next.GivenBack, next.NotGivenBack, next.Leaders, next.Dark = nil, nil, nil, nil
			}
		}
		if ok && cur.Phase == phase {
			age := now.Sub(cur.ObservedAt)
			if cur.Message == msg && cur.Entry == next.Entry && cur.Mode == next.Mode && cur.InByForce == next.InByForce &&
				boolOr(cur.RestoreLeaders) == boolOr(next.RestoreLeaders) && age < r.resync {
				return errUnchanged
			}
			if phase == PhaseCatchingUp && !step && age < catchUpReportInterval {
				return errUnchanged
			}
			since = cur.PhaseSince
		}
		if d.Status == nil {
			d.Status = make(map[string]Status)
		}
		next.Phase, next.Message, next.ObservedAt, next.PhaseSince = phase, msg, now, since
		d.Status[r.pod] = next
		return nil
	})
	if err != nil && !errors.Is(err, errUnchanged) {
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
	fenced, ferr := r.node.Fenced()
	inMaintenance := ferr != nil || fenced || r.node.Quiesced()
	r.mu.Lock()
	defer r.mu.Unlock()
	switch {
	case inMaintenance:
		r.ready, r.readyMsg = false, "in maintenance; maintenance state unreadable: "+err.Error()
	case !r.everSynced:
		r.ready, r.readyMsg = false, "maintenance state unreadable: "+err.Error()
	}
}

// boolOr is *b, true when nil (RestoreLeaders' default).
func boolOr(b *bool) bool { return b == nil || *b }

func (r *Reconciler) backoff() time.Duration {
	d := retryBase
	for i := 1; i < r.failures && d < retryCap; i++ {
		d *= 2
	}
	return min(d, retryCap)
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

// enteringPhase reports whether p belongs to an attempt to enter maintenance
// (Failed included, so that a retry does not start over at Requested).
func enteringPhase(p Phase) bool {
	switch p {
	case PhaseRequested, PhaseHandingOff, PhaseFencing, PhaseInMaintenance, PhaseFailed:
		return true
	}
	return false
}

func hasExpired(d *Document, now time.Time) bool {
	for _, m := range []map[string]Entry{d.Pods, d.DCs} {
		for _, e := range m {
			if e.Expired(now) {
				return true
			}
		}
	}
	return false
}

// nextExpiry returns the time until the earliest future expiry of any entry.
func nextExpiry(doc *Document, now time.Time) (time.Duration, bool) {
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

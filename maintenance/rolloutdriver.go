package maintenance

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"time"

	"github.com/rs/zerolog"

	"github.com/prober-dev/prober/natsraft"
)

// Defaults of a RolloutDriver.
const (
	DefaultRolloutLease    = 15 * time.Second
	DefaultRolloutInterval = time.Second
)

// RolloutDriverOptions configures a RolloutDriver.
type RolloutDriverOptions struct {
	// Service gives the store, the cluster view, the clock and the
	// Restarter.
	Service *Service
	// ID names this prober as a rollout's driver: the pod name of a
	// sidecar, so that the same pod restarted takes its lease up at once.
	ID string
	// Lease is how long a driver's hold on a rollout lasts without renewal;
	// another prober takes the rollout over once it has passed.
	// DefaultRolloutLease when 0.
	Lease time.Duration
	// Interval is how often the driver looks again without a change of the
	// stored document; DefaultRolloutInterval when 0.
	Interval time.Duration
	Logger   zerolog.Logger
}

// RolloutDriver carries out the unfinished rollout of the stored document,
// if this prober holds its lease or the lease has passed. Every prober runs
// one; the lease, taken and renewed in the same compare-and-swap as each
// step, makes exactly one of them drive. Each sync re-derives the next step
// from the stored progress, the stored statuses and the cluster view, so a
// driver killed half-way, or one taking over, goes on where the document
// says.
type RolloutDriver struct {
	svc      *Service
	id       string
	lease    time.Duration
	interval time.Duration
	log      zerolog.Logger
}

// NewRolloutDriver returns a driver; Run runs it.
func NewRolloutDriver(o RolloutDriverOptions) *RolloutDriver {
	d := &RolloutDriver{svc: o.Service, id: o.ID, lease: o.Lease, interval: o.Interval, log: o.Logger}
	if d.lease <= 0 {
		d.lease = DefaultRolloutLease
	}
	if d.interval <= 0 {
		d.interval = DefaultRolloutInterval
	}
	return d
}

// Run syncs on every change of the stored document and every Interval
// until ctx ends.
func (r *RolloutDriver) Run(ctx context.Context) error {
	changes, err := r.svc.Store.Watch(ctx)
	if err != nil {
		return fmt.Errorf("rollout driver: watch: %w", err)
	}
	tick := time.NewTicker(r.interval)
	defer tick.Stop()
	for {
		if err := r.Sync(ctx); err != nil && ctx.Err() == nil {
			r.log.Warn().Err(err).Msg("rollout step failed; retrying")
		}
		select {
		case <-ctx.Done():
			return nil
		case <-changes:
		case <-tick.C:
		}
	}
}

// errNotDriving aborts a store update: the rollout is gone, finished or
// driven by another prober.
var errNotDriving = errors.New("not driving")

// Sync takes the unfinished rollout one step further, if this prober may
// drive it.
func (r *RolloutDriver) Sync(ctx context.Context) error {
	d, err := r.svc.get(ctx)
	if err != nil {
		return err
	}
	name, ro, ok := d.Unfinished()
	if !ok || !r.mayDrive(ro, r.svc.now()) {
		return nil
	}
	view, verr := r.svc.view(ctx)
	if verr != nil {
		view = nil
	}
	// A restart happens outside the store update: it takes a while and
	// its effect is not in the document. Restarted, stored before it is
	// first asked for, lets it tell the old instance from the new.
	var rs restartOutcome
	if i := ro.current(); i >= 0 && ro.Pods[i].Step == StepRestarting && ro.Pods[i].Restarted != nil &&
		ro.State != RolloutStopping && r.svc.Restarter != nil && owns(name, &ro, d, ro.Pods[i].Pod) {
		// Only while the rollout's entry keeps the pod in: one removed
		// (DELETE /pods/<pod>) or taken over ends the turn, and the pod,
		// on its way back or serving again, must not be stopped.
		p := ro.Pods[i]
		rs.asked = true
		if rs.blocked = restartBlocked(name, &ro, p, d, view, r.svc.now()); rs.blocked == "" {
			back, detail, err := r.svc.Restarter.Restart(ctx, p.Pod, *p.Restarted)
			switch {
			case err != nil:
				// Stored with the turn, so that GET says why it does not
				// move, and tried again.
				r.log.Warn().Err(err).Str("pod", p.Pod).Msg("restart failed; retrying")
				rs.waiting = "restart failed, trying again: " + err.Error()
			case !back:
				r.log.Debug().Str("pod", p.Pod).Str("detail", detail).Msg("waiting for the restart")
				rs.waiting = detail
			}
			rs.back = back
		}
	}
	var before, after Rollout
	_, err = r.svc.Store.Update(ctx, func(d *Document) error {
		ro, ok := d.Rollouts[name]
		now := r.svc.now()
		if !ok || ro.State.Finished() || !r.mayDrive(ro, now) {
			return errNotDriving
		}
		before = ro.clone()
		changed := advance(name, &ro, d, view, now, rs)
		if changed || ro.Driver != r.id || ro.LeaseUntil == nil || ro.LeaseUntil.Sub(now) < r.lease/2 {
			until := now.Add(r.lease)
			ro.Driver, ro.LeaseUntil = r.id, &until
		}
		d.Rollouts[name] = ro
		after = ro
		return nil
	})
	if errors.Is(err, errNotDriving) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("rollout %s: %w", name, err)
	}
	r.logProgress(name, before, after)
	return nil
}

// mayDrive tells whether this prober holds ro's lease or may take it.
func (r *RolloutDriver) mayDrive(ro Rollout, now time.Time) bool {
	return ro.Driver == r.id || ro.Driver == "" || ro.LeaseUntil == nil || !now.Before(*ro.LeaseUntil)
}

func (r *RolloutDriver) logProgress(name string, before, after Rollout) {
	log := r.log.With().Str("rollout", name).Logger()
	if before.Driver != after.Driver {
		log.Info().Str("from", before.Driver).Msg("driving the rollout")
	}
	if before.State != after.State || before.PauseReason != after.PauseReason {
		log.Info().Str("state", string(after.State)).Str("reason", after.PauseReason).Msg("rollout state")
	}
	for i, p := range after.Pods {
		if i < len(before.Pods) && before.Pods[i].Step != p.Step {
			log.Info().Str("pod", p.Pod).Str("step", string(p.Step)).Msg("rollout step")
		}
	}
}

// Unfinished returns the rollout of d that is not finished (there is at
// most one), by name.
func (d *Document) Unfinished() (string, Rollout, bool) {
	names := make([]string, 0, len(d.Rollouts))
	for name, ro := range d.Rollouts {
		if !ro.State.Finished() {
			names = append(names, name)
		}
	}
	if len(names) == 0 {
		return "", Rollout{}, false
	}
	slices.Sort(names)
	return names[0], d.Rollouts[names[0]], true
}

// restartOutcome is what the driver found of the pod restarting before
// its store update.
type restartOutcome struct {
	// asked says the restart was looked at; back that the pod came back.
	asked, back bool
	// waiting is what the restart waits for, or its error.
	waiting string
	// blocked says why the pod may not be restarted now (see
	// restartBlocked); the Restarter was not asked.
	blocked string
}

// advance takes ro one step further on d, the document about to be
// written, and reports whether it changed anything. rs is what the pod
// restarting showed. It is the whole state machine of a rollout,
// re-derived from what is stored and seen on every call.
func advance(name string, ro *Rollout, d *Document, view *natsraft.View, now time.Time, rs restartOutcome) bool {
	before := ro.clone()
	step(name, ro, d, view, now, rs)
	return !reflect.DeepEqual(before, *ro)
}

func step(name string, ro *Rollout, d *Document, view *natsraft.View, now time.Time, rs restartOutcome) {
	i := ro.current()
	if ro.State == RolloutStopping {
		if i < 0 || !ro.Pods[i].Step.inTurn() {
			ro.State, ro.Finished = RolloutStopped, &now
			return
		}
		p := &ro.Pods[i]
		if p.Step != StepExiting {
			exitTurn(name, ro, p, d, now)
			return
		}
		finishTurn(name, ro, p, d, view, now)
		if p.Step == StepExiting && view != nil {
			if _, in := view.Node(p.Pod); !in {
				// The pod has left the cluster (scaled down, its node
				// gone): there is no pod to wait for, and a rollout
				// stopping for ever would block every other one.
				ro.State, ro.Finished = RolloutStopped, &now
			}
		}
		return
	}
	if i < 0 {
		ro.State, ro.PauseReason, ro.Finished = RolloutDone, "", &now
		return
	}
	p := &ro.Pods[i]
	switch p.Step {
	case StepPending:
		if why := turnBlocked(name, ro, p.Pod, d, view, now); why != "" {
			ro.State, ro.PauseReason = RolloutPaused, why
			return
		}
		// The rollout's mode goes into the entry here (ro.entry).
		d.Pods[p.Pod] = ro.entry(name, now)
		p.Step, p.Entered = StepEntering, &now
		ro.State, ro.PauseReason = RolloutRunning, ""
	case StepEntering:
		if !owns(name, ro, d, p.Pod) {
			// Someone removed the entry (DELETE /pods/<pod>): the turn
			// is over.
			p.Step, p.Exited = StepExiting, &now
			return
		}
		if d.Phase(p.Pod, dcsOf(view)[p.Pod], now) != PhaseInMaintenance {
			return
		}
		if ro.Spec.Restart {
			if why := restartBlocked(name, ro, *p, d, view, now); why != "" {
				ro.State, ro.PauseReason = RolloutPaused, why
				return
			}
			ro.State, ro.PauseReason = RolloutRunning, ""
			p.InMaintenance = &now
			p.Step, p.Restarted = StepRestarting, &now
		} else {
			p.InMaintenance = &now
			p.Step = StepHolding
		}
	case StepHolding:
		if !owns(name, ro, d, p.Pod) {
			// The entry was removed or taken over: the hold is over.
			p.Step, p.Exited = StepExiting, &now
			return
		}
		if p.InMaintenance == nil || now.Before(p.InMaintenance.Add(ro.Spec.HoldDuration())) {
			return
		}
		exitTurn(name, ro, p, d, now)
	case StepRestarting:
		if rs.back || !owns(name, ro, d, p.Pod) {
			p.Restart = ""
			exitTurn(name, ro, p, d, now)
			return
		}
		if !rs.asked {
			return
		}
		p.Restart = rs.waiting
		if rs.blocked != "" {
			ro.State, ro.PauseReason = RolloutPaused, rs.blocked
		} else {
			ro.State, ro.PauseReason = RolloutRunning, ""
		}
	case StepExiting:
		finishTurn(name, ro, p, d, view, now)
	}
}

// exitTurn removes the rollout's entry of the pod: it comes back. A turn
// already exiting keeps the time it began to.
func exitTurn(name string, ro *Rollout, p *RolloutPod, d *Document, now time.Time) {
	if owns(name, ro, d, p.Pod) {
		delete(d.Pods, p.Pod)
	}
	p.Step = StepExiting
	if p.Exited == nil {
		p.Exited = &now
	}
}

// finishTurn ends the pod's turn once it is Active and current again.
func finishTurn(name string, ro *Rollout, p *RolloutPod, d *Document, view *natsraft.View, now time.Time) {
	if owns(name, ro, d, p.Pod) {
		delete(d.Pods, p.Pod)
	}
	if ok, _ := podBack(p.Pod, d, view, now); ok {
		p.Step, p.Ready = StepDone, &now
	}
}

// owns reports whether the pod's stored entry is the rollout's own.
func owns(name string, ro *Rollout, d *Document, pod string) bool {
	e, ok := d.Pods[pod]
	return ok && e.RequestedBy == ro.entryBy(name)
}

// podBack tells whether pod is Active (no status left, nothing desired)
// and every Raft replica of it current; why says what it waits for.
func podBack(pod string, d *Document, view *natsraft.View, now time.Time) (bool, string) {
	if view == nil {
		return false, "the cluster view is not available"
	}
	node, ok := view.Node(pod)
	if !ok {
		return false, fmt.Sprintf("pod %s is not in the cluster view", pod)
	}
	if ph := d.Phase(pod, node.DC, now); ph != PhaseActive {
		return false, fmt.Sprintf("pod %s is %s", pod, ph)
	}
	pr := podRaft(view, node)
	switch {
	case !pr.Reachable:
		return false, fmt.Sprintf("pod %s does not answer", pod)
	case !pr.Current:
		return false, fmt.Sprintf("pod %s is not caught up (lag %d)", pod, pr.Lag)
	}
	return true, ""
}

// turnBlocked says why pod's turn cannot start now, "" when it can: the
// pod must be back from anything before, kept in maintenance by nobody
// else, and its maintenance must pass the safety rule, counting every pod
// out of service.
func turnBlocked(name string, ro *Rollout, pod string, d *Document, view *natsraft.View, now time.Time) string {
	if view == nil {
		return "the cluster view is not available"
	}
	node, _ := view.Node(pod)
	if e, source, ok := d.Desired(pod, node.DC, now); ok && !(source == SourcePod && e.RequestedBy == ro.entryBy(name)) {
		return fmt.Sprintf("pod %s is in maintenance by another entry (%s %s, requested by %s: %s); its turn waits until that ends",
			pod, source, orName(source, pod, node.DC), e.RequestedBy, e.Reason)
	}
	if ok, why := podBack(pod, d, view, now); !ok {
		return "waiting for its turn: " + why
	}
	out, draining := othersOut(view, d, pod, now)
	verdict, what := Judge(view, []string{pod}, out), "their quorum"
	if !ro.Spec.takesOut() {
		verdict, what = JudgeDrain(view, []string{pod}, out, draining), "every member that can lead"
	}
	if v := verdict.Violations; len(v) > 0 {
		return fmt.Sprintf("unsafe: the turn of %s would cost %d Raft group(s) %s: %s",
			pod, len(v), what, natsraft.JoinBounded(reasons(v), statusListMax, "; "))
	}
	return ""
}

// restartBlocked says why the pod of a drain rollout's turn may not be
// restarted now, "" when it may. A drain judged the turn by the drain rule
// (with the quorum rule too, since the pod stops: see turnBlocked), but
// until the restart the pod serves, and its peers may have gone meanwhile:
// the quorum rule judges again, counting every other pod out of service,
// before the turn goes on to the restart and before each call of the
// Restarter while the instance the turn began with still runs (its server
// started before Restarted; a newer one is only waited for). A fence
// turn's pod is out already.
func restartBlocked(name string, ro *Rollout, p RolloutPod, d *Document, view *natsraft.View, now time.Time) string {
	if ro.Spec.Mode != ModeDrain {
		return ""
	}
	if view == nil {
		return "the cluster view is not available"
	}
	node, ok := view.Node(p.Pod)
	if !ok || !node.Serving() {
		return ""
	}
	if p.Restarted != nil && !node.Started.IsZero() && !node.Started.Before(*p.Restarted) {
		return ""
	}
	out, _ := othersOut(view, d, p.Pod, now)
	if v := Judge(view, []string{p.Pod}, out).Violations; len(v) > 0 {
		return fmt.Sprintf("unsafe: restarting %s now would cost %d Raft group(s) their quorum: %s",
			p.Pod, len(v), natsraft.JoinBounded(reasons(v), statusListMax, "; "))
	}
	return ""
}

func orName(source, pod, dc string) string {
	if source == SourceDC {
		return dc
	}
	return pod
}

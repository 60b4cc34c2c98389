package maintenance

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/prober-dev/prober/natsraft"
)

// Restarter restarts a pod for a rollout's turn. Kubernetes deletes the pod
// and its StatefulSet makes it again; the embedded default stops and starts
// the in-process server.
type Restarter interface {
	// Restart makes sure pod runs as an instance started after since:
	// it ends an older instance, and reports back once a newer one runs.
	// It is called again and again until it reports back, also after a
	// crash of its caller, so it must be idempotent; detail says what it
	// waits for.
	Restart(ctx context.Context, pod string, since time.Time) (back bool, detail string, err error)
}

// RolloutPodView is one pod of a rollout as the API shows it: its stored
// progress and, live, its maintenance phase.
type RolloutPodView struct {
	RolloutPod
	Phase   Phase  `json:"phase"`
	Message string `json:"message,omitempty"`
}

// RolloutView is a rollout as the API shows it.
type RolloutView struct {
	Name        string       `json:"name"`
	Spec        RolloutSpec  `json:"spec"`
	RequestedBy string       `json:"requestedBy,omitempty"`
	Created     time.Time    `json:"created"`
	State       RolloutState `json:"state"`
	PauseReason string       `json:"pauseReason,omitempty"`
	// Current is the pod having its turn (or next to have it), "" when
	// none is left.
	Current string `json:"current,omitempty"`
	// Waiting says what the turn of Current waits for while the rollout
	// runs or stops and cannot take the next step yet: the pod's way into
	// maintenance (held back by the safety rule, a failed step) or its
	// way back (not Active, not caught up, gone from the cluster view).
	Waiting    string           `json:"waiting,omitempty"`
	Pods       []RolloutPodView `json:"pods"`
	Finished   *time.Time       `json:"finished,omitempty"`
	Driver     string           `json:"driver,omitempty"`
	LeaseUntil *time.Time       `json:"leaseUntil,omitempty"`
	// Deleted says that the DELETE answered with it removed the record
	// (a finished rollout); a rollout stopped at once is kept.
	Deleted bool `json:"deleted,omitempty"`
}

// RolloutChange is the outcome of a PUT or DELETE of a rollout.
type RolloutChange struct {
	Rollout RolloutView
	// Created is true when a PUT started the rollout, false when the same
	// one already ran.
	Created bool
}

func rolloutView(name string, ro Rollout, d *Document, view *natsraft.View, now time.Time) RolloutView {
	dcOf := dcsOf(view)
	v := RolloutView{
		Name: name, Spec: ro.Spec, RequestedBy: ro.RequestedBy, Created: ro.Created, State: ro.State,
		PauseReason: ro.PauseReason, Finished: ro.Finished, Driver: ro.Driver, LeaseUntil: ro.LeaseUntil,
		Pods: make([]RolloutPodView, 0, len(ro.Pods)),
	}
	if i := ro.current(); i >= 0 && !ro.State.Finished() {
		v.Current = ro.Pods[i].Pod
		v.Waiting = turnWaits(ro.Pods[i], d, view, now)
	}
	for _, p := range ro.Pods {
		pv := RolloutPodView{RolloutPod: p, Phase: d.Phase(p.Pod, dcOf[p.Pod], now)}
		if st, ok := d.Status[p.Pod]; ok {
			pv.Message = st.Message
		}
		v.Pods = append(v.Pods, pv)
	}
	return v
}

// turnWaits says what the turn of p, the current pod, waits for, "" when
// nothing holds it: entering, the pod's status while it is not yet in
// maintenance; exiting, why it does not count as back.
func turnWaits(p RolloutPod, d *Document, view *natsraft.View, now time.Time) string {
	switch p.Step {
	case StepEntering:
		st, ok := d.Status[p.Pod]
		if ok && (st.Phase == PhaseFailed || (st.Phase == PhaseRequested && strings.HasPrefix(st.Message, heldMessage))) {
			return fmt.Sprintf("pod %s is %s: %s", p.Pod, st.Phase, st.Message)
		}
	case StepRestarting:
		return p.Restart
	case StepExiting:
		if ok, why := podBack(p.Pod, d, view, now); !ok {
			return why
		}
	}
	return ""
}

// dcsOf maps each node of view to its dc; empty without a view.
func dcsOf(view *natsraft.View) map[string]string {
	out := map[string]string{}
	if view != nil {
		for _, n := range view.Nodes {
			out[n.Name] = n.DC
		}
	}
	return out
}

// Rollout returns one rollout; ENotFound when there is none of that name.
func (s *Service) Rollout(ctx context.Context, name string) (RolloutView, error) {
	if err := ValidName(name); err != nil {
		return RolloutView{}, err
	}
	d, err := s.get(ctx)
	if err != nil {
		return RolloutView{}, err
	}
	ro, ok := d.Rollouts[name]
	if !ok {
		return RolloutView{}, unknownRollout(name)
	}
	view, _ := s.Views.View(ctx)
	return rolloutView(name, ro, d, view, s.now()), nil
}

// Rollouts lists every stored rollout, by name.
func (s *Service) Rollouts(ctx context.Context) ([]RolloutView, error) {
	d, err := s.get(ctx)
	if err != nil {
		return nil, err
	}
	view, _ := s.Views.View(ctx)
	now := s.now()
	out := make([]RolloutView, 0, len(d.Rollouts))
	for name, ro := range d.Rollouts {
		out = append(out, rolloutView(name, ro, d, view, now))
	}
	slices.SortFunc(out, func(a, b RolloutView) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// StartRollout stores a rolling maintenance; the driver (RolloutDriver)
// carries it out. Starting the same rollout again, with the same spec,
// changes nothing. Only one runs at a time: another one unfinished is an
// EConflict naming it, and so is the same name with another spec while it
// runs. A finished rollout of the same name is replaced.
//
// The pods are fixed here: the dc's or the listed ones (each must be a
// node: ENotFound) or every node, in name order for a dc and for all,
// as listed otherwise. A pod whose turn could never be safe — one whose
// absence alone, every other peer healthy, costs a Raft group its quorum,
// as an R1 or R2 stream on it does — is an EUnsafe now rather than a pause
// that never ends. A restart needs a Restarter (EInvalid without one).
func (s *Service) StartRollout(ctx context.Context, name string, spec RolloutSpec, by string) (RolloutChange, error) {
	if err := ValidName(name); err != nil {
		return RolloutChange{}, err
	}
	spec, err := spec.Validate()
	if err != nil {
		return RolloutChange{}, err
	}
	if spec.Restart && s.Restarter == nil {
		return RolloutChange{}, Errorf(EInvalid, "invalid rollout: restart needs Kubernetes (or an embedded cluster), this prober cannot restart pods")
	}
	view, err := s.view(ctx)
	if err != nil {
		return RolloutChange{}, err
	}
	pods, err := rolloutPods(view, spec)
	if err != nil {
		return RolloutChange{}, err
	}
	if err := neverSafe(view, pods, !spec.takesOut()); err != nil {
		return RolloutChange{}, err
	}
	now := s.now()
	created := false
	stored, err := s.Store.Update(ctx, func(d *Document) error {
		created = false
		for other, ro := range d.Rollouts {
			if ro.State.Finished() {
				continue
			}
			if other != name {
				return Errorf(EConflict, "rollout %s is %s; one rollout runs at a time: wait for it or DELETE /rollouts/%s",
					other, strings.ToLower(string(ro.State)), other)
			}
			if !ro.Spec.equal(spec) {
				return Errorf(EConflict, "rollout %s is %s with another spec; DELETE it first to change it",
					name, strings.ToLower(string(ro.State)))
			}
			return nil
		}
		if ro, ok := d.Rollouts[name]; ok && ro.Spec.equal(spec) && ro.State == RolloutDone {
			return nil
		}
		ro := Rollout{Spec: spec, RequestedBy: by, Created: now, State: RolloutRunning}
		for _, p := range pods {
			ro.Pods = append(ro.Pods, RolloutPod{Pod: p, Step: StepPending})
		}
		if d.Rollouts == nil {
			d.Rollouts = map[string]Rollout{}
		}
		d.Rollouts[name] = ro
		created = true
		return nil
	})
	if err != nil {
		return RolloutChange{}, fmt.Errorf("start rollout %s: %w", name, err)
	}
	if created {
		s.Logger.Info().Str("rollout", name).Str("by", by).Strs("pods", pods).Msg("rollout started")
	}
	return RolloutChange{Rollout: rolloutView(name, stored.Rollouts[name], stored, view, now), Created: created}, nil
}

// StopRollout asks a running or paused rollout to stop: its driver brings
// the pod having its turn back, and no other pod gets one. Asked again
// while it stops, it stops at once: the rollout's entry of the pod having
// its turn goes, but nobody waits for the pod to be back. Stopping a
// finished rollout deletes its record. ENotFound when there is none.
func (s *Service) StopRollout(ctx context.Context, name, by string) (RolloutView, error) {
	if err := ValidName(name); err != nil {
		return RolloutView{}, err
	}
	var last Rollout
	var deleted bool
	now := s.now()
	stored, err := s.Store.Update(ctx, func(d *Document) error {
		ro, ok := d.Rollouts[name]
		if !ok {
			return unknownRollout(name)
		}
		last, deleted = ro, false
		switch ro.State {
		case RolloutRunning, RolloutPaused:
			ro.State, ro.PauseReason = RolloutStopping, ""
			d.Rollouts[name] = ro
		case RolloutStopping:
			// Asked again: stop now, without waiting for the pod
			// having its turn to be back (it may never be). Its entry
			// goes, so the pod still comes back by itself.
			if i := ro.current(); i >= 0 && ro.Pods[i].Step.inTurn() {
				exitTurn(name, &ro, &ro.Pods[i], d, now)
			}
			ro.State, ro.Finished = RolloutStopped, &now
			d.Rollouts[name] = ro
		case RolloutStopped, RolloutDone:
			delete(d.Rollouts, name)
			deleted = true
		}
		return nil
	})
	if err != nil {
		return RolloutView{}, fmt.Errorf("stop rollout %s: %w", name, err)
	}
	s.Logger.Info().Str("rollout", name).Str("by", by).Str("state", string(last.State)).Msg("rollout stop requested")
	view, _ := s.Views.View(ctx)
	if ro, ok := stored.Rollouts[name]; ok {
		last = ro
	}
	v := rolloutView(name, last, stored, view, now)
	v.Deleted = deleted
	return v, nil
}

// rolloutPods resolves the spec's pods against the view.
func rolloutPods(view *natsraft.View, spec RolloutSpec) ([]string, error) {
	var pods []string
	switch {
	case spec.DC != "":
		for _, n := range membersOf(view, spec.DC) {
			pods = append(pods, n.Name)
		}
		if len(pods) == 0 {
			return nil, unknownDC(spec.DC)
		}
	case len(spec.Pods) > 0:
		for _, p := range spec.Pods {
			if _, ok := view.Node(p); !ok {
				return nil, unknownPod(p)
			}
		}
		pods = slices.Clone(spec.Pods)
	default:
		for _, n := range view.Nodes {
			pods = append(pods, n.Name)
		}
		slices.Sort(pods)
		if len(pods) == 0 {
			return nil, Errorf(EUnavailable, "the cluster view has no node yet")
		}
	}
	return pods, nil
}

// neverSafe refuses pods whose turn alone, every other peer healthy, costs
// a Raft group its quorum: such a turn would wait for ever.
func neverSafe(view *natsraft.View, pods []string, drain bool) error {
	var all []Violation
	var bad []string
	what := "their quorum"
	if drain {
		what = "every member that can lead"
	}
	for _, p := range pods {
		verdict := Judge(view, []string{p}, nil)
		if drain {
			verdict = JudgeDrain(view, []string{p}, nil, nil)
		}
		n := 0
		for _, v := range verdict.Violations {
			if structural(v) {
				all = append(all, v)
				n++
			}
		}
		if n > 0 {
			bad = append(bad, p)
		}
	}
	if len(all) == 0 {
		return nil
	}
	return &Error{
		Code: EUnsafe,
		Message: fmt.Sprintf("the turn of %s would cost %d Raft group(s) %s even with every other peer healthy: %s",
			strings.Join(bad, ", "), len(all), what, strings.Join(groupNames(all), ", ")),
		Details: all,
	}
}

// structural tells whether the violation comes from the requested pod
// alone.
func structural(v Violation) bool {
	for _, l := range v.Lost {
		if l.Why != LostRequested {
			return false
		}
	}
	return true
}

func unknownRollout(name string) error {
	return Errorf(ENotFound, "no rollout %s", name)
}

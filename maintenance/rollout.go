package maintenance

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// RolloutState is where a rolling maintenance stands as a whole.
type RolloutState string

// Rollout states: Running goes on pod after pod; Paused waits, with its
// reason, until the next step is safe, and goes on by itself; Stopping
// brings the current pod back after a DELETE, then Stopped; Done when every
// pod has had its turn.
const (
	RolloutRunning  RolloutState = "Running"
	RolloutPaused   RolloutState = "Paused"
	RolloutStopping RolloutState = "Stopping"
	RolloutStopped  RolloutState = "Stopped"
	RolloutDone     RolloutState = "Done"
)

// Finished reports whether the rollout will not move again.
func (s RolloutState) Finished() bool { return s == RolloutStopped || s == RolloutDone }

func (s RolloutState) valid() bool {
	switch s {
	case RolloutRunning, RolloutPaused, RolloutStopping, RolloutStopped, RolloutDone:
		return true
	}
	return false
}

// RolloutStep is where one pod of a rollout stands in its turn.
type RolloutStep string

// A pod's turn: Pending → Entering (its entry is written; it goes through
// the maintenance phases) → Holding (in maintenance for the hold) or
// Restarting (deleted and recreated) → Exiting (its entry is removed; it
// comes back and catches up) → Done (Active and current).
const (
	StepPending    RolloutStep = "Pending"
	StepEntering   RolloutStep = "Entering"
	StepHolding    RolloutStep = "Holding"
	StepRestarting RolloutStep = "Restarting"
	StepExiting    RolloutStep = "Exiting"
	StepDone       RolloutStep = "Done"
)

func (s RolloutStep) valid() bool {
	switch s {
	case StepPending, StepEntering, StepHolding, StepRestarting, StepExiting, StepDone:
		return true
	}
	return false
}

// inTurn reports whether the pod is having its turn: its entry is (or may
// be) stored, or it is on its way back.
func (s RolloutStep) inTurn() bool {
	return s == StepEntering || s == StepHolding || s == StepRestarting || s == StepExiting
}

// MaxRolloutHold bounds a rollout's hold per pod.
const MaxRolloutHold = 24 * time.Hour

// RolloutSpec is what a rolling maintenance is asked to do: which pods (a
// dc's, a list, or every pod of the cluster when both are empty), in which
// mode, why, and what to do on each pod's turn: hold it in maintenance for
// Hold, or restart it.
type RolloutSpec struct {
	DC     string   `json:"dc,omitempty"`
	Pods   []string `json:"pods,omitempty"`
	Mode   string   `json:"mode,omitempty"`
	Reason string   `json:"reason,omitempty"`
	// Hold is a Go duration ("5m"), stored as time.Duration.String writes it.
	Hold    string `json:"hold,omitempty"`
	Restart bool   `json:"restart,omitempty"`
	// RestoreLeaders, nil meaning true, is each turn's entry's: whether
	// the leaderships the pod held go back to it once it has caught up.
	RestoreLeaders *bool `json:"restoreLeaders,omitempty"`
}

// Validate checks the spec and returns it normalised (Hold as
// time.Duration.String writes it, Mode "" for the default), so that two
// specs asking the same compare equal. Every problem is an EInvalid.
func (sp RolloutSpec) Validate() (RolloutSpec, error) {
	var problems []string
	if sp.DC != "" && len(sp.Pods) > 0 {
		problems = append(problems, "dc and pods exclude each other")
	}
	if sp.DC != "" {
		if err := ValidDCName(sp.DC); err != nil {
			problems = append(problems, err.(*Error).Message)
		}
	}
	seen := map[string]bool{}
	for _, p := range sp.Pods {
		if err := ValidName(p); err != nil {
			problems = append(problems, err.(*Error).Message)
		} else if seen[p] {
			problems = append(problems, fmt.Sprintf("pod %s is listed twice", p))
		}
		seen[p] = true
	}
	if err := ValidMode(sp.Mode); err != nil {
		problems = append(problems, ErrorMessage(err))
	} else if sp.Mode == ModeFence {
		sp.Mode = ""
	}
	if len(sp.Reason) > MaxReasonLength {
		problems = append(problems, fmt.Sprintf("reason is longer than %d bytes", MaxReasonLength))
	}
	switch {
	case sp.Hold == "" && !sp.Restart:
		problems = append(problems, `say what to do on each pod's turn: "hold" (a duration such as "5m") or "restart": true`)
	case sp.Hold != "" && sp.Restart:
		problems = append(problems, "hold and restart exclude each other")
	case sp.Hold != "":
		d, err := time.ParseDuration(sp.Hold)
		if err != nil || d < MinTTL || d > MaxRolloutHold {
			problems = append(problems, fmt.Sprintf("hold %q: want a duration from %s to %s, such as 5m", sp.Hold, MinTTL, MaxRolloutHold))
		} else {
			sp.Hold = d.String()
		}
	}
	if len(problems) > 0 {
		return sp, Errorf(EInvalid, "invalid rollout: %s", strings.Join(problems, "; "))
	}
	return sp, nil
}

// takesOut reports whether a turn of the spec takes its pod out of service:
// a fence does, and so does a restart in either mode (the pod stops),
// so that such a turn is judged by the quorum rule; a drain that only
// holds moves leaderships and is judged by the drain rule.
func (sp RolloutSpec) takesOut() bool { return sp.Mode != ModeDrain || sp.Restart }

// HoldDuration is the parsed Hold of a validated spec, 0 for a restart.
func (sp RolloutSpec) HoldDuration() time.Duration {
	d, _ := time.ParseDuration(sp.Hold)
	return d
}

// restores tells whether the turns give leaderships back.
func (sp RolloutSpec) restores() bool { return sp.RestoreLeaders == nil || *sp.RestoreLeaders }

func (sp RolloutSpec) equal(o RolloutSpec) bool {
	return sp.DC == o.DC && slices.Equal(sp.Pods, o.Pods) && sp.Mode == o.Mode && sp.Reason == o.Reason &&
		sp.Hold == o.Hold && sp.Restart == o.Restart && sp.restores() == o.restores()
}

// RolloutPod is one pod's progress in a rollout, with the times of its
// steps.
type RolloutPod struct {
	Pod  string      `json:"pod"`
	Step RolloutStep `json:"step"`
	// Entered is when its entry was written, InMaintenance when it was
	// reported there, Restarted when its restart was asked for, Exited when
	// its entry was removed, Ready when it was Active and current again.
	Entered       *time.Time `json:"entered,omitempty"`
	InMaintenance *time.Time `json:"inMaintenance,omitempty"`
	Restarted     *time.Time `json:"restarted,omitempty"`
	Exited        *time.Time `json:"exited,omitempty"`
	Ready         *time.Time `json:"ready,omitempty"`
	// Restart says, while the pod restarts, what the restart waits for, or
	// its last error (the pod may not be deleted: RBAC, say); it is tried
	// again.
	Restart string `json:"restart,omitempty"`
}

// Rollout is a rolling maintenance (key "rollout.<name>"): its pods go
// into maintenance one at a time, each after the one before is back and
// caught up. One prober drives it, the holder of its lease (Driver until
// LeaseUntil); every step is written together with its effect in one
// compare-and-swap, so another prober, or the same one restarted, goes on
// from the stored progress.
type Rollout struct {
	Spec        RolloutSpec  `json:"spec"`
	RequestedBy string       `json:"requestedBy,omitempty"`
	Created     time.Time    `json:"created"`
	State       RolloutState `json:"state"`
	// PauseReason says why a Paused rollout waits: the safety rule's
	// verdict on the next step, for example.
	PauseReason string       `json:"pauseReason,omitempty"`
	Pods        []RolloutPod `json:"pods"`
	Finished    *time.Time   `json:"finished,omitempty"`
	Driver      string       `json:"driver,omitempty"`
	LeaseUntil  *time.Time   `json:"leaseUntil,omitempty"`
}

// clone copies the rollout so that no slice or pointer is shared.
func (ro Rollout) clone() Rollout {
	ro.Spec.Pods = slices.Clone(ro.Spec.Pods)
	ro.Pods = slices.Clone(ro.Pods)
	ro.Finished = cloneTime(ro.Finished)
	ro.LeaseUntil = cloneTime(ro.LeaseUntil)
	for i, p := range ro.Pods {
		p.Entered, p.InMaintenance, p.Restarted = cloneTime(p.Entered), cloneTime(p.InMaintenance), cloneTime(p.Restarted)
		p.Exited, p.Ready = cloneTime(p.Exited), cloneTime(p.Ready)
		ro.Pods[i] = p
	}
	return ro
}

func cloneTime(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	c := *t
	return &c
}

// current returns the index of the pod having its turn, else of the next
// one pending, else -1.
func (ro *Rollout) current() int {
	for i, p := range ro.Pods {
		if p.Step.inTurn() {
			return i
		}
	}
	for i, p := range ro.Pods {
		if p.Step == StepPending {
			return i
		}
	}
	return -1
}

// EntryBy is the requestedBy of the entries a rollout writes, which marks
// them as the rollout's.
func (ro *Rollout) entryBy(name string) string { return "rollout " + name }

// entry is the maintenance entry the rollout writes for a pod's turn.
func (ro *Rollout) entry(name string, now time.Time) Entry {
	reason := "rollout " + name
	if ro.Spec.Reason != "" {
		reason += ": " + ro.Spec.Reason
	}
	return Entry{Reason: reason, RequestedBy: ro.entryBy(name), Since: now, Mode: ro.Spec.Mode,
		RestoreLeaders: ro.Spec.RestoreLeaders}
}

func decodeRollout(key, name, value string) (Rollout, error) {
	if name == "" {
		return Rollout{}, Errorf(EInvalid, "key %q: empty name", key)
	}
	var ro Rollout
	if err := DecodeStrict([]byte(value), &ro); err != nil {
		return Rollout{}, Errorf(EInvalid, "key %q: %v", key, err)
	}
	if !ro.State.valid() {
		return Rollout{}, Errorf(EInvalid, "key %q: unknown state %q", key, ro.State)
	}
	for _, p := range ro.Pods {
		if !p.Step.valid() {
			return Rollout{}, Errorf(EInvalid, "key %q: pod %s: unknown step %q", key, p.Pod, p.Step)
		}
	}
	return ro, nil
}

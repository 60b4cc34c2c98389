package maintenance

import (
	"context"
	"time"

	"github.com/prober-dev/prober/natsraft"
)

// Phase is where a node stands on its way into or out of maintenance.
type Phase string

// Phases, entering: Requested → HandingOff → Fencing → InMaintenance;
// leaving: Unfencing → CatchingUp → Active. Failed carries a message and is
// retried by the reconciler.
const (
	PhaseActive        Phase = "Active"
	PhaseRequested     Phase = "Requested"
	PhaseHandingOff    Phase = "HandingOff"
	PhaseFencing       Phase = "Fencing"
	PhaseInMaintenance Phase = "InMaintenance"
	PhaseUnfencing     Phase = "Unfencing"
	PhaseCatchingUp    Phase = "CatchingUp"
	PhaseFailed        Phase = "Failed"
)

// Entry is one maintenance request, for a pod (key "pod.<pod>") or a whole
// datacenter (key "dc.<dc>").
type Entry struct {
	Reason      string     `json:"reason,omitempty"`
	RequestedBy string     `json:"requestedBy,omitempty"`
	Since       time.Time  `json:"since"`
	ExpiresAt   *time.Time `json:"expiresAt,omitempty"`
	Force       bool       `json:"force,omitempty"`
	// Evacuate moves the streams of one replica off the pod before it is
	// fenced (see Node.Evacuate); they are moved back when it leaves,
	// unless KeepEvacuated.
	Evacuate      bool `json:"evacuate,omitempty"`
	KeepEvacuated bool `json:"keepEvacuated,omitempty"`
	// Mode is ModeFence (the default; empty means fence) or ModeDrain:
	// every leadership moved off and kept off while the entry lasts, the
	// pod staying routed, current and ready.
	Mode string `json:"mode,omitempty"`
	// RestoreLeaders, nil meaning true, gives the leaderships the pod held
	// on entry (Status.Leaders) back to it once it has caught up on exit.
	RestoreLeaders *bool `json:"restoreLeaders,omitempty"`
}

// GroupRef names a Raft group and its members.
type GroupRef struct {
	Kind    natsraft.GroupKind `json:"kind"`
	Account string             `json:"account,omitempty"`
	Group   string             `json:"group"`
	// Peers are all members of the group, sorted.
	Peers []string `json:"peers"`
}

// The maintenance modes of an Entry.
const (
	// ModeFence hands off, quiesces and fences the pod (the default).
	ModeFence = "fence"
	// ModeDrain moves the pod's leaderships off and keeps them off; the
	// pod stays routed, current and ready.
	ModeDrain = "drain"
)

// ValidMode checks a mode taken from a request or the stored document: ""
// (fence), ModeFence or ModeDrain.
func ValidMode(mode string) error {
	switch mode {
	case "", ModeFence, ModeDrain:
		return nil
	}
	return Errorf(EInvalid, "invalid mode %q: want %q or %q", mode, ModeFence, ModeDrain)
}

// Drain reports whether the entry asks for leadership-only maintenance.
func (e Entry) Drain() bool { return e.Mode == ModeDrain }

// EffectiveMode is the entry's mode with the default spelled out.
func (e Entry) EffectiveMode() string {
	if e.Drain() {
		return ModeDrain
	}
	return ModeFence
}

// RestoresLeaders reports whether the leaderships go back on exit.
func (e Entry) RestoresLeaders() bool { return e.RestoreLeaders == nil || *e.RestoreLeaders }

// Expired reports whether the entry's TTL has passed at now.
func (e Entry) Expired(now time.Time) bool {
	return e.ExpiresAt != nil && !now.Before(*e.ExpiresAt)
}

// Status is what a node's reconciler reports (key "status.<pod>"). It is
// removed once the node is Active again, so a pod that appears nowhere in
// the document is running normally.
type Status struct {
	Phase      Phase     `json:"phase"`
	Message    string    `json:"message,omitempty"`
	ObservedAt time.Time `json:"observedAt"`
	// PhaseSince is when the node entered Phase.
	PhaseSince time.Time `json:"phaseSince"`
	// Entry is, while the node is on its way into maintenance or in it,
	// the key of the entry in force ("pod.<pod>" or "dc.<dc>"): a pod
	// recreated meanwhile learns from it that it must boot fenced, before
	// its NATS server can tell its dc.
	Entry string `json:"entry,omitempty"`
	// Evacuated lists the streams of one replica moved off the node for
	// this maintenance that go back to it when it leaves
	// ("<account>/<stream>").
	Evacuated []string `json:"evacuated,omitempty"`
	// InByForce is set while the node is in maintenance under a forced
	// entry: when that entry ends and one that is not forced still asks
	// for the node, the safety rule is judged as for a node entering, and
	// the node comes back if it may not stay out. Stored so that a prober
	// restarted meanwhile judges the same.
	InByForce bool `json:"inByForce,omitempty"`
	// Mode is the mode the node is in: ModeDrain once a drain has it
	// routed and serving (a drain only moves leaderships), else ModeFence
	// or "" (fence). A draining node is not out of service.
	Mode string `json:"mode,omitempty"`
	// Leaders is the roles snapshot taken on entry: the groups the node
	// led that a hand-off moves, as natsraft names them ("_meta_",
	// "<stream>", "<stream>/<consumer>"). They go back to it on exit.
	Leaders []string `json:"leaders,omitempty"`
	// RestoreLeaders mirrors the entry's (nil = true) so that the decision
	// outlives the entry; a DELETE with restoreLeaders=false sets it false.
	RestoreLeaders *bool `json:"restoreLeaders,omitempty"`
	// Dark lists the Raft groups that had no member serving once the node
	// quiesced: every other member was out of service, on its way out, or
	// not answering. No server reports such a group, so the safety rule
	// judges it from here while the node is out (see withDark): a request
	// for a pod that a forced entry holds is judged as if the pod were
	// entering, and these are the groups it cannot otherwise see.
	Dark []GroupRef `json:"dark,omitempty"`
	// GivenBack and NotGivenBack report the give-back on exit: the groups
	// whose leadership went back to the node, and those that could not,
	// with why. Once reported, the status stays (phase Active) for
	// ReportRetention so that the answer of the exit can show it.
	GivenBack    []string                `json:"givenBack,omitempty"`
	NotGivenBack []natsraft.NotGivenBack `json:"notGivenBack,omitempty"`
}

// Document is the whole stored state: desired entries, observed statuses
// and rolling maintenances.
type Document struct {
	Pods   map[string]Entry  `json:"pods"`
	DCs    map[string]Entry  `json:"dcs"`
	Status map[string]Status `json:"status"`
	// Rollouts are the rolling maintenances by name, finished ones included
	// until they are deleted; at most one is unfinished (see Rollout).
	Rollouts map[string]Rollout `json:"rollouts"`
	// ResourceVersion identifies the stored revision this document was read
	// at; a write based on an older one is a conflict.
	ResourceVersion string `json:"resourceVersion"`
}

// Store keeps the Document. Every write is a read-modify-write that is
// compare-and-swapped on the resourceVersion and retried on conflict, so no
// update is ever lost.
type Store interface {
	// Get returns the current document.
	Get(ctx context.Context) (*Document, error)
	// Update reads the document, applies fn to a private copy and writes it
	// back if fn changed it; a conflicting concurrent write makes it re-read
	// and re-apply fn. An error from fn aborts without writing and is
	// returned as is. It returns the document as stored afterwards.
	Update(ctx context.Context, fn func(*Document) error) (*Document, error)
	// Watch returns a channel that receives a value (coalesced) after every
	// change of the stored document, and is closed when ctx ends.
	Watch(ctx context.Context) (<-chan struct{}, error)
}

// Node is what the Reconciler needs of the NATS server it drives. Every
// method is idempotent and safe to call again after a crash half-way.
type Node interface {
	// Name is the pod (= NATS server) name.
	Name() string
	// Fenced reports whether the node is currently cut off from its peers;
	// an error when that cannot be told.
	Fenced() (bool, error)
	// Quiesced reports whether the node's JetStream is switched off.
	Quiesced() bool
	// HandOff steps down every Raft leadership the node holds (meta, streams,
	// consumers) to a healthy peer, not one of s.Avoid unless no other can
	// take it, and returns once it leads nothing but the groups of one
	// replica, which have nobody to move to, and, when s.Leaving, those
	// that lose their quorum with the node whoever leads them.
	HandOff(ctx context.Context, s natsraft.Scope) error
	// Leads names the groups the node leads that a hand-off of scope s
	// would move.
	Leads(ctx context.Context, s natsraft.Scope) ([]string, error)
	// Restoring names the node's streams that are restoring a snapshot
	// from their leader, which a quiesce would wait for.
	Restoring(ctx context.Context) ([]string, error)
	// Quiesce switches the node's JetStream off.
	Quiesce(ctx context.Context) error
	// MoveClients asks the node's clients to reconnect to its peers.
	MoveClients(ctx context.Context) error
	// Fence cuts cluster traffic to and from the node and returns once the
	// cut is verified from the peers' side.
	Fence(ctx context.Context) error
	// Unfence lifts the fence and returns once routes are back.
	Unfence(ctx context.Context) error
	// Resume switches JetStream back on.
	Resume(ctx context.Context) error
	// Evacuate moves every stream of one replica off the node and names
	// those it moved ("<account>/<stream>"). Of unfinished (the streams
	// recorded as moving), one a move cut short left of two replicas,
	// the node among them, is moved off too. moving, when not nil, is told
	// of each stream before its move starts; an error from it ends the
	// evacuation.
	Evacuate(ctx context.Context, unfinished []string, moving func(stream string) error) ([]string, error)
	// Restore moves the streams back onto the node and names those it
	// moved back; one gone, or no longer of one replica, is skipped.
	Restore(ctx context.Context, streams []string) ([]string, error)
	// Leaders names the groups the node leads that a hand-off would move,
	// as natsraft names them: the roles snapshot taken on entry.
	Leaders(ctx context.Context) ([]string, error)
	// GiveBack moves the leadership of each named group back to the node
	// and says which went back and which could not, and why (gone, the
	// node not current).
	GiveBack(ctx context.Context, groups []string) (given []string, notGiven []natsraft.NotGivenBack, err error)
	// CaughtUp reports whether every Raft group of the node is current, read
	// from each group's leader; detail says what is still behind.
	CaughtUp(ctx context.Context) (ok bool, detail string, err error)
}

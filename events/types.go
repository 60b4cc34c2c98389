package events

import (
	"github.com/prober-dev/prober/maintenance"
	"github.com/prober-dev/prober/natsraft"
)

// The event types, as GET /events names them (the SSE "event" field).
const (
	// TypePhase is a pod's phase or message changing (PhaseChange).
	TypePhase = "phase"
	// TypeState is the stored document changing (StateChange).
	TypeState = "state"
	// TypeFinding is a finding of the diagnosis raised or cleared
	// (FindingChange).
	TypeFinding = "finding"
	// TypeLeader is a Raft group's leader changing (LeaderChange).
	TypeLeader = "leader"
	// TypeReset says that events were lost: reload the whole state (Reset).
	TypeReset = "reset"
	// TypeDropped is the last event of a stream whose client was too slow
	// (Dropped).
	TypeDropped = "dropped"
)

// Types lists every event type, in the order the API documents them.
var Types = []string{TypePhase, TypeState, TypeFinding, TypeLeader, TypeReset, TypeDropped}

// PhaseChange is the data of a phase event: where a pod stands now and
// where it stood before.
type PhaseChange struct {
	Pod      string            `json:"pod"`
	DC       string            `json:"dc"`
	Phase    maintenance.Phase `json:"phase"`
	Previous maintenance.Phase `json:"previous"`
	Message  string            `json:"message,omitempty"`
	// InMaintenance and Via are the pod view's: whether maintenance is
	// desired, and through which entry ("pod" or "dc").
	InMaintenance bool   `json:"inMaintenance"`
	Via           string `json:"via,omitempty"`
}

// StateChange is the data of a state event: the stored document changed.
type StateChange struct {
	ResourceVersion string `json:"resourceVersion"`
	Previous        string `json:"previous"`
	// Changed names the sections of the document that differ from the
	// previous version's, among Sections. A status refreshed with nothing
	// but its observedAt is "status" alone: a client that shows the
	// entries (pods, dcs) reads them again only when they changed.
	Changed []string `json:"changed,omitempty"`
}

// The sections of the stored document, as a StateChange names them.
const (
	SectionPods     = "pods"
	SectionDCs      = "dcs"
	SectionStatus   = "status"
	SectionRollouts = "rollouts"
)

// Sections lists the sections of the stored document in its order.
var Sections = []string{SectionPods, SectionDCs, SectionStatus, SectionRollouts}

// The changes of a FindingChange.
const (
	FindingRaised  = "raised"
	FindingCleared = "cleared"
)

// FindingChange is the data of a finding event: a finding of the diagnosis
// appeared (raised) or went away (cleared). Key identifies the finding
// between the two: its cause and nodes.
type FindingChange struct {
	Change  string           `json:"change"`
	Key     string           `json:"key"`
	Finding natsraft.Finding `json:"finding"`
}

// LeaderChange is the data of a leader event: a Raft group's leader is
// another one (or none: "").
type LeaderChange struct {
	Group     string             `json:"group"`
	Kind      natsraft.GroupKind `json:"kind"`
	Account   string             `json:"account,omitempty"`
	OldLeader string             `json:"oldLeader"`
	NewLeader string             `json:"newLeader"`
	Term      uint64             `json:"term,omitempty"`
}

// Reset is the data of a reset event.
type Reset struct {
	Reason string `json:"reason"`
}

// Dropped is the data of a dropped event.
type Dropped struct {
	Reason string `json:"reason"`
}

package maintenance

import (
	"context"
	"time"
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
}

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
}

// Document is the whole stored state: desired entries and observed statuses.
type Document struct {
	Pods   map[string]Entry  `json:"pods"`
	DCs    map[string]Entry  `json:"dcs"`
	Status map[string]Status `json:"status"`
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
	// Fenced reports whether the node is currently cut off from its peers.
	Fenced() bool
	// Quiesced reports whether the node's JetStream is switched off.
	Quiesced() bool
	// HandOff steps down every Raft leadership the node holds (meta, streams,
	// consumers) to a healthy peer and returns once it leads nothing.
	HandOff(ctx context.Context) error
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
	// CaughtUp reports whether every Raft group of the node is current, read
	// from each group's leader; detail says what is still behind.
	CaughtUp(ctx context.Context) (ok bool, detail string, err error)
}

package natsraft

import (
	"context"
	"time"
)

// Fence is one kind of fence: how a node is cut off from its peers and its
// JetStream switched off and on, and how its clients are moved away. The
// maintenance reconciler drives a node through a Member, which adds the
// hand-off and the catch-up (they go over the cluster and are the same for
// every kind of fence).
//
// The kinds, one file each:
//   - the gate fence (fence_gate.go): an embedded node's cluster and
//     gateway ports sit behind in-process TCP gates; no privileges needed.
//     The embedded default and the tests use it.
//   - the kernel fence (fence_kernel.go): an nftables table and socket
//     kills in the pod's network namespace, quiesce through a file the
//     NATS configuration includes. The production sidecar uses it.
//
// A new kind implements this interface in a file of its own and is wired in
// one line, NewMember(pod, fence, handOff), by the application that runs it.
// Every method is idempotent and safe to call again after a crash half-way,
// and what Fenced and Quiesced report is read from the node (the kernel, the
// server), never from a flag the fence keeps, so a restarted prober takes
// over from what it finds. Fence and Unfence verify the result over the
// monitoring endpoints, from both ends, through the one link verifier.
type Fence interface {
	// Fenced reports whether the node is cut off from its peers; an error
	// when that cannot be told (never a guess either way).
	Fenced() (bool, error)
	// Fence cuts cluster and gateway traffic to and from the node and
	// returns once the cut is verified from the peers' side and its own.
	Fence(ctx context.Context) error
	// Unfence lifts the cut and returns once the node's routes are back.
	Unfence(ctx context.Context) error
	// Quiesced reports whether the node's JetStream is off.
	Quiesced() bool
	// Quiesce switches the node's JetStream off, so that a fenced node
	// stops campaigning and cannot depose healthy leaders on its return.
	Quiesce(ctx context.Context) error
	// Resume switches it back on.
	Resume(ctx context.Context) error
	// MoveClients asks the node's clients to reconnect to its peers.
	MoveClients(ctx context.Context) error
}

// Compile-time checks that both kinds are fences.
var (
	_ Fence = (*EmbeddedNode)(nil)
	_ Fence = (*KernelFence)(nil)
)

// Member is one NATS node as the maintenance reconciler drives it: its
// fence, and the hand-off and the catch-up, which go over the cluster. It
// satisfies maintenance.Node (the one adapter between the two packages):
// hand off, quiesce, move clients, fence, unfence, resume, and observe
// (Fenced, Quiesced, CaughtUp).
type Member struct {
	fence   Fence
	name    string
	handOff *HandOff
}

// NewMember returns the member named name (its pod = NATS server name),
// fenced by f; h hands its leaderships off and tells when it has caught up.
func NewMember(name string, f Fence, h *HandOff) *Member {
	return &Member{fence: f, name: name, handOff: h}
}

// Name returns the pod (= NATS server) name.
func (m *Member) Name() string { return m.name }

// HandOff steps down the Raft leaderships of scope s the node holds to a
// healthy peer (see HandOff.Run).
func (m *Member) HandOff(ctx context.Context, s Scope) error {
	return m.handOff.Run(ctx, m.name, s)
}

// Leads names the groups the node leads that a hand-off of scope s would
// move.
func (m *Member) Leads(ctx context.Context, s Scope) ([]string, error) {
	return m.handOff.Leads(ctx, m.name, s)
}

// Leaders names the groups the node leads that a hand-off would move, as
// the view names them (see HandOff.Leaders).
func (m *Member) Leaders(ctx context.Context) ([]string, error) {
	return m.handOff.Leaders(ctx, m.name)
}

// GiveBack moves the leadership of each named group back to the node (see
// HandOff.GiveBack).
func (m *Member) GiveBack(ctx context.Context, groups []string) ([]string, []NotGivenBack, error) {
	return m.handOff.GiveBack(ctx, m.name, groups)
}

// CaughtUp reports whether every Raft group of the node is current, read
// from each group's leader; detail says what is still behind.
func (m *Member) CaughtUp(ctx context.Context) (ok bool, detail string, err error) {
	return m.handOff.CaughtUp(ctx, m.name)
}

// Fenced reports whether the node is cut off from its peers.
func (m *Member) Fenced() (bool, error) { return m.fence.Fenced() }

// Quiesced reports whether the node's JetStream is off.
func (m *Member) Quiesced() bool { return m.fence.Quiesced() }

// Restoring names the node's streams that are restoring a snapshot from
// their leader (see HandOff.Restoring).
func (m *Member) Restoring(ctx context.Context) ([]string, error) {
	return m.handOff.Restoring(ctx, m.name)
}

// Quiesce switches the node's JetStream off.
func (m *Member) Quiesce(ctx context.Context) error { return m.fence.Quiesce(ctx) }

// MoveClients asks the node's clients to reconnect to its peers.
func (m *Member) MoveClients(ctx context.Context) error { return m.fence.MoveClients(ctx) }

// Fence cuts the node off from its peers, verified.
func (m *Member) Fence(ctx context.Context) error { return m.fence.Fence(ctx) }

// Unfence lifts the cut and returns once the node's routes are back.
func (m *Member) Unfence(ctx context.Context) error { return m.fence.Unfence(ctx) }

// Resume switches the node's JetStream back on.
func (m *Member) Resume(ctx context.Context) error { return m.fence.Resume(ctx) }

// Evacuate moves every stream of one replica off the node, and finishes
// the moves of unfinished cut short (see HandOff.Evacuate); it names those
// it moved, as "<account>/<stream>". moving, when not nil, is told of each
// before its move starts.
func (m *Member) Evacuate(ctx context.Context, unfinished []string, moving func(stream string) error) ([]string, error) {
	refs := make([]StreamRef, 0, len(unfinished))
	for _, s := range unfinished {
		if ref, err := ParseStreamRef(s); err == nil {
			refs = append(refs, ref)
		}
	}
	var each func(StreamRef) error
	if moving != nil {
		each = func(s StreamRef) error { return moving(s.String()) }
	}
	moved, err := m.handOff.Evacuate(ctx, m.name, refs, each)
	return streamNames(moved), err
}

// Restore moves the named streams ("<account>/<stream>") back onto the
// node (see HandOff.Restore) and names those it moved back.
func (m *Member) Restore(ctx context.Context, streams []string) ([]string, error) {
	refs := make([]StreamRef, 0, len(streams))
	for _, s := range streams {
		ref, err := ParseStreamRef(s)
		if err != nil {
			return nil, err
		}
		refs = append(refs, ref)
	}
	back, err := m.handOff.Restore(ctx, m.name, refs)
	return streamNames(back), err
}

// streamNames returns the text forms of refs.
func streamNames(refs []StreamRef) []string {
	out := make([]string, len(refs))
	for i, r := range refs {
		out[i] = r.String()
	}
	return out
}

// withDefaultDeadline gives ctx a deadline of d unless it already has one.
func withDefaultDeadline(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, d)
}

// pollUntil calls cond now and then every interval until it returns true
// or ctx ends.
func pollUntil(ctx context.Context, interval time.Duration, cond func() bool) error {
	if cond() {
		return nil
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
			if cond() {
				return nil
			}
		}
	}
}

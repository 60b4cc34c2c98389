package maintenance

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"github.com/prober-dev/prober/natsraft"
)

// MaxReasonLength bounds the reason of a request, so that one entry cannot
// crowd the stored document (a ConfigMap holds at most 1 MiB).
const MaxReasonLength = 1024

// MinTTL is the shortest TTL a request may carry.
const MinTTL = time.Second

// ViewSource gives the current view of the NATS cluster; the natsraft
// collector implements it. It lives here, with its consumer.
type ViewSource interface {
	View(ctx context.Context) (*natsraft.View, error)
}

// Service carries out the maintenance use cases — look at a pod or a dc,
// put it into maintenance, bring it back — against a Store and a view of the
// cluster. It writes only the desired state; the reconcilers do the work and
// report the phases. It knows nothing about HTTP.
type Service struct {
	Store Store
	Views ViewSource
	// Leaders moves leaderships for a balance; nil allows dry runs only.
	Leaders LeaderMover
	Now     func() time.Time
	Logger  zerolog.Logger
	// Restarter restarts pods for the rollouts that ask for it; nil when
	// this prober cannot.
	Restarter Restarter
}

// Request asks for maintenance. On a target that is already in maintenance,
// an empty Reason keeps the stored one, Force is sticky and a zero TTL keeps
// the stored expiry, so that repeating a request changes nothing.
type Request struct {
	Reason string
	// TTL, when not zero, makes the entry expire TTL after now; it renews the
	// expiry of an entry that is already there.
	TTL time.Duration
	// Force overrides the safety rule; it needs a Reason and is recorded.
	Force bool
	// Evacuate moves the streams of one replica off the pods before they
	// are fenced: they are then no reason to refuse. KeepEvacuated leaves
	// them where they went when the pods come back.
	Evacuate      bool
	KeepEvacuated bool
	// Mode is ModeFence or ModeDrain; "" keeps the stored entry's mode,
	// fence for a new one.
	Mode string
	// RestoreLeaders, when not nil, says whether the leaderships go back
	// on exit (see Entry); nil keeps the stored entry's (true for a new).
	RestoreLeaders *bool
	// DryRun returns the verdict without writing.
	DryRun bool
	// RequestedBy names the caller, as authenticated by the transport.
	RequestedBy string
}

// PodRaft is what the cluster view says about a pod's Raft groups.
type PodRaft struct {
	// Leads names the groups the pod currently leads.
	Leads []string `json:"leads"`
	// Groups counts the groups the pod is a member of.
	Groups int `json:"groups"`
	// Lag is the largest lag of the pod's replicas, as their leaders see it.
	Lag uint64 `json:"lag"`
	// Current is true when every replica of the pod is current.
	Current bool `json:"current"`
	// Reachable is false when the pod's monitoring endpoint did not answer
	// (or the pod is not in the view at all).
	Reachable bool `json:"reachable"`
}

// PodView is one pod as the API shows it: the desired state, the phase its
// reconciler reported and its Raft standing.
type PodView struct {
	Pod string `json:"pod"`
	DC  string `json:"dc"`
	// InMaintenance is true when maintenance is desired for the pod.
	InMaintenance bool `json:"inMaintenance"`
	// Via tells which entry asks for it: "pod", "dc" or "" (none).
	Via string `json:"via,omitempty"`
	// Phase is the phase the pod's reconciler reported, Requested when
	// maintenance is desired but not yet picked up, else Active.
	Phase       Phase      `json:"phase"`
	Message     string     `json:"message,omitempty"`
	Reason      string     `json:"reason,omitempty"`
	RequestedBy string     `json:"requestedBy,omitempty"`
	Since       *time.Time `json:"since,omitempty"`
	ExpiresAt   *time.Time `json:"expiresAt,omitempty"`
	Force       bool       `json:"force,omitempty"`
	// Evacuate and KeepEvacuated are the entry's (see Entry); Evacuated
	// lists the streams of one replica moved off that go back on exit.
	Evacuate      bool     `json:"evacuate,omitempty"`
	KeepEvacuated bool     `json:"keepEvacuated,omitempty"`
	Evacuated     []string `json:"evacuated,omitempty"`
	// Mode is the maintenance mode: the entry's ("fence" or "drain")
	// while one is in force, else the mode the pod is leaving.
	Mode string `json:"mode,omitempty"`
	// RestoreLeaders is the entry's (nil = true).
	RestoreLeaders *bool `json:"restoreLeaders,omitempty"`
	// Leaders, GivenBack and NotGivenBack are the status's: the roles
	// snapshot taken on entry and what the exit gave back.
	Leaders      []string                `json:"leaders,omitempty"`
	GivenBack    []string                `json:"givenBack,omitempty"`
	NotGivenBack []natsraft.NotGivenBack `json:"notGivenBack,omitempty"`
	Raft         PodRaft                 `json:"raft"`
}

// Result is the outcome of a change.
type Result struct {
	// Pods are the targeted pods as stored after the change (before it, for a
	// dry run).
	Pods []PodView `json:"pods"`
	// Changed is false when the stored document already said the same.
	Changed bool `json:"changed"`
	DryRun  bool `json:"dryRun,omitempty"`
	// Violations are the groups that would lose their quorum: the verdict of
	// a dry run, or what Force overrode.
	Violations []Violation `json:"violations,omitempty"`
	// Forced is true when Force overrode a violation.
	Forced bool `json:"forced,omitempty"`
	// Warnings are the ephemeral consumers that go down with the pods
	// (see Judge): no reason to refuse, their clients make new ones.
	Warnings []Violation `json:"warnings,omitempty"`
}

// scope is the target of a change: one pod or one dc, and its member nodes.
type scope struct {
	kind    string // "pod" or "dc"
	name    string
	members []natsraft.Node
}

func (sc scope) String() string { return sc.kind + " " + sc.name }

func (sc scope) entries(d *Document) map[string]Entry {
	if sc.kind == "dc" {
		if d.DCs == nil {
			d.DCs = map[string]Entry{}
		}
		return d.DCs
	}
	if d.Pods == nil {
		d.Pods = map[string]Entry{}
	}
	return d.Pods
}

// Pod returns the view of one pod; ENotFound when the cluster has no such
// node.
func (s *Service) Pod(ctx context.Context, pod string) (PodView, error) {
	if err := ValidName(pod); err != nil {
		return PodView{}, err
	}
	view, err := s.view(ctx)
	if err != nil {
		return PodView{}, err
	}
	node, ok := view.Node(pod)
	if !ok {
		return PodView{}, unknownPod(pod)
	}
	doc, err := s.get(ctx)
	if err != nil {
		return PodView{}, err
	}
	return podView(view, node, doc, s.now()), nil
}

// Pods returns the view of every pod of the cluster view, sorted by name.
func (s *Service) Pods(ctx context.Context) ([]PodView, error) {
	view, err := s.view(ctx)
	if err != nil {
		return nil, err
	}
	doc, err := s.get(ctx)
	if err != nil {
		return nil, err
	}
	return PodViews(view, doc, s.now()), nil
}

// DC returns the views of every pod whose NATS cluster is dc (exact match),
// sorted by name; ENotFound when no node is in that dc.
func (s *Service) DC(ctx context.Context, dc string) ([]PodView, error) {
	if err := ValidDCName(dc); err != nil {
		return nil, err
	}
	view, err := s.view(ctx)
	if err != nil {
		return nil, err
	}
	members := membersOf(view, dc)
	if len(members) == 0 {
		return nil, unknownDC(dc)
	}
	doc, err := s.get(ctx)
	if err != nil {
		return nil, err
	}
	return podViews(view, members, doc, s.now()), nil
}

// EnterPod asks for maintenance of one pod, after checking that no Raft
// group would lose its quorum (EUnsafe unless r.Force).
func (s *Service) EnterPod(ctx context.Context, pod string, r Request) (Result, error) {
	if err := ValidName(pod); err != nil {
		return Result{}, err
	}
	if err := r.validate(); err != nil {
		return Result{}, err
	}
	view, err := s.view(ctx)
	if err != nil {
		return Result{}, err
	}
	node, ok := view.Node(pod)
	if !ok {
		return Result{}, unknownPod(pod)
	}
	return s.enter(ctx, view, scope{kind: "pod", name: pod, members: []natsraft.Node{node}}, r)
}

// EnterDC asks for maintenance of every pod of a dc, with one safety check
// over the whole set (EUnsafe unless r.Force).
func (s *Service) EnterDC(ctx context.Context, dc string, r Request) (Result, error) {
	if err := ValidDCName(dc); err != nil {
		return Result{}, err
	}
	if err := r.validate(); err != nil {
		return Result{}, err
	}
	view, err := s.view(ctx)
	if err != nil {
		return Result{}, err
	}
	members := membersOf(view, dc)
	if len(members) == 0 {
		return Result{}, unknownDC(dc)
	}
	return s.enter(ctx, view, scope{kind: "dc", name: dc, members: members}, r)
}

// ExitPod removes a pod's maintenance entry; it is idempotent. A pod kept in
// maintenance by its dc's entry is an EConflict: the dc has to be brought
// back as a whole. Leaving needs no cluster view: when none is available it
// still removes an entry that the document holds.
func (s *Service) ExitPod(ctx context.Context, pod, by string) (Result, error) {
	return s.ExitPodWith(ctx, pod, Exit{RequestedBy: by})
}

// Exit asks to bring a pod or a dc back.
type Exit struct {
	RequestedBy string
	// KeepLeadersAway, set, gives no leadership back on the way out,
	// whatever the entry said (restoreLeaders=false on the DELETE).
	KeepLeadersAway bool
}

// keepAway marks the status of pod, when it has one, so that its
// reconciler gives no leadership back.
func (x Exit) keepAway(d *Document, pod string) {
	st, ok := d.Status[pod]
	if !x.KeepLeadersAway || !ok {
		return
	}
	no := false
	st.RestoreLeaders = &no
	d.Status[pod] = st
}

// ExitPodWith is ExitPod with the options of x.
func (s *Service) ExitPodWith(ctx context.Context, pod string, x Exit) (Result, error) {
	by := x.RequestedBy
	if err := ValidName(pod); err != nil {
		return Result{}, err
	}
	doc, err := s.get(ctx)
	if err != nil {
		return Result{}, err
	}
	_, inDoc := doc.Pods[pod]
	if _, ok := doc.Status[pod]; ok {
		inDoc = true
	}
	view, verr := s.view(ctx)
	node, inView := natsraft.Node{Name: pod}, false
	if verr == nil {
		node, inView = view.Node(pod)
	}
	switch {
	case inView:
	case !inDoc && verr != nil:
		return Result{}, verr
	case !inDoc:
		return Result{}, unknownPod(pod)
	default:
		node = natsraft.Node{Name: pod}
	}
	now := s.now()
	changed := false
	stored, err := s.Store.Update(ctx, func(d *Document) error {
		changed = false
		dc := node.DC
		if dc == "" {
			// No cluster view to place the pod: its status says which
			// entry keeps it in, a dc's too.
			if held, ok := strings.CutPrefix(d.Status[pod].Entry, "dc."); ok {
				dc = held
			}
		}
		if dc != "" {
			if e, ok := d.DCs[dc]; ok && !e.Expired(now) {
				return &Error{
					Code: EConflict,
					Message: fmt.Sprintf("pod %s is in maintenance with its dc %s: DELETE /dcs/%s to bring the dc back",
						pod, dc, dc),
				}
			}
		}
		if _, ok := d.Pods[pod]; ok {
			delete(d.Pods, pod)
			changed = true
			x.keepAway(d, pod)
		}
		return nil
	})
	if err != nil {
		return Result{}, fmt.Errorf("exit pod %s: %w", pod, err)
	}
	if changed {
		s.Logger.Info().Str("pod", pod).Str("by", by).Msg("maintenance exit requested")
	}
	return Result{Pods: []PodView{podView(view, node, stored, now)}, Changed: changed}, nil
}

// ExitDC removes a dc's maintenance entry; it is idempotent. Pods of the dc
// that have an entry of their own stay in maintenance until it is removed.
func (s *Service) ExitDC(ctx context.Context, dc, by string) (Result, error) {
	return s.ExitDCWith(ctx, dc, Exit{RequestedBy: by})
}

// ExitDCWith is ExitDC with the options of x: KeepLeadersAway applies to
// the pods the dc entry held (those with no entry of their own).
func (s *Service) ExitDCWith(ctx context.Context, dc string, x Exit) (Result, error) {
	by := x.RequestedBy
	if err := ValidDCName(dc); err != nil {
		return Result{}, err
	}
	doc, err := s.get(ctx)
	if err != nil {
		return Result{}, err
	}
	_, inDoc := doc.DCs[dc]
	view, verr := s.view(ctx)
	var members []natsraft.Node
	if verr == nil {
		members = membersOf(view, dc)
	}
	if len(members) == 0 && !inDoc {
		if verr != nil {
			return Result{}, verr
		}
		return Result{}, unknownDC(dc)
	}
	now := s.now()
	changed := false
	stored, err := s.Store.Update(ctx, func(d *Document) error {
		changed = false
		if _, ok := d.DCs[dc]; ok {
			delete(d.DCs, dc)
			changed = true
			for pod, st := range d.Status {
				if _, own := d.Pods[pod]; !own && st.Entry == dcKeyPrefix+dc {
					x.keepAway(d, pod)
				}
			}
		}
		return nil
	})
	if err != nil {
		return Result{}, fmt.Errorf("exit dc %s: %w", dc, err)
	}
	if changed {
		s.Logger.Info().Str("dc", dc).Str("by", by).Msg("maintenance exit requested")
	}
	return Result{Pods: podViews(view, members, stored, now), Changed: changed}, nil
}

// Config returns the whole stored document.
func (s *Service) Config(ctx context.Context) (*Document, error) {
	return s.get(ctx)
}

// enter plans the entry for sc, checks it against the safety rule and
// writes it. The check is made again inside the store's read-modify-write,
// against the document it is about to change, so two concurrent requests
// cannot both pass on a document that has neither.
func (s *Service) enter(ctx context.Context, view *natsraft.View, sc scope, r Request) (Result, error) {
	now := s.now()
	log := s.Logger.With().Str(sc.kind, sc.name).Str("by", r.RequestedBy).Logger()

	if r.DryRun {
		doc, err := s.get(ctx)
		if err != nil {
			return Result{}, err
		}
		if err := evacuateOnDrain(sc, doc, r, now); err != nil {
			return Result{}, err
		}
		changed, verdict := plan(view, sc, doc.Clone(), r, now)
		return Result{
			Pods:       podViews(view, sc.members, doc, now),
			Changed:    changed,
			DryRun:     true,
			Violations: verdict.Violations,
			Warnings:   verdict.Warnings,
		}, nil
	}

	var changed bool
	var verdict Verdict
	stored, err := s.Store.Update(ctx, func(d *Document) error {
		if err := evacuateOnDrain(sc, d, r, now); err != nil {
			return err
		}
		changed, verdict = plan(view, sc, d, r, now)
		if len(verdict.Violations) > 0 && !r.Force {
			return unsafe(sc, verdict.Violations)
		}
		return nil
	})
	violations := verdict.Violations
	if err != nil {
		if ErrorCode(err) == EUnsafe {
			log.Info().Int("violations", len(violations)).Msg("maintenance refused: unsafe")
		}
		return Result{}, fmt.Errorf("enter %s: %w", sc, err)
	}
	res := Result{Pods: podViews(view, sc.members, stored, now), Changed: changed, Warnings: verdict.Warnings}
	if len(violations) > 0 {
		res.Violations, res.Forced = violations, true
		log.Warn().Str("reason", r.Reason).Strs("groups", groupNames(violations)).
			Msg("maintenance forced over the safety rule")
	}
	if changed {
		log.Info().Str("reason", r.Reason).Dur("ttl", r.TTL).Msg("maintenance requested")
	}
	return res, nil
}

// plan applies the request to d and returns whether it changed d and the
// safety rule's verdict on the pods newly entering maintenance. Pods that
// are already in maintenance (desired or not yet back) are not checked
// again: changing the reason or the TTL of an entry adds nobody. Pods held
// there only by another, forced entry are (see heldByForce).
func plan(view *natsraft.View, sc scope, d *Document, r Request, now time.Time) (bool, Verdict) {
	entries := sc.entries(d)
	entry := Entry{Reason: r.Reason, RequestedBy: r.RequestedBy, Since: now, Force: r.Force,
		Evacuate: r.Evacuate, KeepEvacuated: r.KeepEvacuated, Mode: r.Mode, RestoreLeaders: cloneBool(r.RestoreLeaders)}
	if entry.Mode == ModeFence {
		entry.Mode = "" // the default is stored as nothing
	}
	if r.TTL > 0 {
		at := now.Add(r.TTL)
		entry.ExpiresAt = &at
	}
	if old, ok := entries[sc.name]; ok && !old.Expired(now) {
		if r.Reason == "" {
			entry.Reason = old.Reason
		}
		if r.TTL == 0 {
			entry.ExpiresAt = old.ExpiresAt
		}
		entry.Force = entry.Force || old.Force
		if r.Mode == "" {
			entry.Mode = old.Mode
		}
		if !entry.Drain() {
			// A drain keeps the streams where they are: what a fence
			// entry asked to evacuate does not carry over into one.
			entry.Evacuate = entry.Evacuate || old.Evacuate
			entry.KeepEvacuated = entry.KeepEvacuated || old.KeepEvacuated
		}
		if r.RestoreLeaders == nil {
			entry.RestoreLeaders = cloneBool(old.RestoreLeaders)
		}
		if sameEntry(old, entry) {
			return false, Verdict{}
		}
		entry.Since = old.Since
	}

	busy := OutOfService(view, d, now)
	draining := Draining(view, d, now)
	var held map[string]bool // a drain takes nobody out of service
	if !entry.Drain() {
		held = heldByForce(sc, d, now)
	}
	var requested []string
	for _, n := range sc.members {
		if (!busy[n.Name] || held[n.Name]) && !(entry.Drain() && draining[n.Name]) {
			requested = append(requested, n.Name)
		}
	}
	var verdict Verdict
	if len(requested) > 0 {
		others := slices.Sorted(maps.Keys(busy))
		others = slices.DeleteFunc(others, func(p string) bool { return held[p] })
		if entry.Drain() {
			verdict = JudgeDrain(view, requested, others, slices.Sorted(maps.Keys(draining)))
		} else {
			verdict = Judge(withDark(view, d), requested, others)
		}
		if entry.Evacuate {
			verdict = verdict.evacuating(view)
		}
	}
	entries[sc.name] = entry
	return true, verdict
}

// evacuateOnDrain refuses (EInvalid) a request to evacuate that names no
// mode while the entry it changes is a drain: the entry would keep its
// mode, and a drain keeps the streams where they are.
func evacuateOnDrain(sc scope, d *Document, r Request, now time.Time) error {
	if !r.Evacuate || r.Mode != "" {
		return nil
	}
	if old, ok := sc.entries(d)[sc.name]; ok && !old.Expired(now) && old.Drain() {
		return Errorf(EInvalid, "evacuate applies to mode fence only, and the entry of %s is a drain: "+
			`say "mode": "fence" to turn it into a fence that evacuates`, sc)
	}
	return nil
}

// heldByForce returns the members of sc that some other entry holds in
// maintenance by force (a forced entry of their dc, for a pod's entry; their
// own forced entry, for a dc's), when sc has no entry of its own in force.
// A new entry that is not forced is judged for them as if they were
// entering: once the forced entry ends, the new one alone keeps them out,
// and a quorum lost then would be lost to an entry the rule never judged.
// So is a member still out under a forced entry that has ended (its
// status says InByForce): its reconciler has yet to judge the entries
// left. Other pods already out of service are not judged again (a
// repeated request changes nothing).
func heldByForce(sc scope, d *Document, now time.Time) map[string]bool {
	held := map[string]bool{}
	if old, ok := sc.entries(d)[sc.name]; ok && !old.Expired(now) && !old.Drain() {
		return held
	}
	for _, n := range sc.members {
		var other Entry
		var ok bool
		if sc.kind == "dc" {
			other, ok = d.Pods[n.Name]
		} else {
			other, ok = d.DCs[n.DC]
		}
		if (ok && other.forcesFence(now)) || d.Status[n.Name].InByForce {
			held[n.Name] = true
		}
	}
	return held
}

// mergeGroups adds the groups of add that gs does not name yet.
func mergeGroups(gs, add []GroupRef) []GroupRef {
	for _, g := range add {
		if !slices.ContainsFunc(gs, func(h GroupRef) bool {
			return h.Kind == g.Kind && h.Account == g.Account && h.Group == g.Group
		}) {
			gs = append(gs, g)
		}
	}
	return gs
}

// sameEntry reports whether b asks for what a already says; who asked and
// since when do not matter.
func sameEntry(a, b Entry) bool {
	if a.Reason != b.Reason || a.Force != b.Force || a.Evacuate != b.Evacuate || a.KeepEvacuated != b.KeepEvacuated ||
		a.Mode != b.Mode || a.RestoresLeaders() != b.RestoresLeaders() || (a.RestoreLeaders == nil) != (b.RestoreLeaders == nil) {
		return false
	}
	if (a.ExpiresAt == nil) != (b.ExpiresAt == nil) {
		return false
	}
	return a.ExpiresAt == nil || a.ExpiresAt.Equal(*b.ExpiresAt)
}

// OutOfService returns the pods that are out of service on purpose as far
// as the document says: maintenance is desired for them (an entry of their
// own, or one of their dc as view places them), or their reconciler has not
// yet reported them Active again. The safety rule counts them as
// unavailable; the diagnosis does not take their absence for a fault. A
// nil document asks for nothing. A drain takes nobody out of service: the
// pod stays routed and serving (see Draining), unless it is the turn of a
// rollout that restarts its pods.
func OutOfService(view *natsraft.View, d *Document, now time.Time) map[string]bool {
	busy := map[string]bool{}
	if d == nil {
		return busy
	}
	var nodes []natsraft.Node
	if view != nil {
		nodes = view.Nodes
	}
	for _, n := range nodes {
		if e, _, ok := d.Desired(n.Name, n.DC, now); ok && !e.Drain() {
			busy[n.Name] = true
		}
	}
	for name, e := range d.Pods {
		if !e.Expired(now) && !e.Drain() {
			busy[name] = true
		}
	}
	for name, st := range d.Status {
		if st.Phase != PhaseActive && st.Mode != ModeDrain {
			busy[name] = true
		}
	}
	if _, ro, ok := d.Unfinished(); ok && ro.Spec.takesOut() {
		// A drain that restarts its pod: the entry is a drain, but the
		// turn stops the pod.
		if i := ro.current(); i >= 0 && (ro.Pods[i].Step == StepEntering || ro.Pods[i].Step == StepRestarting) {
			busy[ro.Pods[i].Pod] = true
		}
	}
	return busy
}

// Draining returns the pods that are draining as far as the document says:
// a drain is desired for them, or their reconciler reports them in drain
// mode and not yet Active again. They stay voters, but a hand-off moves no
// leadership to them and the drain rule counts them as unable to lead.
func Draining(view *natsraft.View, d *Document, now time.Time) map[string]bool {
	out := map[string]bool{}
	if d == nil {
		return out
	}
	var nodes []natsraft.Node
	if view != nil {
		nodes = view.Nodes
	}
	for _, n := range nodes {
		if e, _, ok := d.Desired(n.Name, n.DC, now); ok && e.Drain() {
			out[n.Name] = true
		}
	}
	for name, e := range d.Pods {
		if !e.Expired(now) && e.Drain() {
			out[name] = true
		}
	}
	for name, st := range d.Status {
		if st.Phase != PhaseActive && st.Mode == ModeDrain {
			out[name] = true
		}
	}
	return out
}

func (r Request) validate() error {
	if r.Force && strings.TrimSpace(r.Reason) == "" {
		return Errorf(EInvalid, "force needs a reason")
	}
	if len(r.Reason) > MaxReasonLength {
		return Errorf(EInvalid, "reason is longer than %d bytes", MaxReasonLength)
	}
	if r.TTL < 0 || (r.TTL > 0 && r.TTL < MinTTL) {
		return Errorf(EInvalid, "ttl %s: must be at least %s", r.TTL, MinTTL)
	}
	if err := ValidMode(r.Mode); err != nil {
		return err
	}
	if r.Mode == ModeDrain && r.Evacuate {
		return Errorf(EInvalid, "evacuate applies to mode fence only: a drain keeps the pod's streams where they are")
	}
	return nil
}

func (s *Service) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

func (s *Service) get(ctx context.Context) (*Document, error) {
	d, err := s.Store.Get(ctx)
	if err != nil {
		return nil, fmt.Errorf("read maintenance document: %w", err)
	}
	return d, nil
}

// view returns the current cluster view (see ClusterView).
func (s *Service) view(ctx context.Context) (*natsraft.View, error) {
	return ClusterView(ctx, s.Views, s.Logger)
}

// ClusterView returns the current view of views. A failure is
// EUnavailable, its cause logged on log and not shown to clients; when ctx
// ended, its error is returned instead.
func ClusterView(ctx context.Context, views ViewSource, log zerolog.Logger) (*natsraft.View, error) {
	v, err := views.View(ctx)
	if err == nil && v != nil {
		return v, nil
	}
	if cerr := ctx.Err(); cerr != nil {
		return nil, fmt.Errorf("cluster view: %w", cerr)
	}
	if err == nil {
		err = errors.New("no view yet")
	}
	log.Warn().Err(err).Msg("cluster view unavailable")
	return nil, Errorf(EUnavailable, "the cluster view is not available; see the prober's log")
}

func unknownPod(pod string) error {
	return Errorf(ENotFound, "pod %s is not a node of the NATS cluster", pod)
}

func unknownDC(dc string) error {
	return Errorf(ENotFound, "no node of the NATS cluster is in dc %s", dc)
}

func unsafe(sc scope, v []Violation) error {
	return &Error{
		Code: EUnsafe,
		Message: fmt.Sprintf("maintenance of %s would cost %d Raft group(s) their quorum: %s",
			sc, len(v), strings.Join(groupNames(v), ", ")),
		Details: v,
	}
}

func groupNames(v []Violation) []string {
	names := make([]string, len(v))
	for i, x := range v {
		names[i] = x.Group
	}
	return names
}

// membersOf returns the nodes whose NATS cluster is exactly dc, by name.
func membersOf(view *natsraft.View, dc string) []natsraft.Node {
	var out []natsraft.Node
	for _, n := range view.Nodes {
		if n.DC == dc {
			out = append(out, n)
		}
	}
	slices.SortFunc(out, func(a, b natsraft.Node) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// PodViews returns the view of every node of view, by name, as the API
// shows them: the desired state of d at now, the reported phase and the
// Raft standing.
func PodViews(view *natsraft.View, d *Document, now time.Time) []PodView {
	if view == nil {
		return nil
	}
	nodes := slices.Clone(view.Nodes)
	slices.SortFunc(nodes, func(a, b natsraft.Node) int { return strings.Compare(a.Name, b.Name) })
	return podViews(view, nodes, d, now)
}

func podViews(view *natsraft.View, nodes []natsraft.Node, d *Document, now time.Time) []PodView {
	out := make([]PodView, 0, len(nodes))
	for _, n := range nodes {
		out = append(out, podView(view, n, d, now))
	}
	return out
}

// podView builds the view of node from the document and, when there is one,
// the cluster view.
func podView(view *natsraft.View, node natsraft.Node, d *Document, now time.Time) PodView {
	pv := PodView{Pod: node.Name, DC: node.DC}
	if e, via, ok := d.Desired(node.Name, node.DC, now); ok {
		since := e.Since
		pv.InMaintenance, pv.Via = true, via
		pv.Reason, pv.RequestedBy, pv.Force, pv.Since = e.Reason, e.RequestedBy, e.Force, &since
		pv.Evacuate, pv.KeepEvacuated = e.Evacuate, e.KeepEvacuated
		pv.Mode, pv.RestoreLeaders = e.EffectiveMode(), cloneBool(e.RestoreLeaders)
		if e.ExpiresAt != nil {
			at := *e.ExpiresAt
			pv.ExpiresAt = &at
		}
	}
	pv.Phase = d.Phase(node.Name, node.DC, now)
	if st, ok := d.Status[node.Name]; ok && st.Phase != "" {
		pv.Message, pv.Evacuated = st.Message, st.Evacuated
		pv.Leaders, pv.GivenBack, pv.NotGivenBack = st.Leaders, st.GivenBack, st.NotGivenBack
		if pv.Mode == "" && st.Phase != PhaseActive {
			pv.Mode = ModeFence
			if st.Mode == ModeDrain {
				pv.Mode = ModeDrain
			}
		}
	}
	pv.Raft = podRaft(view, node)
	return pv
}

func podRaft(view *natsraft.View, node natsraft.Node) PodRaft {
	pr := PodRaft{Leads: []string{}, Current: true, Reachable: node.Reachable}
	if view == nil {
		pr.Current = false
		return pr
	}
	for _, g := range view.Groups {
		if g.Leader == node.Name {
			pr.Leads = append(pr.Leads, g.Name)
		}
		for _, p := range g.Peers {
			if p.Name != node.Name {
				continue
			}
			pr.Groups++
			pr.Lag = max(pr.Lag, p.Lag)
			if !p.Leader && g.Leader != node.Name && (!p.Current || p.Offline) {
				pr.Current = false
			}
		}
	}
	return pr
}

// Goal is where a change of maintenance is going: every pod of its target in
// maintenance (Enter) or back and Active (leaving). The HTTP API's wait and
// the command line's follow both stop on it.
type Goal struct {
	Enter bool
	// DC is set for a change of a whole dc: leaving it, a pod held by an
	// entry of its own stays in maintenance and does not hold the dc back.
	DC bool
}

// Reached tells whether one pod has got there.
func (g Goal) Reached(pv PodView) bool {
	if g.Enter {
		return pv.InMaintenance && pv.Phase == PhaseInMaintenance
	}
	if g.KeptByOwnEntry(pv) {
		return true
	}
	return !pv.InMaintenance && pv.Phase == PhaseActive
}

// KeptByOwnEntry tells whether, leaving a dc, pv stays in maintenance
// through an entry of its own.
func (g Goal) KeptByOwnEntry(pv PodView) bool {
	return g.DC && !g.Enter && pv.InMaintenance && pv.Via == SourcePod
}

// All tells whether every pod has got there. An empty set has not: a target
// whose pods are unknown (no cluster view) is not done.
func (g Goal) All(pods []PodView) bool {
	if len(pods) == 0 {
		return false
	}
	for _, pv := range pods {
		if !g.Reached(pv) {
			return false
		}
	}
	return true
}

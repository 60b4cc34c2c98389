package events

import (
	"bytes"
	"context"
	"encoding/json"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"github.com/prober-dev/prober/maintenance"
	"github.com/prober-dev/prober/natsraft"
)

// DefaultWatchInterval is how often the Watcher compares the cluster view
// when the stored document does not change.
const DefaultWatchInterval = 250 * time.Millisecond

// WatcherOptions configures a Watcher.
type WatcherOptions struct {
	// Hub receives the events.
	Hub *Hub
	// Store is the maintenance state: watched for changes, read for the
	// resourceVersion and the phases.
	Store maintenance.Store
	// Latest returns the newest cluster view without waiting for a sweep
	// (natsraft.Collector.Latest); nil before the first one.
	Latest func() *natsraft.View
	// DCs, when not nil, gives the dc of the pods whose dc is not their
	// NATS cluster name, as the maintenance service sees them.
	DCs func() map[string]string
	// Diagnose returns the findings of a view with the stored document;
	// nil raises no findings.
	Diagnose func(v *natsraft.View, doc *maintenance.Document, now time.Time) []natsraft.Finding
	// Interval is how often the cluster view is compared;
	// DefaultWatchInterval when 0.
	Interval time.Duration
	// Now is the clock; time.Now when nil.
	Now    func() time.Time
	Logger zerolog.Logger
}

// Watcher derives events by comparing what it sees with what it saw: the
// stored document after each of its changes (state and phase events), and
// the cluster view after each sweep (phase, leader and finding events).
// Level-triggered: a missed change notification costs nothing, the next
// comparison finds the difference. The first look only sets the baseline.
// A prober that has just started has no cluster view until its first
// sweep: the phases' baseline is then the document's, and the first view
// sets the baseline of the leaders and the findings.
type Watcher struct {
	o WatcherOptions

	started  bool
	viewSeen bool
	version  string
	sections map[string][]byte // section -> its JSON at version
	phases   map[string]PhaseChange
	leaders  map[string]string // group key -> leader
	findings map[string]natsraft.Finding
	viewAt   time.Time
	docAt    string
}

// NewWatcher returns a watcher; Run starts it.
func NewWatcher(o WatcherOptions) *Watcher {
	if o.Interval <= 0 {
		o.Interval = DefaultWatchInterval
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Watcher{o: o}
}

// Run compares after every change of the stored document and every
// Interval until ctx ends.
func (w *Watcher) Run(ctx context.Context) error {
	changed, err := w.o.Store.Watch(ctx)
	if err != nil {
		w.o.Logger.Warn().Err(err).Msg("events: cannot watch the store; comparing every interval only")
	}
	tick := time.NewTicker(w.o.Interval)
	defer tick.Stop()
	for {
		w.Step(ctx)
		select {
		case <-ctx.Done():
			return nil
		case _, ok := <-changed:
			if !ok {
				changed = nil
			}
		case <-tick.C:
		}
	}
}

// Step compares once and publishes what changed. It is not to be called
// while Run runs.
func (w *Watcher) Step(ctx context.Context) {
	now := w.o.Now()
	doc, err := w.o.Store.Get(ctx)
	if err != nil {
		if ctx.Err() == nil {
			w.o.Logger.Debug().Err(err).Msg("events: read the stored state")
		}
		return
	}
	view := w.o.Latest()
	if w.started && view != nil && view.At.Equal(w.viewAt) && doc.ResourceVersion == w.docAt && !hasExpiry(doc) {
		return
	}
	first := !w.started
	w.started = true
	if view != nil {
		w.viewAt = view.At
	}
	w.docAt = doc.ResourceVersion

	if doc.ResourceVersion != w.version {
		changed := w.compareSections(doc)
		if !first {
			w.publish(TypeState, StateChange{ResourceVersion: doc.ResourceVersion, Previous: w.version, Changed: changed})
		}
		w.version = doc.ResourceVersion
	}
	if view == nil {
		if first {
			w.phases = docPhases(doc, now)
		}
		return
	}
	baseline := !w.viewSeen
	w.viewSeen = true
	w.comparePhases(view, doc, now, first)
	w.compareLeaders(view, baseline)
	w.compareFindings(view, doc, now, baseline)
}

// compareSections returns the sections of doc that differ from those of
// the version seen before, and keeps doc's.
func (w *Watcher) compareSections(doc *maintenance.Document) []string {
	sections := map[string]any{SectionPods: doc.Pods, SectionDCs: doc.DCs, SectionStatus: doc.Status, SectionRollouts: doc.Rollouts}
	next := make(map[string][]byte, len(Sections))
	var changed []string
	for _, name := range Sections {
		// Maps are encoded in key order: equal sections, equal bytes. An
		// error (none is expected of these types) counts as a change.
		b, err := json.Marshal(sections[name])
		if err != nil || !bytes.Equal(b, w.sections[name]) {
			changed = append(changed, name)
		}
		next[name] = b
	}
	w.sections = next
	return changed
}

// hasExpiry reports whether an entry of doc has a TTL: its phase may
// change with time alone.
func hasExpiry(doc *maintenance.Document) bool {
	for _, e := range doc.Pods {
		if e.ExpiresAt != nil {
			return true
		}
	}
	for _, e := range doc.DCs {
		if e.ExpiresAt != nil {
			return true
		}
	}
	return false
}

func (w *Watcher) publish(typ string, data any) {
	_, _ = w.o.Hub.Publish(typ, data)
}

// docPhases is the baseline of the phases before the first cluster view:
// those of the pods the document names, as it says (an entry of a dc is
// placed by the view only, and counts from the first view on).
func docPhases(doc *maintenance.Document, now time.Time) map[string]PhaseChange {
	out := map[string]PhaseChange{}
	for _, pod := range slices.Concat(slices.Collect(maps.Keys(doc.Pods)), slices.Collect(maps.Keys(doc.Status))) {
		_, _, desired := doc.Desired(pod, "", now)
		pc := PhaseChange{Pod: pod, Phase: doc.Phase(pod, "", now), InMaintenance: desired}
		if st, ok := doc.Status[pod]; ok && st.Phase != "" {
			pc.Message = st.Message
		}
		out[pod] = pc
	}
	return out
}

// comparePhases publishes a phase event for every pod whose phase or
// message changed, in pod order.
func (w *Watcher) comparePhases(view *natsraft.View, doc *maintenance.Document, now time.Time, first bool) {
	if w.o.DCs != nil {
		view = view.WithDCs(w.o.DCs())
	}
	next := map[string]PhaseChange{}
	for _, pv := range maintenance.PodViews(view, doc, now) {
		pc := PhaseChange{Pod: pv.Pod, DC: pv.DC, Phase: pv.Phase, Message: pv.Message,
			InMaintenance: pv.InMaintenance, Via: pv.Via}
		next[pv.Pod] = pc
		old, known := w.phases[pv.Pod]
		if !known {
			old.Phase = maintenance.PhaseActive
		}
		if first || (old.Phase == pc.Phase && old.Message == pc.Message && old.InMaintenance == pc.InMaintenance) {
			continue
		}
		pc.Previous = old.Phase
		w.publish(TypePhase, pc)
	}
	w.phases = next
}

func groupKey(g natsraft.Group) string {
	return string(g.Kind) + "\x00" + g.Account + "\x00" + g.Name
}

// compareLeaders publishes a leader event for every group, known before,
// whose leader changed.
func (w *Watcher) compareLeaders(view *natsraft.View, first bool) {
	next := make(map[string]string, len(view.Groups))
	for _, g := range view.Groups {
		k := groupKey(g)
		next[k] = g.Leader
		old, known := w.leaders[k]
		if first || !known || old == g.Leader {
			continue
		}
		w.publish(TypeLeader, LeaderChange{Group: g.Name, Kind: g.Kind, Account: g.Account,
			OldLeader: old, NewLeader: g.Leader, Term: g.Term})
	}
	w.leaders = next
}

// FindingKey identifies a finding from one diagnosis to the next: its
// cause and the nodes it is located at.
func FindingKey(f natsraft.Finding) string {
	nodes := slices.Clone(f.Nodes)
	slices.Sort(nodes)
	return string(f.Cause) + "/" + strings.Join(nodes, ",")
}

// compareFindings publishes the findings raised since the last diagnosis,
// then those cleared.
func (w *Watcher) compareFindings(view *natsraft.View, doc *maintenance.Document, now time.Time, first bool) {
	if w.o.Diagnose == nil {
		return
	}
	next := map[string]natsraft.Finding{}
	var order []string
	for _, f := range w.o.Diagnose(view, doc, now) {
		k := FindingKey(f)
		if _, dup := next[k]; !dup {
			order = append(order, k)
		}
		next[k] = f
	}
	if !first {
		for _, k := range order {
			if _, ok := w.findings[k]; !ok {
				w.publish(TypeFinding, FindingChange{Change: FindingRaised, Key: k, Finding: next[k]})
			}
		}
		for _, k := range slices.Sorted(maps.Keys(w.findings)) {
			if _, ok := next[k]; !ok {
				w.publish(TypeFinding, FindingChange{Change: FindingCleared, Key: k, Finding: w.findings[k]})
			}
		}
	}
	w.findings = next
}

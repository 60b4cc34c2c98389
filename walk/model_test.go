package walk_test

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/prober-dev/prober/maintenance"
	"github.com/prober-dev/prober/natsraft"
)

// expectedEntry is what the model expects the store to hold for one pod or
// dc. A TTL makes the expiry known only to within the request's round trip:
// the prober stamps it at some instant in [expLo, expHi] (minus the TTL).
type expectedEntry struct {
	reason string
	force  bool
	ttl    bool
	expLo  time.Time
	expHi  time.Time
}

// liveness says whether an entry is surely in force, surely expired, or
// within its expiry window (either may be seen).
type liveness int

const (
	live liveness = iota
	uncertain
	expired
)

// grace is how late an expired entry may still be seen in GET /config: the
// reconcilers remove it on their next pass (timer, event or resync).
const grace = 500 * time.Millisecond

func (e expectedEntry) at(now time.Time) liveness {
	switch {
	case !e.ttl || now.Before(e.expLo):
		return live
	case now.After(e.expHi):
		return expired
	default:
		return uncertain
	}
}

// node is one pod of the topology.
type node struct{ name, dc string }

// group is one Raft group the model knows, with its members (fixed: the
// walk creates no group of one replica, so nothing is evacuated).
type group struct {
	name  string
	peers []string
}

func (g group) quorum() int { return len(g.peers)/2 + 1 }

// model is the walk's idea of the desired state.
type model struct {
	nodes  []node
	groups []group
	pods   map[string]expectedEntry
	dcs    map[string]expectedEntry
	// crashed are the NATS nodes stopped by the walk, with when.
	crashed map[string]time.Time
	// forceEnded are the pods whose forced entry was deleted or forgotten
	// as expired, with the latest instant it may have ended.
	forceEnded map[string]time.Time
}

func newModel(nodes []node, groups []group) *model {
	return &model{nodes: nodes, groups: groups, pods: map[string]expectedEntry{},
		dcs: map[string]expectedEntry{}, crashed: map[string]time.Time{}, forceEnded: map[string]time.Time{}}
}

func (m *model) dcOf(pod string) string {
	for _, n := range m.nodes {
		if n.name == pod {
			return n.dc
		}
	}
	return ""
}

func (m *model) dcNames() []string {
	var out []string
	for _, n := range m.nodes {
		if !slices.Contains(out, n.dc) {
			out = append(out, n.dc)
		}
	}
	return out
}

func (m *model) membersOf(dc string) []string {
	var out []string
	for _, n := range m.nodes {
		if n.dc == dc {
			out = append(out, n.name)
		}
	}
	return out
}

// request is one PUT as the walk sends it.
type request struct {
	reason string
	force  bool
	ttl    time.Duration
}

func (r request) body() string {
	var parts []string
	if r.reason != "" {
		parts = append(parts, fmt.Sprintf("%q:%q", "reason", r.reason))
	}
	if r.force {
		parts = append(parts, `"force":true`)
	}
	if r.ttl > 0 {
		parts = append(parts, fmt.Sprintf("%q:%q", "ttl", r.ttl.String()))
	}
	return "{" + strings.Join(parts, ",") + "}"
}

// entries returns the map of kind ("pods" or "dcs").
func (m *model) entries(kind string) map[string]expectedEntry {
	if kind == "dcs" {
		return m.dcs
	}
	return m.pods
}

// put applies an accepted PUT sent at lo and answered at hi, as the
// prober's plan does: an entry in force keeps its reason when the request
// has none, its expiry when the request has no TTL, and stays forced.
func (m *model) put(kind, name string, r request, lo, hi time.Time) {
	es := m.entries(kind)
	e := expectedEntry{reason: r.reason, force: r.force}
	if r.ttl > 0 {
		e.ttl, e.expLo, e.expHi = true, lo.Add(r.ttl), hi.Add(r.ttl)
	}
	if old, ok := es[name]; ok && old.at(lo) == live {
		if r.reason == "" {
			e.reason = old.reason
		}
		if r.ttl == 0 {
			e.ttl, e.expLo, e.expHi = old.ttl, old.expLo, old.expHi
		}
		e.force = e.force || old.force
	}
	es[name] = e
}

// forget drops the entries that are surely expired at now.
func (m *model) forget(now time.Time) {
	for _, kind := range []string{"pods", "dcs"} {
		for k, e := range m.entries(kind) {
			if e.at(now) == expired {
				m.drop(kind, k, e.expHi)
			}
		}
	}
}

// drop removes the entry kind/name, which ended by at.
func (m *model) drop(kind, name string, at time.Time) {
	es := m.entries(kind)
	if e, ok := es[name]; ok && e.force {
		pods := []string{name}
		if kind == "dcs" {
			pods = m.membersOf(name)
		}
		for _, p := range pods {
			m.forceEnded[p] = at
		}
	}
	delete(es, name)
}

// forceEndedWithin says whether a forced entry that asked for pod ended
// within d before now: an entry that is not forced may still ask for the
// pod, and the prober then brings it back if the rule forbids it to stay
// out, which takes it a moment.
func (m *model) forceEndedWithin(pod string, now time.Time, d time.Duration) bool {
	recent := func(at time.Time) bool { return !at.IsZero() && !now.Before(at) && now.Sub(at) < d }
	if recent(m.forceEnded[pod]) {
		return true
	}
	for _, e := range m.asking(pod) {
		if e.force && e.at(now) == expired && recent(e.expHi) {
			return true
		}
	}
	return false
}

// desire says whether maintenance is desired for pod at now: yes, no, or
// uncertain while an entry that asks for it is within its expiry window.
// forced is true when an entry in force that asks for it is forced.
func (m *model) desire(pod string, now time.Time) (l liveness, forced bool) {
	l = expired
	for _, e := range m.asking(pod) {
		switch e.at(now) {
		case live:
			l = live
			forced = forced || e.force
		case uncertain:
			if l == expired {
				l = uncertain
			}
			forced = forced || e.force
		}
	}
	return l, forced
}

// asking returns the entries the model holds that name pod: its own and
// its dc's, whatever their expiry.
func (m *model) asking(pod string) []expectedEntry {
	var out []expectedEntry
	if e, ok := m.pods[pod]; ok {
		out = append(out, e)
	}
	if e, ok := m.dcs[m.dcOf(pod)]; ok {
		out = append(out, e)
	}
	return out
}

// heldByForce returns the pods of a request for the entry kind/name that
// only another entry in force holds out of service, and that entry forced:
// the rule judges the new entry for them as if they were entering, since
// once the forced entry ends the new one alone keeps them out. None when
// the request's own entry is (or may still be) in force. An entry within
// its expiry window does not hold for this: the model then judges less than
// the rule may, never more. The request was sent at lo and answered at hi.
func (m *model) heldByForce(kind, name string, pods []string, lo, hi time.Time) map[string]bool {
	held := map[string]bool{}
	if own, ok := m.entries(kind)[name]; ok && own.at(lo) != expired {
		return held
	}
	for _, p := range pods {
		other, ok := m.dcs[m.dcOf(p)]
		if kind == "dcs" {
			other, ok = m.pods[p]
		}
		if ok && other.force && other.at(hi) == live {
			held[p] = true
		}
	}
	return held
}

// unsafe applies the safety rule to a request for pods, given busy (the
// pods out of service on purpose), held (those of them judged anyway, see
// heldByForce) and the crashed nodes: the groups that would keep fewer than
// a quorum of their members. It is written from the rule's statement, not
// from the prober's code.
func (m *model) unsafe(pods []string, busy, held map[string]bool) []string {
	requested := map[string]bool{}
	for _, p := range pods {
		if !busy[p] || held[p] {
			requested[p] = true
		}
	}
	var out []string
	for _, g := range m.groups {
		touched, remaining := false, 0
		for _, p := range g.peers {
			_, down := m.crashed[p]
			switch {
			case requested[p]:
				touched = true
			case busy[p] || down:
			default:
				remaining++
			}
		}
		if touched && remaining < g.quorum() {
			out = append(out, fmt.Sprintf("%s keeps %d of %v", g.name, remaining, g.peers))
		}
	}
	return out
}

// compareConfig compares the stored document with the model at now and
// returns what differs; entries within their expiry window may be either
// way, and surely expired ones may linger (strict says they may not).
func (m *model) compareConfig(d *maintenance.Document, now time.Time, strict bool) []string {
	var diffs []string
	for _, k := range []struct {
		kind   string
		stored map[string]maintenance.Entry
	}{{"pods", d.Pods}, {"dcs", d.DCs}} {
		want := m.entries(k.kind)
		names := map[string]bool{}
		for n := range want {
			names[n] = true
		}
		for n := range k.stored {
			names[n] = true
		}
		keys := make([]string, 0, len(names))
		for n := range names {
			keys = append(keys, n)
		}
		sort.Strings(keys)
		for _, n := range keys {
			got, has := k.stored[n]
			e, modelled := want[n]
			state := expired
			if modelled {
				state = e.at(now)
			}
			switch {
			case !modelled && has && (strict || got.ExpiresAt == nil || got.ExpiresAt.After(now.Add(-grace))):
				diffs = append(diffs, fmt.Sprintf("%s/%s stored (%+v) but not expected", k.kind, n, got))
			case !modelled:
			case state == live && !has:
				diffs = append(diffs, fmt.Sprintf("%s/%s expected (%+v) but not stored", k.kind, n, e))
			case state == expired && has && strict:
				diffs = append(diffs, fmt.Sprintf("%s/%s expired at %s but still stored", k.kind, n, e.expHi.Format(time.RFC3339Nano)))
			case has && state != expired:
				if why := e.differs(got); why != "" {
					diffs = append(diffs, fmt.Sprintf("%s/%s: %s", k.kind, n, why))
				}
			}
		}
	}
	return diffs
}

func (e expectedEntry) differs(got maintenance.Entry) string {
	switch {
	case got.Reason != e.reason:
		return fmt.Sprintf("reason %q, want %q", got.Reason, e.reason)
	case got.Force != e.force:
		return fmt.Sprintf("force %t, want %t", got.Force, e.force)
	case (got.ExpiresAt != nil) != e.ttl:
		return fmt.Sprintf("expiresAt %v, want a TTL: %t", got.ExpiresAt, e.ttl)
	case e.ttl && (got.ExpiresAt.Before(e.expLo.Add(-time.Millisecond)) || got.ExpiresAt.After(e.expHi.Add(time.Millisecond))):
		return fmt.Sprintf("expiresAt %s outside [%s, %s]", got.ExpiresAt.Format(time.RFC3339Nano),
			e.expLo.Format(time.RFC3339Nano), e.expHi.Format(time.RFC3339Nano))
	}
	return ""
}

// groupsOf reads the model's groups from a healthy view: every group that
// is not ephemeral, with its members.
func groupsOf(v *natsraft.View) []group {
	var out []group
	for _, g := range v.Groups {
		if g.Ephemeral {
			continue
		}
		out = append(out, group{name: g.Name, peers: g.PeerNames()})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	return out
}

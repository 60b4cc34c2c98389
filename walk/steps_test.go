package walk_test

import (
	"bytes"
	"fmt"
	"net/http"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/prober-dev/prober/maintenance"
	"github.com/prober-dev/prober/natsraft"
)

// stepKind is one kind of step with its weight in the draw.
type stepKind struct {
	name   string
	weight int
	// ok says whether the step can be drawn now.
	ok  func(w *walker) bool
	run func(w *walker)
}

var stepKinds = []stepKind{
	{name: "put pod", weight: 30, run: func(w *walker) { w.put("pods", w.pick(w.podNames())) }},
	{name: "delete pod", weight: 20, run: func(w *walker) { w.remove("pods", w.pickEntry("pods", w.podNames())) }},
	{name: "put dc", weight: 8, run: func(w *walker) { w.put("dcs", w.pick(w.m.dcNames())) }},
	{name: "delete dc", weight: 8, run: func(w *walker) { w.remove("dcs", w.pickEntry("dcs", w.m.dcNames())) }},
	{name: "kill -9", weight: 12, ok: func(w *walker) bool { return w.c.proc }, run: (*walker).killStep},
	{name: "crash node", weight: 8, ok: func(w *walker) bool { return !w.c.proc && len(w.m.crashed) == 0 }, run: (*walker).crashStep},
	{name: "revive node", weight: 14, ok: func(w *walker) bool { return len(w.m.crashed) > 0 }, run: func(w *walker) {
		w.revive(w.pick(sortedKeys(w.m.crashed)))
	}},
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func (w *walker) podNames() []string {
	out := make([]string, len(w.m.nodes))
	for i, n := range w.m.nodes {
		out[i] = n.name
	}
	return out
}

func (w *walker) pick(names []string) string { return names[w.rng.IntN(len(names))] }

// pickEntry picks, most of the time, a name that has an entry.
func (w *walker) pickEntry(kind string, names []string) string {
	if have := sortedKeys(w.m.entries(kind)); len(have) > 0 && w.rng.IntN(4) > 0 {
		return w.pick(have)
	}
	return w.pick(names)
}

// doStep draws one step and runs it. A walk whose draws brought no fault
// by its middle step gets one there (a kill -9, or a node crash whose
// revival the draws bring later), so that a short walk has one too.
func (w *walker) doStep() {
	if w.step == (w.steps+1)/2 && w.st.kills == 0 && w.st.crashes == 0 {
		if w.c.proc {
			w.killStep()
		} else {
			w.crashStep()
		}
		return
	}
	var kinds []stepKind
	total := 0
	for _, k := range stepKinds {
		if k.ok == nil || k.ok(w) {
			kinds = append(kinds, k)
			total += k.weight
		}
	}
	n := w.rng.IntN(total)
	for _, k := range kinds {
		if n < k.weight {
			k.run(w)
			return
		}
		n -= k.weight
	}
}

// drawRequest draws the body of a PUT: a reason most of the time, forced
// now and then (always with a reason), a TTL of 2–8 s now and then.
func (w *walker) drawRequest() request {
	r := request{}
	if w.rng.IntN(5) > 0 {
		r.reason = fmt.Sprintf("walk step %d", w.step)
	}
	if w.rng.IntN(7) == 0 {
		r.force = true
		r.reason = fmt.Sprintf("walk step %d, forced", w.step)
	}
	if w.rng.IntN(4) == 0 {
		r.ttl = time.Duration(2+w.rng.IntN(7)) * time.Second
	}
	return r
}

// settle waits until no entry of the model is within its expiry window, so
// that the next request meets a document the model knows.
func (w *walker) settle() {
	now := time.Now()
	var until time.Time
	for _, es := range []map[string]expectedEntry{w.m.pods, w.m.dcs} {
		for _, e := range es {
			if e.at(now) == uncertain && e.expHi.After(until) {
				until = e.expHi
			}
		}
	}
	if d := time.Until(until); d > 0 {
		time.Sleep(d + time.Millisecond) // the clock, not another goroutine, decides
	}
	w.m.forget(time.Now())
}

// busy returns the pods the model knows to be out of service on purpose:
// maintenance surely desired, or a status short of Active in both
// documents (surely not yet back; a pod back from maintenance keeps an Active
// status for a while, the report of its give-back).
func (w *walker) busy(before, after *maintenance.Document, now time.Time) map[string]bool {
	out := map[string]bool{}
	for _, n := range w.m.nodes {
		if l, _ := w.m.desire(n.name, now); l == live {
			out[n.name] = true
		}
		b, inBefore := before.Status[n.name]
		a, inAfter := after.Status[n.name]
		if inBefore && inAfter && b.Phase != maintenance.PhaseActive && a.Phase != maintenance.PhaseActive {
			out[n.name] = true
		}
	}
	return out
}

// put sends PUT /<kind>/<name> and updates the model as the answer says;
// an accepted request that the rule forbids is a violation.
func (w *walker) put(kind, name string) {
	w.settle()
	r := w.drawRequest()
	before := w.config()
	rep := w.send(http.MethodPut, "/"+kind+"/"+name, r.body())
	after := w.config()
	members := []string{name}
	if kind == "dcs" {
		members = w.m.membersOf(name)
	}
	unsafe := w.m.unsafe(members, w.busy(before, after, rep.lo), w.m.heldByForce(kind, name, members, rep.lo, rep.hi))
	w.st.checks++
	w.t.Logf("step %d: PUT /%s/%s %s -> %d (model: unsafe %v)", w.step, kind, name, r.body(), rep.code, unsafe)
	switch rep.code {
	case http.StatusOK, http.StatusAccepted:
		w.st.accepted++
		if r.force {
			w.st.forced++
		}
		if r.ttl > 0 {
			w.st.ttl++
		}
		if len(unsafe) > 0 && !r.force {
			w.fail("PUT /%s/%s accepted although the safety rule forbids it: %s; answer %s\nthe prober's view just after: %s",
				kind, name, strings.Join(unsafe, "; "), rep.body, w.viewOf(members))
		}
		w.m.put(kind, name, r, rep.lo, rep.hi)
	case http.StatusConflict:
		w.st.refused++
		if r.force {
			w.fail("PUT /%s/%s forced and refused: %s", kind, name, rep.body)
		}
		if len(unsafe) == 0 {
			// Not a violation: the prober also counts peers that are not
			// healthy, which the model does not know.
			w.st.refusedSafe++
			w.t.Logf("step %d: refused although the model judged it safe: %s", w.step, bytes.TrimSpace(rep.body))
		}
	default:
		w.fail("PUT /%s/%s: unexpected %d %s", kind, name, rep.code, rep.body)
	}
	w.checkConfig(after, rep.hi, false)
}

// remove sends DELETE /<kind>/<name> and forgets the entry.
func (w *walker) remove(kind, name string) {
	rep := w.send(http.MethodDelete, "/"+kind+"/"+name, "")
	w.t.Logf("step %d: DELETE /%s/%s -> %d", w.step, kind, name, rep.code)
	switch {
	case rep.code == http.StatusOK || rep.code == http.StatusAccepted:
		w.m.drop(kind, name, rep.hi)
	case rep.code == http.StatusConflict && kind == "pods" && w.dcHolds(name):
		// A pod its dc's entry holds in maintenance comes back with its
		// dc: the prober says so and changes nothing.
	default:
		w.fail("DELETE /%s/%s: unexpected %d %s", kind, name, rep.code, rep.body)
	}
	w.checkConfig(w.config(), time.Now(), false)
}

// dcHolds says whether pod's dc has an entry that may be in force.
func (w *walker) dcHolds(pod string) bool {
	e, ok := w.m.dcs[w.m.dcOf(pod)]
	return ok && e.at(time.Now()) != expired
}

// checkConfig requires the stored document to be the model's.
func (w *walker) checkConfig(d *maintenance.Document, now time.Time, strict bool) {
	w.st.checks++
	if diffs := w.m.compareConfig(d, now, strict); len(diffs) > 0 {
		w.fail("GET /config differs from the model: %s", strings.Join(diffs, "; "))
	}
}

// midPhases are the phases a kill -9 aims at: half-way in or out.
var midPhases = []maintenance.Phase{maintenance.PhaseHandingOff, maintenance.PhaseFencing,
	maintenance.PhaseUnfencing, maintenance.PhaseCatchingUp}

// killStep kills the whole prober with SIGKILL — right away, or once a pod
// it just asked to move is half-way — and starts it again on the same data.
func (w *walker) killStep() {
	if w.rng.IntN(3) > 0 {
		pod := w.pick(w.podNames())
		if l, _ := w.m.desire(pod, time.Now()); l == live {
			w.remove("pods", pod)
		} else {
			w.put("pods", pod)
		}
		phase := w.waitStoredPhase(pod, 5*time.Second)
		if phase != "" {
			w.st.midPhaseKills++
		}
		w.t.Logf("step %d: kill -9 with %s at %q", w.step, pod, phase)
	} else {
		w.t.Logf("step %d: kill -9", w.step)
	}
	if err := w.drv.kill(); err != nil {
		w.fail("kill -9: %v", err)
	}
	w.st.kills++
	begin := time.Now()
	if err := w.drv.start(w.ctx); err != nil {
		w.fail("start after kill -9: %v", err)
	}
	w.t.Logf("step %d: restarted in %.1fs", w.step, time.Since(begin).Seconds())
	w.checkConfig(w.config(), time.Now(), false)
}

// waitStoredPhase reads the store file as another process would until
// pod's stored status is in a middle phase, and returns it ("" if it was
// not seen within timeout).
func (w *walker) waitStoredPhase(pod string, timeout time.Duration) maintenance.Phase {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if d, ok := readStore(w.drv.storeFile()); ok {
			if st, has := d.Status[pod]; has && slices.Contains(midPhases, st.Phase) {
				return st.Phase
			}
		}
		time.Sleep(2 * time.Millisecond)
	}
	return ""
}

// crashStep stops one NATS node (its pod is lost) and waits until the
// prober's view shows it unreachable.
func (w *walker) crashStep() {
	pod := w.pick(w.podNames())
	at := time.Now()
	if err := w.drv.crash(pod); err != nil {
		w.fail("crash %s: %v", pod, err)
	}
	w.m.crashed[pod] = at
	w.st.crashes++
	w.t.Logf("step %d: crashed %s", w.step, pod)
	w.poll(15*time.Second, pod+" unreachable in /raft", func() (bool, string) {
		v := w.raft()
		n, ok := v.Node(pod)
		return ok && !n.Reachable, fmt.Sprintf("%+v", n)
	})
}

func (w *walker) revive(pod string) {
	if err := w.drv.revive(w.ctx, pod); err != nil {
		w.fail("revive %s: %v", pod, err)
	}
	delete(w.m.crashed, pod)
	w.t.Logf("step %d: revived %s", w.step, pod)
}

// viewOf says how the prober's view (GET /raft, now) sees pods: their nodes
// and every group they are members of, for a violation's report.
func (w *walker) viewOf(pods []string) string {
	v, why := w.tryRaft()
	if v == nil {
		return why
	}
	var b strings.Builder
	fmt.Fprintf(&b, "taken %s, %.1fs old", v.At.Format(time.RFC3339Nano), v.AgeSeconds)
	for _, n := range v.Nodes {
		if slices.Contains(pods, n.Name) {
			fmt.Fprintf(&b, "\n  node %s: reachable %v, jetstream %v", n.Name, n.Reachable, n.JetStream)
		}
	}
	for _, g := range v.Groups {
		if !slices.ContainsFunc(g.Peers, func(p natsraft.Peer) bool { return slices.Contains(pods, p.Name) }) &&
			!slices.ContainsFunc(w.m.groups, func(mg group) bool { return mg.name == g.Name && overlaps(mg.peers, pods) }) {
			continue
		}
		fmt.Fprintf(&b, "\n  %s %s: leader %q, peers", g.Kind, g.Name, g.Leader)
		for _, p := range g.Peers {
			fmt.Fprintf(&b, " %s(current %v, healthy %v, offline %v)", p.Name, p.Current, p.Healthy, p.Offline)
		}
	}
	return b.String()
}

func overlaps(a, b []string) bool {
	return slices.ContainsFunc(a, func(x string) bool { return slices.Contains(b, x) })
}

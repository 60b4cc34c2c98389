package walk_test

import (
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/prober-dev/prober/maintenance"
	"github.com/prober-dev/prober/prober"
)

// readStore reads the file store as another process would; ok is false
// while the file is missing or half written.
func readStore(path string) (*maintenance.Document, bool) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, false
	}
	var f struct {
		ResourceVersion string            `json:"resourceVersion"`
		Data            map[string]string `json:"data"`
	}
	if err := json.Unmarshal(raw, &f); err != nil {
		return nil, false
	}
	d, err := maintenance.DecodeData(f.Data, f.ResourceVersion)
	return d, err == nil
}

// fencedIn reports whether the view shows pod fenced for maintenance: its
// server answers, with JetStream off.
func fencedIn(v *prober.RaftResponse, pod string) bool {
	n, ok := v.Node(pod)
	return ok && n.Reachable && !n.JetStream
}

// checkConverged polls until every node is in its desired phase (within
// convergeTimeout) and every group that keeps a quorum has a leader
// (within leaderTimeout), and requires that no group lost its quorum to a
// maintenance the rule should have refused. final requires every node
// Active.
func (w *walker) checkConverged(final bool) {
	w.t.Helper()
	begin := time.Now()
	for {
		now := time.Now()
		d := w.config()
		v, unavailable := w.tryRaft()
		if v == nil {
			if time.Since(begin) > convergeTimeout {
				w.fail("GET /raft still unavailable %s after the step: %s", convergeTimeout, unavailable)
			}
			w.st.raftUnavailable++
			time.Sleep(100 * time.Millisecond) // polling the API, as below
			continue
		}
		problems := w.phaseProblems(d, v, now)
		var phases []string
		// A node in a slow phase (catching up after a forced dc
		// maintenance, first waiting for its groups to elect; quiescing)
		// may take longer than convergeTimeout: the step may take as long
		// as the least patient of its problems allows.
		within := catchUpTimeout
		for _, p := range problems {
			phases = append(phases, p.text)
			within = min(within, p.within)
		}
		if diffs := w.m.compareConfig(d, now, true); len(diffs) > 0 {
			phases = append(phases, "config: "+strings.Join(diffs, "; "))
			within = convergeTimeout
		}
		stranded, leaderless := w.quorumProblems(d, v, now)
		if len(stranded) > 0 {
			w.fail("a Raft group lost its quorum to maintenance the rule should have refused: %s", strings.Join(stranded, "; "))
		}
		if len(phases) == 0 && len(leaderless) == 0 {
			// config + per node (phase, fence) + per group (quorum, leader)
			w.st.checks += 1 + 2*len(w.m.nodes) + 2*len(w.m.groups)
			if took := time.Since(begin); took > convergeTimeout {
				w.t.Logf("step %d: converged after %s, through a slow phase (catching up, quiescing)", w.step, took.Round(100*time.Millisecond))
			}
			return
		}
		elapsed := time.Since(begin)
		switch {
		case len(phases) > 0 && elapsed > within:
			w.fail("not converged %s after the step: %s", elapsed.Round(time.Second), strings.Join(phases, "; "))
		case len(leaderless) > 0 && elapsed > leaderTimeout:
			w.fail("groups that keep a quorum have no leader %s after the step: %s", leaderTimeout, strings.Join(leaderless, "; "))
		}
		select {
		case <-w.ctx.Done():
			w.fail("converge: %v", w.ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// phaseProblem is a node not in its desired phase.
type phaseProblem struct {
	text string
	// within is how long after the step the node may take to get where it
	// is wanted: catchUpTimeout on its way back, catching up, unfenced;
	// quiesceTimeout on its way in, past the hand-off (Fencing: switching
	// its JetStream off, moving its clients, fencing);
	// convergeTimeout else.
	within time.Duration
}

// phaseProblems compares each node's phase (GET /pods/<pod>) and fence (the
// view) with what the model desires for it.
func (w *walker) phaseProblems(d *maintenance.Document, v *prober.RaftResponse, now time.Time) []phaseProblem {
	var out []phaseProblem
	crashes := len(w.m.crashed) > 0
	for _, n := range w.m.nodes {
		if _, down := w.m.crashed[n.name]; down {
			continue
		}
		l, forced := w.m.desire(n.name, now)
		if l == uncertain {
			continue
		}
		var pv maintenance.PodView
		w.get("/pods/"+n.name, &pv)
		fenced := fencedIn(v, n.name)
		switch {
		case l == live && pv.Phase == maintenance.PhaseInMaintenance && fenced:
		case l == live && !forced && pv.Phase == maintenance.PhaseRequested && !fenced && (crashes || w.held(n.name, v, now)):
		case l == expired && pv.Phase == maintenance.PhaseActive && !fenced:
		case l == expired && crashes && pv.Phase == maintenance.PhaseCatchingUp && !fenced:
		// Back from maintenance while a group of it has no quorum of
		// unfenced members (the others are in maintenance, forced): it
		// cannot catch up until they are back.
		case l == expired && pv.Phase == maintenance.PhaseCatchingUp && !fenced && w.withoutQuorum(n.name, v):
		default:
			want := "Active, not fenced"
			if l == live {
				want = "InMaintenance, fenced"
			}
			within := convergeTimeout
			switch {
			case l == expired && pv.Phase == maintenance.PhaseCatchingUp && !fenced:
				within = catchUpTimeout
			case l == live && !forced && !fenced && w.m.forceEndedWithin(n.name, now, catchUpTimeout+convergeTimeout) &&
				(pv.Phase == maintenance.PhaseCatchingUp || pv.Phase == maintenance.PhaseRequested ||
					pv.Phase == maintenance.PhaseHandingOff):
				// Coming back because the forced entry that held it
				// ended and the one left may not keep it out: catching
				// up, after a forced dc maintenance, takes as long as on
				// any way back, and the rule holds it at Requested until
				// its peers back from the same maintenance are healthy.
				// Going in again then, its hand-off waits for the groups
				// that every member had left to elect a leader and for a
				// peer to be current (seed 4711, step 49: HandingOff
				// 10 s after the dc's forced entry ended).
				within = catchUpTimeout
			case l == live && (pv.Phase == maintenance.PhaseFencing || pv.Phase == maintenance.PhaseInMaintenance && !fenced):
				// Quiescing, then moving the clients and fencing, which
				// are quick once the quiesce has taken its time. The view
				// is up to a sweep older than the phase: a pod that has
				// just been fenced may still show its JetStream on (seed
				// 7171, step 59: InMaintenance 13 s after the step, after
				// a 5 s catch-up held its quiesce, and not yet fenced in
				// the view read a moment before).
				within = quiesceTimeout
			}
			out = append(out, phaseProblem{
				within: within,
				text:   fmt.Sprintf("%s is %s (%s), fenced %t; want %s", n.name, pv.Phase, pv.Message, fenced, want),
			})
		}
	}
	return out
}

// withoutQuorum says whether a group of pod has fewer than a quorum of
// members that are neither crashed nor fenced.
func (w *walker) withoutQuorum(pod string, v *prober.RaftResponse) bool {
	for _, g := range w.m.groups {
		if !slices.Contains(g.peers, pod) {
			continue
		}
		left := 0
		for _, p := range g.peers {
			if _, crashed := w.m.crashed[p]; !crashed && !fencedIn(v, p) {
				left++
			}
		}
		if left < g.quorum() {
			return true
		}
	}
	return false
}

// held says whether the rule holds pod back: its maintenance is desired,
// but taking it away now would cost a group its quorum.
func (w *walker) held(pod string, v *prober.RaftResponse, now time.Time) bool {
	busy := map[string]bool{}
	for _, n := range w.m.nodes {
		if n.name == pod {
			continue
		}
		if l, _ := w.m.desire(n.name, now); l != expired || fencedIn(v, n.name) {
			busy[n.name] = true
		}
	}
	return len(w.m.unsafe([]string{pod}, busy, nil)) > 0
}

// quorumProblems returns the groups that lost their quorum to maintenance
// without an excuse (stranded), and those that keep a quorum but have no
// leader in the view. A loss is excused when a fenced member's maintenance
// is forced, or when a member crashed after (or within viewLag before) a
// fenced member was fenced: the rule could not have known.
func (w *walker) quorumProblems(d *maintenance.Document, v *prober.RaftResponse, now time.Time) (stranded, leaderless []string) {
	leaders := map[string]string{}
	for _, g := range v.Groups {
		leaders[g.Name] = g.Leader
	}
	for _, g := range w.m.groups {
		var fenced, down []string
		for _, p := range g.peers {
			if _, crashed := w.m.crashed[p]; crashed {
				down = append(down, p)
			} else if fencedIn(v, p) {
				fenced = append(fenced, p)
			}
		}
		alive := len(g.peers) - len(down)
		left := alive - len(fenced)
		switch {
		case left >= g.quorum():
			if leaders[g.name] == "" {
				leaderless = append(leaderless, g.name)
			}
		case alive >= g.quorum() && !w.excused(d, fenced, down, now):
			stranded = append(stranded, fmt.Sprintf("%s (members %v): fenced %v, crashed %v", g.name, g.peers, fenced, down))
		}
	}
	return stranded, leaderless
}

func (w *walker) excused(d *maintenance.Document, fenced, down []string, now time.Time) bool {
	for _, p := range fenced {
		// Forced, or on its way out (the phase check names it if it
		// stays fenced): not the rule's doing.
		if l, forced := w.m.desire(p, now); forced || l != live {
			return true
		}
		// Its forced entry has just ended and one that is not forced
		// still asks for it: the prober brings it back if it may not
		// stay (this check names it if it is still fenced after that).
		if w.m.forceEndedWithin(p, now, convergeTimeout) {
			return true
		}
		fencedAt := now
		if st, ok := d.Status[p]; ok && st.Phase == maintenance.PhaseInMaintenance {
			fencedAt = st.PhaseSince
		}
		for _, dn := range down {
			if fencedAt.Before(w.m.crashed[dn].Add(viewLag)) {
				return true
			}
		}
	}
	return false
}

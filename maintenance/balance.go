package maintenance

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/prober-dev/prober/natsraft"
)

// LeaderMover moves one Raft leadership to a named peer and returns once
// that peer leads; *natsraft.HandOff implements it. It lives here, with
// its consumer.
type LeaderMover interface {
	MoveLeader(ctx context.Context, m natsraft.LeaderMove) error
}

// BalanceRequest asks to even out the leaderships of the healthy pods of
// DC ("" = every pod).
type BalanceRequest struct {
	DC string
	// To, when set, names the only pod leaderships move to: the pod takes
	// its share (see natsraft.PlanBalanceTo), as a restarted pod does.
	To string
	// DryRun plans the moves and performs none.
	DryRun      bool
	RequestedBy string
}

// BalanceMove is one move of a balance: planned (dry run), done, or failed
// with Error (the balance stops there).
type BalanceMove struct {
	natsraft.LeaderMove
	Error string `json:"error,omitempty"`
}

// BalanceResult is the answer of a balance.
type BalanceResult struct {
	DC     string `json:"dc,omitempty"`
	To     string `json:"to,omitempty"`
	DryRun bool   `json:"dryRun"`
	// Pods are the pods balanced among: reachable, JetStream on, neither
	// out of service nor draining.
	Pods []string `json:"pods"`
	// Moves are the moves planned (dry run) or performed, in order.
	Moves []BalanceMove `json:"moves"`
	// SkewBefore and SkewAfter are the leader skew (most minus fewest
	// leaderships of a pod) before and after (as planned for a dry run).
	SkewBefore    int            `json:"skewBefore"`
	SkewAfter     int            `json:"skewAfter"`
	LeadersBefore map[string]int `json:"leadersBefore"`
	LeadersAfter  map[string]int `json:"leadersAfter"`
}

// Balance evens out the leaderships among the healthy pods of r.DC (every
// pod when empty), one hand-off at a time, as natsraft.PlanBalance plans
// them; a dry run only plans. A move that fails stops the balance: the
// answer names it with its error, and what was done stays done. ENotFound
// for a dc without nodes; EUnavailable without a view, or without a mover
// for a balance that is not a dry run. With r.To, only moves to that pod
// are made (ENotFound for a pod the view does not know; no moves when it
// cannot lead: out of service, draining, JetStream off).
func (s *Service) Balance(ctx context.Context, r BalanceRequest) (BalanceResult, error) {
	// Names first: a bad one is 400 also without a mover or a view.
	if r.DC != "" {
		if err := ValidDCName(r.DC); err != nil {
			return BalanceResult{}, err
		}
	}
	if r.To != "" {
		if err := ValidName(r.To); err != nil {
			return BalanceResult{}, err
		}
	}
	if !r.DryRun && s.Leaders == nil {
		return BalanceResult{}, Errorf(EUnavailable, "this prober cannot move leaderships")
	}
	view, err := s.view(ctx)
	if err != nil {
		return BalanceResult{}, err
	}
	if r.DC != "" && len(membersOf(view, r.DC)) == 0 {
		return BalanceResult{}, unknownDC(r.DC)
	}
	if r.To != "" {
		n, ok := view.Node(r.To)
		if !ok {
			return BalanceResult{}, unknownPod(r.To)
		}
		if r.DC != "" && n.DC != r.DC {
			return BalanceResult{}, Errorf(EInvalid, "pod %s is in dc %s, not %s", r.To, n.DC, r.DC)
		}
	}
	doc, err := s.get(ctx)
	if err != nil {
		return BalanceResult{}, err
	}
	pods := balancePods(view, doc, r.DC, r.DC == "", s.now())
	before := natsraft.LeaderCounts(view, pods)
	moves, planned := natsraft.PlanBalance(view, pods)
	if r.To != "" {
		moves, planned = natsraft.PlanBalanceTo(view, pods, r.To)
	}
	res := BalanceResult{DC: r.DC, To: r.To, DryRun: r.DryRun, Pods: pods, Moves: []BalanceMove{},
		SkewBefore: natsraft.Skew(before), LeadersBefore: before, SkewAfter: natsraft.Skew(planned), LeadersAfter: planned}
	log := s.Logger.With().Str("dc", r.DC).Str("to", r.To).Str("by", r.RequestedBy).Logger()
	if r.DryRun {
		for _, m := range moves {
			res.Moves = append(res.Moves, BalanceMove{LeaderMove: m})
		}
		return res, nil
	}
	for _, m := range moves {
		bm := BalanceMove{LeaderMove: m}
		if err := s.Leaders.MoveLeader(ctx, m); err != nil {
			if ctx.Err() != nil {
				return BalanceResult{}, fmt.Errorf("balance: %w", ctx.Err())
			}
			bm.Error = err.Error()
			res.Moves = append(res.Moves, bm)
			log.Warn().Err(err).Str("group", m.Group).Str("from", m.From).Str("to", m.To).Msg("balance stopped")
			break
		}
		res.Moves = append(res.Moves, bm)
	}
	if len(res.Moves) > 0 {
		log.Info().Int("moves", len(res.Moves)).Int("skewBefore", res.SkewBefore).Msg("leaderships balanced")
	}
	after, err := s.view(ctx)
	if err != nil {
		return BalanceResult{}, err
	}
	res.LeadersAfter = natsraft.LeaderCounts(after, pods)
	res.SkewAfter = natsraft.Skew(res.LeadersAfter)
	return res, nil
}

// balancePods names the pods of dc (of every dc with all) that can lead:
// reachable, JetStream on, neither out of service, draining nor stopping,
// sorted.
func balancePods(view *natsraft.View, doc *Document, dc string, all bool, now time.Time) []string {
	busy := OutOfService(view, doc, now)
	draining := Draining(view, doc, now)
	pods := []string{}
	for _, n := range view.Nodes {
		if (all || n.DC == dc) && n.Serving() && !n.Stopping && !busy[n.Name] && !draining[n.Name] {
			pods = append(pods, n.Name)
		}
	}
	slices.Sort(pods)
	return pods
}

// DCSkew is the leader skew of one dc: most minus fewest leaderships of
// its pods that can lead (see Balance), and each one's count.
type DCSkew struct {
	DC      string         `json:"dc"`
	Skew    int            `json:"skew"`
	Leaders map[string]int `json:"leaders"`
}

// LeaderSkew returns the leader skew of every dc of the view, sorted by
// dc: what /raft and the prober_leader_skew gauge show.
func LeaderSkew(view *natsraft.View, doc *Document, now time.Time) []DCSkew {
	if view == nil {
		return []DCSkew{}
	}
	var dcs []string
	for _, n := range view.Nodes {
		if !slices.Contains(dcs, n.DC) {
			dcs = append(dcs, n.DC)
		}
	}
	slices.SortFunc(dcs, cmp.Compare[string])
	out := make([]DCSkew, 0, len(dcs))
	for _, dc := range dcs {
		counts := natsraft.LeaderCounts(view, balancePods(view, doc, dc, false, now))
		out = append(out, DCSkew{DC: dc, Skew: natsraft.Skew(counts), Leaders: counts})
	}
	return out
}

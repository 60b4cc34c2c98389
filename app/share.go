package app

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/rs/zerolog"

	"github.com/prober-dev/prober/maintenance"
)

// shareSettle is how long the local pod must have been ready before it
// takes its share of the leaderships: a readiness that flaps at the end of
// a catch-up does not start moves.
const shareSettle = 2 * time.Second

// podReadiness is what takeShare asks: /readyz's answer for one pod.
type podReadiness interface {
	PodReady(ctx context.Context, pod string) (bool, string)
}

// shareInputs are what takeShare reads: the pod's readiness, its dc ("" while
// unknown), its server's start time (zero while unknown) and whether a
// pre-stop readies the server for its shutdown (nil: never).
type shareInputs struct {
	ready    podReadiness
	dc       func() string
	started  func() time.Time
	stopping func() bool
}

// Bounds of takeShare.
const (
	// shareAttempts is how many balances after one start may fail before
	// the pod goes without its share until its next start.
	shareAttempts = 3
	// shareStopPoll is how often a running balance asks whether a
	// pre-stop began: the moves to a pod that is going away stop then.
	shareStopPoll = 100 * time.Millisecond
)

// takeShare gives the local pod its share of the leaderships of its dc
// each time its server has (re)started — the sidecar's start counts as one
// — as soon as the pod has been ready (caught up in every group, Active)
// for shareSettle. In a rolling restart (`kubectl rollout restart`, an
// upgrade) each pod's pre-stop hands its leaderships off, and a restarted
// pod leads nothing: without this the pods restarted last would lead
// nothing until someone balances. The moves are the hand-offs of
// maintenance.Service.Balance with To (one at a time, each to this pod
// while it leads at least two fewer than the pod leading the most). None
// while a rollout is unfinished: the rollout gives leaderships back
// itself. A pre-stop stops the moves (the pod is going away, and each
// would cost an election), and a balance that failed is tried again, at
// most shareAttempts times per start. It returns when ctx ends.
func takeShare(ctx context.Context, pod string, svc *maintenance.Service, in shareInputs, log zerolog.Logger) error {
	tick := time.NewTicker(localDCPoll)
	defer tick.Stop()
	var since, done time.Time // ready since; the server start last served
	var tried time.Time       // the server start the failed balances were for
	failed := 0
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		started := in.started()
		if started.IsZero() || started.Equal(done) {
			continue
		}
		if !started.Equal(tried) {
			tried, failed = started, 0
		}
		if ok, _ := in.ready.PodReady(ctx, pod); !ok || in.dc() == "" {
			since = time.Time{}
			continue
		}
		if since.IsZero() {
			since = time.Now()
		}
		if time.Since(since) < shareSettle {
			continue
		}
		doc, err := svc.Config(ctx)
		if err != nil {
			continue
		}
		if name, _, ok := doc.Unfinished(); ok {
			log.Info().Str("rollout", name).Msg("leadership share after a start left to the rollout's give-back")
			done = started
			continue
		}
		res, err := balanceUnlessStopping(ctx, svc, maintenance.BalanceRequest{DC: in.dc(), To: pod, RequestedBy: "prober " + pod + " (after its start)"}, in.stopping)
		if err == nil && len(res.Moves) > 0 && res.Moves[len(res.Moves)-1].Error != "" {
			err = errors.New(res.Moves[len(res.Moves)-1].Error)
		}
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if failed++; failed < shareAttempts {
				log.Warn().Err(err).Int("attempt", failed).Msg("leadership share after a start: balance failed; trying again")
				since = time.Time{}
				continue
			}
			log.Warn().Err(err).Int("attempts", failed).Msg("leadership share after a start: balance failed; left to the next start or a balance")
		}
		done = started
		if err != nil {
			continue
		}
		log.Info().Int("moves", len(res.Moves)).Int("skewBefore", res.SkewBefore).Int("skewAfter", res.SkewAfter).
			Interface("leaders", res.LeadersAfter).Msg("took the pod's share of the leaderships after its server's start")
	}
}

// balanceUnlessStopping is svc.Balance, stopped when stopping says a
// pre-stop began.
func balanceUnlessStopping(ctx context.Context, svc *maintenance.Service, r maintenance.BalanceRequest, stopping func() bool) (maintenance.BalanceResult, error) {
	if stopping == nil {
		return svc.Balance(ctx, r)
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	go func() {
		tick := time.NewTicker(shareStopPoll)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
				if stopping() {
					cancel(errors.New("a pre-stop began"))
					return
				}
			}
		}
	}()
	res, err := svc.Balance(ctx, r)
	if err != nil && context.Cause(ctx) != nil && ctx.Err() != nil {
		err = fmt.Errorf("%w (%v)", err, context.Cause(ctx))
	}
	return res, err
}

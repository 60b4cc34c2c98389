package app

import (
	"context"
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
// unknown) and its server's start time (zero while unknown).
type shareInputs struct {
	ready   podReadiness
	dc      func() string
	started func() time.Time
}

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
// itself. It returns when ctx ends.
func takeShare(ctx context.Context, pod string, svc *maintenance.Service, in shareInputs, log zerolog.Logger) error {
	tick := time.NewTicker(localDCPoll)
	defer tick.Stop()
	var since, done time.Time // ready since; the server start last served
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
		res, err := svc.Balance(ctx, maintenance.BalanceRequest{DC: in.dc(), To: pod, RequestedBy: "prober " + pod + " (after its start)"})
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			log.Warn().Err(err).Msg("leadership share after a start: balance failed; trying again")
			since = time.Time{}
			continue
		}
		done = started
		log.Info().Int("moves", len(res.Moves)).Int("skewBefore", res.SkewBefore).Int("skewAfter", res.SkewAfter).
			Interface("leaders", res.LeadersAfter).Msg("took the pod's share of the leaderships after its server's start")
	}
}

package maintenance

import (
	"context"
	"fmt"
	"time"

	"github.com/rs/zerolog"

	"github.com/prober-dev/prober/natsraft"
)

// DefaultPreStopTimeout bounds a PreStop whose context has no deadline. It
// fits, with the NATS lame-duck mode after it, in the grace period of the
// example install (see deploy/statefulset.yaml).
const DefaultPreStopTimeout = 25 * time.Second

// PreStopReport is what PreStop did to the local node before its server
// stops: the answer of POST /local/prestop.
type PreStopReport struct {
	// Pod is the node's pod (= NATS server) name.
	Pod string `json:"pod"`
	// Complete is true when every step succeeded: the node leads nothing
	// but groups of one replica, its JetStream is off and its clients were
	// moved.
	Complete bool `json:"complete"`
	// HandedOff is true when the hand-off returned without an error.
	HandedOff bool `json:"handedOff"`
	// Leads names the groups the node still led afterwards (those of one
	// replica, which have nobody to move to, and any the hand-off could
	// not move); nil when that could not be read.
	Leads []string `json:"leads"`
	// Quiesced is true when the node's JetStream is off afterwards.
	Quiesced bool `json:"quiesced"`
	// ClientsMoved is true when the node's clients were asked to reconnect
	// to its peers and left (or were disconnected).
	ClientsMoved bool `json:"clientsMoved"`
	// Errors says why a step failed, in the order of the steps.
	Errors []string `json:"errors,omitempty"`
	// Seconds is how long it took.
	Seconds float64 `json:"seconds"`
}

// PreStop readies node for its server's shutdown (a rolling restart, an
// upgrade, a pod deleted) so that the shutdown costs no Raft group an
// election and no client a lost request: it hands off every leadership the
// node holds, switches its JetStream off (so that it neither takes a
// leadership back nor campaigns while it shuts down) and moves its clients
// to its peers — the first steps of entering maintenance, without the
// fence (the server goes away anyway) and without any stored entry (a
// restart is not maintenance: the new server boots as usual).
//
// Every step runs even when the one before failed (a node that could not
// hand off everything is better off having handed off what it could), each
// bounded by ctx; without a deadline in ctx the whole is bounded by
// DefaultPreStopTimeout. PreStop never blocks past that: when the peers
// are unhealthy it logs, reports what failed, and returns, and the server
// stops as it would have without it. Calling it again is harmless: a node
// that leads nothing and is quiesced has nothing to do.
//
// The hand-off goes as scope says (see HandOffScope), the node leaving.
//
// With quiesce false the JetStream step is left out (Quiesced reports what
// the node is). The kernel fence switches JetStream off by a configuration
// reload, and NATS then deletes the server's copy of the meta group's log:
// harmless for one node in maintenance, which gets it back from the meta
// leader, but in a rolling restart every server in turn would boot without
// it, and a restart that follows another before the first caught up loses
// the meta state (seen on a real node: the stream was gone afterwards).
func PreStop(ctx context.Context, node Node, scope natsraft.Scope, quiesce bool, log zerolog.Logger) PreStopReport {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultPreStopTimeout)
		defer cancel()
	}
	start := time.Now()
	rep := PreStopReport{Pod: node.Name()}
	log = log.With().Str("pod", rep.Pod).Str("phase", "prestop").Logger()
	failed := func(step string, err error) {
		rep.Errors = append(rep.Errors, fmt.Sprintf("%s: %v", step, err))
		log.Warn().Err(err).Str("step", step).Msg("pre-stop step failed; going on")
	}

	scope.Leaving = true
	if err := node.HandOff(ctx, scope); err != nil {
		failed("hand off", err)
	} else {
		rep.HandedOff = true
	}
	leads, err := node.Leads(ctx, natsraft.Scope{Leaving: true})
	if err != nil {
		failed("read leaderships", err)
	} else {
		rep.Leads = leads
		if rep.Leads == nil {
			rep.Leads = []string{}
		}
	}
	if quiesce {
		if err := node.Quiesce(ctx); err != nil {
			failed("quiesce", err)
		}
	}
	rep.Quiesced = node.Quiesced()
	if err := node.MoveClients(ctx); err != nil {
		failed("move clients", err)
	} else {
		rep.ClientsMoved = true
	}
	rep.Complete = len(rep.Errors) == 0 && (rep.Quiesced || !quiesce)
	rep.Seconds = time.Since(start).Seconds()
	ev := log.Info()
	if !rep.Complete {
		ev = log.Warn()
	}
	ev.Bool("complete", rep.Complete).Strs("leads", rep.Leads).Bool("quiesced", rep.Quiesced).
		Bool("clientsMoved", rep.ClientsMoved).Float64("seconds", rep.Seconds).Msg("ready to stop")
	return rep
}

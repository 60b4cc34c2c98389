package app

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"github.com/prober-dev/prober/maintenance"
	"github.com/prober-dev/prober/natsraft"
)

// DefaultPreStopHold bounds how long the local reconciler stays paused
// after a pre-stop when the local server does not restart: longer than any
// grace period of the install, so that it ends only when the pod did not
// go away after all.
const DefaultPreStopHold = 5 * time.Minute

// preStopHold is the pause of the local reconciler that a pre-stop starts:
// the reconciler would otherwise see a quiesced node without maintenance
// entry and switch its JetStream back on while it shuts down. It ends when
// the local server has restarted (its start time changed: the container
// restarted in place, as after a failed liveness probe) or at until; a
// new pod has a new sidecar and boots without one.
type preStopHold struct {
	started time.Time // the local server's start time when the hold began; zero when unknown
	until   time.Time
}

// lifted reports whether the hold is over, given the latest view.
func (h preStopHold) lifted(v *natsraft.View, pod string, now time.Time) (bool, string) {
	if !now.Before(h.until) {
		return true, "the hold timed out and the server is still there"
	}
	if v == nil || h.started.IsZero() {
		return false, ""
	}
	if n, ok := v.Node(pod); ok && n.Reachable && !n.Started.IsZero() && !n.Started.Equal(h.started) {
		return true, "the local server restarted"
	}
	return false, ""
}

// holding reports whether a pre-stop holds the local reconciler paused,
// and ends the hold once it is lifted.
func (a *Sidecar) holding(c *natsraft.Collector, log zerolog.Logger) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.hold == nil {
		return false
	}
	if ok, why := a.hold.lifted(c.Latest(), a.Pod, time.Now()); ok {
		log.Info().Str("why", why).Msg("pre-stop hold ended: the reconciler takes over again")
		a.hold = nil
		c.SetStopping(false)
		return false
	}
	return true
}

// PreStop readies the local NATS server for its shutdown (see
// maintenance.PreStop), within timeout: it pauses the local reconciler
// first, so that nothing switches the node's JetStream back on before the
// server stops, then hands off, quiesces and moves the clients. It stores
// nothing. Concurrent calls run one after the other; a repeated call finds
// little to do.
func (a *Sidecar) PreStop(ctx context.Context, timeout time.Duration) (maintenance.PreStopReport, error) {
	a.preStopMu.Lock()
	defer a.preStopMu.Unlock()
	a.mu.Lock()
	member, c, scopeOf := a.member, a.collector, a.preStopScope
	a.mu.Unlock()
	if member == nil {
		return maintenance.PreStopReport{}, maintenance.Errorf(maintenance.EUnavailable, "the sidecar of %s is not running", a.Pod)
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	log := a.Logger.With().Str("pod", a.Pod).Logger()

	hold := preStopHold{until: time.Now().Add(a.preStopHold())}
	if v := c.Latest(); v != nil {
		if n, ok := v.Node(a.Pod); ok && n.Reachable {
			hold.started = n.Started
		}
	}
	a.mu.Lock()
	a.hold = &hold
	pause := a.pauseReconciler
	a.mu.Unlock()
	// The other probers' safety rule counts the pod as gone from now on:
	// its report says it is stopping.
	c.SetStopping(true)
	if pause != nil {
		pause()
	}
	log.Info().Dur("timeout", timeout).Msg("pre-stop: reconciler paused, handing off before the server stops")
	scope := natsraft.Scope{Leaving: true}
	if scopeOf != nil {
		scope = scopeOf(ctx)
	}
	rep := maintenance.PreStop(ctx, member, scope, !a.PreStopKeepJetStream, log)
	a.recordPreStop(rep, log)
	return rep, nil
}

// EventRecorder records a Kubernetes Event on the sidecar's pod (see
// kube.PodEvents).
type EventRecorder interface {
	Record(ctx context.Context, eventType, reason, message string) error
}

// Event reasons of a pre-stop.
const (
	ReasonPreStopHandedOff  = "PreStopHandedOff"
	ReasonPreStopIncomplete = "PreStopIncomplete"
)

// preStopEventTimeout bounds the recording of a pre-stop's Event: the
// server stops right after, and the hook must not wait for an API server
// that does not answer.
const preStopEventTimeout = 3 * time.Second

// recordPreStop records rep as an Event on the pod, when a.Events is set.
func (a *Sidecar) recordPreStop(rep maintenance.PreStopReport, log zerolog.Logger) {
	if a.Events == nil {
		return
	}
	typ, reason := "Normal", ReasonPreStopHandedOff
	msg := fmt.Sprintf("ready to stop in %.2fs: leaderships handed off, clients moved", rep.Seconds)
	if len(rep.Leads) > 0 {
		msg += fmt.Sprintf("; still leads %s", strings.Join(rep.Leads, ", "))
	}
	if !rep.Complete {
		typ, reason = "Warning", ReasonPreStopIncomplete
		msg = fmt.Sprintf("not every step succeeded in %.2fs (handed off %t, quiesced %t, clients moved %t): %s",
			rep.Seconds, rep.HandedOff, rep.Quiesced, rep.ClientsMoved, strings.Join(rep.Errors, "; "))
		if len(rep.Leads) > 0 {
			msg += fmt.Sprintf("; still leads %s", strings.Join(rep.Leads, ", "))
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), preStopEventTimeout)
	defer cancel()
	if err := a.Events.Record(ctx, typ, reason, msg); err != nil {
		log.Warn().Err(err).Msg("pre-stop: the event was not recorded")
	}
}

// preStopHold is a.PreStopHold, else DefaultPreStopHold.
func (a *Sidecar) preStopHold() time.Duration {
	if a.PreStopHold > 0 {
		return a.PreStopHold
	}
	return DefaultPreStopHold
}

// preStopping reports whether a pre-stop holds the local node: it readies
// the server for its shutdown, or has.
func (a *Sidecar) preStopping() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.hold != nil
}

// preStopReady is the readiness of a node a pre-stop holds.
func (a *Sidecar) preStopReady() (bool, string, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.hold == nil {
		return false, "", false
	}
	return false, fmt.Sprintf("stopping: leaderships handed off and JetStream off for the server's shutdown (hold until %s or a restart)",
		a.hold.until.UTC().Format(time.RFC3339)), true
}

// installSelf copies the running binary to path (mode 0755), atomically:
// the NATS container's preStop hook runs it from there. An identical file
// already there is left as it is.
func installSelf(path string) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	b, err := os.ReadFile(self)
	if err != nil {
		return err
	}
	if old, err := os.ReadFile(path); err == nil && bytes.Equal(old, b) {
		return nil
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".prober-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(0o755); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

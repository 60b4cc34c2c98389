package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/prober-dev/prober/maintenance"
	"github.com/prober-dev/prober/prober"
)

// RolloutOptions are the flags of "prober rollout start|status|stop".
type RolloutOptions struct {
	ClientOptions
	DC      string
	Pods    string
	Mode    string
	Reason  string
	Hold    time.Duration
	Restart bool
	Wait    time.Duration
	JSON    bool

	// Set by Validate from the positional arguments.
	action string
	name   string
}

// Flags registers the options on fs.
func (o *RolloutOptions) Flags(fs *flag.FlagSet) {
	o.ClientOptions.Flags(fs)
	fs.StringVar(&o.DC, "dc", "", "start: every pod of this dc (default: every pod)")
	fs.StringVar(&o.Pods, "pods", "", "start: these pods, comma separated, in this order")
	fs.StringVar(&o.Mode, "mode", "", "start: the maintenance mode of the entries (fence)")
	fs.StringVar(&o.Reason, "reason", "", "start: why; recorded with each pod's entry")
	fs.DurationVar(&o.Hold, "hold", 0, "start: hold each pod in maintenance this long, e.g. 5m")
	fs.BoolVar(&o.Restart, "restart", false, "start: restart each pod in its turn")
	fs.DurationVar(&o.Wait, "wait", 30*time.Minute, "start, stop: follow the rollout until it ends, at most this long; 0 returns at once")
	fs.BoolVar(&o.JSON, "json", false, "status: print the API's answer as JSON")
}

// Validate checks the options and the positional arguments (the action
// and the rollout's name) and returns all problems at once.
func (o *RolloutOptions) Validate(pos []string) error {
	var errs []error
	if len(pos) == 0 {
		return errors.New("want start, status or stop")
	}
	o.action = pos[0]
	switch {
	case o.action != "start" && o.action != "status" && o.action != "stop":
		errs = append(errs, fmt.Errorf("%q: want start, status or stop", o.action))
	case len(pos) == 2:
		o.name = pos[1]
	case len(pos) > 2:
		errs = append(errs, fmt.Errorf("one rollout at a time, got %s", strings.Join(pos[1:], " ")))
	case o.action != "status":
		errs = append(errs, fmt.Errorf("rollout %s: which rollout?", o.action))
	}
	if o.action == "start" {
		if o.Hold == 0 && !o.Restart {
			errs = append(errs, errors.New("say what to do on each pod's turn: --hold D or --restart"))
		}
		if o.DC != "" && o.Pods != "" {
			errs = append(errs, errors.New("--dc and --pods exclude each other"))
		}
	} else {
		for name, set := range map[string]bool{"--dc": o.DC != "", "--pods": o.Pods != "", "--mode": o.Mode != "",
			"--reason": o.Reason != "", "--hold": o.Hold != 0, "--restart": o.Restart} {
			if set {
				errs = append(errs, fmt.Errorf("%s applies to start only", name))
			}
		}
	}
	if o.Wait < 0 {
		errs = append(errs, fmt.Errorf("--wait %s: must not be negative", o.Wait))
	}
	return errors.Join(errs...)
}

// spec is the body of PUT /rollouts/{name}.
func (o *RolloutOptions) spec() maintenance.RolloutSpec {
	sp := maintenance.RolloutSpec{DC: o.DC, Mode: o.Mode, Reason: o.Reason, Restart: o.Restart}
	if o.Pods != "" {
		for p := range strings.SplitSeq(o.Pods, ",") {
			sp.Pods = append(sp.Pods, strings.TrimSpace(p))
		}
	}
	if o.Hold != 0 {
		sp.Hold = o.Hold.String()
	}
	return sp
}

func runRollout(args []string, stdout, stderr io.Writer) int {
	var o RolloutOptions
	fs := newFlagSet("prober rollout",
		"prober rollout start <name> (--hold D | --restart) [--dc DC | --pods a,b] [--reason R] [--mode M] [--wait D]\n"+
			"       prober rollout status [<name>] [--json]\n"+
			"       prober rollout stop <name> [--wait D]\n\n"+
			"  start   rolling maintenance: one pod at a time enters maintenance, is held (or restarted), comes\n"+
			"          back and catches up before the next; an unsafe turn pauses until it is safe\n"+
			"  status  one rollout's progress per pod, or every rollout\n"+
			"  stop    bring the pod in its turn back and end; on a finished rollout, delete its record\n"+
			"  start and stop follow the rollout until it ends (--wait). Exit codes: 0 done, 1 refused, failed\n"+
			"  or timed out, 2 usage.", stderr)
	o.Flags(fs)
	x, pos, code := startCLI(fs, &o.ClientOptions, args, stdout, stderr)
	if code >= 0 {
		return code
	}
	if err := o.Validate(pos); err != nil {
		return usageFailed(fs, "rollout", err, stderr)
	}
	ctx, stop := signalContext()
	defer stop()
	var err error
	switch o.action {
	case "start":
		err = x.startRollout(ctx, &o)
	case "stop":
		err = x.stopRollout(ctx, &o)
	default:
		err = x.rolloutStatus(ctx, &o)
	}
	if err != nil {
		if errorCode(err) == maintenance.EUnsafe {
			x.refused(err)
			return exitFailed
		}
		return x.fail(ctx, err)
	}
	return exitOK
}

func rolloutPath(name string) string { return "/rollouts/" + url.PathEscape(name) }

func (x *cli) startRollout(ctx context.Context, o *RolloutOptions) error {
	var v maintenance.RolloutView
	status, err := x.api.call(ctx, http.MethodPut, rolloutPath(o.name), nil, o.spec(), &v)
	if err != nil {
		return err
	}
	if status == http.StatusCreated {
		fmt.Fprintf(x.out, "rollout %s started: %s\n", o.name, podNames(v))
	} else {
		fmt.Fprintf(x.out, "rollout %s was already started: %s\n", o.name, v.State)
	}
	if o.Wait == 0 {
		fmt.Fprintf(x.out, "follow with: prober rollout status %s\n", o.name)
		return nil
	}
	return x.followRollout(ctx, v, maintenance.RolloutDone, o.Wait)
}

func (x *cli) stopRollout(ctx context.Context, o *RolloutOptions) error {
	var v maintenance.RolloutView
	status, err := x.api.call(ctx, http.MethodDelete, rolloutPath(o.name), nil, nil, &v)
	if err != nil {
		return err
	}
	switch {
	case status == http.StatusOK && v.Deleted:
		fmt.Fprintf(x.out, "rollout %s was %s; its record is deleted\n", o.name, v.State)
		return nil
	case status == http.StatusOK:
		// Stopped at once: the pod whose turn was cut comes back alone.
		back := ""
		for _, p := range v.Pods {
			if p.Step == maintenance.StepExiting {
				back = p.Pod
			}
		}
		fmt.Fprintf(x.out, "rollout %s is %s at once: %s comes back by itself, not waited for; stop it again to delete its record\n",
			o.name, v.State, orDash(back))
		return nil
	}
	fmt.Fprintf(x.out, "rollout %s is stopping: %s comes back first\n", o.name, orDash(v.Current))
	if o.Wait == 0 {
		return nil
	}
	return x.followRollout(ctx, v, maintenance.RolloutStopped, o.Wait)
}

func (x *cli) rolloutStatus(ctx context.Context, o *RolloutOptions) error {
	var list []maintenance.RolloutView
	if o.name != "" {
		var v maintenance.RolloutView
		if _, err := x.api.call(ctx, http.MethodGet, rolloutPath(o.name), nil, nil, &v); err != nil {
			return err
		}
		list = append(list, v)
	} else {
		var l prober.RolloutList
		if _, err := x.api.call(ctx, http.MethodGet, "/rollouts", nil, nil, &l); err != nil {
			return err
		}
		list = l.Rollouts
	}
	if o.JSON {
		if o.name != "" {
			return writeJSON(x.out, list[0])
		}
		return writeJSON(x.out, prober.RolloutList{Rollouts: list})
	}
	if len(list) == 0 {
		fmt.Fprintln(x.out, "no rollout")
	}
	for _, v := range list {
		renderRollout(x.out, v, x.now())
	}
	return nil
}

// followRollout polls the rollout until it reaches end, printing each
// pod's step and phase changes and each change of state with the time
// since the start, and a line every stillEvery while nothing moves. A
// rollout that ends otherwise (stopped while following its start) is an
// error.
func (x *cli) followRollout(ctx context.Context, v maintenance.RolloutView, end maintenance.RolloutState, wait time.Duration) error {
	start := x.now()
	deadline := start.Add(wait)
	seen := map[string]string{}
	lastLine := start
	state := ""
	show := func(v maintenance.RolloutView) {
		now := x.now()
		if s := string(v.State) + messageSuffix(v.PauseReason); s != state {
			state = s
			lastLine = now
			fmt.Fprintf(x.out, "  %7s  rollout      %s\n", elapsed(now.Sub(start)), s)
		}
		for _, p := range v.Pods {
			key := string(p.Step) + " " + string(p.Phase) + messageSuffix(p.Message)
			if seen[p.Pod] == key {
				continue
			}
			if _, ok := seen[p.Pod]; !ok && p.Step == maintenance.StepPending {
				seen[p.Pod] = key
				continue
			}
			seen[p.Pod] = key
			lastLine = now
			fmt.Fprintf(x.out, "  %7s  %-12s %s\n", elapsed(now.Sub(start)), p.Pod, key)
		}
		if now.Sub(lastLine) >= stillEvery {
			lastLine = now
			fmt.Fprintf(x.out, "  %7s  rollout      still %s at %s%s\n", elapsed(now.Sub(start)), v.State, orDash(v.Current), messageSuffix(v.Waiting))
		}
	}
	show(v)
	tick := time.NewTicker(pollInterval)
	defer tick.Stop()
	for !v.State.Finished() {
		if !x.now().Before(deadline) {
			return fmt.Errorf("rollout %s not finished after %s: %s at %s; it goes on (prober rollout status %s)",
				v.Name, wait, v.State, orDash(v.Current), v.Name)
		}
		select {
		case <-ctx.Done():
			fmt.Fprintf(x.errOut, "prober: stopped following; the rollout goes on (prober rollout status %s)\n", v.Name)
			return ctx.Err()
		case <-tick.C:
		}
		var next maintenance.RolloutView
		if _, err := x.api.call(ctx, http.MethodGet, rolloutPath(v.Name), nil, nil, &next); err != nil {
			if ctx.Err() != nil {
				continue
			}
			return err
		}
		v = next
		show(v)
	}
	if v.State != end {
		return fmt.Errorf("rollout %s ended %s", v.Name, v.State)
	}
	fmt.Fprintf(x.out, "rollout %s %s (%s)\n", v.Name, strings.ToLower(string(v.State)), elapsed(x.now().Sub(start)))
	return nil
}

func podNames(v maintenance.RolloutView) string {
	names := make([]string, len(v.Pods))
	for i, p := range v.Pods {
		names[i] = p.Pod
	}
	return strings.Join(names, ", ")
}

// renderRollout prints one rollout: its state and a table of its pods.
func renderRollout(w io.Writer, v maintenance.RolloutView, now time.Time) {
	fmt.Fprintf(w, "rollout %s: %s%s (started %s ago by %s", v.Name, v.State, messageSuffix(v.PauseReason),
		age(now.Sub(v.Created)), orDash(v.RequestedBy))
	if v.Driver != "" {
		fmt.Fprintf(w, ", driven by %s", v.Driver)
	}
	fmt.Fprintln(w, ")")
	if v.Waiting != "" {
		fmt.Fprintf(w, "%s waits: %s\n", v.Current, v.Waiting)
	}
	tw := newTable(w)
	fmt.Fprintln(tw, "POD\tSTEP\tPHASE\tENTERED\tEXITED\tREADY")
	at := func(t *time.Time) string {
		if t == nil {
			return "-"
		}
		return age(now.Sub(*t)) + " ago"
	}
	for _, p := range v.Pods {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", p.Pod, p.Step, p.Phase, at(p.Entered), at(p.Exited), at(p.Ready))
	}
	tw.Flush()
}

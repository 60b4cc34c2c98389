package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"

	"github.com/prober-dev/prober/maintenance"
	"github.com/prober-dev/prober/natsraft"
)

// preStopSlack is how much longer than --timeout the command waits for the
// answer: the sidecar's own bound ends the work, this one only a lost
// answer.
const preStopSlack = 5 * time.Second

// runPreStop is "prober prestop": the NATS container's preStop hook. It
// asks the pod's own sidecar (on loopback, no token) to hand off the local
// server's leaderships, quiesce its JetStream and move its clients, and
// returns once that is done or --timeout has passed, printing the report.
// With --lame-duck it then puts the server into lame-duck mode (SIGUSR2 to
// the pid in that file, what `nats-server --signal ldm=<file>` does), so
// that one hook does both without a shell in the NATS image. It exits 0
// when every step succeeded and 1 otherwise; either way the server then
// stops (the hook does not hold the pod).
func runPreStop(args []string, stdout, stderr io.Writer) int {
	var o ClientOptions
	var timeout time.Duration
	var lameDuck string
	fs := newFlagSet("prober prestop", "prober prestop [--server URL] [--timeout 25s] [--lame-duck PIDFILE]", stderr)
	o.Flags(fs)
	fs.DurationVar(&timeout, "timeout", maintenance.DefaultPreStopTimeout,
		"how long the hand-off may take; keep it, plus the lame-duck time, within terminationGracePeriodSeconds")
	fs.StringVar(&lameDuck, "lame-duck", "", "the NATS server's pid_file: afterwards, put it into lame-duck mode, as the NATS chart's preStop hook does")
	x, pos, code := startCLI(fs, &o, args, stdout, stderr)
	if x == nil {
		return code
	}
	if len(pos) > 0 || timeout <= 0 {
		fmt.Fprintf(stderr, "prober: prestop takes no arguments and a positive --timeout\n")
		return exitUsage
	}
	ctx, stop := signalContext()
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, timeout+preStopSlack)
	defer cancel()
	x.api.http = &http.Client{Timeout: timeout + preStopSlack}
	var rep maintenance.PreStopReport
	_, err := x.api.call(ctx, http.MethodPost, "/local/prestop", url.Values{"timeout": {timeout.String()}}, nil, &rep)
	if err == nil {
		b, _ := json.Marshal(rep)
		fmt.Fprintln(stdout, string(b))
		if !rep.Complete {
			err = fmt.Errorf("not every step succeeded: %v", rep.Errors)
		}
	}
	if lameDuck != "" {
		// Whatever the sidecar did: the server must still leave gracefully.
		if lerr := natsraft.SignalLameDuck(lameDuck)(context.Background()); lerr != nil {
			err = errors.Join(err, lerr)
		} else {
			fmt.Fprintln(stderr, "prober: lame-duck mode signalled")
		}
	}
	if err != nil {
		return x.fail(context.Background(), fmt.Errorf("prestop: %w", err))
	}
	return exitOK
}

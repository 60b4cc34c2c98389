package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/prober-dev/prober/app"
)

// Main runs the command line args and returns the process exit code.
func Main(args []string, stdout, stderr io.Writer) int {
	cmd := "embedded"
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		cmd, args = args[0], args[1:]
	}
	switch cmd {
	case "embedded":
		return runEmbedded(args, stdout, stderr)
	case "serve":
		return runServe(args, stdout, stderr)
	case "status":
		return runStatus(args, stdout, stderr)
	case "maintenance":
		return runMaintenance(args, stdout, stderr)
	case "raft":
		return runRaft(args, stdout, stderr)
	case "balance":
		return runBalance(args, stdout, stderr)
	case "rollout":
		return runRollout(args, stdout, stderr)
	case "prestop":
		return runPreStop(args, stdout, stderr)
	case "help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "prober: unknown command %q\n%s", cmd, usage)
		return 2
	}
}

const usage = `usage: prober [command] [flags]

commands:
  embedded     run the embedded default: a 3-node JetStream cluster in-process, a file
               store and the API on :8889 (also what "prober" alone does)
  serve        Kubernetes mode: the sidecar of one NATS pod (ConfigMap state, peers by
               label selector, kernel fence); see deploy/README.md
  status       every pod: dc, role and leaderships, maintenance phase, since, reason, expiry;
               --watch prints it again after every change until Ctrl-C
  maintenance  on|off <pod> (or <dc> with --dc): enter or leave maintenance safely and
               follow the phases; --dry-run only asks whether it is safe
  raft         every Raft group: leader, term, commit/applied, peers; and the findings
  balance      even out Raft leaderships across the pods of a dc (--dc) or all; --dry-run plans
  rollout      start|status|stop <name>: rolling maintenance, one pod at a time, each turn
               safety-checked and gated on catch-up
  prestop      the NATS container's preStop hook: the pod's own sidecar hands off every
               leadership of its server, quiesces JetStream and moves its clients
               (--timeout, default 25s); stores nothing
  help         this text

status, maintenance, raft, balance, rollout and prestop talk to the API at --server (default http://127.0.0.1:8889,
env PROBER_SERVER) with --token (env PROBER_TOKEN; not needed on loopback).
"prober <command> -h" lists a command's flags.
`

func runEmbedded(args []string, stdout, stderr io.Writer) int {
	var o EmbeddedOptions
	if code, ok := parseOptions("prober embedded", &o, args, stderr); !ok {
		return code
	}
	ctx, stop := signalContext()
	defer stop()
	a := &app.Embedded{
		Listen:      o.Listen,
		DataDir:     o.DataDir,
		Topology:    o.topology,
		ClientPort:  o.ClientPort,
		MonitorPort: o.MonitorPort,
		Resync:      o.Resync,
		Logger:      o.logger,
		Stdout:      stdout,
		Auth:        o.auth,
	}
	if err := a.Run(ctx); err != nil {
		o.logger.Error().Err(err).Msg("prober stopped")
		return 1
	}
	return 0
}

// signalContext is cancelled by the first SIGINT/SIGTERM; a second one exits
// at once.
func signalContext() (context.Context, func()) {
	ctx, cancel := context.WithCancel(context.Background())
	ch := make(chan os.Signal, 2)
	done := make(chan struct{})
	signal.Notify(ch, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		select {
		case <-ch:
		case <-done:
			return
		}
		cancel()
		select {
		case <-ch:
			os.Exit(1)
		case <-done:
		}
	}()
	return ctx, func() { signal.Stop(ch); close(done); cancel() }
}

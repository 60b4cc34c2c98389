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
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		if len(args) > 0 && isHelpFlag(args[0]) {
			fmt.Fprint(stdout, usage())
			return exitOK
		}
		return runEmbedded(args, stdout, stderr)
	}
	c, ok := lookupCommand(commands, args[0])
	if !ok {
		fmt.Fprintf(stderr, "prober: unknown command %q\n%s", args[0], usage())
		return exitUsage
	}
	return c.run(args[1:], stdout, stderr)
}

// command is one command of the command line: the table below is the one
// place that names them, for dispatch and for the usage text.
type command struct {
	name string
	// summary is its text in the usage, lines separated by "\n".
	summary string
	run     func(args []string, stdout, stderr io.Writer) int
	// remote commands talk to the API at --server; kubectl prober runs
	// them through a port-forward.
	remote bool
}

// commands is the command line's table of commands, in the order of the
// usage text. It is filled in init: help refers to it.
var commands []command

func init() {
	commands = []command{
		{name: "embedded", run: runEmbedded, summary: "run the embedded default: a 3-node JetStream cluster in-process, a file\n" +
			"store and the API on :8889 (also what \"prober\" alone does)"},
		{name: "serve", run: runServe, summary: "Kubernetes mode: the sidecar of one NATS pod (ConfigMap state, peers by\n" +
			"label selector, kernel fence); see deploy/README.md"},
		{name: "status", run: runStatus, remote: true, summary: "every pod: dc, role and leaderships, maintenance phase, since, reason, expiry;\n" +
			"--watch prints it again after every change until Ctrl-C"},
		{name: "maintenance", run: runMaintenance, remote: true, summary: "on|off <pod> (or <dc> with --dc): enter or leave maintenance safely and\n" +
			"follow the phases; --dry-run only asks whether it is safe"},
		{name: "raft", run: runRaft, remote: true, summary: "every Raft group: leader, term, commit/applied, peers; and the findings"},
		{name: "balance", run: runBalance, remote: true, summary: "even out Raft leaderships across the pods of a dc (--dc) or all; --dry-run plans"},
		{name: "rollout", run: runRollout, remote: true, summary: "start|status|stop <name>: rolling maintenance, one pod at a time, each turn\n" +
			"safety-checked and gated on catch-up"},
		{name: "prestop", run: runPreStop, summary: "the NATS container's preStop hook: the pod's own sidecar hands off every\n" +
			"leadership of its server, quiesces JetStream and moves its clients\n" +
			"(--timeout, default 25s); stores nothing"},
		{name: "help", run: runHelp, summary: "this text; \"prober help <command>\" lists a command's flags"},
	}
}

// lookupCommand finds the command called name in table.
func lookupCommand(table []command, name string) (command, bool) {
	for _, c := range table {
		if c.name == name {
			return c, true
		}
	}
	return command{}, false
}

// isHelpFlag reports whether arg asks for help, as the flag package reads
// it: -h, --h, -help or --help.
func isHelpFlag(arg string) bool {
	switch arg {
	case "-h", "--h", "-help", "--help":
		return true
	}
	return false
}

// writeCommands prints the commands of table, a name and its summary per
// entry, as both usage texts list them.
func writeCommands(w io.Writer, table []command) {
	for _, c := range table {
		for i, line := range strings.Split(c.summary, "\n") {
			if i == 0 {
				fmt.Fprintf(w, "  %-12s %s\n", c.name, line)
			} else {
				fmt.Fprintf(w, "  %-12s %s\n", "", line)
			}
		}
	}
}

// remoteNames lists the remote commands of table: "status, maintenance
// and raft".
func remoteNames(table []command) string {
	var names []string
	for _, c := range table {
		if c.remote {
			names = append(names, c.name)
		}
	}
	if len(names) < 2 {
		return strings.Join(names, "")
	}
	return strings.Join(names[:len(names)-1], ", ") + " and " + names[len(names)-1]
}

// usage is the text of "prober help" and "prober -h".
func usage() string {
	var b strings.Builder
	b.WriteString("usage: prober [command] [flags]\n\ncommands:\n")
	writeCommands(&b, commands)
	fmt.Fprintf(&b, "\n%s talk to the API at --server\n"+
		"(default %s, env PROBER_SERVER) with --token (env PROBER_TOKEN; not needed on\n"+
		"loopback); prestop talks to the pod's own sidecar. In Kubernetes, \"kubectl prober <command>\" runs\n"+
		"them through a port-forward of its own: install this binary as kubectl-prober on your PATH (see\n"+
		"deploy/README.md).\n"+
		"\"prober <command> -h\" lists a command's flags; \"prober embedded -h\" those of the embedded default.\n",
		remoteNames(commands), DefaultServer)
	return b.String()
}

// runHelp is "prober help [command]": the usage text, or the command's
// flags.
func runHelp(args []string, stdout, stderr io.Writer) int {
	return helpFor("prober", commands, usage, args, stdout, stderr)
}

// helpFor prints usage, or with one argument that command's flags (its
// -h); name is the program as the user calls it.
func helpFor(name string, table []command, usage func() string, args []string, stdout, stderr io.Writer) int {
	switch {
	case len(args) == 0:
		fmt.Fprint(stdout, usage())
		return exitOK
	case len(args) > 1:
		fmt.Fprintf(stderr, "%s help: one command at a time, got %s\n", name, strings.Join(args, " "))
		return exitUsage
	}
	c, ok := lookupCommand(table, args[0])
	if !ok {
		fmt.Fprintf(stderr, "%s: unknown command %q\n%s", name, args[0], usage())
		return exitUsage
	}
	if c.name == "help" {
		fmt.Fprint(stdout, usage())
		return exitOK
	}
	// Asked for, the flags go to stdout.
	return c.run([]string{"-h"}, stdout, stdout)
}

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

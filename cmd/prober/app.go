package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/prober-dev/prober/prober"
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
	case "help":
		fmt.Fprintln(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "prober: unknown command %q\n%s\n", cmd, usage)
		return 2
	}
}

const usage = `usage: prober [embedded] [flags]   run the embedded default (see -h)`

func runEmbedded(args []string, stdout, stderr io.Writer) int {
	var o EmbeddedOptions
	fs := flag.NewFlagSet("prober embedded", flag.ContinueOnError)
	fs.SetOutput(stderr)
	o.Flags(fs)
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if err := o.Validate(); err != nil {
		fmt.Fprintf(stderr, "prober: %v\n", err)
		return 2
	}
	if err := o.Complete(stderr); err != nil {
		fmt.Fprintf(stderr, "prober: %v\n", err)
		return 1
	}
	ctx, stop := signalContext()
	defer stop()
	app := &prober.EmbeddedApp{
		Listen:      o.Listen,
		DataDir:     o.DataDir,
		Topology:    o.topology,
		ClientPort:  o.ClientPort,
		MonitorPort: o.MonitorPort,
		Resync:      o.Resync,
		Logger:      o.logger,
		Stdout:      stdout,
	}
	if err := app.Run(ctx); err != nil {
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
	signal.Notify(ch, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		<-ch
		cancel()
		<-ch
		os.Exit(1)
	}()
	return ctx, func() { signal.Stop(ch); cancel() }
}

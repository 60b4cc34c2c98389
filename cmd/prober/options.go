package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"github.com/prober-dev/prober/prober"
)

// EmbeddedOptions are the flags of the embedded default.
type EmbeddedOptions struct {
	Listen      string
	DataDir     string
	Topology    string
	ClientPort  int
	MonitorPort int
	Resync      time.Duration
	LogFormat   string
	LogLevel    string
	TokenFile   string

	// Set by Complete.
	topology []int
	logger   zerolog.Logger
	auth     prober.AuthOptions
}

// Flags registers the options on fs with their defaults.
func (o *EmbeddedOptions) Flags(fs *flag.FlagSet) {
	fs.StringVar(&o.Listen, "listen", ":8889", "address of the maintenance API")
	fs.StringVar(&o.DataDir, "data-dir", "", "folder for JetStream data and the maintenance state (default: a new temp folder)")
	fs.StringVar(&o.Topology, "topology", "3", "nodes per datacenter, comma separated: 3 is one dc of three, 2,2,2 a supercluster of three dcs")
	fs.IntVar(&o.ClientPort, "client-port", 4222, "client port of the first node (the others follow); 0 picks free ports")
	fs.IntVar(&o.MonitorPort, "monitor-port", 8222, "monitoring port of the first node (the others follow); 0 picks free ports")
	fs.DurationVar(&o.Resync, "resync", 5*time.Second, "periodic resync of every reconciler")
	fs.StringVar(&o.TokenFile, "token-file", "", "static bearer tokens for callers not on loopback: lines 'token,user[,group...]' (group readonly: GET only)")
	fs.StringVar(&o.LogFormat, "log-format", "console", "log format: json or console")
	fs.StringVar(&o.LogLevel, "log-level", "info", "log level: debug, info, warn, error")
}

// Validate checks every option and returns all problems at once.
func (o *EmbeddedOptions) Validate() error {
	var errs []error
	if _, err := parseTopology(o.Topology); err != nil {
		errs = append(errs, err)
	}
	for name, p := range map[string]int{"client-port": o.ClientPort, "monitor-port": o.MonitorPort} {
		if p < 0 || p > 65535-32 {
			errs = append(errs, fmt.Errorf("--%s %d: out of range", name, p))
		}
	}
	errs = append(errs, validateRunFlags(o.Resync, o.LogFormat, o.LogLevel)...)
	return errors.Join(errs...)
}

// validateRunFlags checks the flags every long-running command shares.
func validateRunFlags(resync time.Duration, logFormat, logLevel string) []error {
	var errs []error
	if resync < 100*time.Millisecond {
		errs = append(errs, fmt.Errorf("--resync %s: at least 100ms", resync))
	}
	if logFormat != "json" && logFormat != "console" {
		errs = append(errs, fmt.Errorf("--log-format %q: json or console", logFormat))
	}
	if _, err := zerolog.ParseLevel(logLevel); err != nil {
		errs = append(errs, fmt.Errorf("--log-level %q: %w", logLevel, err))
	}
	return errs
}

// options are a long-running command's flags: Flags, then Validate (every
// problem at once), then Complete (typed values, clients).
type options interface {
	Flags(fs *flag.FlagSet)
	Validate() error
	Complete(stderr io.Writer) error
}

// parseOptions runs args through o; ok is false when the command must stop
// with code.
func parseOptions(name string, o options, args []string, stderr io.Writer) (code int, ok bool) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	o.Flags(fs)
	if err := fs.Parse(args); errors.Is(err, flag.ErrHelp) {
		return 0, false // asked for: the flags are printed
	} else if err != nil {
		return 2, false
	}
	if err := o.Validate(); err != nil {
		fmt.Fprintf(stderr, "prober: %v\n", err)
		return 2, false
	}
	if err := o.Complete(stderr); err != nil {
		fmt.Fprintf(stderr, "prober: %v\n", err)
		return 1, false
	}
	return 0, true
}

// Complete turns validated flags into typed values.
func (o *EmbeddedOptions) Complete(stderr io.Writer) error {
	var err error
	if o.topology, err = parseTopology(o.Topology); err != nil {
		return err
	}
	if o.DataDir != "" {
		if o.DataDir, err = filepath.Abs(o.DataDir); err != nil {
			return err
		}
		if err := os.MkdirAll(o.DataDir, 0o755); err != nil {
			return fmt.Errorf("data dir: %w", err)
		}
	}
	o.logger = newLogger(stderr, o.LogFormat, o.LogLevel)
	if o.TokenFile != "" {
		tokens, err := prober.LoadStaticTokens(o.TokenFile)
		if err != nil {
			return fmt.Errorf("--token-file: %w", err)
		}
		o.auth = prober.AuthOptions{Authenticator: tokens, Authorizer: prober.StaticAuthorizer{}}
		o.logger.Info().Strs("users", tokens.Users()).Msg("static tokens loaded")
	}
	return nil
}

func parseTopology(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 || n > 9 {
			return nil, fmt.Errorf("--topology %q: a comma separated list of node counts from 1 to 9", s)
		}
		out = append(out, n)
	}
	return out, nil
}

func newLogger(w io.Writer, format, level string) zerolog.Logger {
	lvl, err := zerolog.ParseLevel(level)
	if err != nil {
		lvl = zerolog.InfoLevel
	}
	if format == "console" {
		w = zerolog.ConsoleWriter{Out: w, TimeFormat: "15:04:05.000"}
	}
	return zerolog.New(w).Level(lvl).With().Timestamp().Logger()
}

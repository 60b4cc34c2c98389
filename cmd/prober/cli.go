package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/prober-dev/prober/maintenance"
	"github.com/prober-dev/prober/natsraft"
	"github.com/prober-dev/prober/prober"
)

// Exit codes of the client commands.
const (
	exitOK          = 0
	exitFailed      = 1 // refused, failed, timed out, or the API is unreachable
	exitUsage       = 2
	exitInterrupted = 130
)

// pollInterval is how often a waiting command polls: rollout's, and
// --wait's when it cannot follow the event stream (see changes).
const pollInterval = 100 * time.Millisecond

// stillEvery is how often a waiting command says that nothing moved.
const stillEvery = 10 * time.Second

// ClientOptions are the flags every client command takes.
type ClientOptions struct {
	Server string
	Token  string
}

// Flags registers the options on fs; the defaults come from PROBER_SERVER
// and PROBER_TOKEN, so that a token need not be typed on the command line.
func (o *ClientOptions) Flags(fs *flag.FlagSet) {
	fs.StringVar(&o.Server, "server", envOr("PROBER_SERVER", DefaultServer), "the prober API (env PROBER_SERVER)")
	// No default from the environment here: flag prints defaults in its
	// usage text, and a token must never be printed. See token().
	fs.StringVar(&o.Token, "token", "", "bearer token; not needed on loopback (env PROBER_TOKEN)")
}

// token is --token, else PROBER_TOKEN.
func (o *ClientOptions) token() string {
	if o.Token != "" {
		return o.Token
	}
	return os.Getenv("PROBER_TOKEN")
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// MaintenanceOptions are the flags of "prober maintenance on|off".
type MaintenanceOptions struct {
	ClientOptions
	DC     bool
	Reason string
	TTL    time.Duration
	Wait   time.Duration
	DryRun bool
	Force  bool
	// Evacuate and KeepEvacuated ask to move the streams of one replica
	// off first (and leave them where they went).
	Evacuate      bool
	KeepEvacuated bool
	// Mode is "fence" (the default) or "drain" (on only); NoRestoreLeaders
	// keeps the leaderships away on exit (on: in the entry; off: this
	// exit).
	Mode             string
	NoRestoreLeaders bool

	// Set by Validate from the positional arguments.
	on     bool
	target string
}

// Flags registers the options on fs.
func (o *MaintenanceOptions) Flags(fs *flag.FlagSet) {
	o.ClientOptions.Flags(fs)
	fs.BoolVar(&o.DC, "dc", false, "the target is a dc (NATS cluster name): every pod of it, with one safety check")
	fs.StringVar(&o.Reason, "reason", "", "why (on only); recorded with the entry")
	fs.DurationVar(&o.TTL, "ttl", 0, "the entry expires after this long, e.g. 2h (on only; at least 1s)")
	fs.DurationVar(&o.Wait, "wait", 5*time.Minute, "follow the phases until done, at most this long; 0 returns once the request is stored")
	fs.BoolVar(&o.DryRun, "dry-run", false, "only ask whether it is safe; writes nothing (on only)")
	fs.BoolVar(&o.Force, "force", false, "override the safety rule; needs --reason and is recorded (on only)")
	fs.BoolVar(&o.Evacuate, "evacuate", false, "move the streams of one replica off first, and back when the pod leaves (on only)")
	fs.BoolVar(&o.KeepEvacuated, "keep-evacuated", false, "with --evacuate: leave the moved streams where they went (on only)")
	fs.StringVar(&o.Mode, "mode", "", "fence (default): hand off, quiesce, fence; drain: move every leadership off and keep it off, the pod stays serving (on only)")
	fs.BoolVar(&o.NoRestoreLeaders, "no-restore-leaders", false, "do not give the pod's leaderships back when it leaves maintenance")
}

// Validate checks the options and the positional arguments (on|off and
// the target) and returns all problems at once.
func (o *MaintenanceOptions) Validate(pos []string) error {
	var errs []error
	switch {
	case len(pos) == 0:
		errs = append(errs, errors.New("want on or off and a pod (or a dc with --dc)"))
	case pos[0] != "on" && pos[0] != "off":
		errs = append(errs, fmt.Errorf("%q: want on or off", pos[0]))
	case len(pos) == 1:
		errs = append(errs, fmt.Errorf("maintenance %s: which pod (or dc with --dc)?", pos[0]))
	case len(pos) > 2:
		errs = append(errs, fmt.Errorf("one target at a time, got %s", strings.Join(pos[1:], " ")))
	default:
		o.on, o.target = pos[0] == "on", pos[1]
	}
	if len(pos) > 0 && pos[0] == "off" {
		for name, set := range map[string]bool{"--reason": o.Reason != "", "--ttl": o.TTL != 0, "--dry-run": o.DryRun, "--force": o.Force,
			"--evacuate": o.Evacuate, "--keep-evacuated": o.KeepEvacuated, "--mode": o.Mode != ""} {
			if set {
				errs = append(errs, fmt.Errorf("%s applies to on only", name))
			}
		}
	}
	if o.Mode != "" && o.Mode != maintenance.ModeFence && o.Mode != maintenance.ModeDrain {
		errs = append(errs, fmt.Errorf("--mode %q: want fence or drain", o.Mode))
	}
	if o.KeepEvacuated && !o.Evacuate {
		errs = append(errs, errors.New("--keep-evacuated needs --evacuate"))
	}
	if o.Wait < 0 {
		errs = append(errs, fmt.Errorf("--wait %s: must not be negative", o.Wait))
	}
	if o.TTL < 0 {
		errs = append(errs, fmt.Errorf("--ttl %s: must not be negative", o.TTL))
	}
	slices.SortFunc(errs, func(a, b error) int { return strings.Compare(a.Error(), b.Error()) })
	return errors.Join(errs...)
}

// cli runs the client commands against one API.
type cli struct {
	api    *client
	out    io.Writer
	errOut io.Writer
	now    func() time.Time
}

// newFlagSet returns a flag set whose -h prints synopsis and flags.
func newFlagSet(name, synopsis string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: %s\n\nflags:\n", synopsis)
		fs.PrintDefaults()
	}
	return fs
}

// parseArgs parses flags and positional arguments in any order
// ("maintenance on nats-1 --reason x" as well as "--reason x on nats-1");
// "--" ends the flags.
func parseArgs(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		if n := len(args) - len(rest); n > 0 && args[n-1] == "--" {
			return append(pos, rest...), nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

// startCLI parses args into fs, builds the client and returns the command
// runner and positional arguments; code is non-zero when the command must
// stop with it.
func startCLI(fs *flag.FlagSet, o *ClientOptions, args []string, stdout, stderr io.Writer) (*cli, []string, int) {
	pos, err := parseArgs(fs, args)
	if errors.Is(err, flag.ErrHelp) {
		return nil, nil, exitOK
	}
	if err != nil {
		return nil, nil, exitUsage
	}
	api, err := newClient(o.Server, o.token())
	if err != nil {
		fmt.Fprintf(stderr, "prober: %v\n", err)
		return nil, nil, exitUsage
	}
	return &cli{api: api, out: stdout, errOut: stderr, now: time.Now}, pos, -1
}

// usageFailed prints a command's invalid use (err, one problem a line),
// then its usage, and returns exitUsage.
func usageFailed(fs *flag.FlagSet, command string, err error, stderr io.Writer) int {
	fmt.Fprintf(stderr, "prober %s: %v\n", command, strings.ReplaceAll(err.Error(), "\n", "\n  "))
	fs.Usage()
	return exitUsage
}

// fail prints err and returns the exit code it deserves.
func (x *cli) fail(ctx context.Context, err error) int {
	if ctx.Err() != nil {
		fmt.Fprintln(x.errOut, "prober: interrupted")
		return exitInterrupted
	}
	fmt.Fprintf(x.errOut, "prober: %v\n", err)
	return exitFailed
}

func runStatus(args []string, stdout, stderr io.Writer) int {
	var watch bool
	flags := func(fs *flag.FlagSet) {
		fs.BoolVar(&watch, "watch", false, "print the status again after every change (the API's event stream) until Ctrl-C")
	}
	show := func(x *cli, ctx context.Context, asJSON bool) error {
		if watch {
			return x.watchStatus(ctx, asJSON)
		}
		return x.status(ctx, asJSON)
	}
	return runView("status", "print the pods as JSON instead of a table", " [--watch]", flags, show, args, stdout, stderr)
}

func runRaft(args []string, stdout, stderr io.Writer) int {
	return runView("raft", "print the API's answer as JSON instead of tables", "", nil, (*cli).raft, args, stdout, stderr)
}

// runView runs a read-only command that takes no arguments and prints
// either tables or, with --json, the API's answer; flags, when not nil,
// registers the command's own flags, which synopsis names.
func runView(name, jsonHelp, synopsis string, flags func(*flag.FlagSet), show func(*cli, context.Context, bool) error,
	args []string, stdout, stderr io.Writer,
) int {
	var o ClientOptions
	var asJSON bool
	fs := newFlagSet("prober "+name, "prober "+name+" [--server URL] [--token T] [--json]"+synopsis, stderr)
	o.Flags(fs)
	fs.BoolVar(&asJSON, "json", false, jsonHelp)
	if flags != nil {
		flags(fs)
	}
	x, pos, code := startCLI(fs, &o, args, stdout, stderr)
	if code >= 0 {
		return code
	}
	if len(pos) > 0 {
		fmt.Fprintf(stderr, "prober %s: unexpected argument %q\n", name, pos[0])
		return exitUsage
	}
	ctx, stop := signalContext()
	defer stop()
	if err := show(x, ctx, asJSON); err != nil {
		return x.fail(ctx, err)
	}
	return exitOK
}

func runMaintenance(args []string, stdout, stderr io.Writer) int {
	var o MaintenanceOptions
	fs := newFlagSet("prober maintenance",
		"prober maintenance on|off <pod> [--dc] [--mode fence|drain] [--no-restore-leaders] [--reason R] [--ttl D] [--wait D] [--dry-run] [--force] [--evacuate [--keep-evacuated]] [--server URL] [--token T]\n\n"+
			"  on   checks the safety rule and puts the pod (or, with --dc, every pod of the dc) into maintenance:\n"+
			"       hand off Raft leaderships, quiesce JetStream, fence; refused when a Raft group would lose quorum.\n"+
			"       --mode drain only moves every leadership off and keeps it off; the pod stays serving\n"+
			"  off  brings it back: unfence, resume JetStream, wait for catch-up, give the leaderships back\n"+
			"       (not with --no-restore-leaders)\n"+
			"  Both follow the phases until done (--wait). Exit codes: 0 done or safe, 1 refused, unsafe, failed\n"+
			"  or timed out, 2 usage.", stderr)
	o.Flags(fs)
	x, pos, code := startCLI(fs, &o.ClientOptions, args, stdout, stderr)
	if code >= 0 {
		return code
	}
	if err := o.Validate(pos); err != nil {
		return usageFailed(fs, "maintenance", err, stderr)
	}
	ctx, stop := signalContext()
	defer stop()
	return x.maintenance(ctx, &o)
}

// raftAnswer is GET /raft as the command line reads it. Findings are read
// loosely, so that the command line shows what a newer server says.
type raftAnswer struct {
	natsraft.View
	AgeSeconds float64                       `json:"ageSeconds"`
	Findings   *[]map[string]json.RawMessage `json:"findings"`
}

// status prints every pod: dc, role, leaderships, phase, since, reason and
// expiry, like "rladmin status".
func (x *cli) status(ctx context.Context, asJSON bool) error {
	var raft raftAnswer
	if _, err := x.api.call(ctx, http.MethodGet, "/raft", nil, nil, &raft); err != nil {
		return err
	}
	pods, err := x.pods(ctx, raft.Nodes)
	if err != nil {
		return err
	}
	if asJSON {
		return writeJSON(x.out, pods)
	}
	renderStatus(x.out, &raft, pods, x.now())
	return nil
}

// pods fetches the view of every node: one GET /dcs/{dc} per dc, and
// GET /pods/{pod} for a node that reports no dc.
func (x *cli) pods(ctx context.Context, nodes []natsraft.Node) ([]maintenance.PodView, error) {
	var dcs []string
	var out []maintenance.PodView
	for _, n := range nodes {
		if n.DC == "" {
			var pv maintenance.PodView
			if _, err := x.api.call(ctx, http.MethodGet, "/pods/"+url.PathEscape(n.Name), nil, nil, &pv); err != nil {
				return nil, err
			}
			out = append(out, pv)
		} else if !slices.Contains(dcs, n.DC) {
			dcs = append(dcs, n.DC)
		}
	}
	for _, dc := range dcs {
		var v prober.DCView
		if _, err := x.api.call(ctx, http.MethodGet, "/dcs/"+url.PathEscape(dc), nil, nil, &v); err != nil {
			return nil, err
		}
		out = append(out, v.Pods...)
	}
	slices.SortFunc(out, func(a, b maintenance.PodView) int {
		if c := strings.Compare(a.DC, b.DC); c != 0 {
			return c
		}
		return strings.Compare(a.Pod, b.Pod)
	})
	return out, nil
}

// raft prints the nodes, every Raft group and the findings.
func (x *cli) raft(ctx context.Context, asJSON bool) error {
	if asJSON {
		var raw json.RawMessage
		if _, err := x.api.call(ctx, http.MethodGet, "/raft", nil, nil, &raw); err != nil {
			return err
		}
		_, err := x.out.Write(append(raw, '\n'))
		return err
	}
	var raft raftAnswer
	if _, err := x.api.call(ctx, http.MethodGet, "/raft", nil, nil, &raft); err != nil {
		return err
	}
	renderRaft(x.out, &raft, x.now())
	return nil
}

// enterBody is the body of PUT /pods/{pod} and PUT /dcs/{dc}.
type enterBody struct {
	Reason        string `json:"reason,omitempty"`
	TTL           string `json:"ttl,omitempty"`
	Force         bool   `json:"force,omitempty"`
	Evacuate      bool   `json:"evacuate,omitempty"`
	KeepEvacuated bool   `json:"keepEvacuated,omitempty"`
	Mode          string `json:"mode,omitempty"`
	// RestoreLeaders is sent only to say false.
	RestoreLeaders *bool `json:"restoreLeaders,omitempty"`
}

// target is what a maintenance command acts on.
type target struct {
	kind, name string // kind is "pod" or "dc"
}

func (t target) path() string {
	if t.kind == "dc" {
		return "/dcs/" + url.PathEscape(t.name)
	}
	return "/pods/" + url.PathEscape(t.name)
}

func (t target) String() string { return t.kind + " " + t.name }

// change is a PUT or DELETE answer, for a pod or a dc.
type change struct {
	Pods       []maintenance.PodView
	Changed    bool
	Forced     bool
	Violations []maintenance.Violation
}

// maintenance runs "prober maintenance on|off" and returns the exit code.
func (x *cli) maintenance(ctx context.Context, o *MaintenanceOptions) int {
	t := target{kind: "pod", name: o.target}
	if o.DC {
		t.kind = "dc"
	}
	var body any
	if o.on && (o.Reason != "" || o.TTL != 0 || o.Force || o.Evacuate || o.Mode != "" || o.NoRestoreLeaders) {
		b := enterBody{Reason: o.Reason, Force: o.Force, Evacuate: o.Evacuate, KeepEvacuated: o.KeepEvacuated, Mode: o.Mode}
		if o.NoRestoreLeaders {
			no := false
			b.RestoreLeaders = &no
		}
		if o.TTL != 0 {
			b.TTL = o.TTL.String()
		}
		body = b
	}
	if o.DryRun {
		return x.dryRun(ctx, t, body)
	}

	g := goal{maintenance.Goal{Enter: o.on, DC: o.DC}}
	method := http.MethodDelete
	if o.on {
		method = http.MethodPut
	}
	var query url.Values
	if !o.on && o.NoRestoreLeaders {
		query = url.Values{"restoreLeaders": {"false"}}
	}
	var raw json.RawMessage
	status, err := x.api.call(ctx, method, t.path(), query, body, &raw)
	if err != nil {
		if errorCode(err) == maintenance.EUnsafe {
			x.refused(err)
			return exitFailed
		}
		return x.fail(ctx, err)
	}
	ch, err := decodeChange(t, raw)
	if err != nil {
		return x.fail(ctx, err)
	}
	if ch.Forced {
		fmt.Fprintf(x.errOut, "prober: forced over the safety rule (recorded); %d Raft group(s) lose their quorum:\n", len(ch.Violations))
		renderViolations(x.errOut, ch.Violations)
	}
	fmt.Fprintf(x.out, "%s: %s\n", t, g.accepted(ch))
	switch {
	case status == http.StatusOK:
		fmt.Fprintf(x.out, "%s %s\n", t, g.done())
		return exitOK
	case o.Wait == 0:
		fmt.Fprintf(x.out, "%s is on its way (%s); follow with: prober status\n", t, phases(ch.Pods))
		return exitOK
	}
	if err := x.follow(ctx, t, ch.Pods, g, o.Wait); err != nil {
		return x.fail(ctx, err)
	}
	return exitOK
}

// dryRun asks for the verdict of the safety rule: exit 0 when safe, 1 when
// not.
func (x *cli) dryRun(ctx context.Context, t target, body any) int {
	var dr prober.DryRunResponse
	if _, err := x.api.call(ctx, http.MethodPut, t.path(), url.Values{"dryRun": {"true"}}, body, &dr); err != nil {
		return x.fail(ctx, err)
	}
	renderDryRun(x.out, t, &dr)
	if !dr.Safe {
		return exitFailed
	}
	return exitOK
}

// refused explains a 409 unsafe: which groups, why, and what to do.
func (x *cli) refused(err error) {
	var e *apiError
	errors.As(err, &e)
	fmt.Fprintf(x.errOut, "prober: refused: %s\n", e.Message)
	var vs []maintenance.Violation
	if len(e.Details) > 0 && json.Unmarshal(e.Details, &vs) == nil && len(vs) > 0 {
		renderViolations(x.errOut, vs)
	}
	fmt.Fprintln(x.errOut, "Bring a pod back first, or override with --force --reason \"...\" (recorded).")
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func decodeChange(t target, raw json.RawMessage) (change, error) {
	if t.kind == "dc" {
		var c prober.DCChange
		if err := json.Unmarshal(raw, &c); err != nil {
			return change{}, fmt.Errorf("decode answer: %w", err)
		}
		return change{Pods: c.Pods, Changed: c.Changed, Forced: c.Forced, Violations: c.Violations}, nil
	}
	var c prober.PodChange
	if err := json.Unmarshal(raw, &c); err != nil {
		return change{}, fmt.Errorf("decode answer: %w", err)
	}
	return change{Pods: []maintenance.PodView{c.PodView}, Changed: c.Changed, Forced: c.Forced, Violations: c.Violations}, nil
}

// goal is where a maintenance command is going (maintenance.Goal, the same
// rule the API's wait stops on).
type goal struct{ maintenance.Goal }

// accepted says what the API did with the request.
func (g goal) accepted(ch change) string {
	switch {
	case g.Enter && ch.Changed:
		return "maintenance requested by " + requester(ch.Pods)
	case g.Enter:
		return "maintenance was already requested"
	case ch.Changed:
		return "maintenance entry removed, on the way back"
	}
	return "no maintenance entry"
}

func (g goal) done() string {
	if g.Enter {
		return "is in maintenance"
	}
	return "is back: Active and caught up"
}

// follow reads the target's pods again after each of their phase events
// (polling every pollInterval a server without an event stream) until
// every one has reached g, printing each phase change with the time since
// the start, and a line every stillEvery while nothing moves. It gives up
// after wait.
func (x *cli) follow(ctx context.Context, t target, pods []maintenance.PodView, g goal, wait time.Duration) error {
	start := x.now()
	deadline := start.Add(wait)
	seen := map[string]string{}
	lastLine := start
	show := func(pods []maintenance.PodView) {
		now := x.now()
		for _, pv := range pods {
			key := string(pv.Phase) + "\x00" + pv.Message
			if seen[pv.Pod] == key {
				continue
			}
			seen[pv.Pod] = key
			lastLine = now
			fmt.Fprintf(x.out, "  %7s  %-12s %s%s\n", elapsed(now.Sub(start)), pv.Pod, pv.Phase, messageSuffix(pv.Message))
		}
		if now.Sub(lastLine) >= stillEvery {
			lastLine = now
			for _, pv := range pods {
				if !g.Reached(pv) {
					fmt.Fprintf(x.out, "  %7s  %-12s still %s%s\n", elapsed(now.Sub(start)), pv.Pod, pv.Phase, lagSuffix(pv))
				}
			}
		}
	}
	show(pods)
	names := make([]string, 0, len(pods))
	for _, pv := range pods {
		names = append(names, pv.Pod)
	}
	watchCtx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	changes := x.changes(watchCtx, names, pollInterval)
	timeout := time.NewTimer(wait)
	defer timeout.Stop()
	var lastErr error
	for !g.All(pods) {
		if !x.now().Before(deadline) {
			return fmt.Errorf("not there after %s: %s; the request stands and the reconciler goes on (prober status)",
				wait, phases(pods))
		}
		select {
		case <-ctx.Done():
			fmt.Fprintf(x.errOut, "prober: stopped following; the request stands and the reconciler goes on (prober status)\n")
			return ctx.Err()
		case <-timeout.C:
			continue
		case <-changes:
		}
		next, err := x.fetch(ctx, t)
		if err != nil {
			// The API may be briefly unavailable (for example while the
			// cluster view is rebuilt): say so once and keep following.
			if ctx.Err() == nil && (lastErr == nil || lastErr.Error() != err.Error()) {
				fmt.Fprintf(x.out, "  %7s  (%v)\n", elapsed(x.now().Sub(start)), err)
			}
			lastErr = err
			continue
		}
		lastErr = nil
		pods = next
		show(pods)
	}
	for _, pv := range pods {
		if g.KeptByOwnEntry(pv) {
			fmt.Fprintf(x.out, "%s stays in maintenance: it has an entry of its own (prober maintenance off %s)\n", pv.Pod, pv.Pod)
		}
	}
	fmt.Fprintf(x.out, "%s %s (%s)\n", t, g.done(), elapsed(x.now().Sub(start)))
	return nil
}

// fetch returns the current views of the target's pods.
func (x *cli) fetch(ctx context.Context, t target) ([]maintenance.PodView, error) {
	if t.kind == "dc" {
		var v prober.DCView
		_, err := x.api.call(ctx, http.MethodGet, t.path(), nil, nil, &v)
		return v.Pods, err
	}
	var pv maintenance.PodView
	_, err := x.api.call(ctx, http.MethodGet, t.path(), nil, nil, &pv)
	return []maintenance.PodView{pv}, err
}

func requester(pods []maintenance.PodView) string {
	for _, pv := range pods {
		if pv.RequestedBy != "" {
			return pv.RequestedBy
		}
	}
	return "an unknown caller"
}

// phases says where each pod stands: "nats-1 Fencing, nats-2 Requested".
func phases(pods []maintenance.PodView) string {
	parts := make([]string, 0, len(pods))
	for _, pv := range pods {
		parts = append(parts, pv.Pod+" "+string(pv.Phase)+messageSuffix(pv.Message))
	}
	return strings.Join(parts, ", ")
}

func messageSuffix(msg string) string {
	if msg == "" {
		return ""
	}
	return ": " + msg
}

func lagSuffix(pv maintenance.PodView) string {
	if pv.Raft.Lag > 0 {
		return fmt.Sprintf(" (lag %d)", pv.Raft.Lag)
	}
	return ""
}

// BalanceOptions are the flags of "prober balance".
type BalanceOptions struct {
	ClientOptions
	DC     string
	To     string
	DryRun bool
}

func runBalance(args []string, stdout, stderr io.Writer) int {
	var o BalanceOptions
	fs := newFlagSet("prober balance", "prober balance [--dc DC] [--to POD] [--dry-run] [--server URL] [--token T]\n\n"+
		"  evens out Raft leaderships across the healthy pods of a dc (or every pod), one hand-off at a time;\n"+
		"  --to moves only to that pod, until it leads its share; --dry-run prints the plan and moves nothing.\n"+
		"  Exit codes: 0 done, 1 failed, 2 usage.", stderr)
	o.ClientOptions.Flags(fs)
	fs.StringVar(&o.DC, "dc", "", "the dc (NATS cluster name) to balance; every pod when empty")
	fs.StringVar(&o.To, "to", "", "only move leaderships to this pod, until it leads its share (a pod back from a restart)")
	fs.BoolVar(&o.DryRun, "dry-run", false, "plan only; move nothing")
	x, pos, code := startCLI(fs, &o.ClientOptions, args, stdout, stderr)
	if code >= 0 {
		return code
	}
	if len(pos) > 0 {
		fmt.Fprintf(stderr, "prober balance: unexpected argument %q\n", pos[0])
		return exitUsage
	}
	ctx, stop := signalContext()
	defer stop()
	q := url.Values{}
	if o.DC != "" {
		q.Set("dc", o.DC)
	}
	if o.To != "" {
		q.Set("to", o.To)
	}
	if o.DryRun {
		q.Set("dryRun", "true")
	}
	var res maintenance.BalanceResult
	if _, err := x.api.call(ctx, http.MethodPost, "/balance", q, nil, &res); err != nil {
		return x.fail(ctx, err)
	}
	verb := "moved"
	if res.DryRun {
		verb = "would move"
	}
	failed := false
	for _, m := range res.Moves {
		fmt.Fprintf(x.out, "  %s %s %s: %s -> %s%s\n", verb, m.Kind, m.Group, m.From, m.To, messageSuffix(m.Error))
		failed = failed || m.Error != ""
	}
	fmt.Fprintf(x.out, "leader skew %d -> %d (%d move(s))\n", res.SkewBefore, res.SkewAfter, len(res.Moves))
	if failed {
		return exitFailed
	}
	return exitOK
}

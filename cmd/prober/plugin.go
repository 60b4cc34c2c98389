package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/prober-dev/prober/kube"
)

// PluginName is the name under which the binary is the kubectl plugin
// "kubectl prober": a symlink (or a copy) of prober by that name on the
// PATH.
const PluginName = "kubectl-prober"

// DefaultPodSelector is the label selector of the NATS pods in deploy/.
const DefaultPodSelector = "app.kubernetes.io/name=nats"

// apiPort is the port of the prober API in every NATS pod.
const apiPort = 8889

// forwardTimeout bounds how long the plugin waits for its port-forward.
const forwardTimeout = 30 * time.Second

// Dispatch runs the binary as argv0 asks: as the kubectl plugin when its
// base name is kubectl-prober, as prober otherwise.
func Dispatch(argv0 string, args []string, stdout, stderr io.Writer) int {
	base := argv0[strings.LastIndexAny(argv0, `/\`)+1:]
	if strings.TrimSuffix(base, ".exe") == PluginName {
		return Plugin(args, stdout, stderr)
	}
	return Main(args, stdout, stderr)
}

// PluginOptions are the flags of kubectl prober, taken from wherever they
// stand among the command's own ("kubectl prober -n nats status" as well
// as "kubectl prober status -n nats").
type PluginOptions struct {
	Kubeconfig string
	Context    string
	Namespace  string
	Selector   string
	Pod        string
}

// pluginFlag is one flag of kubectl prober: its names and where its value
// goes.
type pluginFlag struct {
	names []string
	usage string
	value func(o *PluginOptions) *string
}

// pluginFlags are the flags of kubectl prober.
var pluginFlags = []pluginFlag{
	{[]string{"kubeconfig"}, "the kubeconfig file (default: $KUBECONFIG, else ~/.kube/config)", func(o *PluginOptions) *string { return &o.Kubeconfig }},
	{[]string{"context"}, "the kubeconfig context (default: its current context)", func(o *PluginOptions) *string { return &o.Context }},
	{[]string{"n", "namespace"}, "the namespace of the NATS pods (default: the context's namespace)", func(o *PluginOptions) *string { return &o.Namespace }},
	{[]string{"l", "selector"}, "label selector of the NATS pods (default " + DefaultPodSelector + ")", func(o *PluginOptions) *string { return &o.Selector }},
	{[]string{"pod"}, "forward to this pod (default: a Ready pod of the selector, else a Running one)", func(o *PluginOptions) *string { return &o.Pod }},
}

// parsePluginArgs takes the plugin's flags out of args, wherever they stand
// before a "--", and returns the rest in order.
func parsePluginArgs(args []string) (PluginOptions, []string, error) {
	o := PluginOptions{Selector: DefaultPodSelector}
	var rest []string
	for i := 0; i < len(args); i++ {
		arg := args[i]
		if arg == "--" {
			rest = append(rest, args[i:]...)
			break
		}
		name, value, hasValue := strings.Cut(strings.TrimLeft(arg, "-"), "=")
		if !strings.HasPrefix(arg, "-") || arg == "-" {
			rest = append(rest, arg)
			continue
		}
		if name == "server" {
			return o, nil, errors.New("--server: kubectl prober talks to the port-forward it opens; to call another API use prober --server")
		}
		f, ok := lookupPluginFlag(name)
		if !ok {
			rest = append(rest, arg)
			continue
		}
		if !hasValue {
			if i+1 == len(args) {
				return o, nil, fmt.Errorf("flag needs an argument: %s", arg)
			}
			i++
			value = args[i]
		}
		*f.value(&o) = value
	}
	if o.Selector == "" {
		return o, nil, errors.New("--selector: must not be empty")
	}
	if _, err := kube.ParseSelector(o.Selector); err != nil {
		return o, nil, fmt.Errorf("--selector: %w", err)
	}
	return o, rest, nil
}

func lookupPluginFlag(name string) (pluginFlag, bool) {
	for _, f := range pluginFlags {
		if slices.Contains(f.names, name) {
			return f, true
		}
	}
	return pluginFlag{}, false
}

// plugin is one run of kubectl prober.
type plugin struct {
	o              PluginOptions
	stdout, stderr io.Writer
	// connect builds the clients from the kubeconfig and returns the
	// namespace to look in; forward opens a port-forward to the pod's
	// port; signals is cancelled by Ctrl-C; browse opens a URL in a
	// browser. Tests replace them.
	connect func(o *PluginOptions) (kubernetes.Interface, *rest.Config, string, error)
	forward func(ctx context.Context, cs kubernetes.Interface, cfg *rest.Config, pod *corev1.Pod, port int, stderr io.Writer) (*forwarding, error)
	signals func() (context.Context, func())
	browse  func(url string) error
}

// forwarding is an open port-forward.
type forwarding struct {
	// URL is the API behind it: http://127.0.0.1:<port>.
	URL string
	// lost receives why the forward ended by itself (the pod went away).
	lost <-chan error
	stop func()
}

// Plugin runs kubectl prober: it finds a pod of the NATS StatefulSet,
// port-forwards to its prober API and runs a command of the CLI against
// it; see pluginUsage.
func Plugin(args []string, stdout, stderr io.Writer) int {
	p := &plugin{stdout: stdout, stderr: stderr, connect: kubeClients, forward: portForward, signals: signalContext, browse: openBrowser}
	return p.run(args)
}

// pluginCommands are the commands of kubectl prober: the CLI's remote
// commands, run through the port-forward, and ui and help.
func (p *plugin) commands() []command {
	var table []command
	for _, c := range commands {
		if c.remote {
			c.run = p.remote(c)
			table = append(table, c)
		}
	}
	return append(table,
		command{name: "ui", run: p.ui, summary: "print the URL of the status page through the port-forward, open a browser\n" +
			"when one is at hand (not with --no-browser), keep the forward open until Ctrl-C"},
		command{name: "help", run: func(args []string, stdout, stderr io.Writer) int {
			return helpFor("kubectl prober", p.commands(), p.usage, args, stdout, stderr)
		}, summary: "this text; \"kubectl prober help <command>\" lists a command's flags"},
	)
}

// usage is the text of "kubectl prober help".
func (p *plugin) usage() string {
	var b strings.Builder
	b.WriteString("usage: kubectl prober [flags] <command> [command flags]\n\n" +
		"Finds a pod of the NATS StatefulSet, port-forwards to its prober API (port 8889) on a free local\n" +
		"port and runs the command against it; a port-forward arrives on the pod's loopback interface, so\n" +
		"no token is needed: whoever may create pods/portforward in the namespace may call the API.\n\ncommands:\n")
	writeCommands(&b, p.commands())
	b.WriteString("\nflags (anywhere before a \"--\"):\n")
	for _, f := range pluginFlags {
		names := make([]string, len(f.names))
		for i, n := range f.names {
			names[i] = "--" + n
			if len(n) == 1 {
				names[i] = "-" + n
			}
		}
		fmt.Fprintf(&b, "  %-22s %s\n", strings.Join(names, ", "), f.usage)
	}
	b.WriteString("\nExit codes as prober's: 0 done, 1 refused, failed or no pod to forward to, 2 usage, 130 interrupted.\n" +
		"Install: a symlink (or a copy) of the prober binary named kubectl-prober on your PATH.\n")
	return b.String()
}

func (p *plugin) run(args []string) int {
	o, rest, err := parsePluginArgs(args)
	if err != nil {
		fmt.Fprintf(p.stderr, "%s: %v\n", PluginName, err)
		return exitUsage
	}
	p.o = o
	if len(rest) == 0 || isHelpFlag(rest[0]) {
		fmt.Fprint(p.stdout, p.usage())
		return exitOK
	}
	c, ok := lookupCommand(p.commands(), rest[0])
	if !ok {
		fmt.Fprintf(p.stderr, "%s: unknown command %q\n%s", PluginName, rest[0], p.usage())
		return exitUsage
	}
	return c.run(rest[1:], p.stdout, p.stderr)
}

// asksHelp reports whether a command's args ask for its flags: then no
// forward is needed.
func asksHelp(args []string) bool {
	for _, a := range args {
		if a == "--" {
			return false
		}
		if isHelpFlag(a) {
			return true
		}
	}
	return false
}

// remote returns the plugin's run of the CLI command c: through a
// port-forward, with --server set to it.
func (p *plugin) remote(c command) func(args []string, stdout, stderr io.Writer) int {
	return func(args []string, stdout, stderr io.Writer) int {
		if asksHelp(args) {
			return pluginHelp(c, args, stdout, stderr)
		}
		fw, code := p.open()
		if fw == nil {
			return code
		}
		defer fw.stop()
		code = c.run(append([]string{"--server", fw.URL}, args...), stdout, stderr)
		if code != exitOK {
			select {
			case err := <-fw.lost:
				fmt.Fprintf(p.stderr, "%s: %v\n", PluginName, err)
			default:
			}
		}
		return code
	}
}

// pluginHelp prints the flags of the CLI command c (args ask for them) as
// kubectl prober runs it: under its name, --server being the forward's.
func pluginHelp(c command, args []string, stdout, stderr io.Writer) int {
	var out, errOut strings.Builder
	code := c.run(args, &out, &errOut)
	fix := func(s string) string {
		if s == "" {
			return ""
		}
		s = strings.ReplaceAll(s, "prober "+c.name, "kubectl prober "+c.name)
		s = strings.ReplaceAll(s, " [--server URL]", "")
		lines := strings.Split(s, "\n")
		for i := 0; i < len(lines); i++ {
			if strings.HasPrefix(lines[i], "  -server ") && i+1 < len(lines) {
				lines = slices.Delete(lines, i, i+2) // the flag and its text
				i--
			}
		}
		return strings.Join(lines, "\n") + "  (kubectl prober sets --server to its port-forward; -n, -l, --pod and the kube flags: kubectl prober -h)\n"
	}
	fmt.Fprint(stdout, fix(out.String()))
	fmt.Fprint(stderr, fix(errOut.String()))
	return code
}

// ui is "kubectl prober ui": the status page's URL through the forward,
// open until Ctrl-C.
func (p *plugin) ui(args []string, stdout, stderr io.Writer) int {
	var noBrowser bool
	fs := newFlagSet("kubectl prober ui", "kubectl prober ui [--no-browser] [-n NS] [--pod POD]\n\n"+
		"  prints the URL of the live status page through a port-forward, opens it in a browser when one is\n"+
		"  at hand, and keeps the forward open until Ctrl-C.", stderr)
	fs.BoolVar(&noBrowser, "no-browser", false, "only print the URL")
	pos, err := parseArgs(fs, args)
	if errors.Is(err, flag.ErrHelp) {
		return exitOK
	}
	if err != nil {
		return exitUsage
	}
	if len(pos) > 0 {
		fmt.Fprintf(stderr, "kubectl prober ui: unexpected argument %q\n", pos[0])
		return exitUsage
	}
	fw, code := p.open()
	if fw == nil {
		return code
	}
	defer fw.stop()
	ctx, stop := p.signals()
	defer stop()
	page := fw.URL + "/"
	fmt.Fprintf(stdout, "prober status page: %s\n(the port-forward stays open until Ctrl-C)\n", page)
	if !noBrowser && p.browse != nil {
		if err := p.browse(page); err != nil {
			fmt.Fprintf(stderr, "%s: no browser opened: %v\n", PluginName, err)
		}
	}
	select {
	case <-ctx.Done():
		return exitOK
	case err := <-fw.lost:
		fmt.Fprintf(stderr, "%s: %v\n", PluginName, err)
		return exitFailed
	}
}

// open finds the pod and opens the port-forward to its API; on failure it
// prints why and returns the exit code.
func (p *plugin) open() (*forwarding, int) {
	ctx, stop := p.signals()
	defer stop()
	fail := func(err error) (*forwarding, int) {
		if ctx.Err() != nil {
			fmt.Fprintf(p.stderr, "%s: interrupted\n", PluginName)
			return nil, exitInterrupted
		}
		fmt.Fprintf(p.stderr, "%s: %v\n", PluginName, err)
		return nil, exitFailed
	}
	cs, cfg, ns, err := p.connect(&p.o)
	if err != nil {
		return fail(err)
	}
	pod, err := findPod(ctx, cs, ns, p.o.Selector, p.o.Pod)
	if err != nil {
		return fail(err)
	}
	ctx, cancel := context.WithTimeout(ctx, forwardTimeout)
	defer cancel()
	fw, err := p.forward(ctx, cs, cfg, pod, apiPort, p.stderr)
	if err != nil {
		return fail(err)
	}
	return fw, exitOK
}

// kubeClients reads the kubeconfig as kubectl does (--kubeconfig, else
// $KUBECONFIG, else ~/.kube/config; --context; -n, else the context's
// namespace) and returns the clients and the namespace.
func kubeClients(o *PluginOptions) (kubernetes.Interface, *rest.Config, string, error) {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.ExplicitPath = o.Kubeconfig
	overrides := &clientcmd.ConfigOverrides{CurrentContext: o.Context}
	overrides.Context.Namespace = o.Namespace
	cc := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, overrides)
	cfg, err := cc.ClientConfig()
	if clientcmd.IsEmptyConfig(err) {
		return nil, nil, "", errors.New("no kubeconfig: give --kubeconfig, or set KUBECONFIG")
	}
	if err != nil {
		return nil, nil, "", fmt.Errorf("kubeconfig: %w", err)
	}
	ns, _, err := cc.Namespace()
	if err != nil {
		return nil, nil, "", fmt.Errorf("kubeconfig: %w", err)
	}
	cfg.UserAgent = PluginName
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, nil, "", fmt.Errorf("kubernetes client: %w", err)
	}
	return cs, cfg, ns, nil
}

// findPod returns the pod to forward to: name when given (it must be
// Running), else a pod of the selector in ns, a Ready one by preference,
// else a Running one, the first by name, pods being deleted last. A pod in
// maintenance is not Ready, and its API serves all the same.
func findPod(ctx context.Context, cs kubernetes.Interface, ns, selector, name string) (*corev1.Pod, error) {
	pods := cs.CoreV1().Pods(ns)
	if name != "" {
		pod, err := pods.Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			if nsErr := namespaceMissing(ctx, cs, ns); nsErr != nil {
				return nil, nsErr
			}
			return nil, fmt.Errorf("pod %q not found in namespace %q", name, ns)
		}
		if err != nil {
			return nil, fmt.Errorf("get pod %s/%s: %w", ns, name, err)
		}
		if pod.Status.Phase != corev1.PodRunning {
			return nil, fmt.Errorf("pod %s/%s is %s, not Running: nothing to forward to", ns, name, pod.Status.Phase)
		}
		return pod, nil
	}
	list, err := pods.List(ctx, metav1.ListOptions{LabelSelector: selector})
	if err != nil {
		return nil, fmt.Errorf("list pods in namespace %q: %w", ns, err)
	}
	if len(list.Items) == 0 {
		if nsErr := namespaceMissing(ctx, cs, ns); nsErr != nil {
			return nil, nsErr
		}
		return nil, fmt.Errorf("no pod matches %s in namespace %q (see -n and --selector)", selector, ns)
	}
	// rank: 0 Ready, 1 Running, 2 Running but being deleted, 3 not Running.
	rank := func(p *corev1.Pod) int {
		switch {
		case p.Status.Phase != corev1.PodRunning:
			return 3
		case p.DeletionTimestamp != nil:
			return 2
		case podReady(p):
			return 0
		}
		return 1
	}
	items := list.Items
	slices.SortFunc(items, func(a, b corev1.Pod) int {
		if c := rank(&a) - rank(&b); c != 0 {
			return c
		}
		return strings.Compare(a.Name, b.Name)
	})
	if rank(&items[0]) == 3 {
		var states []string
		for _, p := range items {
			states = append(states, p.Name+" "+string(p.Status.Phase))
		}
		return nil, fmt.Errorf("no Ready or Running pod matches %s in namespace %q: %s", selector, ns, strings.Join(states, ", "))
	}
	return &items[0], nil
}

// namespaceMissing returns an error when ns does not exist, nil when it
// does or cannot be told (a user may list pods and not read namespaces).
func namespaceMissing(ctx context.Context, cs kubernetes.Interface, ns string) error {
	if _, err := cs.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{}); apierrors.IsNotFound(err) {
		return fmt.Errorf("namespace %q not found (see -n)", ns)
	}
	return nil
}

// podReady reports whether p's Ready condition is true.
func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// openBrowser opens url with xdg-open (or open on macOS) when there is
// one, without waiting for it.
func openBrowser(url string) error {
	name := "xdg-open"
	switch {
	case runtime.GOOS == "darwin":
		name = "open"
	case os.Getenv("DISPLAY") == "" && os.Getenv("WAYLAND_DISPLAY") == "":
		return errors.New("no display")
	}
	path, err := exec.LookPath(name)
	if err != nil {
		return fmt.Errorf("no %s", name)
	}
	cmd := exec.Command(path, url)
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	go func() { _ = cmd.Wait() }()
	return nil
}

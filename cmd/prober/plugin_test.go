package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/portforward"
)

// natsPod is a pod of the StatefulSet in namespace "nats" in phase, Ready
// or not.
func natsPod(name string, phase corev1.PodPhase, ready bool) *corev1.Pod {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "nats", Labels: map[string]string{"app.kubernetes.io/name": "nats"}},
		Status:     corev1.PodStatus{Phase: phase},
	}
	status := corev1.ConditionFalse
	if ready {
		status = corev1.ConditionTrue
	}
	p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: status}}
	return p
}

func deleting(p *corev1.Pod) *corev1.Pod {
	now := metav1.Now()
	p.DeletionTimestamp = &now
	return p
}

func labelled(p *corev1.Pod, app string) *corev1.Pod {
	p.Labels = map[string]string{"app.kubernetes.io/name": app}
	return p
}

var natsNamespace = &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "nats"}}

// TestFindPod checks which pod kubectl prober forwards to: a Ready one by
// preference, else a Running one, by name, pods being deleted last; and the
// one-line errors when there is none.
func TestFindPod(t *testing.T) {
	for _, tc := range []struct {
		name      string
		objects   []runtime.Object
		ns, pod   string
		want      string
		wantError string
	}{
		{"a Ready pod first", []runtime.Object{natsNamespace,
			natsPod("nats-0", corev1.PodRunning, false), natsPod("nats-2", corev1.PodRunning, true), natsPod("nats-1", corev1.PodRunning, true)},
			"nats", "", "nats-1", ""},
		{"else a Running one (in maintenance, say)", []runtime.Object{natsNamespace,
			natsPod("nats-1", corev1.PodRunning, false), natsPod("nats-0", corev1.PodPending, false), natsPod("nats-2", corev1.PodRunning, false)},
			"nats", "", "nats-1", ""},
		{"a pod being deleted last", []runtime.Object{natsNamespace,
			deleting(natsPod("nats-0", corev1.PodRunning, true)), natsPod("nats-1", corev1.PodRunning, false)},
			"nats", "", "nats-1", ""},
		{"a pod being deleted rather than none", []runtime.Object{natsNamespace,
			deleting(natsPod("nats-0", corev1.PodRunning, true)), natsPod("nats-1", corev1.PodPending, false)},
			"nats", "", "nats-0", ""},
		{"only the selector's pods", []runtime.Object{natsNamespace,
			labelled(natsPod("aaa-0", corev1.PodRunning, true), "other"), natsPod("nats-0", corev1.PodRunning, false)},
			"nats", "", "nats-0", ""},
		{"none Running", []runtime.Object{natsNamespace,
			natsPod("nats-1", corev1.PodFailed, false), natsPod("nats-0", corev1.PodPending, false)},
			"nats", "", "", `no Ready or Running pod matches app.kubernetes.io/name=nats in namespace "nats": nats-0 Pending, nats-1 Failed`},
		{"no pod", []runtime.Object{natsNamespace, labelled(natsPod("aaa-0", corev1.PodRunning, true), "other")},
			"nats", "", "", `no pod matches app.kubernetes.io/name=nats in namespace "nats" (see -n and --selector)`},
		{"no namespace", []runtime.Object{natsNamespace, natsPod("nats-0", corev1.PodRunning, true)},
			"natz", "", "", `namespace "natz" not found (see -n)`},
		{"--pod", []runtime.Object{natsNamespace, natsPod("nats-0", corev1.PodRunning, true), natsPod("nats-2", corev1.PodRunning, false)},
			"nats", "nats-2", "nats-2", ""},
		{"--pod not Running", []runtime.Object{natsNamespace, natsPod("nats-2", corev1.PodPending, false)},
			"nats", "nats-2", "", "pod nats/nats-2 is Pending, not Running: nothing to forward to"},
		{"--pod not found", []runtime.Object{natsNamespace, natsPod("nats-0", corev1.PodRunning, true)},
			"nats", "nats-7", "", `pod "nats-7" not found in namespace "nats"`},
		{"--pod in no namespace", []runtime.Object{natsNamespace},
			"natz", "nats-0", "", `namespace "natz" not found (see -n)`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cs := fake.NewClientset(tc.objects...)
			got, err := findPod(context.Background(), cs, tc.ns, DefaultPodSelector, tc.pod)
			if tc.wantError != "" {
				require.Error(t, err)
				assert.Equal(t, tc.wantError, err.Error())
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.want, got.Name)
		})
	}
}

// TestPluginArgs checks that the plugin's flags are taken from anywhere
// before "--", in every spelling, and the rest is left in order.
func TestPluginArgs(t *testing.T) {
	for _, tc := range []struct {
		name      string
		args      []string
		want      PluginOptions
		rest      []string
		wantError string
	}{
		{"defaults", []string{"status"}, PluginOptions{Selector: DefaultPodSelector}, []string{"status"}, ""},
		{"before and after the command", []string{"-n", "nats", "maintenance", "on", "nats-1", "--reason", "kernel", "--context=prod", "--kubeconfig", "/k"},
			PluginOptions{Namespace: "nats", Context: "prod", Kubeconfig: "/k", Selector: DefaultPodSelector},
			[]string{"maintenance", "on", "nats-1", "--reason", "kernel"}, ""},
		{"every spelling", []string{"--namespace=a", "-l", "app=x", "--pod", "x-1", "raft", "--json"},
			PluginOptions{Namespace: "a", Selector: "app=x", Pod: "x-1"}, []string{"raft", "--json"}, ""},
		{"-- ends them", []string{"status", "--", "-n", "x"}, PluginOptions{Selector: DefaultPodSelector}, []string{"status", "--", "-n", "x"}, ""},
		{"no value", []string{"status", "-n"}, PluginOptions{}, nil, "flag needs an argument: -n"},
		{"--server is the forward's", []string{"status", "--server=http://x"}, PluginOptions{}, nil, "--server: kubectl prober talks to the port-forward it opens; to call another API use prober --server"},
		{"a bad selector", []string{"-l", "a b", "status"}, PluginOptions{}, nil, `--selector: pod selector "a b"`},
		{"an empty selector", []string{"--selector=", "status"}, PluginOptions{}, nil, "--selector: must not be empty"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o, rest, err := parsePluginArgs(tc.args)
			if tc.wantError != "" {
				require.Error(t, err)
				assert.Contains(t, err.Error(), tc.wantError)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.want, o)
			assert.Equal(t, tc.rest, rest)
		})
	}
}

// TestDispatch checks that the binary is the plugin when its name is
// kubectl-prober.
func TestDispatch(t *testing.T) {
	for argv0, want := range map[string]string{
		"/usr/local/bin/kubectl-prober": "usage: kubectl prober",
		"kubectl-prober.exe":            "usage: kubectl prober",
		"./prober":                      "usage: prober",
		"/bin/kubectl-prober-old":       "usage: prober",
	} {
		var out bytes.Buffer
		assert.Equal(t, 0, Dispatch(argv0, []string{"--help"}, &out, io.Discard), argv0)
		assert.True(t, strings.HasPrefix(out.String(), want), "%s: %s", argv0, out.String())
	}
}

// fakeKube is a kubectl prober whose cluster is a fake clientset and whose
// port-forward goes to the API at base.
type fakeKube struct {
	mu        sync.Mutex
	forwarded []string // namespace/pod of each forward
	stopped   int
	browsed   []string
	lost      chan error
}

func (f *fakeKube) plugin(t *testing.T, base string, stdout, stderr io.Writer, objects ...runtime.Object) *plugin {
	cs := fake.NewClientset(objects...)
	return &plugin{
		stdout: stdout, stderr: stderr,
		connect: func(o *PluginOptions) (kubernetes.Interface, *rest.Config, string, error) {
			ns := o.Namespace
			if ns == "" {
				ns = "default"
			}
			return cs, &rest.Config{}, ns, nil
		},
		forward: func(_ context.Context, _ kubernetes.Interface, _ *rest.Config, pod *corev1.Pod, port int, _ io.Writer) (*forwarding, error) {
			assert.Equal(t, apiPort, port)
			f.mu.Lock()
			defer f.mu.Unlock()
			f.forwarded = append(f.forwarded, pod.Namespace+"/"+pod.Name)
			return &forwarding{URL: base, lost: f.lost, stop: func() {
				f.mu.Lock()
				f.stopped++
				f.mu.Unlock()
			}}, nil
		},
		signals: signalContext,
		browse: func(url string) error {
			f.mu.Lock()
			defer f.mu.Unlock()
			f.browsed = append(f.browsed, url)
			return errors.New("no display")
		},
	}
}

// runPlugin runs kubectl prober args with p's streams.
func runPlugin(p *plugin, out, errOut *bytes.Buffer, args ...string) result {
	out.Reset()
	errOut.Reset()
	code := p.run(args)
	return result{code: code, stdout: out.String(), stderr: errOut.String()}
}

// TestPluginCommands runs the CLI's commands as kubectl prober, through a
// forward (faked: to the embedded default) to the pod it picked; the
// forward is closed after each command, and help needs no cluster.
func TestPluginCommands(t *testing.T) {
	a := liveApp(t)
	var out, errOut bytes.Buffer
	f := &fakeKube{lost: make(chan error, 1)}
	p := f.plugin(t, a.base, &out, &errOut, natsNamespace,
		natsPod("nats-0", corev1.PodRunning, false), natsPod("nats-1", corev1.PodRunning, true))
	t.Cleanup(func() {
		for pod := range a.config(t).Pods {
			run("maintenance", "off", pod, "--wait", "60s", "--server", a.base)
		}
	})

	r := runPlugin(p, &out, &errOut, "-n", "nats", "status")
	require.Equal(t, 0, r.code, r)
	assert.Regexp(t, `(?m)^CLUSTER:\s+3 pods in 1 dc`, r.stdout)
	assert.Empty(t, r.stderr)

	r = runPlugin(p, &out, &errOut, "maintenance", "on", "nats-2", "-n", "nats", "--reason", "plugin test", "--wait", "60s")
	require.Equal(t, 0, r.code, r)
	assert.Contains(t, r.stdout, "pod nats-2 is in maintenance")
	pv := a.pod(t, "nats-2")
	assert.Equal(t, "plugin test", pv.Reason)
	assert.Equal(t, "loopback", pv.RequestedBy, "a forward arrives on loopback: no token")

	r = runPlugin(p, &out, &errOut, "raft", "--namespace=nats", "--json")
	require.Equal(t, 0, r.code, r)
	assert.Contains(t, r.stdout, `"groups"`)

	r = runPlugin(p, &out, &errOut, "maintenance", "off", "nats-2", "-n", "nats", "--wait", "60s")
	require.Equal(t, 0, r.code, r)
	assert.Contains(t, r.stdout, "pod nats-2 is back")

	r = runPlugin(p, &out, &errOut, "-n", "nats", "rollout", "status")
	require.Equal(t, 0, r.code, r)

	f.mu.Lock()
	assert.Equal(t, []string{"nats/nats-1", "nats/nats-1", "nats/nats-1", "nats/nats-1", "nats/nats-1"}, f.forwarded, "the Ready pod, once per command")
	assert.Equal(t, 5, f.stopped, "every forward closed")
	f.forwarded = nil
	f.mu.Unlock()

	t.Run("refused and usage exit codes are the CLI's", func(t *testing.T) {
		r := runPlugin(p, &out, &errOut, "-n", "nats", "maintenance", "on", "nats-9", "--wait", "0")
		assert.Equal(t, exitFailed, r.code, r)
		assert.Contains(t, r.stderr, "prober: ")
		r = runPlugin(p, &out, &errOut, "-n", "nats", "maintenance", "up", "nats-1")
		assert.Equal(t, exitUsage, r.code, r)
		r = runPlugin(p, &out, &errOut, "-n", "natz", "status")
		assert.Equal(t, exitFailed, r.code, r)
		assert.Equal(t, "kubectl-prober: namespace \"natz\" not found (see -n)\n", r.stderr)
	})

	t.Run("help needs no cluster", func(t *testing.T) {
		f.mu.Lock()
		f.forwarded = nil
		f.mu.Unlock()
		for _, args := range [][]string{{}, {"-h"}, {"help"}, {"--help"}} {
			r := runPlugin(p, &out, &errOut, args...)
			assert.Equal(t, 0, r.code, r)
			assert.Contains(t, r.stdout, "usage: kubectl prober [flags] <command>")
			for _, c := range []string{"status", "maintenance", "raft", "rollout", "ui"} {
				assert.Regexp(t, `(?m)^  `+c+` +\S`, r.stdout)
			}
			assert.NotRegexp(t, `(?m)^  (serve|embedded|prestop) `, r.stdout, "not the pod's own commands")
		}
		r := runPlugin(p, &out, &errOut, "maintenance", "-h")
		assert.Equal(t, 0, r.code, r)
		assert.Contains(t, r.stderr, "-dry-run")
		assert.Contains(t, r.stderr, "usage: kubectl prober maintenance on|off <pod>")
		assert.NotContains(t, r.stderr, "  -server", "the forward's, not the user's")
		assert.NotContains(t, r.stderr, "[--server URL]")
		r = runPlugin(p, &out, &errOut, "help", "rollout")
		assert.Equal(t, 0, r.code, r)
		assert.Contains(t, r.stdout, "       kubectl prober rollout status [<name>] [--json]\n")
		r = runPlugin(p, &out, &errOut, "help", "ui")
		assert.Equal(t, 0, r.code, r)
		assert.Contains(t, r.stdout, "-no-browser")
		r = runPlugin(p, &out, &errOut, "serve")
		assert.Equal(t, exitUsage, r.code, r)
		assert.Contains(t, r.stderr, `kubectl-prober: unknown command "serve"`)
		f.mu.Lock()
		assert.Empty(t, f.forwarded)
		f.mu.Unlock()
	})

	t.Run("ui", func(t *testing.T) {
		f.mu.Lock()
		stopped := f.stopped
		f.mu.Unlock()
		ctx, cancel := context.WithCancel(context.Background())
		p.signals = func() (context.Context, func()) { return context.WithCancel(ctx) }
		t.Cleanup(func() { p.signals = signalContext })
		uiOut, uiErr := make(writes, 16), &bytes.Buffer{}
		p.stdout, p.stderr = uiOut, uiErr
		t.Cleanup(func() { p.stdout, p.stderr = &out, &errOut })
		done := make(chan int, 1)
		go func() { done <- p.run([]string{"ui", "-n", "nats"}) }()
		assert.Equal(t, "prober status page: "+a.base+"/\n(the port-forward stays open until Ctrl-C)\n", uiOut.waitWrite(t, a.base+"/"))
		select {
		case code := <-done:
			t.Fatalf("ui returned %d before Ctrl-C", code)
		default:
		}
		cancel() // Ctrl-C
		select {
		case code := <-done:
			assert.Equal(t, 0, code)
		case <-time.After(10 * time.Second):
			t.Fatal("ui did not end on Ctrl-C")
		}
		f.mu.Lock()
		assert.Equal(t, []string{a.base + "/"}, f.browsed)
		assert.Equal(t, stopped+1, f.stopped, "the forward is closed after Ctrl-C")
		f.mu.Unlock()
		assert.Contains(t, uiErr.String(), "kubectl-prober: no browser opened: no display")
	})

	t.Run("ui ends when the forward is lost", func(t *testing.T) {
		uiOut, uiErr := make(writes, 16), &bytes.Buffer{}
		p.stdout, p.stderr = uiOut, uiErr
		t.Cleanup(func() { p.stdout, p.stderr = &out, &errOut })
		done := make(chan int, 1)
		go func() { done <- p.run([]string{"ui", "-n", "nats", "--no-browser"}) }()
		uiOut.waitWrite(t, a.base+"/")
		f.lost <- errors.New("port-forward to nats/nats-1:8889 lost: the connection to the pod was lost (the pod went away?)")
		select {
		case code := <-done:
			assert.Equal(t, exitFailed, code)
		case <-time.After(10 * time.Second):
			t.Fatal("ui did not end when the forward was lost")
		}
		assert.Equal(t, "kubectl-prober: port-forward to nats/nats-1:8889 lost: the connection to the pod was lost (the pod went away?)\n", uiErr.String())
	})
}

// writes is a writer that hands each write to the test.
type writes chan string

func (w writes) Write(p []byte) (int, error) {
	w <- string(p)
	return len(p), nil
}

// waitWrite returns the first write that contains want.
func (w writes) waitWrite(t *testing.T, want string) string {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case s := <-w:
			if strings.Contains(s, want) {
				return s
			}
		case <-deadline:
			t.Fatalf("no write with %q within 10s", want)
		}
	}
}

// TestLineSink checks that the errors of forwarded connections are one line
// each, and that nothing else is written.
func TestLineSink(t *testing.T) {
	var b bytes.Buffer
	log := logr.New(&lineSink{w: &b, prefix: "kubectl-prober: port-forward to nats/nats-0:8889: "})
	log.Info("Handling connection")
	log.V(4).Info("dialing")
	log.Error(errors.New("error forwarding port 8889 to pod abc:\n  connection refused"), "An error occurred forwarding", "localPort", 40000)
	log.Error(nil, "")
	assert.Equal(t, "kubectl-prober: port-forward to nats/nats-0:8889: an error occurred forwarding: error forwarding port 8889 to pod abc: connection refused\n"+
		"kubectl-prober: port-forward to nats/nats-0:8889: <nil>\n", b.String())
}

// TestForwardError checks the one line a failed or lost forward gets.
func TestForwardError(t *testing.T) {
	assert.Equal(t, "the connection to the pod was lost (the pod went away?)", forwardError(portforward.ErrLostConnectionToPod))
	assert.Equal(t, "the connection to the pod was lost (the pod went away?)", forwardError(nil))
	assert.Equal(t, `pods "nats-0" is forbidden: User "bob" cannot create resource "pods/portforward"`,
		forwardError(errors.New("error upgrading connection: pods \"nats-0\" is forbidden:\n User \"bob\" cannot create resource \"pods/portforward\"")))
}

package deploy_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/prober-dev/prober/tools/kubenode"
)

// pluginRun is what one `kubectl prober` printed.
type pluginRun struct {
	code           int
	stdout, stderr string
}

func (r pluginRun) String() string {
	return fmt.Sprintf("exit %d\n--- stdout\n%s--- stderr\n%s", r.code, r.stdout, r.stderr)
}

// buildPlugin builds the prober binary as kubectl-prober into a folder of
// its own, as a user installs it, and returns the folder.
func buildPlugin(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	out, err := runCmd(ctx, "go", "build", "-o", filepath.Join(dir, "kubectl-prober"), "github.com/prober-dev/prober/cmd/prober")
	require.NoError(t, err, "go build: %s", out)
	return dir
}

// kubectlPlugin runs `kubectl prober args...` with the real kubectl, which
// finds kubectl-prober in dir on the PATH, against the node's kubeconfig.
func kubectlPlugin(t *testing.T, n *kubenode.WithDeploy, dir string, timeout time.Duration, args ...string) pluginRun {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	// kubectl takes no flag of its own before a plugin's name: the
	// kubeconfig goes by KUBECONFIG, which the plugin reads as kubectl does.
	cmd := exec.CommandContext(ctx, filepath.Join(n.Bin(), "kubectl"), append([]string{"prober"}, args...)...)
	cmd.Env = append(os.Environ(), "KUBECONFIG="+n.Kubeconfig, "PATH="+dir+string(os.PathListSeparator)+os.Getenv("PATH"))
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	r := pluginRun{stdout: stdout.String(), stderr: stderr.String()}
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		r.code = exit.ExitCode()
	case err != nil:
		t.Fatalf("kubectl prober %s: %v", strings.Join(args, " "), err)
	}
	return r
}

// pluginPods is `kubectl prober status --json`, as the flow reads it.
func pluginPods(t *testing.T, n *kubenode.WithDeploy, dir string) map[string]podView {
	t.Helper()
	r := kubectlPlugin(t, n, dir, time.Minute, "-n", ns, "status", "--json")
	require.Equal(t, 0, r.code, "%s", r)
	var list []podView
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &list), "%s", r.stdout)
	out := map[string]podView{}
	for _, v := range list {
		out[v.Pod] = v
	}
	return out
}

// TestNodePlugin is the kubectl plugin on the real node: kubectl finds
// kubectl-prober on the PATH, which picks a Ready pod of the StatefulSet,
// port-forwards to its API through the API server and the kubelet by
// itself (client-go, no kubectl port-forward) and runs the CLI's commands:
// status, nats-1 into maintenance and back, raft. The forward arrives on
// the pod's loopback interface, so no token is needed and the entry
// records the caller as "loopback". Errors are one line.
func TestNodePlugin(t *testing.T) {
	n := sharedNode(t)
	dir := buildPlugin(t)
	t.Cleanup(func() {
		// Leave the install as found even when a step failed half-way.
		kubectlPlugin(t, n, dir, 4*time.Minute, "-n", ns, "maintenance", "off", "nats-1", "--wait", "3m")
	})
	eventually(t, 2*time.Minute, "no pod in maintenance (earlier tests)", func() (bool, string) {
		for name, v := range pluginPods(t, n, dir) {
			if v.InMaintenance || v.Phase != "Active" {
				return false, name + " " + v.Phase
			}
		}
		return true, ""
	})
	waitAllReady(t, n, ns, selector)

	begin := time.Now()
	r := kubectlPlugin(t, n, dir, time.Minute, "-n", ns, "status")
	figure(t, "kubectl prober status (find a pod, port-forward by itself, GET /raft and /dcs) in %.3fs", time.Since(begin).Seconds())
	require.Equal(t, 0, r.code, "%s", r)
	assert.Empty(t, r.stderr)
	assert.Regexp(t, `(?m)^CLUSTER:\s+3 pods in 1 dc`, r.stdout)
	for _, p := range []string{"nats-0", "nats-1", "nats-2"} {
		assert.Regexp(t, `(?m)^`+p+`\s+\S+\s+\S+\s+\S+\s+Active\s`, r.stdout)
	}

	begin = time.Now()
	r = kubectlPlugin(t, n, dir, 3*time.Minute, "-n", ns, "maintenance", "on", "nats-1", "--reason", "test", "--wait", "2m")
	figure(t, "kubectl prober maintenance on nats-1 --wait: InMaintenance in %.3fs", time.Since(begin).Seconds())
	require.Equal(t, 0, r.code, "%s", r)
	assert.Contains(t, r.stdout, "pod nats-1 is in maintenance")
	assert.Equal(t, "InMaintenance", statusPhase(t, clientset(t, n), ns, cmName, "nats-1"))
	v := pluginPods(t, n, dir)["nats-1"]
	assert.True(t, v.InMaintenance)
	assert.Equal(t, "loopback", v.RequestedBy, "the plugin's forward arrives on the pod's loopback interface: no token")

	t.Run("--pod reaches the fenced pod's API", func(t *testing.T) {
		r := kubectlPlugin(t, n, dir, time.Minute, "-n", ns, "--pod", "nats-1", "raft", "--json")
		require.Equal(t, 0, r.code, "%s", r)
		assert.Contains(t, r.stdout, `"groups"`)
	})

	begin = time.Now()
	r = kubectlPlugin(t, n, dir, 4*time.Minute, "-n", ns, "maintenance", "off", "nats-1", "--wait", "3m")
	figure(t, "kubectl prober maintenance off nats-1 --wait: Active (caught up) in %.3fs", time.Since(begin).Seconds())
	require.Equal(t, 0, r.code, "%s", r)
	assert.Contains(t, r.stdout, "pod nats-1 is back")
	eventually(t, time.Minute, "nats-1 Ready", func() (bool, string) {
		ready := kubectlReady(t, n, ns, "nats-1")
		return ready == "2/2", "READY " + ready
	})

	r = kubectlPlugin(t, n, dir, time.Minute, "-n", ns, "raft")
	require.Equal(t, 0, r.code, "%s", r)
	assert.Contains(t, r.stdout, "NODE")
	assert.Regexp(t, `(?m)^_meta_\s`, r.stdout)

	t.Run("errors are one line", func(t *testing.T) {
		r := kubectlPlugin(t, n, dir, time.Minute, "-n", "nope", "status")
		assert.Equal(t, 1, r.code, "%s", r)
		assert.Equal(t, "kubectl-prober: namespace \"nope\" not found (see -n)\n", r.stderr)
		r = kubectlPlugin(t, n, dir, time.Minute, "-n", ns, "--selector", "app=none", "status")
		assert.Equal(t, 1, r.code, "%s", r)
		assert.Equal(t, "kubectl-prober: no pod matches app=none in namespace \""+ns+"\" (see -n and --selector)\n", r.stderr)
	})
}

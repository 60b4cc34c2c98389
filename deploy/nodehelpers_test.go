package deploy_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/prober-dev/prober/tools/kubenode"
)

// The real node of this package: one start per `go test` run, shared by
// every flow (each leaves the install as it found it: three pods Ready, no
// maintenance), stopped by TestMain.
var (
	nodeOnce sync.Once
	theNode  *kubenode.WithDeploy
	nodeErr  error
	repo     string

	// figures collects the measured times, printed at the end.
	figuresMu sync.Mutex
	figures   []string
)

// EnvReport names a file the node's timings are appended to (make test
// sets it and prints the file: go test shows a passing package's output
// only with -v).
const EnvReport = "PROBER_NODE_REPORT"

func TestMain(m *testing.M) {
	code := m.Run()
	if theNode != nil {
		var rep strings.Builder
		fmt.Fprintf(&rep, "deploy/ on a real node: images built in %.1fs; phases of the node's start:\n", theNode.Images.Took.Seconds())
		for _, p := range theNode.Timings {
			fmt.Fprintf(&rep, "  %-40s %6.1fs\n", p.Name, p.At.Seconds())
		}
		figuresMu.Lock()
		if len(figures) > 0 {
			fmt.Fprintln(&rep, "measured in the flows:")
			for _, f := range figures {
				fmt.Fprintln(&rep, "  "+f)
			}
		}
		figuresMu.Unlock()
		begin := time.Now()
		if err := theNode.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			code = 1
		}
		fmt.Fprintf(&rep, "  node stopped in %.1fs\n", time.Since(begin).Seconds())
		fmt.Print(rep.String())
		if path := os.Getenv(EnvReport); path != "" {
			if f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644); err == nil {
				_, _ = f.WriteString(rep.String())
				_ = f.Close()
			}
		}
	}
	os.Exit(code)
}

// figure records a measured time for the summary.
func figure(t *testing.T, format string, args ...any) {
	s := fmt.Sprintf(format, args...)
	t.Log(s)
	figuresMu.Lock()
	figures = append(figures, t.Name()+": "+s)
	figuresMu.Unlock()
}

// sharedNode returns the package's node with deploy/ installed, starting
// it on first use. Without root the test is skipped and says what was not
// tested.
func sharedNode(t *testing.T) *kubenode.WithDeploy {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("not root: the real-node flows were not tested (deploy/ installed on a real kubelet and containerd, " +
			"port-forward, exec from another pod, newman through a forward, the kernel fence and faults in pods, " +
			"the NATS Helm chart); CI runs them as root")
	}
	nodeOnce.Do(func() {
		repo, nodeErr = kubenode.RepoRoot()
		if nodeErr != nil {
			return
		}
		var bin string
		bin, nodeErr = kubenode.BinDir(repo)
		if nodeErr != nil {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()
		dir, err := os.MkdirTemp("", "kubenode-images-")
		if err != nil {
			nodeErr = err
			return
		}
		defer os.RemoveAll(dir)
		theNode, nodeErr = kubenode.StartWithDeploy(ctx, repo, dir, kubenode.Options{
			Bin:       bin,
			Namespace: kubenode.DeployNamespace,
			Logf:      func(f string, a ...any) { fmt.Printf(f+"\n", a...) },
		})
		if nodeErr == nil {
			fmt.Printf("kubenode: images built in %.1fs; deploy/ Ready %.1fs after kubectl apply\n",
				theNode.Images.Took.Seconds(), theNode.InstallReady.Seconds())
		}
	})
	if nodeErr != nil {
		t.Fatalf("the real node did not start: %v", nodeErr)
	}
	return theNode
}

// clientset is the node's admin clientset.
func clientset(t *testing.T, n *kubenode.WithDeploy) kubernetes.Interface {
	t.Helper()
	cs, err := n.Clientset()
	require.NoError(t, err)
	return cs
}

// eventually polls cond every 100 ms until it holds or timeout passes; it
// fails the test with cond's last word.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var last string
	for {
		var ok bool
		ok, last = cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s (last: %s)", what, timeout, last)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// api talks to a prober's HTTP API.
type api struct {
	base   string
	client *http.Client
}

// do sends a request and returns the status and the body.
func (a api) do(t *testing.T, method, path, body string) (int, []byte) {
	t.Helper()
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, a.base+path, r)
	require.NoError(t, err)
	resp, err := a.client.Do(req)
	require.NoError(t, err, "%s %s", method, path)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, b
}

// json sends a request, requires the status and decodes the body.
func (a api) json(t *testing.T, method, path, body string, want int, into any) {
	t.Helper()
	code, b := a.do(t, method, path, body)
	require.Equal(t, want, code, "%s %s: %s", method, path, b)
	if into != nil {
		require.NoError(t, json.Unmarshal(b, into), "%s", b)
	}
}

// forward runs `kubectl port-forward pod/<pod> <free port>:8889` and
// returns the prober's API behind it.
func forward(t *testing.T, n *kubenode.WithDeploy, ns, pod string) api {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	pf, err := n.PortForward(ctx, ns, "pod/"+pod, 0, 8889)
	require.NoError(t, err)
	t.Cleanup(pf.Close)
	return api{base: "http://" + pf.Local, client: &http.Client{Timeout: 3 * time.Minute}}
}

// podView is what GET /pods/<pod> answers, as the flows read it.
type podView struct {
	Pod           string `json:"pod"`
	InMaintenance bool   `json:"inMaintenance"`
	Phase         string `json:"phase"`
	Message       string `json:"message"`
	RequestedBy   string `json:"requestedBy"`
	Raft          struct {
		Leads   []string `json:"leads"`
		Current bool     `json:"current"`
	} `json:"raft"`
}

// raftView is the part of GET /raft the flows read.
type raftView struct {
	Nodes []struct {
		Name      string   `json:"name"`
		Reachable bool     `json:"reachable"`
		JetStream bool     `json:"jetstream"`
		Routes    []string `json:"routes"`
	} `json:"nodes"`
	LeaderSkew []struct {
		DC      string         `json:"dc"`
		Skew    int            `json:"skew"`
		Leaders map[string]int `json:"leaders"`
	} `json:"leaderSkew"`
	Findings []struct {
		Cause    string   `json:"cause"`
		Summary  string   `json:"summary"`
		Nodes    []string `json:"nodes"`
		Evidence []string `json:"evidence"`
		Remedy   []string `json:"remedy"`
	} `json:"findings"`
}

// pod returns a pod.
func pod(t *testing.T, cs kubernetes.Interface, ns, name string) *corev1.Pod {
	t.Helper()
	p, err := cs.CoreV1().Pods(ns).Get(context.Background(), name, metav1.GetOptions{})
	require.NoError(t, err)
	return p
}

// podIP returns a pod's IP.
func podIP(t *testing.T, cs kubernetes.Interface, ns, name string) string {
	t.Helper()
	ip := pod(t, cs, ns, name).Status.PodIP
	require.NotEmpty(t, ip, "pod %s has an IP", name)
	return ip
}

// routesOf returns the names of the servers a NATS pod has routes to,
// read from its monitoring endpoint, reached from inside the node.
func routesOf(t *testing.T, n *kubenode.WithDeploy, ip string) ([]string, error) {
	t.Helper()
	resp, err := n.HTTPClient(5 * time.Second).Get("http://" + ip + ":8222/routez")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var rz struct {
		Routes []struct {
			RemoteName string `json:"remote_name"`
		} `json:"routes"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&rz); err != nil {
		return nil, err
	}
	var out []string
	for _, r := range rz.Routes {
		if !slices.Contains(out, r.RemoteName) {
			out = append(out, r.RemoteName)
		}
	}
	sort.Strings(out)
	return out, nil
}

// nftTables lists the nftables tables of a network namespace ("" for the
// host's) through nsenter.
func nftTables(t *testing.T, netns string) string {
	t.Helper()
	args := []string{"nft", "list", "tables"}
	if netns != "" {
		args = append([]string{"nsenter", "--net=" + netns, "--"}, args...)
	}
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	require.NoError(t, err, "%s", out)
	return string(out)
}

// containerNetNS returns the network namespace of a container's process.
func containerNetNS(t *testing.T, n *kubenode.WithDeploy, ns, podName, container string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	pid, err := n.ContainerPID(ctx, ns, podName, container)
	require.NoError(t, err)
	return fmt.Sprintf("/proc/%d/ns/net", pid)
}

// kubectlReady returns the READY column of `kubectl get pods` for a pod,
// as a user sees it.
func kubectlReady(t *testing.T, n *kubenode.WithDeploy, ns, podName string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := n.Kubectl(ctx, "-n", ns, "get", "pods", podName, "--no-headers")
	require.NoError(t, err)
	f := strings.Fields(string(out))
	require.GreaterOrEqual(t, len(f), 2, "%s", out)
	return f[1]
}

// statusPhase returns the phase in the maintenance ConfigMap's
// status.<pod>, "" when there is none.
func statusPhase(t *testing.T, cs kubernetes.Interface, ns, cm, podName string) string {
	t.Helper()
	c, err := cs.CoreV1().ConfigMaps(ns).Get(context.Background(), cm, metav1.GetOptions{})
	require.NoError(t, err)
	raw, ok := c.Data["status."+podName]
	if !ok {
		return ""
	}
	var st struct {
		Phase string `json:"phase"`
	}
	require.NoError(t, json.Unmarshal([]byte(raw), &st))
	return st.Phase
}

// waitAllReady waits until the install's pods are all Ready again.
func waitAllReady(t *testing.T, n *kubenode.WithDeploy, ns, selector string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	require.NoError(t, kubenode.WaitPodsReady(ctx, clientset(t, n), ns, selector, kubenode.DeployReplicas))
}

// podLogs returns every container's log of the pods of a namespace.
func podLogs(t *testing.T, n *kubenode.WithDeploy, ns string) map[string][]byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cs := clientset(t, n)
	pods, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
	require.NoError(t, err)
	out := map[string][]byte{}
	for _, p := range pods.Items {
		for _, c := range append(append([]corev1.Container(nil), p.Spec.InitContainers...), p.Spec.Containers...) {
			for _, previous := range []bool{false, true} {
				b, err := cs.CoreV1().Pods(ns).GetLogs(p.Name, &corev1.PodLogOptions{Container: c.Name, Previous: previous}).DoRaw(ctx)
				if err != nil {
					continue // no previous instance
				}
				key := p.Name + "/" + c.Name
				if previous {
					key += " (previous)"
				}
				out[key] = b
			}
		}
	}
	return out
}

// kubectlExec runs a command in a container and returns its output.
func kubectlExec(t *testing.T, n *kubenode.WithDeploy, ns, podName string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := n.Kubectl(ctx, append([]string{"-n", ns, "exec", podName, "--"}, args...)...)
	return string(out), err
}

// clientPod runs a podclient pod with the given ServiceAccount ("" for
// default) and deletes it when the test ends.
func clientPod(t *testing.T, n *kubenode.WithDeploy, ns, name, sa string) {
	t.Helper()
	cs := clientset(t, n)
	ctx := context.Background()
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"app": name}},
		Spec: corev1.PodSpec{
			ServiceAccountName:            sa,
			TerminationGracePeriodSeconds: new(int64),
			Containers: []corev1.Container{{
				Name: "client", Image: n.Images.Refs["podclient"], ImagePullPolicy: corev1.PullNever,
			}},
		},
	}
	_, err := cs.CoreV1().Pods(ns).Create(ctx, p, metav1.CreateOptions{})
	require.NoError(t, err)
	t.Cleanup(func() {
		_ = cs.CoreV1().Pods(ns).Delete(context.Background(), name, metav1.DeleteOptions{GracePeriodSeconds: new(int64)})
	})
	wctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	require.NoError(t, kubenode.WaitPodsReady(wctx, cs, ns, "app="+name, 1))
}

// httpLine splits podclient http's output: "HTTP <code>" and the body.
func httpLine(t *testing.T, out string) (int, string) {
	t.Helper()
	first, body, _ := strings.Cut(out, "\n")
	var code int
	_, err := fmt.Sscanf(first, "HTTP %d", &code)
	require.NoError(t, err, "podclient output %q", out)
	return code, strings.TrimSpace(body)
}

// helmBin returns the helm binary of the node's binaries.
func helmBin(n *kubenode.WithDeploy) string { return filepath.Join(n.Bin(), "helm") }

// runCmd runs a command and returns its combined output.
func runCmd(ctx context.Context, name string, args ...string) ([]byte, error) {
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.Bytes(), err
}

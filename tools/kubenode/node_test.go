package kubenode

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/prober-dev/prober/tools/images"
)

// envHelper makes the test binary a node owner that the test kills.
const envHelper = "KUBENODE_TEST_HELPER"

func TestMain(m *testing.M) {
	if name := os.Getenv(envHelper); name != "" {
		os.Exit(helper(name))
	}
	os.Exit(m.Run())
}

// helper starts a node named name with a pod running, prints READY and
// waits to be killed, as a test binary killed by its timeout would be.
func helper(name string) int {
	ctx := context.Background()
	archive := os.Getenv(envHelper + "_IMAGES")
	n, err := Start(ctx, Options{Name: name, Bin: os.Getenv(EnvBin), Images: []string{archive}, SandboxImage: images.PauseRef})
	if err != nil {
		fmt.Println("ERROR", err)
		return 1
	}
	if err := runClientPod(ctx, n, "default", "victim"); err != nil {
		fmt.Println("ERROR", err)
		return 1
	}
	fmt.Println("READY")
	select {}
}

// requireNode skips without root and fails without binaries when they
// are required (make test sets PROBER_KUBEENV_REQUIRED).
func requireNode(t *testing.T) (bin, root string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("not root: the real node (network and mount namespaces, cgroups, containerd) was not started or tested; CI runs it as root")
	}
	root, err := RepoRoot()
	require.NoError(t, err)
	bin, err = BinDir(root)
	if err != nil {
		if os.Getenv("PROBER_KUBEENV_REQUIRED") != "" || os.Getenv("CI") != "" {
			t.Fatalf("no Kubernetes binaries: %v", err)
		}
		t.Skipf("no Kubernetes binaries (set %s): %v", EnvBin, err)
	}
	if err := lookTools(); err != nil {
		t.Fatalf("host packages missing (make deps installs them): %v", err)
	}
	return bin, root
}

// runClientPod runs podclient's idle pod and waits until it runs.
func runClientPod(ctx context.Context, n *Node, ns, name string) error {
	cs, err := n.Clientset()
	if err != nil {
		return err
	}
	_, err = cs.CoreV1().Pods(ns).Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"app": name}},
		Spec: corev1.PodSpec{
			TerminationGracePeriodSeconds: new(int64),
			Containers: []corev1.Container{{
				Name: "client", Image: images.ClientRef, ImagePullPolicy: corev1.PullNever,
			}},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		return err
	}
	wctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	return WaitPodsReady(wctx, cs, ns, "app="+name, 1)
}

// hostState is what a node could leave behind on the host, and must not:
// nftables tables, its bridge and veth interfaces, mounts of its paths,
// the folders the kubelet and containerd insist on, the kernel settings the
// kubelet wants. (Other tests of the machine create network namespaces of
// their own meanwhile; only what could be the node's is compared.)
type hostState struct {
	nftTables string
	links     string
	mounts    string
	varLib    bool
	runCtrd   bool
	sysctls   string
}

func readHostState(t *testing.T) hostState {
	t.Helper()
	nft, err := exec.Command(hostTools.nft, "list", "tables").CombinedOutput()
	require.NoError(t, err, "%s", nft)
	links, err := exec.Command(hostTools.ip, "-o", "link", "show").CombinedOutput()
	require.NoError(t, err, "%s", links)
	var names []string
	for _, l := range strings.Split(strings.TrimSpace(string(links)), "\n") {
		if f := strings.Fields(l); len(f) > 1 {
			name, _, _ := strings.Cut(strings.TrimSuffix(f[1], ":"), "@")
			if name == bridge || strings.HasPrefix(name, "veth") {
				names = append(names, name)
			}
		}
	}
	mi, err := os.ReadFile("/proc/self/mountinfo")
	require.NoError(t, err)
	var mounts []string
	for _, l := range strings.Split(string(mi), "\n") {
		for _, mark := range []string{"kubelet", "containerd", "kubenode", "/var/lib ", "/run "} {
			if strings.Contains(l, mark) {
				mounts = append(mounts, l)
				break
			}
		}
	}
	var sysctls []string
	for _, k := range slices.Sorted(maps.Keys(kernelDefaults)) {
		b, err := os.ReadFile("/proc/sys/" + k)
		require.NoError(t, err)
		sysctls = append(sysctls, k+"="+strings.TrimSpace(string(b)))
	}
	_, errVL := os.Stat("/var/lib/kubelet")
	_, errRC := os.Stat("/run/containerd")
	return hostState{
		nftTables: string(nft),
		links:     strings.Join(names, " "),
		mounts:    strings.Join(mounts, "\n"),
		varLib:    errVL == nil,
		runCtrd:   errRC == nil,
		sysctls:   strings.Join(sysctls, " "),
	}
}

// assertGone checks that nothing of the named node is left: no cgroup, no
// process, no state folder.
func assertGone(t *testing.T, base, name string) {
	t.Helper()
	names, err := cgroupNames()
	require.NoError(t, err)
	assert.NotContains(t, names, name, "cgroups of %s left", name)
	pids, err := cgroupPIDs(name)
	require.NoError(t, err)
	assert.Empty(t, pids, "processes of %s left", name)
	_, err = os.Stat(filepath.Join(base, cgroupPrefix+name))
	assert.True(t, errors.Is(err, fs.ErrNotExist), "state folder of %s left: %v", name, err)
}

// TestNode starts a node whose owner is killed, then a node of its own
// (which cleans up after the first), runs a pod with storage on it, checks
// that the node lives in its own namespaces, and stops it: nothing of
// either is left on the host.
func TestNode(t *testing.T) {
	bin, root := requireNode(t)
	before := readHostState(t)
	base := os.TempDir()
	set, err := images.Build(context.Background(), images.Options{RepoRoot: root, Dir: t.TempDir(), Logf: t.Logf})
	require.NoError(t, err)

	// A node whose owner dies without stopping it, with a pod running: its
	// shims and containers outlive the owner.
	dead := fmt.Sprintf("t%d-killed", os.Getpid())
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), envHelper+"="+dead, envHelper+"_IMAGES="+set.Archive, EnvBin+"="+bin)
	out, err := cmd.StdoutPipe()
	require.NoError(t, err)
	cmd.Stderr = os.Stderr
	require.NoError(t, cmd.Start())
	sc := bufio.NewScanner(out)
	var line string
	for sc.Scan() {
		line = sc.Text()
		if line == "READY" || strings.HasPrefix(line, "ERROR") {
			break
		}
	}
	require.Equal(t, "READY", line, "the helper's node did not start")
	require.NoError(t, cmd.Process.Kill())
	_ = cmd.Wait()
	left, err := cgroupPIDs(dead)
	require.NoError(t, err)
	require.NotEmpty(t, left, "the killed owner's pod outlives it (its shim and containers)")
	t.Logf("killed the owner of node %s: %d processes left behind", dead, len(left))

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	n, err := Start(ctx, Options{Bin: bin, Images: []string{set.Archive}, SandboxImage: set.Refs["pause"], Logf: t.Logf})
	require.NoError(t, err)
	stopped := false
	defer func() {
		if !stopped {
			assert.NoError(t, n.Stop())
		}
	}()
	t.Run("the next start cleans up after the killed owner", func(t *testing.T) {
		assertGone(t, base, dead)
	})

	cs, err := n.Clientset()
	require.NoError(t, err)

	t.Run("a pod runs, kubectl exec reaches it", func(t *testing.T) {
		require.NoError(t, runClientPod(ctx, n, "default", "client"))
		out, err := n.Kubectl(ctx, "exec", "client", "--", "/podclient", "cat", "/etc/hostname")
		require.NoError(t, err)
		assert.Equal(t, "client", strings.TrimSpace(string(out)))
	})

	t.Run("a claim gets a local volume, removed with the claim", func(t *testing.T) {
		testStorage(ctx, t, cs)
	})

	t.Run("the node's network lives in its own namespace", func(t *testing.T) {
		during := readHostState(t)
		assert.Equal(t, before.nftTables, during.nftTables, "the host's nftables tables are untouched")
		assert.Equal(t, before.links, during.links, "no interface on the host (no cni0, no veth)")
		assert.Equal(t, before.mounts, during.mounts, "no mount on the host")
		assert.Equal(t, before.varLib, during.varLib, "/var/lib/kubelet is the node's own")
		assert.Equal(t, before.runCtrd, during.runCtrd, "/run/containerd is the node's own")
		inside, err := n.inNode(ctx, hostTools.nft, "list", "tables")
		require.NoError(t, err)
		assert.Contains(t, string(inside), "table ip kube-proxy", "kube-proxy's table is in the node")
		links, err := n.inNode(ctx, hostTools.ip, "-br", "addr", "show", "dev", bridge)
		require.NoError(t, err)
		assert.Contains(t, string(links), NodeIP+"/24")
		// The kubelet checked its own copies of these (protectKernelDefaults).
		assert.Equal(t, before.sysctls, during.sysctls, "the host's kernel settings are its own")
	})

	t.Run("no process of the node is in the host's network namespace", func(t *testing.T) {
		// Only the API server is published, by this process on loopback.
		assert.True(t, strings.HasPrefix(n.APIServer, "https://127.0.0.1:"), n.APIServer)
		host, err := os.Readlink("/proc/self/ns/net")
		require.NoError(t, err)
		pids, err := cgroupPIDs(n.Name)
		require.NoError(t, err)
		require.NotEmpty(t, pids)
		for _, pid := range pids {
			ns, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/net", pid))
			if err != nil {
				continue // exited meanwhile
			}
			comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
			assert.NotEqual(t, host, ns, "pid %d (%s) is in the host's network namespace", pid, strings.TrimSpace(string(comm)))
		}
	})

	stopped = true
	begin := time.Now()
	require.NoError(t, n.Stop())
	report(t, n, time.Since(begin))
	assertGone(t, base, n.Name)
	after := readHostState(t)
	assert.Equal(t, before, after, "the host is as it was")
}

// report appends the node's phases to $PROBER_NODE_REPORT (make test
// prints it) and logs them.
func report(t *testing.T, n *Node, stop time.Duration) {
	var b strings.Builder
	fmt.Fprintln(&b, "tools/kubenode: phases of the node's start:")
	for _, p := range n.Timings {
		fmt.Fprintf(&b, "  %-40s %6.1fs\n", p.Name, p.At.Seconds())
	}
	fmt.Fprintf(&b, "  node stopped in %.1fs\n", stop.Seconds())
	t.Log(b.String())
	if path := os.Getenv("PROBER_NODE_REPORT"); path != "" {
		if f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644); err == nil {
			_, _ = f.WriteString(b.String())
			_ = f.Close()
		}
	}
}

// testStorage claims a volume of the default class, sees it bound to a
// local volume in the node's state folder, and deletes the claim.
func testStorage(ctx context.Context, t *testing.T, cs kubernetes.Interface) {
	pvc, err := cs.CoreV1().PersistentVolumeClaims("default").Create(ctx, &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Name: "data"},
		Spec: corev1.PersistentVolumeClaimSpec{
			AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			Resources:   corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")}},
		},
	}, metav1.CreateOptions{})
	require.NoError(t, err)
	require.NotNil(t, pvc.Spec.StorageClassName, "the default class is set on the claim")
	assert.Equal(t, StorageClass, *pvc.Spec.StorageClassName)
	var pvName string
	require.Eventually(t, func() bool {
		got, err := cs.CoreV1().PersistentVolumeClaims("default").Get(ctx, "data", metav1.GetOptions{})
		if err != nil || got.Status.Phase != corev1.ClaimBound {
			return false
		}
		pvName = got.Spec.VolumeName
		return true
	}, time.Minute, 100*time.Millisecond, "the claim is bound")
	pv, err := cs.CoreV1().PersistentVolumes().Get(ctx, pvName, metav1.GetOptions{})
	require.NoError(t, err)
	require.NotNil(t, pv.Spec.Local)
	_, err = os.Stat(pv.Spec.Local.Path)
	require.NoError(t, err, "the volume's folder exists")
	require.NoError(t, cs.CoreV1().PersistentVolumeClaims("default").Delete(ctx, "data", metav1.DeleteOptions{}))
	require.Eventually(t, func() bool {
		_, err := cs.CoreV1().PersistentVolumes().Get(ctx, pvName, metav1.GetOptions{})
		_, serr := os.Stat(pv.Spec.Local.Path)
		return err != nil && errors.Is(serr, fs.ErrNotExist)
	}, time.Minute, 100*time.Millisecond, "the released volume and its folder are deleted")
}

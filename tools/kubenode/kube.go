package kubenode

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// KubectlCmd returns a kubectl command against the node (the host
// kubeconfig, as a user's shell would run it).
func (n *Node) KubectlCmd(ctx context.Context, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, filepath.Join(n.o.Bin, "kubectl"), append([]string{"--kubeconfig=" + n.Kubeconfig}, args...)...)
	cmd.Env = append(os.Environ(), "KUBECONFIG="+n.Kubeconfig)
	return cmd
}

// Kubectl runs kubectl and returns its standard output; the error carries
// its standard error.
func (n *Node) Kubectl(ctx context.Context, args ...string) ([]byte, error) {
	cmd := n.KubectlCmd(ctx, args...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return out, fmt.Errorf("kubectl %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return out, nil
}

// Bin returns the folder of the Kubernetes binaries (kubectl, helm).
func (n *Node) Bin() string { return n.o.Bin }

// PortForward is a running `kubectl port-forward`.
type PortForward struct {
	// Local is the host address the forward listens on, 127.0.0.1:<port>.
	Local string
	cmd   *exec.Cmd
	done  chan struct{}
}

// PortForward runs `kubectl port-forward <target> <local>:<remote>` with
// the real kubectl (on a free local port when local is 0) and returns once
// it forwards.
func (n *Node) PortForward(ctx context.Context, namespace, target string, local, remote int) (*PortForward, error) {
	if local == 0 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		local = ln.Addr().(*net.TCPAddr).Port
		_ = ln.Close()
	}
	cmd := n.KubectlCmd(context.Background(), "-n", namespace, "port-forward", "--address=127.0.0.1", target,
		fmt.Sprintf("%d:%d", local, remote))
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	pf := &PortForward{Local: net.JoinHostPort("127.0.0.1", strconv.Itoa(local)), cmd: cmd, done: make(chan struct{})}
	ready := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(out)
		once := false
		for sc.Scan() {
			// "Forwarding from 127.0.0.1:<port> -> <remote>"
			if !once && strings.HasPrefix(sc.Text(), "Forwarding from") {
				once = true
				close(ready)
			}
		}
		_, _ = io.Copy(io.Discard, out)
	}()
	go func() {
		_ = cmd.Wait()
		close(pf.done)
	}()
	select {
	case <-ready:
		return pf, nil
	case <-pf.done:
		return nil, fmt.Errorf("kubectl port-forward %s: exited: %s", target, strings.TrimSpace(stderr.String()))
	case <-ctx.Done():
		pf.Close()
		return nil, fmt.Errorf("kubectl port-forward %s: %w", target, ctx.Err())
	}
}

// Done is closed when the forward's kubectl has exited (the pod went away).
func (pf *PortForward) Done() <-chan struct{} { return pf.done }

// Close stops the forward.
func (pf *PortForward) Close() {
	_ = pf.cmd.Process.Kill()
	<-pf.done
}

// WaitPodsReady waits until count pods match the selector in the namespace
// and are all Ready.
func WaitPodsReady(ctx context.Context, cs kubernetes.Interface, namespace, selector string, count int) error {
	var last string
	for {
		l, err := cs.CoreV1().Pods(namespace).List(ctx, metav1.ListOptions{LabelSelector: selector})
		if err == nil {
			ready := 0
			var states []string
			for i := range l.Items {
				if PodReady(&l.Items[i]) && l.Items[i].DeletionTimestamp == nil {
					ready++
				}
				states = append(states, l.Items[i].Name+"="+podState(&l.Items[i]))
			}
			if ready == count && len(l.Items) == count {
				return nil
			}
			last = strings.Join(states, " ")
		} else {
			last = err.Error()
		}
		t := time.NewTimer(200 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("%d pods %s Ready in %s: %w (last: %s)", count, selector, namespace, ctx.Err(), last)
		case <-t.C:
		}
	}
}

// PodReady reports the pod's Ready condition.
func PodReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// podState summarises a pod for error messages.
func podState(p *corev1.Pod) string {
	s := string(p.Status.Phase)
	if PodReady(p) {
		s += "/Ready"
	}
	for _, cs := range append(append([]corev1.ContainerStatus(nil), p.Status.InitContainerStatuses...), p.Status.ContainerStatuses...) {
		switch {
		case cs.State.Waiting != nil:
			s += fmt.Sprintf(" %s:%s", cs.Name, cs.State.Waiting.Reason)
		case cs.State.Terminated != nil:
			s += fmt.Sprintf(" %s:%s", cs.Name, cs.State.Terminated.Reason)
		case cs.Ready:
			s += " " + cs.Name + ":ready"
		}
	}
	return s
}

// ContainerPID returns the host pid of a container's main process, found
// by its cgroup (the container id ends the path of every cgroup it is in).
func (n *Node) ContainerPID(ctx context.Context, namespace, pod, container string) (int, error) {
	cs, err := n.Clientset()
	if err != nil {
		return 0, err
	}
	p, err := cs.CoreV1().Pods(namespace).Get(ctx, pod, metav1.GetOptions{})
	if err != nil {
		return 0, err
	}
	var id string
	for _, st := range append(append([]corev1.ContainerStatus(nil), p.Status.InitContainerStatuses...), p.Status.ContainerStatuses...) {
		if st.Name == container && st.State.Running != nil {
			_, id, _ = strings.Cut(st.ContainerID, "://")
		}
	}
	if id == "" {
		return 0, fmt.Errorf("container %s of %s/%s is not running", container, namespace, pod)
	}
	out, err := n.Ctr(ctx, "tasks", "ls")
	if err != nil {
		return 0, err
	}
	// TASK  PID  STATUS
	for _, l := range strings.Split(string(out), "\n") {
		f := strings.Fields(l)
		if len(f) >= 3 && f[0] == id {
			pid, err := strconv.Atoi(f[1])
			if err != nil {
				return 0, fmt.Errorf("ctr tasks ls: %q: %w", l, err)
			}
			return pid, nil
		}
	}
	return 0, fmt.Errorf("no task %s for container %s of %s/%s", id, container, namespace, pod)
}

// ApplyKustomize runs `kubectl apply -k dir`.
func (n *Node) ApplyKustomize(ctx context.Context, dir string) ([]byte, error) {
	return n.Kubectl(ctx, "apply", "-k", dir)
}

// Install applies the kustomization dir into namespace (creating it) and
// waits until count pods matching selector are Ready; it returns how long
// that took from the apply.
func (n *Node) Install(ctx context.Context, dir, namespace, selector string, count int) (time.Duration, error) {
	cs, err := n.Clientset()
	if err != nil {
		return 0, err
	}
	if err := ensureNamespace(ctx, cs, namespace); err != nil {
		return 0, err
	}
	begin := time.Now()
	if out, err := n.ApplyKustomize(ctx, dir); err != nil {
		return 0, fmt.Errorf("%w\n%s", err, out)
	}
	if err := WaitPodsReady(ctx, cs, namespace, selector, count); err != nil {
		return 0, errors.Join(err, n.describePods(namespace, selector))
	}
	return time.Since(begin), nil
}

// describePods returns the pods' state and recent events, for a failed
// wait.
func (n *Node) describePods(namespace, selector string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out, _ := n.Kubectl(ctx, "-n", namespace, "get", "pods,pvc", "-o", "wide")
	ev, _ := n.Kubectl(ctx, "-n", namespace, "get", "events", "--sort-by=.lastTimestamp")
	lines := strings.Split(strings.TrimSpace(string(ev)), "\n")
	if len(lines) > 30 {
		lines = lines[len(lines)-30:]
	}
	return fmt.Errorf("pods:\n%s\nevents:\n%s", out, strings.Join(lines, "\n"))
}

// EnsureNamespace creates the namespace if it is missing.
func (n *Node) EnsureNamespace(ctx context.Context, name string) error {
	cs, err := n.Clientset()
	if err != nil {
		return err
	}
	return ensureNamespace(ctx, cs, name)
}

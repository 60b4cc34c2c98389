// Package nodebench holds what the benchmarks on a real node
// (tools/kubenode with deploy/ installed) share: the node's start and stop,
// a NATS connection to it from the host, and a publisher in a pod
// (`podclient publish` through `kubectl exec`, read as its event lines)
// with the count of its acknowledged messages missing from the stream.
package nodebench

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/prober-dev/prober/tools/kubenode"
)

// Namespace is deploy/'s, where the NATS pods and the client pod run.
const Namespace = kubenode.DeployNamespace

// Pods are deploy/'s NATS pods.
var Pods = []string{"nats-0", "nats-1", "nats-2"}

// StartNode starts a real node named name plus this process's id, with
// deploy/ installed from images built in a temporary folder, for a run of
// timeout at most: ctx ends with it. stop stops the node, reporting a
// failure on standard error as prog's, removes the folder and ends ctx.
func StartNode(prog, name string, timeout time.Duration) (ctx context.Context, n *kubenode.WithDeploy, stop func(), err error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	fail := func(err error) (context.Context, *kubenode.WithDeploy, func(), error) {
		cancel()
		return nil, nil, nil, err
	}
	root, err := kubenode.RepoRoot()
	if err != nil {
		return fail(err)
	}
	bin, err := kubenode.BinDir(root)
	if err != nil {
		return fail(err)
	}
	imgs, err := os.MkdirTemp("", prog+"-images-")
	if err != nil {
		return fail(err)
	}
	n, err = kubenode.StartWithDeploy(ctx, root, imgs, kubenode.Options{Name: name + strconv.Itoa(os.Getpid()), Bin: bin, Namespace: Namespace})
	if err != nil {
		os.RemoveAll(imgs)
		return fail(err)
	}
	return ctx, n, func() {
		if err := n.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, prog+":", err)
		}
		os.RemoveAll(imgs)
		cancel()
	}, nil
}

// Env is what a benchmark works with once the node is up.
type Env struct {
	CS kubernetes.Interface
	NC *nats.Conn
	JS nats.JetStreamContext
}

// Open takes the node's clientset, connects to the NATS pods' addresses
// through the node's network namespace (opts are added to the
// connection's), creates the R3 file stream (duplicate window 10 minutes)
// on subjects and runs the client pod. Close e.NC when done.
func Open(ctx context.Context, n *kubenode.WithDeploy, stream, subjects string, opts ...nats.Option) (e *Env, err error) {
	e = &Env{}
	if e.CS, err = n.Clientset(); err != nil {
		return nil, err
	}
	var urls []string
	for _, p := range Pods {
		ip, err := PodIP(ctx, e.CS, p)
		if err != nil {
			return nil, err
		}
		urls = append(urls, "nats://"+ip+":4222")
	}
	opts = append([]nats.Option{nats.UserInfo(AppUser, AppPassword), nats.SetCustomDialer(n),
		nats.MaxReconnects(-1), nats.ReconnectWait(100 * time.Millisecond)}, opts...)
	if e.NC, err = nats.Connect(strings.Join(urls, ","), opts...); err != nil {
		return nil, err
	}
	if e.JS, err = e.NC.JetStream(nats.MaxWait(10 * time.Second)); err != nil {
		e.NC.Close()
		return nil, err
	}
	if _, err := e.JS.AddStream(&nats.StreamConfig{Name: stream, Subjects: []string{subjects}, Replicas: 3,
		Storage: nats.FileStorage, Duplicates: 10 * time.Minute}); err != nil {
		e.NC.Close()
		return nil, fmt.Errorf("stream: %w", err)
	}
	if err := ClientPod(ctx, e.CS, n.Images.Refs["podclient"]); err != nil {
		e.NC.Close()
		return nil, err
	}
	return e, nil
}

// PodIP returns the IP of a pod of the namespace, an error while it has
// none.
func PodIP(ctx context.Context, cs kubernetes.Interface, name string) (string, error) {
	p, err := cs.CoreV1().Pods(Namespace).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return "", err
	}
	if p.Status.PodIP == "" {
		return "", fmt.Errorf("pod %s has no IP", name)
	}
	return p.Status.PodIP, nil
}

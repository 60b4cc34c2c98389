// Command kubenode runs the real single-node Kubernetes of tools/kubenode
// with deploy/ installed, for a person at a shell (`make node`,
// `make node-down`).
//
//	kubenode up      start the node in the background and wait until the 3 NATS pods are Ready;
//	                 print how to reach it (the kubeconfig, the port-forward, a first curl)
//	kubenode down    stop it, and remove whatever a killed run left behind
//	kubenode run     the node in the foreground, until SIGINT or SIGTERM (what "up" starts)
//
// Flags: -name (default "node"), -cache (where the images, the binary's log
// and the state of "up" go; default .cache/kubenode of the repository).
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/prober-dev/prober/tools/kubenode"
)

// readyMarker starts the line "run" logs once the node is up; "up" waits
// for it.
const readyMarker = "KUBENODE READY "

// info is what "run" reports once ready.
type info struct {
	Name       string  `json:"name"`
	Kubeconfig string  `json:"kubeconfig"`
	APIServer  string  `json:"apiServer"`
	Kubectl    string  `json:"kubectl"`
	NodeReady  float64 `json:"nodeReady"`
	Install    float64 `json:"installReady"`
	Pid        int     `json:"pid"`
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprintln(stderr, "usage: kubenode up|down|run [-name NAME] [-cache DIR]")
		return 2
	}
	fs := flag.NewFlagSet("kubenode "+args[0], flag.ContinueOnError)
	fs.SetOutput(stderr)
	name := fs.String("name", "node", "the node's name on this machine")
	cache := fs.String("cache", "", "folder for the images and the log (default: .cache/kubenode of the repository)")
	if err := fs.Parse(args[1:]); err != nil {
		return 2
	}
	root, err := kubenode.RepoRoot()
	if err != nil {
		fmt.Fprintln(stderr, "kubenode:", err)
		return 1
	}
	if *cache == "" {
		*cache = filepath.Join(root, ".cache", "kubenode")
	}
	if os.Geteuid() != 0 {
		fmt.Fprintln(stderr, "kubenode: needs root (network and mount namespaces, cgroups, containerd)")
		return 1
	}
	switch args[0] {
	case "up":
		return up(*name, *cache, stdout, stderr)
	case "down":
		return down(*name, stdout, stderr)
	case "run":
		return foreground(root, *name, *cache, stdout)
	default:
		fmt.Fprintf(stderr, "kubenode: unknown command %q\n", args[0])
		return 2
	}
}

// up starts "run" detached from the terminal, follows its log until it is
// ready (or dies) and prints how to reach the node.
func up(name, cache string, stdout, stderr io.Writer) int {
	if pid, alive := kubenode.Owner("", name); alive {
		fmt.Fprintf(stderr, "kubenode: node %q is already running (pid %d); stop it with make node-down\n", name, pid)
		return 1
	}
	if err := os.MkdirAll(cache, 0o755); err != nil {
		fmt.Fprintln(stderr, "kubenode:", err)
		return 1
	}
	logPath := filepath.Join(cache, name+".log")
	logf, err := os.Create(logPath)
	if err != nil {
		fmt.Fprintln(stderr, "kubenode:", err)
		return 1
	}
	self, err := os.Executable()
	if err != nil {
		fmt.Fprintln(stderr, "kubenode:", err)
		return 1
	}
	cmd := exec.Command(self, "run", "-name", name, "-cache", cache)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		fmt.Fprintln(stderr, "kubenode:", err)
		return 1
	}
	_ = logf.Close()
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	fmt.Fprintf(stdout, "kubenode: starting node %q (pid %d, log %s)\n", name, cmd.Process.Pid, logPath)

	f, err := os.Open(logPath)
	if err != nil {
		fmt.Fprintln(stderr, "kubenode:", err)
		return 1
	}
	defer f.Close()
	r := bufio.NewReader(f)
	var partial string
	for {
		line, err := r.ReadString('\n')
		partial += line
		if err == nil {
			if rest, ok := strings.CutPrefix(partial, readyMarker); ok {
				var i info
				if err := json.Unmarshal([]byte(rest), &i); err != nil {
					fmt.Fprintln(stderr, "kubenode:", err)
					return 1
				}
				printInfo(stdout, i)
				return 0
			}
			fmt.Fprint(stdout, "  ", partial)
			partial = ""
			continue
		}
		select {
		case err := <-exited:
			// Print what is left of the log.
			rest, _ := io.ReadAll(r)
			fmt.Fprint(stdout, partial, string(rest))
			fmt.Fprintf(stderr, "kubenode: the node did not start (%v); log: %s\n", err, logPath)
			return 1
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func printInfo(w io.Writer, i info) {
	fmt.Fprintf(w, `
The node is up: deploy/ is installed in the namespace %[1]s, its 3 NATS pods are Ready
(node Ready after %.1fs, the install Ready %.1fs after kubectl apply).
The API server is published at %[4]s; the kubeconfig's default namespace is %[1]s.

export KUBECONFIG=%[5]s
  kubectl get pods -o wide
  kubectl port-forward pod/nats-0 8889 &          # the prober of nats-0 on localhost:8889
  curl -s localhost:8889/pods/nats-1
  curl -s -X PUT 'localhost:8889/pods/nats-1?wait=60s' -d '{"reason":"kernel upgrade"}'
  curl -s -X DELETE 'localhost:8889/pods/nats-1?wait=120s'

kubectl is %[6]s
Stop it with: make node-down
`, kubenode.DeployNamespace, i.NodeReady, i.Install, i.APIServer, i.Kubeconfig, i.Kubectl)
}

// foreground starts the node with deploy/ installed, reports it ready and
// runs until SIGINT or SIGTERM, then stops it.
func foreground(root, name, cache string, stdout io.Writer) int {
	logf := func(format string, args ...any) {
		fmt.Fprintf(stdout, "%s "+format+"\n", append([]any{time.Now().Format("15:04:05.000")}, args...)...)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	bin, err := kubenode.BinDir(root)
	if err != nil {
		logf("kubenode: %v", err)
		return 1
	}
	n, err := kubenode.StartWithDeploy(ctx, root, filepath.Join(cache, "images"), kubenode.Options{
		Name:      name,
		Bin:       bin,
		Namespace: kubenode.DeployNamespace,
		Logf:      logf,
	})
	if err != nil {
		logf("kubenode: %v", err)
		return 1
	}
	i := info{Name: name, Kubeconfig: n.Kubeconfig, APIServer: n.APIServer, Kubectl: filepath.Join(bin, "kubectl"),
		Install: n.InstallReady.Seconds(), Pid: os.Getpid()}
	for _, p := range n.Timings {
		if p.Name == "node Ready" {
			i.NodeReady = p.At.Seconds()
		}
	}
	b, _ := json.Marshal(i)
	fmt.Fprintf(stdout, "%s%s\n", readyMarker, b)
	<-ctx.Done()
	logf("kubenode: stopping")
	if err := n.Stop(); err != nil {
		logf("kubenode: %v", err)
		return 1
	}
	return 0
}

// down stops the node's process and waits for it, then removes whatever is
// left (everything, when that process was killed).
func down(name string, stdout, stderr io.Writer) int {
	pid, alive := kubenode.Owner("", name)
	if alive {
		fmt.Fprintf(stdout, "kubenode: stopping node %q (pid %d)\n", name, pid)
		_ = syscall.Kill(pid, syscall.SIGTERM)
		deadline := time.Now().Add(2 * time.Minute)
		for {
			if _, still := kubenode.Owner("", name); !still {
				break
			}
			if time.Now().After(deadline) {
				fmt.Fprintf(stderr, "kubenode: pid %d did not stop in 2 minutes; killing it\n", pid)
				_ = syscall.Kill(pid, syscall.SIGKILL)
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	if err := kubenode.Cleanup("", name); err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	if !alive {
		fmt.Fprintf(stdout, "kubenode: node %q was not running; nothing of it is left\n", name)
		return 0
	}
	fmt.Fprintf(stdout, "kubenode: node %q stopped; nothing of it is left\n", name)
	return 0
}

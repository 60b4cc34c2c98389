//go:build linux

package natsraft

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// A netLab is a small network of namespaces for tests that need real
// kernel networking: a hub namespace with a bridge, and node namespaces,
// each linked to the bridge by a veth pair (eth0 in the node), all in one
// /24. The test process stays in its own namespace and reaches the nodes
// through sockets it creates in the hub (Dial, DialContext), so nothing
// changes in the host's network. Creating one needs root.

const (
	// netLabPrefix starts the name of every namespace a netLab creates,
	// followed by the creating process's pid (to clean up after a test
	// binary that was killed).
	netLabPrefix = "pfk"
	netLabSubnet = "10.77.0."
	netLabHubIP  = netLabSubnet + "254"
	netNSDir     = "/var/run/netns"
)

var netLabSeq atomic.Int64

type netLab struct {
	t     testing.TB
	hub   string
	nodes []labNode
}

// labNode is one node namespace: its name and its address on the bridge.
type labNode struct {
	NS string
	IP string
}

// Path returns the namespace's file, for setns.
func (n labNode) Path() string { return filepath.Join(netNSDir, n.NS) }

// requireRoot skips a test that needs root (network namespaces, veth
// pairs, nftables) when the test does not run as root. CI runs as root, so
// such tests run there.
func requireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates network namespaces, veth pairs and nftables tables (CI runs it as root)")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Fatalf("needs the ip command of iproute2 (Debian package iproute2): %v", err)
	}
}

// newNetLab creates a hub and n node namespaces (10.77.0.1 … n, the hub
// 10.77.0.254) and deletes them when the test ends.
func newNetLab(t testing.TB, n int) *netLab {
	t.Helper()
	requireRoot(t)
	removeStaleNetLabs(t)
	base := fmt.Sprintf("%s%d-%d-", netLabPrefix, os.Getpid(), netLabSeq.Add(1))
	l := &netLab{t: t, hub: base + "hub"}
	t.Cleanup(l.close)
	l.ip("netns", "add", l.hub)
	l.ip("-n", l.hub, "link", "set", "lo", "up")
	l.ip("-n", l.hub, "link", "add", "br0", "type", "bridge")
	l.ip("-n", l.hub, "addr", "add", netLabHubIP+"/24", "dev", "br0")
	l.ip("-n", l.hub, "link", "set", "br0", "up")
	for i := 1; i <= n; i++ {
		l.nodes = append(l.nodes, labNode{NS: fmt.Sprintf("%sn%d", base, i), IP: netLabSubnet + strconv.Itoa(i)})
		l.add(i - 1)
	}
	return l
}

// recreate deletes node i's namespace (its veth goes with it, as a pod's
// sandbox does when the pod is deleted) and makes it again with the same
// name and address.
func (l *netLab) recreate(i int) {
	l.t.Helper()
	// The kernel frees a deleted namespace, and the veth pair in it,
	// asynchronously: delete the pair first, which is synchronous, so that
	// its name is free for the new one.
	l.ip("-n", l.hub, "link", "del", fmt.Sprintf("veth%d", i+1))
	l.ip("netns", "del", l.nodes[i].NS)
	l.add(i)
	// The address has a new MAC now: drop what the others remember of the
	// old one, as a new pod's gratuitous ARP would, instead of waiting for
	// their neighbour entries to go stale.
	for _, ns := range append([]string{l.hub}, l.nodeNames()...) {
		if ns != l.nodes[i].NS {
			l.ip("-n", ns, "neigh", "flush", "to", l.nodes[i].IP)
		}
	}
}

// add creates node i's namespace and links it to the bridge.
func (l *netLab) add(i int) {
	l.t.Helper()
	node := l.nodes[i]
	veth := fmt.Sprintf("veth%d", i+1)
	l.ip("netns", "add", node.NS)
	l.ip("-n", node.NS, "link", "set", "lo", "up")
	l.ip("-n", l.hub, "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", node.NS)
	l.ip("-n", l.hub, "link", "set", veth, "master", "br0")
	l.ip("-n", l.hub, "link", "set", veth, "up")
	l.ip("-n", node.NS, "addr", "add", node.IP+"/24", "dev", "eth0")
	l.ip("-n", node.NS, "link", "set", "eth0", "up")
}

// ip runs the ip command and fails the test on an error.
func (l *netLab) ip(args ...string) {
	l.t.Helper()
	out, err := exec.Command("ip", args...).CombinedOutput()
	require.NoError(l.t, err, "ip %s: %s", strings.Join(args, " "), out)
}

// close deletes the namespaces; their veths and the bridge go with them.
func (l *netLab) close() {
	for _, ns := range append([]string{l.hub}, l.nodeNames()...) {
		if out, err := exec.Command("ip", "netns", "del", ns).CombinedOutput(); err != nil &&
			!bytes.Contains(out, []byte("No such file")) {
			l.t.Logf("delete network namespace %s: %v: %s", ns, err, out)
		}
	}
}

func (l *netLab) nodeNames() []string {
	out := make([]string, len(l.nodes))
	for i, n := range l.nodes {
		out[i] = n.NS
	}
	return out
}

// Node returns node i (from 0).
func (l *netLab) Node(i int) labNode { return l.nodes[i] }

// DialContext connects from the hub namespace.
func (l *netLab) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	return dialIn(ctx, filepath.Join(netNSDir, l.hub), network, addr)
}

// Dial connects from the hub namespace (nats.CustomDialer).
func (l *netLab) Dial(network, addr string) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return l.DialContext(ctx, network, addr)
}

// dialIn connects from the network namespace at path: the socket is
// created on a thread inside it.
func dialIn(ctx context.Context, path, network, addr string) (net.Conn, error) {
	var c net.Conn
	err := inNetNS(path, func() error {
		var err error
		var d net.Dialer
		c, err = d.DialContext(ctx, network, addr)
		return err
	})
	return c, err
}

// listenIn listens in the network namespace at path.
func listenIn(path, network, addr string) (net.Listener, error) {
	var ln net.Listener
	err := inNetNS(path, func() error {
		var err error
		ln, err = net.Listen(network, addr)
		return err
	})
	return ln, err
}

// Command returns a command that runs in the node's namespace, killed if
// the test process dies.
func (n labNode) Command(name string, args ...string) *exec.Cmd {
	cmd := exec.Command("ip", append([]string{"netns", "exec", n.NS, name}, args...)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	return cmd
}

// removeStaleNetLabs deletes the namespaces of netLabs whose process is
// gone (a test binary killed by a timeout does not run its cleanups).
func removeStaleNetLabs(t testing.TB) {
	entries, err := os.ReadDir(netNSDir)
	if err != nil {
		return
	}
	for _, e := range entries {
		rest, ok := strings.CutPrefix(e.Name(), netLabPrefix)
		if !ok {
			continue
		}
		pidText, _, _ := strings.Cut(rest, "-")
		pid, err := strconv.Atoi(pidText)
		if err != nil || pid == os.Getpid() || syscall.Kill(pid, 0) == nil {
			continue
		}
		if out, err := exec.Command("ip", "netns", "del", e.Name()).CombinedOutput(); err != nil {
			t.Logf("delete stale network namespace %s: %v: %s", e.Name(), err, out)
		}
	}
}

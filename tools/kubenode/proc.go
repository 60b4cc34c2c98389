package kubenode

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// proc is one process of the node whose exit is observed.
type proc struct {
	name    string
	logPath string
	cmd     *exec.Cmd
	done    chan struct{}
	err     error // set before done is closed
}

// startProc starts argv with its output appended to logPath, first moving
// itself into the node's components cgroup (so that it and everything it
// ever forks is found by the cgroup), and killed with the process that
// started it.
func startProc(name, cgroupDir, logPath string, argv []string) (*proc, error) {
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	fmt.Fprintf(logf, "===== %s %s\n", time.Now().Format(time.RFC3339), strings.Join(argv, " "))
	// sh writes its own pid into the cgroup, then execs the program in its
	// place: the program starts inside the cgroup, with the same pid.
	args := append([]string{"-c", `echo $$ > "$0" && exec "$@"`, filepath.Join(cgroupDir, "cgroup.procs")}, argv...)
	cmd := exec.Command(hostTools.sh, args...)
	cmd.Stdout = logf
	cmd.Stderr = logf
	cmd.Env = []string{"PATH=" + toolPath, "HOME=/root", "LANG=C"}
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		_ = logf.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{name: name, logPath: logPath, cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		_ = logf.Close()
		close(p.done)
	}()
	return p, nil
}

// pid returns the process id.
func (p *proc) pid() int { return p.cmd.Process.Pid }

// running reports whether the process has not exited.
func (p *proc) running() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// stop sends sig and waits for the exit, killing the process after
// timeout.
func (p *proc) stop(sig syscall.Signal, timeout time.Duration) {
	if !p.running() {
		return
	}
	_ = p.cmd.Process.Signal(sig)
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-p.done:
		return
	case <-t.C:
	}
	_ = p.cmd.Process.Kill()
	<-p.done
}

// exitError describes an early exit with the end of the log.
func (p *proc) exitError() error {
	return fmt.Errorf("%s exited (%v); log tail:\n%s", p.name, p.err, tail(p.logPath, 20))
}

// waitFor polls check until it succeeds, p exits or ctx ends.
func waitFor(ctx context.Context, what string, p *proc, check func(context.Context) error) error {
	var last error
	for {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		last = check(cctx)
		cancel()
		if last == nil {
			return nil
		}
		t := time.NewTimer(100 * time.Millisecond)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("%s: %w (last: %v)", what, ctx.Err(), last)
		case <-doneOf(p):
			t.Stop()
			return fmt.Errorf("%s: %w", what, p.exitError())
		}
	}
}

// doneOf is p's done channel, or a channel that never closes for no p.
func doneOf(p *proc) <-chan struct{} {
	if p == nil {
		return nil
	}
	return p.done
}

// inNetNS runs fn on a thread that has entered the network namespace of
// the open file ns: sockets fn creates belong to that namespace for their
// whole life, whichever thread uses them later.
func inNetNS(ns *os.File, fn func() error) error {
	runtime.LockOSThread()
	orig, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("enter network namespace: %w", err)
	}
	defer orig.Close()
	if err := unix.Setns(int(ns.Fd()), unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("enter network namespace: %w", err)
	}
	fnErr := fn()
	if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
		// The thread stays locked and dies with this goroutine rather than
		// serve others from the wrong namespace.
		return errors.Join(fnErr, fmt.Errorf("leave network namespace: %w", err))
	}
	runtime.UnlockOSThread()
	return fnErr
}

// dialIn connects from the network namespace ns. Only literal addresses:
// a host name would be resolved by the host's resolver.
func dialIn(ctx context.Context, ns *os.File, network, addr string) (net.Conn, error) {
	var c net.Conn
	err := inNetNS(ns, func() error {
		var d net.Dialer
		var err error
		c, err = d.DialContext(ctx, network, addr)
		return err
	})
	return c, err
}

// relay publishes a port of the node's namespace on a host listener: every
// accepted connection is joined to a new connection to target, dialed from
// inside the namespace. It returns when ln is closed.
func relay(ln net.Listener, ns *os.File, target string) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			u, err := dialIn(ctx, ns, "tcp", target)
			cancel()
			if err != nil {
				return
			}
			defer u.Close()
			done := make(chan struct{}, 2)
			go func() { _, _ = io.Copy(u, c); closeWrite(u); done <- struct{}{} }()
			go func() { _, _ = io.Copy(c, u); closeWrite(c); done <- struct{}{} }()
			<-done
			<-done
		}()
	}
}

func closeWrite(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.CloseWrite()
	}
}

// tail returns the last n lines of the file at path, or why it cannot.
func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// itoa is strconv.Itoa, short.
func itoa(i int) string { return strconv.Itoa(i) }

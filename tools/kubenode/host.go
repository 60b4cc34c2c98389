package kubenode

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// cniBinDir is where Debian's containernetworking-plugins installs the
// plugins.
const cniBinDir = "/usr/lib/cni"

// DebianPackages are the packages of the host that the node runs: the
// container runtime, the CNI plugins, the kernel's firewall tools (kube-proxy
// and the kubelet call nft and iptables), conntrack, iproute2 and
// util-linux's unshare and nsenter.
var DebianPackages = []string{"containerd", "runc", "containernetworking-plugins", "nftables", "iptables", "conntrack", "iproute2", "util-linux"}

// hostTools are the host's programs the node runs, found by lookTools.
var hostTools struct {
	containerd, runc, ctr, nsenter, unshare, ip, nft, iptables, sh, mount string
}

// lookTools finds the host's programs and the CNI plugins and says which
// are missing and which package brings them.
func lookTools() error {
	var errs []error
	for _, t := range []struct {
		dst      *string
		name, pk string
	}{
		{&hostTools.containerd, "containerd", "containerd"},
		{&hostTools.ctr, "ctr", "containerd"},
		{&hostTools.runc, "runc", "runc"},
		{&hostTools.nsenter, "nsenter", "util-linux"},
		{&hostTools.unshare, "unshare", "util-linux"},
		{&hostTools.mount, "mount", "mount"},
		{&hostTools.ip, "ip", "iproute2"},
		{&hostTools.nft, "nft", "nftables"},
		{&hostTools.iptables, "iptables", "iptables"},
		{&hostTools.sh, "sh", "dash"},
	} {
		p, err := lookPath(t.name)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s not found (Debian package %s)", t.name, t.pk))
			continue
		}
		*t.dst = p
	}
	for _, plugin := range []string{"bridge", "host-local", "portmap", "loopback"} {
		if _, err := os.Stat(filepath.Join(cniBinDir, plugin)); err != nil {
			errs = append(errs, fmt.Errorf("CNI plugin %s not in %s (Debian package containernetworking-plugins)", plugin, cniBinDir))
		}
	}
	return errors.Join(errs...)
}

// toolPath is the PATH of every process of the node: the sbin folders
// hold nft, iptables and runc, which kube-proxy, the kubelet, containerd
// and the CNI plugins run.
const toolPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// lookPath looks a program up in toolPath (a test's PATH may lack /sbin).
func lookPath(name string) (string, error) {
	for _, d := range filepath.SplitList(toolPath) {
		p := filepath.Join(d, name)
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return exec.LookPath(name)
}

// The cgroups of a node: one folder per node in every hierarchy, named
// cgroupPrefix+name, under which the kubelet puts its pods (cgroupRoot)
// and, in the pids hierarchy, the node's own processes (in
// "components"). Every process a node ever starts — components,
// containerd's shims, the containers — is in that tree, which is how a node
// whose test binary was killed is found and cleaned up.
const cgroupPrefix = "prober-kubenode-"

// cgroupMounts returns the mount points of the cgroup hierarchies, v1 and
// v2.
func cgroupMounts() ([]string, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// id parent maj:min root mountpoint options ... - fstype source superoptions
		fields := strings.Fields(sc.Text())
		sep := slices.Index(fields, "-")
		if sep < 0 || sep+1 >= len(fields) || len(fields) < 5 {
			continue
		}
		if fs := fields[sep+1]; fs == "cgroup" || fs == "cgroup2" {
			out = append(out, fields[4])
		}
	}
	return out, sc.Err()
}

// componentsCgroup returns the folder whose cgroup.procs the node's
// processes are put into: in the pids hierarchy (v1), else in the unified
// one (v2).
func componentsCgroup(name string) (string, error) {
	mounts, err := cgroupMounts()
	if err != nil {
		return "", err
	}
	var v2 string
	for _, m := range mounts {
		if filepath.Base(m) == "pids" {
			return filepath.Join(m, cgroupPrefix+name, "components"), nil
		}
		if _, err := os.Stat(filepath.Join(m, "cgroup.controllers")); err == nil && v2 == "" {
			v2 = m
		}
	}
	if v2 != "" {
		return filepath.Join(v2, cgroupPrefix+name, "components"), nil
	}
	return "", errors.New("no pids cgroup hierarchy and no cgroup v2 mount")
}

// createCgroups creates the node's folder in every hierarchy (the kubelet
// refuses a cgroupRoot that is missing from one) and the components
// folder. A new cpuset cgroup starts with no CPUs and no memory nodes: they
// are copied from the parent.
func createCgroups(name string) error {
	mounts, err := cgroupMounts()
	if err != nil {
		return err
	}
	for _, m := range mounts {
		dir := filepath.Join(m, cgroupPrefix+name)
		if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("cgroup %s: %w", dir, err)
		}
		if filepath.Base(m) == "cpuset" {
			for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
				b, err := os.ReadFile(filepath.Join(m, f))
				if err != nil {
					return fmt.Errorf("cgroup %s: %w", dir, err)
				}
				if err := os.WriteFile(filepath.Join(dir, f), b, 0o644); err != nil {
					return fmt.Errorf("cgroup %s: %s: %w", dir, f, err)
				}
			}
		}
	}
	comp, err := componentsCgroup(name)
	if err != nil {
		return err
	}
	if err := os.Mkdir(comp, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("cgroup %s: %w", comp, err)
	}
	return nil
}

// cgroupPIDs returns every process in the node's cgroups, in any
// hierarchy.
func cgroupPIDs(name string) ([]int, error) {
	mounts, err := cgroupMounts()
	if err != nil {
		return nil, err
	}
	seen := map[int]bool{}
	for _, m := range mounts {
		root := filepath.Join(m, cgroupPrefix+name)
		err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				if errors.Is(err, fs.ErrNotExist) {
					return nil
				}
				return err
			}
			if d.IsDir() || d.Name() != "cgroup.procs" {
				return nil
			}
			b, err := os.ReadFile(p)
			if err != nil {
				if errors.Is(err, fs.ErrNotExist) {
					return nil
				}
				return err
			}
			for _, f := range strings.Fields(string(b)) {
				if pid, err := strconv.Atoi(f); err == nil {
					seen[pid] = true
				}
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	return slices.Sorted(func(yield func(int) bool) {
		for p := range seen {
			if !yield(p) {
				return
			}
		}
	}), nil
}

// killCgroups kills every process of the node's cgroups until none is
// left (a process may fork while the others are killed) or the timeout
// passes.
func killCgroups(name string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		pids, err := cgroupPIDs(name)
		if err != nil {
			return err
		}
		if len(pids) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("processes %v of node %s survive SIGKILL", pids, name)
		}
		for _, pid := range pids {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// removeCgroups removes the node's cgroup folders, deepest first. A cgroup
// folder is removed with rmdir (its control files go with it) once no
// process is in it.
func removeCgroups(name string) error {
	mounts, err := cgroupMounts()
	if err != nil {
		return err
	}
	var errs []error
	for _, m := range mounts {
		root := filepath.Join(m, cgroupPrefix+name)
		var dirs []string
		_ = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, p)
			}
			return nil
		})
		for i := len(dirs) - 1; i >= 0; i-- {
			if err := os.Remove(dirs[i]); err != nil && !errors.Is(err, fs.ErrNotExist) {
				errs = append(errs, fmt.Errorf("remove cgroup %s: %w", dirs[i], err))
			}
		}
	}
	return errors.Join(errs...)
}

// cgroupNames returns the names of the nodes that have a cgroup folder.
func cgroupNames() ([]string, error) {
	mounts, err := cgroupMounts()
	if err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	for _, m := range mounts {
		ents, err := os.ReadDir(m)
		if err != nil {
			continue
		}
		for _, e := range ents {
			if n, ok := strings.CutPrefix(e.Name(), cgroupPrefix); ok && e.IsDir() {
				seen[n] = true
			}
		}
	}
	return slices.Sorted(func(yield func(string) bool) {
		for n := range seen {
			if !yield(n) {
				return
			}
		}
	}), nil
}

// processStart returns a process's start time in clock ticks since boot
// (field 22 of /proc/<pid>/stat), which tells a live owner from a new
// process that reuses its pid.
func processStart(pid int) (string, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return "", err
	}
	// The command name (field 2) may hold spaces: count from its ")".
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return "", fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	fields := strings.Fields(s[i+1:])
	// fields[0] is field 3 (state); field 22 is fields[19].
	if len(fields) < 20 {
		return "", fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	return fields[19], nil
}

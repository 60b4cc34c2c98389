package kubetest

import "syscall"

// childAttr makes the kernel kill a child when the test binary dies, so a
// crashed or killed test leaves no etcd or kube-apiserver behind.
func childAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}

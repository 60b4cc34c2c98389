//go:build !linux

package kubetest

import "syscall"

// childAttr has no parent-death signal to offer outside Linux; Close stops
// the children.
func childAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{}
}

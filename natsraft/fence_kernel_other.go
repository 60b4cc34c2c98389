//go:build !linux

package natsraft

import "errors"

// errKernelFenceUnsupported is what the kernel fence answers where there is
// no nftables.
var errKernelFenceUnsupported = errors.New("the kernel fence needs Linux (nftables, sock_diag)")

func (f *KernelFence) applyTable() error          { return errKernelFenceUnsupported }
func (f *KernelFence) removeTable() error         { return errKernelFenceUnsupported }
func (f *KernelFence) tableExists() (bool, error) { return false, errKernelFenceUnsupported }
func (f *KernelFence) killSockets() (int, error)  { return 0, errKernelFenceUnsupported }

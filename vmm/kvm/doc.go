// Package kvm is the thin layer over the Linux KVM ioctl interface the
// built-in VMM runs on: the system (/dev/kvm), a VM, and its vCPUs. It uses
// golang.org/x/sys/unix and no cgo. Every ioctl that can be interrupted is
// retried on EINTR, except KVM_RUN, whose EINTR is how a vCPU is kicked out
// of the guest and is therefore returned to the caller.
//
// Struct layouts and ioctl numbers are those of <linux/kvm.h> for x86-64.
package kvm

package machine

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"

	"github.com/joeyrt/joey/vmm/kvm"
)

// kickSignal interrupts a vCPU thread blocked in KVM_RUN. It is SIGURG, the
// signal the Go runtime itself sends to threads to preempt goroutines: the
// runtime always has a handler installed for it (a signal that is ignored,
// SIG_IGN, would not interrupt the ioctl, and one with the default action
// would kill the process), tolerates spurious ones by design, and so needs
// no process-wide signal.Notify from a library. A signal can land while the
// thread is outside KVM_RUN and be lost; immediate_exit, set before the
// signal is sent, covers that window: KVM_RUN then returns EINTR at once.
const kickSignal = unix.SIGURG

// vcpu is one vCPU and the goroutine that runs it.
type vcpu struct {
	// cpu is the KVM vCPU, run only by loop's locked thread.
	cpu *kvm.VCPU
	// m is the machine it belongs to.
	m *Machine
	// tid is the OS thread running loop, 0 before and after.
	tid atomic.Int32
	// mu guards stop, probe and every write to kvm_run.immediate_exit, so
	// that clearing immediate_exit after a probe never drops a stop.
	mu sync.Mutex
	// stop asks loop to return; guarded by mu.
	stop bool
	// probe asks loop to report whether the vCPU is stopped for good;
	// guarded by mu.
	probe bool
	// probeReply carries the answer to a probe.
	probeReply chan bool
}

// kick makes loop leave KVM_RUN: to return (stop) or to answer a probe.
func (v *vcpu) kick(stop bool) {
	v.mu.Lock()
	if stop {
		v.stop = true
	} else {
		v.probe = true
	}
	v.cpu.Run().SetImmediateExit(true)
	tid := v.tid.Load()
	v.mu.Unlock()
	if tid == 0 {
		return
	}
	// ESRCH means the thread already left; immediate_exit covers the rest.
	if err := unix.Tgkill(os.Getpid(), int(tid), kickSignal); err != nil && !errors.Is(err, unix.ESRCH) {
		v.m.fail(fmt.Errorf("kick vCPU %d: tgkill: %w", v.cpu.ID, err))
	}
}

// interrupted handles a KVM_RUN that returned EINTR and says whether loop
// must return.
func (v *vcpu) interrupted() bool {
	v.mu.Lock()
	stop, probe := v.stop, v.probe
	v.probe = false
	if !stop {
		v.cpu.Run().SetImmediateExit(false)
	}
	v.mu.Unlock()
	if probe && !stop {
		select {
		case v.probeReply <- v.stoppedForGood():
		default: // the watcher has stopped listening
		}
	}
	return stop
}

// stoppedForGood reports whether nothing but an NMI, INIT or SMI could
// make this vCPU run again: it is halted with interrupts disabled (how
// Linux's machine_halt and stop_this_cpu leave a CPU), or it is an AP still
// waiting for its startup IPI.
func (v *vcpu) stoppedForGood() bool {
	st, err := v.cpu.MPState()
	if err != nil {
		v.m.fail(fmt.Errorf("vCPU %d: %w", v.cpu.ID, err))
		return false
	}
	switch st {
	case kvm.MPStateInitReceived, kvm.MPStateUninitialized:
		return true
	case kvm.MPStateHalted:
		regs, err := v.cpu.GetRegs()
		if err != nil {
			v.m.fail(fmt.Errorf("vCPU %d: %w", v.cpu.ID, err))
			return false
		}
		const interruptFlag = 1 << 9
		return regs.RFLAGS&interruptFlag == 0
	}
	return false
}

// loop runs the vCPU until the machine ends. KVM wants one thread to keep
// issuing KVM_RUN for a vCPU, and the kick signal targets that thread, so
// the goroutine locks it and never unlocks: the thread exits with loop.
func (v *vcpu) loop() {
	defer v.m.wg.Done()
	runtime.LockOSThread()
	v.tid.Store(int32(unix.Gettid()))
	defer v.tid.Store(0)
	for {
		err := v.cpu.Enter()
		if errors.Is(err, unix.EINTR) || errors.Is(err, unix.EAGAIN) {
			if v.interrupted() {
				return
			}
			continue
		}
		if err != nil {
			v.m.fail(fmt.Errorf("vCPU %d: KVM_RUN: %w", v.cpu.ID, err))
			return
		}
		if done := v.exit(); done {
			return
		}
	}
}

// exit handles one exit and says whether loop must return.
func (v *vcpu) exit() bool {
	run := v.cpu.Run()
	switch r := run.ExitReason(); r {
	case kvm.ExitIO:
		io, err := run.IO()
		if err == nil {
			err = v.m.portIO(v.cpu.ID, io)
		}
		if err != nil {
			v.m.fail(fmt.Errorf("vCPU %d: %w", v.cpu.ID, err))
			return true
		}
	case kvm.ExitMMIO:
		mm, err := run.MMIO()
		if err == nil {
			err = v.m.mmioAccess(v.cpu.ID, mm)
		}
		if err != nil {
			v.m.fail(fmt.Errorf("vCPU %d: %w", v.cpu.ID, err))
			return true
		}
	case kvm.ExitHLT:
		// Without an irqchip nothing can wake a halted vCPU.
		if int(v.m.halted.Add(1)) == len(v.m.vcpus) {
			v.m.Finish(End{Reason: Halted, Cause: "every vCPU executed HLT"})
		}
		return true
	case kvm.ExitShutdown:
		// No registers in the cause: on AMD, KVM has already reset the vCPU
		// (its VMCB is undefined after a shutdown intercept).
		v.m.Finish(End{Reason: Reboot, Cause: fmt.Sprintf("triple fault on vCPU %d", v.cpu.ID)})
		return true
	case kvm.ExitSystemEvent:
		switch t := run.SystemEvent(); t {
		case kvm.SystemEventShutdown:
			v.m.Finish(End{Reason: PowerOff, Cause: "system event"})
		case kvm.SystemEventReset:
			v.m.Finish(End{Reason: Reboot, Cause: "system event"})
		default:
			v.m.fail(fmt.Errorf("vCPU %d: system event %d (crash)", v.cpu.ID, t))
		}
		return true
	case kvm.ExitFailEntry:
		v.m.fail(fmt.Errorf("vCPU %d: %v: hardware entry failure reason %#x", v.cpu.ID, r, run.FailEntry()))
		return true
	case kvm.ExitInternalError:
		sub, data := run.InternalError()
		v.m.fail(fmt.Errorf("vCPU %d: %v: suberror %d data %#x", v.cpu.ID, r, sub, data))
		return true
	case kvm.ExitIntr:
		return v.interrupted()
	default:
		regs, err := v.cpu.GetRegs()
		if err != nil {
			v.m.fail(fmt.Errorf("vCPU %d: unhandled exit %v (%w)", v.cpu.ID, r, err))
			return true
		}
		v.m.fail(fmt.Errorf("vCPU %d: unhandled exit %v at rip %#x", v.cpu.ID, r, regs.RIP))
		return true
	}
	return false
}

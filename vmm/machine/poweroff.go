package machine

import "time"

// watchPowerOff ends the VM as PowerOff once every vCPU is stopped for good.
//
// Why: a stock kernel without ACPI has no power-off method
// (pm_power_off is unset), so reboot(POWER_OFF) becomes a halt: "reboot:
// System halted", every CPU in stop_this_cpu, halted with interrupts
// disabled. With the in-kernel irqchip a HLT never exits to the VMM, so the
// VMM looks instead: every PowerOffPoll it kicks each vCPU out of KVM_RUN
// and asks KVM for its MP state and RFLAGS. A vCPU halted with IF=0 can
// only be woken by NMI, INIT or SMI, which only another running vCPU could
// send; when none runs, the machine is off.
func (m *Machine) watchPowerOff() {
	defer m.wg.Done()
	t := time.NewTicker(m.cfg.PowerOffPoll)
	defer t.Stop()
	for {
		select {
		case <-m.ended:
			return
		case <-t.C:
		}
		for _, v := range m.vcpus {
			v.kick(false)
		}
		off := true
		for _, v := range m.vcpus {
			select {
			case <-m.ended:
				return
			case stopped := <-v.probeReply:
				off = off && stopped
			}
		}
		if off {
			m.Finish(End{Reason: PowerOff, Cause: "every vCPU halted with interrupts disabled"})
			return
		}
	}
}

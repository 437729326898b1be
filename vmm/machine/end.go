package machine

import "fmt"

// Reason is how a VM ended.
type Reason int

// The ways a VM ends.
const (
	// Halted: every vCPU executed HLT and no irqchip can wake it (only VMs
	// without the in-kernel irqchip see HLT exits).
	Halted Reason = iota + 1
	// PowerOff: the guest asked to be switched off.
	PowerOff
	// Reboot: the guest reset the machine. The VMM does not restart it; the
	// owner decides.
	Reboot
	// Stopped: Stop was called.
	Stopped
	// Failed: the VMM or KVM hit an error; End.Err says which.
	Failed
)

func (r Reason) String() string {
	switch r {
	case Halted:
		return "halted"
	case PowerOff:
		return "power-off"
	case Reboot:
		return "reboot"
	case Stopped:
		return "stopped"
	case Failed:
		return "failed"
	}
	return fmt.Sprintf("reason(%d)", int(r))
}

// End is the VM's last word.
type End struct {
	// Reason is how it ended.
	Reason Reason
	// Cause names the mechanism ("triple fault", "i8042 reset", "0xcf9
	// reset", "all vCPUs halted with interrupts off").
	Cause string
	// Err is set for Failed.
	Err error
}

func (e End) String() string {
	s := e.Reason.String()
	if e.Cause != "" {
		s += " (" + e.Cause + ")"
	}
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

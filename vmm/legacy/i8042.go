package legacy

import (
	"fmt"
	"sync"
)

// I8042 ports: data at 0x60, status/command at 0x64.
const (
	I8042DataPort    = 0x60
	I8042CommandPort = 0x64
)

const (
	statusOBF    = 0x01 // output buffer full: a byte waits at 0x60
	statusSystem = 0x04 // self-test passed since power-on
	statusUnlock = 0x10 // keyboard not inhibited (Linux warns "Keylock active" otherwise)
	statusAux    = 0x20 // the waiting byte comes from the aux port

	cmdReadCTR    = 0x20
	cmdWriteCTR   = 0x60
	cmdAuxTest    = 0xa9
	cmdSelfTest   = 0xaa
	cmdKbdTest    = 0xab
	cmdKbdLoop    = 0xd2
	cmdAuxLoop    = 0xd3
	cmdPulseReset = 0xfe

	selfTestOK = 0x55
)

// I8042 is a keyboard controller with no keyboard or mouse behind it. It
// answers the commands Linux's i8042 driver probes with (so the probe ends
// quickly instead of timing out) and turns the reset pulse (0xFE to port
// 0x64) into reset, which is how Linux reboots without ACPI.
// Add it once at I8042DataPort and once at I8042CommandPort.
type I8042 struct {
	// reset is called on a reset pulse.
	reset func()
	// mu guards the fields below.
	mu sync.Mutex
	// ctr is the controller configuration byte.
	ctr byte
	// out is the byte waiting at the data port; full says one waits and
	// aux says it came from the aux port.
	out       byte
	full, aux bool
	// pending is the command whose parameter the next data write is.
	pending byte
}

// NewI8042 returns a controller that calls reset on a reset pulse.
func NewI8042(reset func()) *I8042 {
	return &I8042{reset: reset, ctr: 0x30} // both ports' clocks disabled
}

func (k *I8042) respond(b byte, aux bool) { k.out, k.full, k.aux = b, true, aux }

// DataPort returns the device to add at I8042DataPort.
func (k *I8042) DataPort() *I8042Port { return &I8042Port{k: k, data: true} }

// CommandPort returns the device to add at I8042CommandPort.
func (k *I8042) CommandPort() *I8042Port { return &I8042Port{k: k} }

// I8042Port is one of the controller's two ports.
type I8042Port struct {
	// k is the controller.
	k *I8042
	// data is true for port 0x60.
	data bool
}

// ReadPort reads the data or status register.
func (p *I8042Port) ReadPort(_ uint16, data []byte) error {
	if len(data) != 1 {
		return fmt.Errorf("i8042: %d-byte read", len(data))
	}
	k := p.k
	k.mu.Lock()
	defer k.mu.Unlock()
	if p.data {
		data[0] = k.out
		k.full, k.aux = false, false
		return nil
	}
	s := byte(statusSystem | statusUnlock)
	if k.full {
		s |= statusOBF
		if k.aux {
			s |= statusAux
		}
	}
	data[0] = s
	return nil
}

// WritePort writes a command (0x64) or a parameter (0x60).
func (p *I8042Port) WritePort(_ uint16, data []byte) error {
	if len(data) != 1 {
		return fmt.Errorf("i8042: %d-byte write", len(data))
	}
	k := p.k
	k.mu.Lock()
	v := data[0]
	reset := false
	if p.data {
		switch k.pending {
		case cmdWriteCTR:
			k.ctr = v
		case cmdKbdLoop:
			k.respond(v, false)
		case cmdAuxLoop:
			k.respond(v, true)
		}
		// A byte for the keyboard itself gets no answer: there is none.
		k.pending = 0
	} else {
		k.pending = 0
		switch v {
		case cmdReadCTR:
			k.respond(k.ctr, false)
		case cmdWriteCTR, cmdKbdLoop, cmdAuxLoop:
			k.pending = v
		case cmdSelfTest:
			k.respond(selfTestOK, false)
		case cmdKbdTest, cmdAuxTest:
			k.respond(0, false)
		case cmdPulseReset:
			reset = true
		}
	}
	k.mu.Unlock()
	if reset {
		k.reset()
	}
	return nil
}

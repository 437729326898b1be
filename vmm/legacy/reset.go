package legacy

import (
	"fmt"
	"sync"
)

// ResetControlPort is the PCI-era reset control register.
const ResetControlPort = 0xcf9

const resetCPU = 0x04 // bit 2: pulse the reset line

// ResetControl is the 0xCF9 register: writing bit 2 resets the machine
// (Linux's reboot=pci). Only single-byte accesses decode to it; dword
// accesses at 0xCF8 are the PCI configuration address.
type ResetControl struct {
	// reset is called when the guest resets.
	reset func()
	// mu guards val.
	mu sync.Mutex
	// val is the last value written (bits other than reset are kept).
	val byte
}

// NewResetControl returns the register; reset is called on a reset write.
func NewResetControl(reset func()) *ResetControl { return &ResetControl{reset: reset} }

// ReadPort returns the last value written.
func (r *ResetControl) ReadPort(_ uint16, data []byte) error {
	if len(data) != 1 {
		return fmt.Errorf("reset control: %d-byte read", len(data))
	}
	r.mu.Lock()
	data[0] = r.val
	r.mu.Unlock()
	return nil
}

// WritePort stores the value and resets when bit 2 is set.
func (r *ResetControl) WritePort(_ uint16, data []byte) error {
	if len(data) != 1 {
		return fmt.Errorf("reset control: %d-byte write", len(data))
	}
	r.mu.Lock()
	r.val = data[0] &^ resetCPU
	r.mu.Unlock()
	if data[0]&resetCPU != 0 {
		r.reset()
	}
	return nil
}

// POSTPort is port 0x80, where firmware writes progress codes and old
// drivers write to waste a microsecond.
const POSTPort = 0x80

// POST accepts and drops writes to port 0x80; reads see all ones. It is a
// device so that these accesses are known rather than reported as
// unhandled.
type POST struct{}

// ReadPort returns all ones.
func (POST) ReadPort(_ uint16, data []byte) error {
	for i := range data {
		data[i] = 0xff
	}
	return nil
}

// WritePort drops the write.
func (POST) WritePort(uint16, []byte) error { return nil }

// Package serial is an i8250/16550A UART: the guest's console. It models
// what Linux's 8250 driver probes and uses (scratch register, IER masking,
// FIFO identification through IIR, DLAB, MCR loopback, LSR THRE/TEMT and
// the THRE interrupt) and writes every transmitted byte to an io.Writer at
// once, so the transmitter is always empty. Receiving is not modelled: the
// console is output only (LSR never reports data ready).
package serial

import (
	"fmt"
	"io"
	"sync"
)

// Register offsets from the base port (COM1 is 0x3f8, IRQ 4).
const (
	regData = 0 // THR (write), RBR (read), DLL with DLAB
	regIER  = 1 // DLM with DLAB
	regIIR  = 2 // IIR (read), FCR (write)
	regLCR  = 3
	regMCR  = 4
	regLSR  = 5
	regMSR  = 6
	regSCR  = 7
	// Ports is how many ports the UART decodes.
	Ports = 8
)

const (
	ierTHRI     = 0x02 // interrupt when the transmitter holding register empties
	iirNoInt    = 0x01
	iirTHRI     = 0x02
	iirFIFO     = 0xc0 // FIFOs enabled, as a 16550A reports
	fcrEnable   = 0x01
	lcrDLAB     = 0x80
	mcrLoop     = 0x10
	lsrTHRE     = 0x20
	lsrTEMT     = 0x40
	msrCarrier  = 0xb0 // DCD, DSR, CTS: a connected terminal
	ierWritable = 0x0f
	mcrWritable = 0x1f
)

// Serial is one UART.
type Serial struct {
	// out receives the transmitted bytes.
	out io.Writer
	// irq sets the level of the UART's interrupt line.
	irq func(high bool) error
	// mu guards every field below: vCPUs access the UART concurrently.
	mu sync.Mutex
	// Registers as the guest programmed them.
	ier, lcr, mcr, scr, dll, dlm, fcr byte
	// thrPending is a THRE interrupt not yet acknowledged by reading IIR
	// or writing THR.
	thrPending bool
	// line is the interrupt line's current level.
	line bool
}

// New returns a UART that writes to out and drives its interrupt line with
// irq (nil: no interrupts, for polled use).
func New(out io.Writer, irq func(high bool) error) *Serial {
	return &Serial{out: out, irq: irq, dll: 12} // 9600 baud until the guest says otherwise
}

// ReadPort reads register offset.
func (s *Serial) ReadPort(offset uint16, data []byte) error {
	if len(data) != 1 {
		return fmt.Errorf("serial: %d-byte read of register %d", len(data), offset)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	dlab := s.lcr&lcrDLAB != 0
	var v byte
	switch offset {
	case regData:
		if dlab {
			v = s.dll
		}
	case regIER:
		if dlab {
			v = s.dlm
		} else {
			v = s.ier
		}
	case regIIR:
		v = s.iir()
		if v&0x0f == iirTHRI {
			s.thrPending = false
		}
	case regLCR:
		v = s.lcr
	case regMCR:
		v = s.mcr
	case regLSR:
		v = lsrTHRE | lsrTEMT
	case regMSR:
		v = s.msr()
	case regSCR:
		v = s.scr
	default:
		return fmt.Errorf("serial: read of register %d", offset)
	}
	data[0] = v
	return s.update()
}

// WritePort writes register offset.
func (s *Serial) WritePort(offset uint16, data []byte) error {
	if len(data) != 1 {
		return fmt.Errorf("serial: %d-byte write of register %d", len(data), offset)
	}
	v := data[0]
	s.mu.Lock()
	defer s.mu.Unlock()
	dlab := s.lcr&lcrDLAB != 0
	switch offset {
	case regData:
		if dlab {
			s.dll = v
			break
		}
		if s.mcr&mcrLoop == 0 {
			if _, err := s.out.Write(data); err != nil {
				return fmt.Errorf("serial: write console: %w", err)
			}
		}
		s.thrPending = s.ier&ierTHRI != 0
	case regIER:
		if dlab {
			s.dlm = v
			break
		}
		old := s.ier
		s.ier = v & ierWritable
		// A 16550 raises THRE as soon as the interrupt is enabled while the
		// transmitter is empty; Linux tests exactly this (UART_BUG_THRE).
		if (old^s.ier)&ierTHRI != 0 {
			s.thrPending = s.ier&ierTHRI != 0
		}
	case regIIR:
		s.fcr = v
	case regLCR:
		s.lcr = v
	case regMCR:
		s.mcr = v & mcrWritable
	case regLSR, regMSR:
		// Read-only on a 16550; writes have no effect.
	case regSCR:
		s.scr = v
	default:
		return fmt.Errorf("serial: write of register %d", offset)
	}
	return s.update()
}

// iir is the interrupt identification register.
// Preconditions: s.mu held.
func (s *Serial) iir() byte {
	v := byte(iirNoInt)
	if s.thrPending && s.ier&ierTHRI != 0 {
		v = iirTHRI
	}
	if s.fcr&fcrEnable != 0 {
		v |= iirFIFO
	}
	return v
}

// msr is the modem status register; in loopback the modem control outputs
// come back on the inputs (RTS→CTS, DTR→DSR, OUT1→RI, OUT2→DCD), which is
// how drivers tell a UART from an empty port.
// Preconditions: s.mu held.
func (s *Serial) msr() byte {
	if s.mcr&mcrLoop == 0 {
		return msrCarrier
	}
	m := s.mcr
	return (m&0x02)<<3 | (m&0x01)<<5 | (m&0x04)<<4 | (m&0x08)<<4
}

// update drives the interrupt line from the pending interrupts.
// Preconditions: s.mu held.
func (s *Serial) update() error {
	high := s.iir()&iirNoInt == 0
	if s.irq == nil || high == s.line {
		return nil
	}
	s.line = high
	if err := s.irq(high); err != nil {
		return fmt.Errorf("serial: irq: %w", err)
	}
	return nil
}

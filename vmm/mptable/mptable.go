// Package mptable writes an Intel MultiProcessor Specification 1.4 table:
// how a stock kernel without ACPI finds its CPUs, its IOAPIC and how ISA
// interrupts are wired. The floating pointer goes where Linux scans for it
// (the BIOS area at 0xF0000), the configuration table right after it.
package mptable

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Fixed platform addresses the table describes.
const (
	// Addr is where the floating pointer is written; Linux scans
	// 0xF0000–0xFFFFF for it.
	Addr = 0xf0000
	// LAPICAddr and IOAPICAddr are the KVM in-kernel chips' MMIO windows.
	LAPICAddr  = 0xfee00000
	IOAPICAddr = 0xfec00000
	// MaxCPUs keeps the IOAPIC id (after the CPU ids) below 255.
	MaxCPUs = 254
)

const (
	entryProcessor = 0
	entryBus       = 1
	entryIOAPIC    = 2
	entryIOInt     = 3
	entryLocalInt  = 4

	intINT    = 0
	intNMI    = 1
	intExtINT = 3

	cpuEnabled = 1
	cpuBSP     = 2

	lapicVersion  = 0x14
	ioapicVersion = 0x11
	isaIRQs       = 16
	busISA        = 0
	// cpuSignature and cpuFeatures are what the processor entries claim
	// (family 6; FPU and APIC present); Linux uses CPUID instead.
	cpuSignature = 0x600
	cpuFeatures  = 0x201
)

// Table returns the floating pointer and the configuration table for cpus
// CPUs (APIC ids 0..cpus-1, 0 the BSP), as the bytes to write at Addr.
func Table(cpus int) ([]byte, error) {
	if cpus < 1 || cpus > MaxCPUs {
		return nil, fmt.Errorf("mptable: %d CPUs, want 1 to %d", cpus, MaxCPUs)
	}
	ioapicID := byte(cpus)
	var body []byte
	le := binary.LittleEndian
	entries := 0
	for id := range cpus {
		e := make([]byte, 20)
		e[0], e[1], e[2] = entryProcessor, byte(id), lapicVersion
		e[3] = cpuEnabled
		if id == 0 {
			e[3] |= cpuBSP
		}
		le.PutUint32(e[4:], cpuSignature)
		le.PutUint32(e[8:], cpuFeatures)
		body = append(body, e...)
		entries++
	}
	body = append(body, entryBus, busISA, 'I', 'S', 'A', ' ', ' ', ' ')
	entries++
	io := []byte{entryIOAPIC, ioapicID, ioapicVersion, 1, 0, 0, 0, 0}
	le.PutUint32(io[4:], IOAPICAddr)
	body = append(body, io...)
	entries++
	// ISA IRQ n is IOAPIC pin n, edge-triggered active-high (the ISA
	// default, flags 0): KVM's default GSI routing wires them that way.
	for irq := range isaIRQs {
		body = append(body, entryIOInt, intINT, 0, 0, busISA, byte(irq), ioapicID, byte(irq))
		entries++
	}
	// LINT0 takes the 8259's ExtINT, LINT1 NMIs, on every local APIC.
	body = append(body, entryLocalInt, intExtINT, 0, 0, busISA, 0, 0xff, 0)
	body = append(body, entryLocalInt, intNMI, 0, 0, busISA, 0, 0xff, 1)
	entries += 2

	hdr := make([]byte, 44)
	copy(hdr, "PCMP")
	le.PutUint16(hdr[4:], uint16(44+len(body)))
	hdr[6] = 4 // spec revision 1.4
	copy(hdr[8:], "JOEY    ")
	copy(hdr[16:], "BUILTIN VMM ")
	le.PutUint16(hdr[34:], uint16(entries))
	le.PutUint32(hdr[36:], LAPICAddr)
	cfg := append(hdr, body...)
	cfg[7] = checksum(cfg)

	fp := make([]byte, 16)
	copy(fp, "_MP_")
	le.PutUint32(fp[4:], Addr+16)
	fp[8] = 1 // length in 16-byte units
	fp[9] = 4
	fp[10] = checksum(fp)
	return append(fp, cfg...), nil
}

// checksum is the byte that makes b sum to zero (its own slot holding 0).
func checksum(b []byte) byte {
	var s byte
	for _, c := range b {
		s += c
	}
	return -s
}

// Writer is the part of guest memory the table is written to.
type Writer interface {
	WriteAt(p []byte, addr uint64) error
}

// Write writes the table for cpus CPUs at Addr.
func Write(mem Writer, cpus int) error {
	t, err := Table(cpus)
	if err != nil {
		return err
	}
	if len(t) > 0x10000 {
		return errors.New("mptable: table outgrows the BIOS area")
	}
	if err := mem.WriteAt(t, Addr); err != nil {
		return fmt.Errorf("mptable: %w", err)
	}
	return nil
}

package legacy

import (
	"fmt"
	"sync"
	"time"
)

// CMOS RTC ports: the register index at 0x70, the data at 0x71.
const (
	RTCIndexPort = 0x70
	// RTCPorts is how many ports the RTC decodes from RTCIndexPort.
	RTCPorts = 2
)

// MC146818 registers.
const (
	rtcSeconds = 0x00
	rtcMinutes = 0x02
	rtcHours   = 0x04
	rtcWeekday = 0x06
	rtcDay     = 0x07
	rtcMonth   = 0x08
	rtcYear    = 0x09
	rtcA       = 0x0a
	rtcB       = 0x0b
	rtcC       = 0x0c
	rtcD       = 0x0d
	rtcCentury = 0x32
	cmosSize   = 128

	regAIdle  = 0x26 // 32.768 kHz time base, 1024 Hz rate, no update in progress
	regB24h   = 0x02 // 24-hour mode, BCD
	regDValid = 0x80 // the battery is good
)

// RTC is a read-only MC146818 CMOS clock that reports the host's time
// (UTC) and is never in an update cycle. Without it Linux spins on the
// update-in-progress bit of an absent chip (all-ones reads), tens of
// thousands of exits per boot. Other CMOS bytes are plain storage; no
// alarm or periodic interrupt is modelled.
type RTC struct {
	// now is the clock; time.Now unless a test replaces it.
	now func() time.Time
	// mu guards index and nvram.
	mu sync.Mutex
	// index is the selected register (bit 7, the NMI mask, dropped).
	index byte
	// nvram holds what the guest wrote to non-clock registers.
	nvram [cmosSize]byte
}

// NewRTC returns a clock reading now (nil: time.Now).
func NewRTC(now func() time.Time) *RTC {
	if now == nil {
		now = time.Now
	}
	return &RTC{now: now}
}

func bcd(v int) byte { return byte(v/10<<4 | v%10) }

// ReadPort reads the index (offset 0) or the selected register (offset 1).
func (r *RTC) ReadPort(offset uint16, data []byte) error {
	if len(data) != 1 {
		return fmt.Errorf("rtc: %d-byte read", len(data))
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if offset == 0 {
		data[0] = 0xff
		return nil
	}
	t := r.now().UTC()
	var v byte
	switch r.index {
	case rtcSeconds:
		v = bcd(t.Second())
	case rtcMinutes:
		v = bcd(t.Minute())
	case rtcHours:
		v = bcd(t.Hour())
	case rtcWeekday:
		v = bcd(int(t.Weekday()) + 1)
	case rtcDay:
		v = bcd(t.Day())
	case rtcMonth:
		v = bcd(int(t.Month()))
	case rtcYear:
		v = bcd(t.Year() % 100)
	case rtcCentury:
		v = bcd(t.Year() / 100)
	case rtcA:
		v = regAIdle
	case rtcB:
		v = regB24h
	case rtcC:
		v = 0
	case rtcD:
		v = regDValid
	default:
		v = r.nvram[r.index]
	}
	data[0] = v
	return nil
}

// WritePort selects a register (offset 0) or writes it (offset 1). Clock
// registers ignore writes: the guest cannot set the host's time.
func (r *RTC) WritePort(offset uint16, data []byte) error {
	if len(data) != 1 {
		return fmt.Errorf("rtc: %d-byte write", len(data))
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if offset == 0 {
		r.index = data[0] & 0x7f
		return nil
	}
	if r.index > rtcD && r.index != rtcCentury {
		r.nvram[r.index] = data[0]
	}
	return nil
}

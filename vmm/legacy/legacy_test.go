package legacy

import (
	"testing"
	"time"
)

func TestI8042ResetPulseResets(t *testing.T) {
	resets := 0
	k := NewI8042(func() { resets++ })
	cmd := k.CommandPort()
	if err := cmd.WritePort(0, []byte{0xfe}); err != nil {
		t.Fatal(err)
	}
	if resets != 1 {
		t.Fatalf("resets = %d after 0xFE to port 0x64", resets)
	}
	if err := k.DataPort().WritePort(0, []byte{0xfe}); err != nil {
		t.Fatal(err)
	}
	if resets != 1 {
		t.Fatal("0xFE to the data port reset the machine")
	}
}

func TestI8042AnswersLinuxProbeCommands(t *testing.T) {
	tests := []struct {
		name    string
		cmd     byte
		param   []byte
		want    byte
		wantAux bool
	}{
		{"self test", 0xaa, nil, 0x55, false},
		{"read CTR", 0x20, nil, 0x30, false},
		{"keyboard port test", 0xab, nil, 0x00, false},
		{"aux loopback echoes on aux", 0xd3, []byte{0x5a}, 0x5a, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			k := NewI8042(func() {})
			cmd, data := k.CommandPort(), k.DataPort()
			b := []byte{0}
			cmd.ReadPort(0, b)
			if b[0]&statusOBF != 0 {
				t.Fatal("output buffer full before any command")
			}
			cmd.WritePort(0, []byte{tc.cmd})
			for _, p := range tc.param {
				data.WritePort(0, []byte{p})
			}
			cmd.ReadPort(0, b)
			if b[0]&statusOBF == 0 || (b[0]&statusAux != 0) != tc.wantAux {
				t.Fatalf("status %#x after command %#x", b[0], tc.cmd)
			}
			data.ReadPort(0, b)
			if b[0] != tc.want {
				t.Fatalf("answer %#x, want %#x", b[0], tc.want)
			}
		})
	}
}

func TestI8042WriteCTRIsReadBack(t *testing.T) {
	k := NewI8042(func() {})
	k.CommandPort().WritePort(0, []byte{0x60})
	k.DataPort().WritePort(0, []byte{0x47})
	k.CommandPort().WritePort(0, []byte{0x20})
	b := []byte{0}
	k.DataPort().ReadPort(0, b)
	if b[0] != 0x47 {
		t.Fatalf("CTR = %#x, want 0x47", b[0])
	}
}

func TestResetControlResetsOnlyOnBit2(t *testing.T) {
	tests := []struct {
		val   byte
		reset bool
	}{{0x02, false}, {0x06, true}, {0x0e, true}, {0x00, false}}
	for _, tc := range tests {
		n := 0
		r := NewResetControl(func() { n++ })
		if err := r.WritePort(0, []byte{tc.val}); err != nil {
			t.Fatal(err)
		}
		if (n == 1) != tc.reset {
			t.Errorf("write %#x: reset=%v, want %v", tc.val, n == 1, tc.reset)
		}
	}
}

func TestRTCReportsHostTimeInBCDAndNeverUpdates(t *testing.T) {
	at := time.Date(2026, time.November, 23, 21, 7, 59, 0, time.UTC)
	r := NewRTC(func() time.Time { return at })
	tests := []struct {
		reg  byte
		want byte
	}{
		{rtcSeconds, 0x59}, {rtcMinutes, 0x07}, {rtcHours, 0x21}, {rtcDay, 0x23},
		{rtcMonth, 0x11}, {rtcYear, 0x26}, {rtcCentury, 0x20}, {rtcWeekday, 0x02},
		{rtcA, regAIdle}, {rtcB, regB24h}, {rtcD, regDValid},
		{rtcA | 0x80, regAIdle}, // NMI-mask bit ignored
	}
	for _, tc := range tests {
		r.WritePort(0, []byte{tc.reg})
		b := []byte{0}
		if err := r.ReadPort(1, b); err != nil {
			t.Fatal(err)
		}
		if b[0] != tc.want {
			t.Errorf("register %#x = %#x, want %#x", tc.reg, b[0], tc.want)
		}
	}
	if b := []byte{0}; r.ReadPort(1, b) == nil && b[0]&0x80 != 0 {
		t.Error("update in progress")
	}
	r.WritePort(0, []byte{0x40})
	r.WritePort(1, []byte{0x99})
	r.WritePort(0, []byte{rtcSeconds})
	r.WritePort(1, []byte{0x00})
	b := []byte{0}
	r.WritePort(0, []byte{0x40})
	r.ReadPort(1, b)
	if b[0] != 0x99 {
		t.Errorf("CMOS byte 0x40 = %#x, want 0x99", b[0])
	}
	r.WritePort(0, []byte{rtcSeconds})
	r.ReadPort(1, b)
	if b[0] != 0x59 {
		t.Errorf("guest changed the seconds to %#x", b[0])
	}
}

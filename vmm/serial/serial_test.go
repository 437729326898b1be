package serial

import (
	"bytes"
	"testing"
)

type uart struct {
	t    *testing.T
	s    *Serial
	out  bytes.Buffer
	line []bool
}

func newUART(t *testing.T) *uart {
	u := &uart{t: t}
	u.s = New(&u.out, func(high bool) error { u.line = append(u.line, high); return nil })
	return u
}

func (u *uart) w(reg uint16, v byte) {
	u.t.Helper()
	if err := u.s.WritePort(reg, []byte{v}); err != nil {
		u.t.Fatal(err)
	}
}

func (u *uart) r(reg uint16) byte {
	u.t.Helper()
	b := []byte{0}
	if err := u.s.ReadPort(reg, b); err != nil {
		u.t.Fatal(err)
	}
	return b[0]
}

func TestTransmittedBytesReachTheWriterAndTransmitterStaysEmpty(t *testing.T) {
	u := newUART(t)
	for _, c := range []byte("hi\n") {
		if u.r(regLSR)&(lsrTHRE|lsrTEMT) != lsrTHRE|lsrTEMT {
			t.Fatal("LSR does not report an empty transmitter")
		}
		u.w(regData, c)
	}
	if u.out.String() != "hi\n" {
		t.Fatalf("console got %q", u.out.String())
	}
}

func TestRegistersAsLinux8250ProbeSeesThem(t *testing.T) {
	tests := []struct {
		name  string
		setup func(u *uart)
		reg   uint16
		want  byte
	}{
		{"scratch keeps its value", func(u *uart) { u.w(regSCR, 0xa5) }, regSCR, 0xa5},
		{"IER keeps only its four bits", func(u *uart) { u.w(regIER, 0xff) }, regIER, 0x0f},
		{"MCR keeps only five bits", func(u *uart) { u.w(regMCR, 0xff) }, regMCR, 0x1f},
		{"loopback RTS|OUT2 reads CTS|DCD", func(u *uart) { u.w(regMCR, mcrLoop|0x0a) }, regMSR, 0x90},
		{"loopback DTR|OUT1 reads DSR|RI", func(u *uart) { u.w(regMCR, mcrLoop|0x05) }, regMSR, 0x60},
		{"no loopback: carrier present", func(u *uart) {}, regMSR, msrCarrier},
		{"FIFO enabled shows in IIR", func(u *uart) { u.w(regIIR, fcrEnable) }, regIIR, iirFIFO | iirNoInt},
		{"no FIFO, no interrupt", func(u *uart) {}, regIIR, iirNoInt},
		{"DLAB reaches DLL", func(u *uart) { u.w(regLCR, lcrDLAB); u.w(regData, 1) }, regData, 1},
		{"DLAB reaches DLM", func(u *uart) { u.w(regLCR, lcrDLAB); u.w(regIER, 0x80) }, regIER, 0x80},
		{"DLAB off leaves IER", func(u *uart) { u.w(regLCR, lcrDLAB); u.w(regIER, 0x80); u.w(regLCR, 3) }, regIER, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			u := newUART(t)
			tc.setup(u)
			if got := u.r(tc.reg); got != tc.want {
				t.Fatalf("register %d = %#x, want %#x", tc.reg, got, tc.want)
			}
		})
	}
}

func TestLoopbackTransmitsNothing(t *testing.T) {
	u := newUART(t)
	u.w(regMCR, mcrLoop)
	u.w(regData, 'x')
	if u.out.Len() != 0 {
		t.Fatalf("loopback byte reached the console: %q", u.out.String())
	}
}

func TestTHREInterruptRaisedOnEnableAndClearedByIIRRead(t *testing.T) {
	u := newUART(t)
	u.w(regIER, ierTHRI)
	if len(u.line) != 1 || !u.line[0] {
		t.Fatalf("enabling THRI with an empty transmitter: line %v, want raised", u.line)
	}
	if got := u.r(regIIR); got != iirTHRI {
		t.Fatalf("IIR = %#x, want THRI", got)
	}
	if len(u.line) != 2 || u.line[1] {
		t.Fatalf("reading IIR did not lower the line: %v", u.line)
	}
	if got := u.r(regIIR); got != iirNoInt {
		t.Fatalf("second IIR read = %#x, want no interrupt", got)
	}
	u.w(regData, 'a')
	if len(u.line) != 3 || !u.line[2] {
		t.Fatalf("writing THR did not raise THRE again: %v", u.line)
	}
	u.w(regIER, 0)
	if len(u.line) != 4 || u.line[3] {
		t.Fatalf("disabling THRI did not lower the line: %v", u.line)
	}
}

func TestWideAccessIsAnError(t *testing.T) {
	u := newUART(t)
	if err := u.s.WritePort(regData, []byte{1, 2}); err == nil {
		t.Fatal("2-byte write accepted")
	}
}

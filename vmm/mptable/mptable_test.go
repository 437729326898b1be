package mptable

import (
	"bytes"
	"encoding/binary"
	"testing"
)

func sum(b []byte) byte {
	var s byte
	for _, c := range b {
		s += c
	}
	return s
}

func TestTableLayoutForLinuxMPParse(t *testing.T) {
	for _, cpus := range []int{1, 2, 8} {
		tab, err := Table(cpus)
		if err != nil {
			t.Fatal(err)
		}
		le := binary.LittleEndian
		fp, cfg := tab[:16], tab[16:]
		if string(fp[:4]) != "_MP_" || le.Uint32(fp[4:]) != Addr+16 || fp[8] != 1 || fp[9] != 4 || sum(fp) != 0 {
			t.Fatalf("%d CPUs: bad floating pointer % x", cpus, fp)
		}
		n := int(le.Uint16(cfg[4:]))
		if string(cfg[:4]) != "PCMP" || n != len(cfg) || sum(cfg[:n]) != 0 || le.Uint32(cfg[36:]) != LAPICAddr {
			t.Fatalf("%d CPUs: bad config header % x", cpus, cfg[:44])
		}
		wantEntries := cpus + 1 + 1 + 16 + 2
		if got := int(le.Uint16(cfg[34:])); got != wantEntries {
			t.Fatalf("%d CPUs: %d entries, want %d", cpus, got, wantEntries)
		}
		// Walk the entries as Linux's smp_read_mpc does.
		var ids []byte
		var bsp, ioapics, ioints, lints int
		for p := 44; p < n; {
			switch cfg[p] {
			case entryProcessor:
				ids = append(ids, cfg[p+1])
				if cfg[p+3]&cpuEnabled == 0 {
					t.Fatalf("CPU %d disabled", cfg[p+1])
				}
				if cfg[p+3]&cpuBSP != 0 {
					bsp++
				}
				p += 20
			case entryBus:
				if !bytes.Equal(cfg[p+2:p+8], []byte("ISA   ")) {
					t.Fatalf("bus %q", cfg[p+2:p+8])
				}
				p += 8
			case entryIOAPIC:
				ioapics++
				if cfg[p+1] != byte(cpus) || le.Uint32(cfg[p+4:]) != IOAPICAddr || cfg[p+3] != 1 {
					t.Fatalf("IOAPIC entry % x", cfg[p:p+8])
				}
				p += 8
			case entryIOInt:
				if cfg[p+5] != byte(ioints) || cfg[p+7] != byte(ioints) || cfg[p+6] != byte(cpus) {
					t.Fatalf("IRQ entry % x", cfg[p:p+8])
				}
				ioints++
				p += 8
			case entryLocalInt:
				if cfg[p+7] != byte(lints) {
					t.Fatalf("LINT entry % x", cfg[p:p+8])
				}
				lints++
				p += 8
			default:
				t.Fatalf("unknown entry type %d at %d", cfg[p], p)
			}
		}
		if len(ids) != cpus || bsp != 1 || ioapics != 1 || ioints != 16 || lints != 2 {
			t.Fatalf("%d CPUs: ids %v bsp %d ioapics %d irqs %d lints %d", cpus, ids, bsp, ioapics, ioints, lints)
		}
		for i, id := range ids {
			if int(id) != i {
				t.Fatalf("CPU ids %v", ids)
			}
		}
	}
}

func TestTableRefusesImpossibleCPUCounts(t *testing.T) {
	for _, n := range []int{0, -1, MaxCPUs + 1} {
		if _, err := Table(n); err == nil {
			t.Errorf("Table(%d) succeeded", n)
		}
	}
}

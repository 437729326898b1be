package net

import (
	"testing"

	"github.com/joeyrt/joey/internal/tap"
)

func TestTAPOffloadsFollowTheGuestsReceiveFeatures(t *testing.T) {
	csum, tso4, tso6, ecn := FeatureGuestCsum, FeatureGuestTSO4, FeatureGuestTSO6, FeatureGuestECN
	tests := []struct {
		name     string
		features uint64
		want     tap.Offload
	}{
		{"nothing", 0, 0},
		{"transmit offloads only", FeatureCsum | FeatureHostTSO4 | FeatureHostTSO6, 0},
		{"checksum", csum, tap.OffloadCsum},
		{"TSO4", csum | tso4, tap.OffloadCsum | tap.OffloadTSO4},
		{"TSO4, TSO6 and ECN", csum | tso4 | tso6 | ecn, tap.OffloadCsum | tap.OffloadTSO4 | tap.OffloadTSO6 | tap.OffloadTSOECN},
		{"ECN without TSO", csum | ecn, tap.OffloadCsum},
		{"TSO without checksum breaks the rules", tso4 | tso6, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := offloads(tt.features); got != tt.want {
				t.Fatalf("offloads(%#x) = %#x, want %#x", tt.features, got, tt.want)
			}
		})
	}
}

func TestAdmitPassesOnlyFramesTheDriverAccepted(t *testing.T) {
	csum, tso4, tso6, ecn := FeatureGuestCsum, FeatureGuestTSO4, FeatureGuestTSO6, FeatureGuestECN
	tests := []struct {
		name      string
		flags     byte
		gso       byte
		features  uint64
		ok        bool
		wantFlags byte
	}{
		{"plain frame", 0, gsoNone, 0, true, 0},
		{"partial checksum without GUEST_CSUM", hdrNeedsCsum, gsoNone, 0, false, 0},
		{"partial checksum with GUEST_CSUM", hdrNeedsCsum, gsoNone, csum, true, hdrNeedsCsum},
		{"DATA_VALID cleared without GUEST_CSUM", hdrDataValid, gsoNone, 0, true, 0},
		{"DATA_VALID kept with GUEST_CSUM", hdrDataValid, gsoNone, csum, true, hdrDataValid},
		{"TCPv4 GSO accepted", hdrNeedsCsum, gsoTCPv4, csum | tso4, true, hdrNeedsCsum},
		{"TCPv4 GSO not accepted", hdrNeedsCsum, gsoTCPv4, csum | tso6, false, hdrNeedsCsum},
		{"TCPv6 GSO accepted", hdrNeedsCsum, gsoTCPv6, csum | tso6, true, hdrNeedsCsum},
		{"TCPv6 GSO not accepted", hdrNeedsCsum, gsoTCPv6, csum | tso4, false, hdrNeedsCsum},
		{"ECN accepted", hdrNeedsCsum, gsoTCPv4 | gsoECN, csum | tso4 | ecn, true, hdrNeedsCsum},
		{"ECN not accepted", hdrNeedsCsum, gsoTCPv4 | gsoECN, csum | tso4, false, hdrNeedsCsum},
		{"ECN without GSO", 0, gsoECN, csum | tso4 | ecn, false, 0},
		{"UDP fragmentation never offered", hdrNeedsCsum, 3, csum | tso4 | tso6 | ecn, false, hdrNeedsCsum},
		{"UDP segmentation never offered", hdrNeedsCsum, 5, csum | tso4 | tso6 | ecn, false, hdrNeedsCsum},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hdr := make([]byte, HeaderLen)
			hdr[0], hdr[1] = tt.flags, tt.gso
			if got := admit(hdr, tt.features); got != tt.ok {
				t.Fatalf("admit = %v, want %v", got, tt.ok)
			}
			if tt.ok && hdr[0] != tt.wantFlags {
				t.Fatalf("flags after admit %#x, want %#x", hdr[0], tt.wantFlags)
			}
		})
	}
}

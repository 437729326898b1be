package net

import "github.com/joeyrt/joey/internal/tap"

// struct virtio_net_hdr flags and gso_type values (virtio 1.2 §5.1.6).
const (
	hdrNeedsCsum = 1
	hdrDataValid = 2

	gsoNone  = 0
	gsoTCPv4 = 1
	gsoTCPv6 = 4
	gsoECN   = 0x80
)

// offloads turns the driver's receive features into the TAP offloads that
// let the host stack hand over frames in that form. Segmentation without
// checksum offload means nothing (and the TAP refuses it), so a driver
// that accepted it against the dependency rules gets neither.
func offloads(features uint64) tap.Offload {
	if features&FeatureGuestCsum == 0 {
		return 0
	}
	o := tap.OffloadCsum
	if features&FeatureGuestTSO4 != 0 {
		o |= tap.OffloadTSO4
	}
	if features&FeatureGuestTSO6 != 0 {
		o |= tap.OffloadTSO6
	}
	if features&FeatureGuestECN != 0 && o&(tap.OffloadTSO4|tap.OffloadTSO6) != 0 {
		o |= tap.OffloadTSOECN
	}
	return o
}

// admit checks the header of a frame from the TAP against what the driver
// accepted, and clears what it may not see. Frames the TAP queued under
// offloads of an earlier driver fail it and are dropped.
func admit(hdr []byte, features uint64) bool {
	flags, gso := hdr[0], hdr[1]
	if features&FeatureGuestCsum == 0 {
		if flags&hdrNeedsCsum != 0 {
			return false
		}
		// DATA_VALID is an offload too: without GUEST_CSUM flags are 0.
		hdr[0] = 0
	}
	var ok bool
	switch gso &^ gsoECN {
	case gsoNone:
		return gso == gsoNone
	case gsoTCPv4:
		ok = features&FeatureGuestTSO4 != 0
	case gsoTCPv6:
		ok = features&FeatureGuestTSO6 != 0
	}
	if gso&gsoECN != 0 && features&FeatureGuestECN == 0 {
		return false
	}
	return ok
}

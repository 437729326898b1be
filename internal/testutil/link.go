package testutil

import (
	"testing"

	"github.com/vishvananda/netlink"
)

// AddrUp gives the link name, found through h, the address cidr and sets it
// up: the last step of every test network made by hand.
func AddrUp(t testing.TB, h *netlink.Handle, name, cidr string) {
	t.Helper()
	link, err := h.LinkByName(name)
	if err != nil {
		t.Fatal(err)
	}
	addr, err := netlink.ParseAddr(cidr)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.AddrAdd(link, addr); err != nil {
		t.Fatalf("address %s on %s: %v", cidr, name, err)
	}
	if err := h.LinkSetUp(link); err != nil {
		t.Fatalf("set %s up: %v", name, err)
	}
}

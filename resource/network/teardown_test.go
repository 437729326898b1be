package network

import (
	"context"
	"errors"
	"net"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"

	"github.com/joeyrt/joey/internal/tap"
	"github.com/joeyrt/joey/persist/api"
)

// persistentTap makes a TAP that outlives its files, as a crashed sandbox
// or another tool would leave one, and removes it at cleanup.
func persistentTap(t *testing.T, netnsPath, name string) {
	t.Helper()
	tp, err := tap.Create(context.Background(), tap.Options{Name: name, Queues: 1, Persist: true, NetNS: netnsPath})
	if err != nil {
		t.Fatalf("make TAP %s: %v", name, err)
	}
	if err := tp.Close(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := tap.Delete(context.Background(), netnsPath, name); err != nil && !errors.Is(err, os.ErrNotExist) {
			t.Errorf("delete TAP %s: %v", name, err)
		}
	})
}

// TestFailedSetupLeavesNothingBehind makes the second of two interfaces
// fail after the first was attached, and checks the namespace is as it
// was before Setup.
func TestFailedSetupLeavesNothingBehind(t *testing.T) {
	tests := []struct {
		name    string
		model   Model
		provoke func(t *testing.T, p *podNet)
		wantErr string
	}{
		{"TAP name taken", ModelTCFilter, func(t *testing.T, p *podNet) { persistentTap(t, p.pod, "tap1_joey") }, `"tap1_joey"`},
		{"ingress qdisc taken", ModelTCFilter, func(t *testing.T, p *podNet) {
			if err := p.hpod.QdiscAdd(ingressQdisc(mustLink(t, p.hpod, "eth1").Attrs().Index)); err != nil {
				t.Fatal(err)
			}
		}, `"eth1" already has a qdisc at its ingress (ingress)`},
		{"macvtap name taken", ModelMacvtap, func(t *testing.T, p *podNet) {
			attrs := netlink.NewLinkAttrs()
			attrs.Name, attrs.ParentIndex = "mvtap1_joey", mustLink(t, p.hpod, "eth1").Attrs().Index
			if err := p.hpod.LinkAdd(&netlink.Macvtap{Macvlan: netlink.Macvlan{LinkAttrs: attrs, Mode: netlink.MACVLAN_MODE_BRIDGE}}); err != nil {
				t.Fatal(err)
			}
		}, `"mvtap1_joey"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := newPodNet(t)
			eth0 := p.addVeth(t, "eth0", "peer0", podMAC, peerMAC)
			p.configure(t, eth0, "peer0")
			p.addVeth(t, "eth1", "peer1", "02:00:00:4a:0b:02", "02:00:00:4a:0b:01")
			tt.provoke(t, p)
			before := settledSnapshot(t, p.hpod)

			_, err := Setup(context.Background(), Options{NetNS: p.pod, Model: tt.model, NoVhostNet: true})
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !strings.Contains(err.Error(), `interface "eth1"`) {
				t.Fatalf("Setup error = %v, want one naming eth1 and %s", err, tt.wantErr)
			}
			t.Logf("Setup error: %v", err)
			requireSnapshot(t, p.hpod, before)
		})
	}
}

// TestTeardownFromStateUndoesSetupOfAnotherProcess sets up, forgets the
// Network value as a killed shim would (the VM still holding the queue
// files), and cleans up from the recorded endpoints alone.
func TestTeardownFromStateUndoesSetupOfAnotherProcess(t *testing.T) {
	for _, model := range []Model{ModelTCFilter, ModelMacvtap} {
		t.Run(string(model), func(t *testing.T) {
			p := newPodNet(t)
			eth0 := p.addVeth(t, "eth0", "peer0", podMAC, peerMAC)
			p.configure(t, eth0, "peer0")
			before := snapshot(t, p.hpod)

			var recorded []api.Endpoint
			n, err := Setup(context.Background(), Options{NetNS: p.pod, Model: model, NoVhostNet: true,
				Record: func(_ context.Context, e api.Endpoint) error { recorded = append(recorded, e); return nil }})
			if err != nil {
				t.Fatal(err)
			}
			dev, err := n.TakeDevices()
			if err != nil {
				t.Fatal(err)
			}
			defer dev[0].Close()
			// Only the persisted form crosses over.
			state := n.Describe()
			if !slices.Equal(state.Endpoints, recorded) {
				t.Fatalf("recorded %+v, described %+v", recorded, state.Endpoints)
			}

			if err := TeardownFromState(context.Background(), state.NetNS, state.Endpoints); err != nil {
				t.Fatalf("TeardownFromState: %v", err)
			}
			requireSnapshot(t, p.hpod, before)
			if err := TeardownFromState(context.Background(), state.NetNS, state.Endpoints); err != nil {
				t.Errorf("second TeardownFromState: %v", err)
			}
			// The first process's value finds everything gone and says so
			// without error.
			if err := n.Teardown(context.Background()); err != nil {
				t.Errorf("Teardown after TeardownFromState: %v", err)
			}
			requireSnapshot(t, p.hpod, before)
		})
	}
}

// TestTeardownFromStateKeepsWhatIsNotOurs checks that persisted names
// never delete a link of another kind or a foreign tc filter, and that a
// namespace that is gone is nothing to do.
func TestTeardownFromStateKeepsWhatIsNotOurs(t *testing.T) {
	p := newPodNet(t)
	eth0 := p.addVeth(t, "eth0", "peer0", podMAC, peerMAC)
	p.addVeth(t, "tap3_joey", "peer3", "02:00:00:4a:0c:02", "02:00:00:4a:0c:01")
	// A foreign filter next to one of ours on eth0's ingress qdisc.
	if err := p.hpod.QdiscAdd(ingressQdisc(eth0.Attrs().Index)); err != nil {
		t.Fatal(err)
	}
	ours := redirect(eth0.Attrs().Index, eth0.Attrs().Index)
	foreign := redirect(eth0.Attrs().Index, eth0.Attrs().Index)
	foreign.Priority = 1
	for _, f := range []*netlink.U32{ours, foreign} {
		if err := p.hpod.FilterAdd(f); err != nil {
			t.Fatal(err)
		}
	}

	err := TeardownFromState(context.Background(), p.pod, []api.Endpoint{{Interface: "eth0", Tap: "tap3_joey"}, {Interface: "eth9", Tap: "eth0"}})
	if err == nil || !strings.Contains(err.Error(), `"tap3_joey" is a veth link`) || !strings.Contains(err.Error(), `"eth0" is not a name joey gives`) {
		t.Errorf("TeardownFromState error = %v, want it to refuse the veth tap3_joey and the name eth0", err)
	}
	mustLink(t, p.hpod, "tap3_joey")
	fs, err := p.hpod.FilterList(eth0, netlink.HANDLE_INGRESS)
	if err != nil {
		t.Fatalf("ingress qdisc of eth0 gone with a foreign filter on it: %v", err)
	}
	if len(fs) != 1 || fs[0].Attrs().Priority != 1 {
		t.Errorf("eth0 filters after cleanup = %v, want only the foreign one", fs)
	}

	gone := t.TempDir() + "/netns"
	if err := os.WriteFile(gone, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := TeardownFromState(context.Background(), gone, []api.Endpoint{{Interface: "eth0", Tap: "tap0_joey"}}); err != nil {
		t.Errorf("TeardownFromState of an unmounted namespace = %v, want nil", err)
	}
}

// TestSetupAdoptsExistingTAPAndSkipsOthers checks the interfaces Setup
// leaves out (lo, a down link without addresses, a device joey made) and
// that a TAP found in the namespace is handed over as it is: no device is
// made for it, and Teardown gives it back as it was.
func TestSetupAdoptsExistingTAPAndSkipsOthers(t *testing.T) {
	p := newPodNet(t)
	// Both TAPs down: a TAP without its files has no carrier, and the
	// kernel's asynchronous carrier and IPv6 work would make the
	// namespace change by itself while the test looks.
	persistentTap(t, p.pod, "vmtap0")
	vmtap := mustLink(t, p.hpod, "vmtap0")
	if err := p.hpod.LinkSetMTU(vmtap, podMTU); err != nil {
		t.Fatal(err)
	}
	if err := p.hpod.LinkSetDown(vmtap); err != nil {
		t.Fatal(err)
	}
	addAddr(t, p.hpod, vmtap, "10.88.0.2/24")
	persistentTap(t, p.pod, "tap7_joey")
	if err := p.hpod.LinkSetDown(mustLink(t, p.hpod, "tap7_joey")); err != nil {
		t.Fatal(err)
	}
	if err := p.hpod.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "spare0"}, PeerName: "spare1"}); err != nil {
		t.Fatal(err)
	}
	before := snapshot(t, p.hpod)

	n, err := Setup(context.Background(), Options{NetNS: p.pod, Queues: 4, NoVhostNet: true})
	if err != nil {
		t.Fatalf("Setup: %v", err)
	}
	defer n.Teardown(context.Background())
	if len(n.Endpoints) != 1 {
		t.Fatalf("endpoints %v, want vmtap0 only", n.Interfaces())
	}
	e := n.Endpoints[0]
	in := e.Interface()
	if e.Kind() != KindTap || e.Device() != "" || e.Queues() != 1 || in.Name != "vmtap0" || in.Mtu != podMTU || in.Up ||
		len(in.Addresses) != 1 || in.Addresses[0].Address != "10.88.0.2" || in.HwAddr != vmtap.Attrs().HardwareAddr.String() {
		t.Errorf("endpoint %s device %q queues %d interface %v: want an adopted single-queue TAP vmtap0", e.Kind(), e.Device(), e.Queues(), in)
	}
	if d := n.Describe(); !slices.Equal(d.Endpoints, []api.Endpoint{{Interface: "vmtap0"}}) {
		t.Errorf("Describe endpoints = %+v, want vmtap0 with no device of ours", d.Endpoints)
	}
	dev, err := e.TakeDevice()
	if err != nil {
		t.Fatal(err)
	}
	defer dev.Close()
	// The namespace's kernel owns 10.88.0.2 on the TAP and answers.
	mac := mustMAC(t, "02:00:00:4a:0d:09")
	roundTrip(t, dev.TapFiles, arpRequest(mac, net.ParseIP("10.88.0.9"), net.ParseIP("10.88.0.2")),
		func(f []byte) bool { return isARPReply(f, mac, net.ParseIP("10.88.0.2")) })

	if err := n.Teardown(context.Background()); err != nil {
		t.Fatalf("Teardown: %v", err)
	}
	dev.Close()
	requireSnapshot(t, p.hpod, before)
}

// TestSetupRefusesWhatItCannotCarry checks that an interface of a kind joey
// does not carry fails Setup before anything is made.
func TestSetupRefusesWhatItCannotCarry(t *testing.T) {
	p := newPodNet(t)
	eth0 := p.addVeth(t, "eth0", "peer0", podMAC, peerMAC)
	p.configure(t, eth0, "peer0")
	if err := p.hpod.LinkAdd(&netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "br9"}}); err != nil {
		t.Fatal(err)
	}
	setUp(t, p.hpod, mustLink(t, p.hpod, "br9"))
	before := snapshot(t, p.hpod)
	_, err := Setup(context.Background(), Options{NetNS: p.pod, NoVhostNet: true})
	if !isNotImplemented(err) || !strings.Contains(err.Error(), `"br9" is a bridge link`) {
		t.Fatalf("Setup error = %v, want not implemented naming br9 as a bridge", err)
	}
	requireSnapshot(t, p.hpod, before)
}

package tap

import (
	"context"
	"net"
	"strings"
	"testing"
)

func TestBadOptionsFailNamingTheField(t *testing.T) {
	mac := func(s string) net.HardwareAddr {
		m, err := net.ParseMAC(s)
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	ok := Options{Name: "jt0", Queues: 1}
	with := func(f func(*Options)) Options { o := ok; f(&o); return o }
	tests := []struct {
		name string
		open bool // Open instead of Create
		opts Options
		want string
	}{
		{"name over 15 bytes", false, with(func(o *Options) { o.Name = "a-name-of-16byte" }), `name "a-name-of-16byte" longer than 15 bytes`},
		{"name with slash", false, with(func(o *Options) { o.Name = "a/b" }), `name "a/b" contains '/'`},
		{"name with space", false, with(func(o *Options) { o.Name = "a b" }), `name "a b" contains`},
		{"name template", false, with(func(o *Options) { o.Name = "tap%d" }), `name "tap%d" contains`},
		{"name dot-dot", false, with(func(o *Options) { o.Name = ".." }), `name ".." is not a valid link name`},
		{"open without name", true, with(func(o *Options) { o.Name = "" }), "Name is empty"},
		{"zero queues", false, with(func(o *Options) { o.Queues = 0 }), "Queues 0 out of range 1..256"},
		{"negative queues", true, with(func(o *Options) { o.Queues = -1 }), "Queues -1 out of range"},
		{"too many queues", false, with(func(o *Options) { o.Queues = 257 }), "Queues 257 out of range"},
		{"MTU below minimum", false, with(func(o *Options) { o.MTU = 67 }), "MTU 67 out of range 68..65521"},
		{"MTU above a TAP's maximum", false, with(func(o *Options) { o.MTU = 65522 }), "MTU 65522 out of range"},
		{"short MAC", false, with(func(o *Options) { o.MAC = net.HardwareAddr{2, 0, 0, 0, 1} }), "is 5 bytes"},
		{"multicast MAC", false, with(func(o *Options) { o.MAC = mac("03:00:00:00:00:01") }), "MAC 03:00:00:00:00:01 is a multicast address"},
		{"zero MAC", true, with(func(o *Options) { o.MAC = mac("00:00:00:00:00:00") }), "is all zeros"},
		{"persist on open", true, with(func(o *Options) { o.Persist = true }), "Persist applies to Create only"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var tp *Tap
			var err error
			if tt.open {
				tp, err = Open(context.Background(), tt.opts)
			} else {
				tp, err = Create(context.Background(), tt.opts)
			}
			if err == nil {
				tp.Close()
				t.Fatalf("got no error, want one containing %q", tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %q does not contain %q", err, tt.want)
			}
		})
	}
}

func TestValidOptionsPass(t *testing.T) {
	tests := []struct {
		name     string
		opts     Options
		needName bool
	}{
		{"kernel-chosen name", Options{Queues: 1}, false},
		{"15-byte name", Options{Name: "abcdefghijklmno", Queues: 1}, true},
		{"MTU bounds", Options{Name: "t", Queues: 2, MTU: 68}, true},
		{"largest TAP MTU", Options{Name: "t", Queues: 256, MTU: 65521}, true},
		{"local unicast MAC", Options{Name: "t", Queues: 1, MAC: net.HardwareAddr{2, 0, 0, 0, 0, 1}}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.opts.validate(tt.needName); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestDeleteRejectsBadName(t *testing.T) {
	err := Delete(context.Background(), "", "")
	if err == nil || !strings.Contains(err.Error(), "Name is empty") {
		t.Fatalf("Delete with empty name: %v", err)
	}
}

func TestCanceledContextStopsBeforeTouchingTheHost(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Create(ctx, Options{Name: "jt0", Queues: 1}); err == nil || !strings.Contains(err.Error(), "context canceled") {
		t.Fatalf("Create with canceled context: %v", err)
	}
}

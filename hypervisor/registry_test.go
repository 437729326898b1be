package hypervisor

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
)

type namedDriver string

func (n namedDriver) Name() string { return string(n) }
func (namedDriver) Capabilities(context.Context) (Capabilities, error) {
	return Capabilities{}, errors.New("not a real driver")
}
func (namedDriver) Start(context.Context, *Config) (VM, error) {
	return nil, errors.New("not a real driver")
}

func TestRegistryGetReturnsTheRegisteredDriver(t *testing.T) {
	var r Registry
	for _, n := range []string{"qemu", "builtin"} {
		if err := r.Register(namedDriver(n)); err != nil {
			t.Fatal(err)
		}
	}
	d, err := r.Get("qemu")
	if err != nil || d.Name() != "qemu" {
		t.Fatalf("Get(qemu) = %v, %v", d, err)
	}
	if got := r.Names(); !slices.Equal(got, []string{"builtin", "qemu"}) {
		t.Fatalf("Names() = %q", got)
	}
}

func TestRegistryGetUnknownListsTheRegisteredOnes(t *testing.T) {
	var r Registry
	_, err := r.Get("qemu")
	if !errors.Is(err, errdefs.ErrNotFound) || !strings.Contains(err.Error(), "registered: none") {
		t.Fatalf("empty registry: %v", err)
	}
	if err := r.Register(namedDriver("builtin")); err != nil {
		t.Fatal(err)
	}
	_, err = r.Get("firecracker")
	if !errors.Is(err, errdefs.ErrNotFound) || !strings.Contains(err.Error(), `"firecracker" is not registered (registered: builtin)`) {
		t.Fatalf("unknown name: %v", err)
	}
}

func TestRegistryRefusesDuplicatesAndNil(t *testing.T) {
	var r Registry
	if err := r.Register(namedDriver("qemu")); err != nil {
		t.Fatal(err)
	}
	if err := r.Register(namedDriver("qemu")); !errors.Is(err, errdefs.ErrAlreadyExists) {
		t.Fatalf("duplicate: %v", err)
	}
	if err := r.Register(nil); err == nil {
		t.Fatal("nil driver accepted")
	}
	if err := r.Register(namedDriver("")); err == nil {
		t.Fatal("empty name accepted")
	}
}

package kmod

import (
	"strings"
	"testing"
)

// mod is a test module under kernel/ with direct dependencies, as its
// modinfo would list them.
func mod(name string, deps ...string) Module {
	return Module{Name: name, Path: "kernel/" + name + ".ko", Depends: deps}
}

func names(ms []*Module) string {
	var s []string
	for _, m := range ms {
		s = append(s, m.Name)
	}
	return strings.Join(s, " ")
}

func TestResolveLoadOrder(t *testing.T) {
	crc := func(x *Index) {
		x.AddAlias("crypto-crc32c", "crc32c_generic")
		x.AddAlias("crypto-crc32c", "crc32c-intel")
	}
	tests := []struct {
		name    string
		modules []Module
		setup   func(*Index)
		roots   []string
		want    string
	}{{
		name:    "diamond loads the shared dependency once, first",
		modules: []Module{mod("a", "b", "c"), mod("b", "d"), mod("c", "d"), mod("d")},
		roots:   []string{"a"},
		want:    "d c b a",
	}, {
		name: "alias softdep is satisfied by the candidate already needed",
		modules: []Module{
			{Name: "ext4", Path: "kernel/fs/ext4/ext4.ko", Depends: []string{"jbd2"}, SoftPre: []string{"crypto-crc32c"}},
			mod("jbd2"), mod("crc32c_generic"), mod("crc32c_intel"),
		},
		setup: crc,
		roots: []string{"ext4", "crc32c_generic"},
		want:  "crc32c_generic jbd2 ext4",
	}, {
		name: "alias softdep with no needed candidate loads every candidate",
		modules: []Module{
			{Name: "ext4", Path: "kernel/fs/ext4/ext4.ko", SoftPre: []string{"crypto-crc32c"}},
			mod("crc32c_generic"), mod("crc32c_intel"),
		},
		setup: crc,
		roots: []string{"ext4"},
		want:  "crc32c_generic crc32c_intel ext4",
	}, {
		name:    "softdep from modules.softdep by module name comes first",
		modules: []Module{mod("overlay"), mod("crc16")},
		setup:   func(x *Index) { x.AddSoftdep("overlay", []string{"crc16"}) },
		roots:   []string{"overlay"},
		want:    "crc16 overlay",
	}, {
		name:    "softdep that matches nothing is skipped",
		modules: []Module{{Name: "a", Path: "kernel/a.ko", SoftPre: []string{"nothere"}}},
		roots:   []string{"a"},
		want:    "a",
	}, {
		name:    "softdep on a built-in alias needs nothing",
		modules: []Module{{Name: "a", Path: "kernel/a.ko", SoftPre: []string{"crypto-crc32c"}}, mod("crc32c_intel")},
		setup: func(x *Index) {
			x.AddAlias("crypto-crc32c", "crc32c_intel")
			x.AddBuiltinAlias("crypto_crc32c")
		},
		roots: []string{"a"},
		want:  "a",
	}, {
		name:    "built-in roots and dependencies are left out",
		modules: []Module{mod("a", "virtio")},
		setup:   func(x *Index) { x.AddBuiltin("kernel/drivers/virtio/virtio.ko") },
		roots:   []string{"virtio", "a"},
		want:    "a",
	}, {
		name:    "dashes and underscores name the same module",
		modules: []Module{{Name: "virtio-rng", Path: "kernel/virtio-rng.ko", Depends: []string{"virtio-ring"}}, mod("virtio_ring")},
		roots:   []string{"virtio_rng"},
		want:    "virtio_ring virtio_rng",
	}, {
		name:    "roots keep their order when independent",
		modules: []Module{mod("z"), mod("a"), mod("m")},
		roots:   []string{"z", "a", "m", "a"},
		want:    "z a m",
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			x := NewIndex()
			for _, m := range tt.modules {
				if err := x.Add(m); err != nil {
					t.Fatal(err)
				}
			}
			if tt.setup != nil {
				tt.setup(x)
			}
			got, err := x.Resolve(tt.roots)
			if err != nil {
				t.Fatalf("Resolve: %v", err)
			}
			if names(got) != tt.want {
				t.Errorf("load order %q, want %q", names(got), tt.want)
			}
		})
	}
}

func TestResolveErrors(t *testing.T) {
	tests := []struct {
		name    string
		modules []Module
		roots   []string
		want    string
	}{{
		name:  "missing root is named",
		roots: []string{"virtio_blk"},
		want:  "required module virtio_blk is neither",
	}, {
		name:    "missing dependency is named with who needs it",
		modules: []Module{mod("9p", "netfs"), mod("netfs", "fscache")},
		roots:   []string{"9p"},
		want:    "module fscache (needed by netfs ← 9p) is neither",
	}, {
		name:    "cycle is an error",
		modules: []Module{mod("a", "b"), mod("b", "a")},
		roots:   []string{"a"},
		want:    "cycle",
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			x := NewIndex()
			for _, m := range tt.modules {
				if err := x.Add(m); err != nil {
					t.Fatal(err)
				}
			}
			got, err := x.Resolve(tt.roots)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Resolve = %q, %v; want an error containing %q", names(got), err, tt.want)
			}
		})
	}
}

func TestAddRejectsTwoFilesForOneModule(t *testing.T) {
	x := NewIndex()
	if err := x.Add(Module{Name: "virtio_rng", Path: "kernel/a/virtio-rng.ko"}); err != nil {
		t.Fatal(err)
	}
	err := x.Add(Module{Name: "virtio-rng", Path: "kernel/b/virtio_rng.ko.xz"})
	if err == nil || !strings.Contains(err.Error(), "kernel/a/virtio-rng.ko and kernel/b/virtio_rng.ko.xz") {
		t.Fatalf("Add of a second virtio_rng: %v, want an error naming both files", err)
	}
}

func TestName(t *testing.T) {
	for in, want := range map[string]string{
		"kernel/drivers/char/hw_random/virtio-rng.ko": "virtio_rng",
		"kernel/fs/9p/9p.ko.xz":                       "9p",
		"ext4.ko.zst":                                 "ext4",
		"crc32c-intel":                                "crc32c_intel",
		"kernel/net/9p/9pnet_virtio.ko.gz":            "9pnet_virtio",
		"some.kobj":                                   "some.kobj",
	} {
		if got := Name(in); got != want {
			t.Errorf("Name(%q) = %q, want %q", in, got, want)
		}
	}
}

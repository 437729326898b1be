package virt

import (
	"context"
	"reflect"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func hostSpec() *specs.Spec {
	return &specs.Spec{
		Version:  specs.Version,
		Hostname: "pod",
		Root:     &specs.Root{Path: "rootfs"},
		Process: &specs.Process{
			Args:            []string{"sh"},
			ApparmorProfile: "docker-default",
			SelinuxLabel:    "system_u:system_r:container_t:s0",
		},
		Mounts: []specs.Mount{{Destination: "/data", Type: "bind", Source: "/srv/data", Options: []string{"rbind"}}},
		Hooks:  &specs.Hooks{Prestart: []specs.Hook{{Path: "/usr/bin/hook"}}},
		Linux: &specs.Linux{
			CgroupsPath: "/kubepods/pod1/c1",
			MountLabel:  "system_u:object_r:container_file_t:s0",
			Seccomp:     &specs.LinuxSeccomp{DefaultAction: specs.ActErrno},
			Devices:     []specs.LinuxDevice{{Path: "/dev/fuse", Type: "c", Major: 10, Minor: 229}},
			Namespaces: []specs.LinuxNamespace{
				{Type: specs.PIDNamespace},
				{Type: specs.NetworkNamespace, Path: "/var/run/netns/cni-1"},
				{Type: specs.IPCNamespace, Path: "/proc/42/ns/ipc"},
				{Type: specs.UTSNamespace, Path: "/proc/42/ns/uts"},
				{Type: specs.MountNamespace},
			},
			Sysctl: map[string]string{
				"net.ipv4.ip_unprivileged_port_start": "0",
				"kernel.shm_rmid_forced":              "1",
			},
			Resources: &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: ptr(int64(64 << 20))}},
		},
		Annotations: map[string]string{"a": "b"},
	}
}

func ptr[T any](v T) *T { return &v }

func TestGuestSpecRemovesWhatNamesTheHost(t *testing.T) {
	guestMounts := []specs.Mount{{Destination: "/data", Type: "bind", Source: "/run/joey/shared/c1/mounts/0", Options: []string{"rbind"}}}
	tests := []struct {
		name  string
		edit  func(s *specs.Spec)
		check func(t *testing.T, g *specs.Spec)
	}{
		{"root is the share's rootfs", nil, func(t *testing.T, g *specs.Spec) {
			if *g.Root != (specs.Root{Path: "/run/joey/shared/c1/rootfs"}) {
				t.Errorf("root = %+v", *g.Root)
			}
		}},
		{"readonly root stays readonly", func(s *specs.Spec) { s.Root.Readonly = true }, func(t *testing.T, g *specs.Spec) {
			if !g.Root.Readonly {
				t.Error("root.readonly was dropped")
			}
		}},
		{"bind sources are the share's", nil, func(t *testing.T, g *specs.Spec) {
			if !reflect.DeepEqual(g.Mounts, guestMounts) {
				t.Errorf("mounts = %+v", g.Mounts)
			}
		}},
		{"network namespace dropped and no paths", nil, func(t *testing.T, g *specs.Spec) {
			want := []specs.LinuxNamespace{
				{Type: specs.PIDNamespace}, {Type: specs.IPCNamespace}, {Type: specs.UTSNamespace}, {Type: specs.MountNamespace},
			}
			if !reflect.DeepEqual(g.Linux.Namespaces, want) {
				t.Errorf("namespaces = %+v, want %+v", g.Linux.Namespaces, want)
			}
		}},
		{"seccomp stripped", nil, func(t *testing.T, g *specs.Spec) {
			if g.Linux.Seccomp != nil {
				t.Error("seccomp kept")
			}
		}},
		{"labels, hooks and host devices stripped", nil, func(t *testing.T, g *specs.Spec) {
			if g.Process.ApparmorProfile != "" || g.Process.SelinuxLabel != "" || g.Linux.MountLabel != "" {
				t.Errorf("labels kept: %q %q %q", g.Process.ApparmorProfile, g.Process.SelinuxLabel, g.Linux.MountLabel)
			}
			if g.Hooks != nil || g.Linux.Devices != nil {
				t.Errorf("hooks %+v / devices %+v kept", g.Hooks, g.Linux.Devices)
			}
		}},
		{"cgroups path under /joey", nil, func(t *testing.T, g *specs.Spec) {
			if g.Linux.CgroupsPath != "/joey/c1" {
				t.Errorf("cgroupsPath = %q", g.Linux.CgroupsPath)
			}
		}},
		{"net sysctls go, others stay", nil, func(t *testing.T, g *specs.Spec) {
			if want := map[string]string{"kernel.shm_rmid_forced": "1"}; !reflect.DeepEqual(g.Linux.Sysctl, want) {
				t.Errorf("sysctl = %v, want %v", g.Linux.Sysctl, want)
			}
		}},
		{"the rest is kept", nil, func(t *testing.T, g *specs.Spec) {
			if g.Hostname != "pod" || g.Annotations["a"] != "b" || *g.Linux.Resources.Memory.Limit != 64<<20 || g.Process.Args[0] != "sh" {
				t.Errorf("lost fields: %+v", g)
			}
		}},
		{"a spec without linux gets a cgroups path", func(s *specs.Spec) { s.Linux = nil }, func(t *testing.T, g *specs.Spec) {
			if g.Linux == nil || g.Linux.CgroupsPath != "/joey/c1" || len(g.Linux.Namespaces) != 0 {
				t.Errorf("linux = %+v", g.Linux)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			host := hostSpec()
			if tt.edit != nil {
				tt.edit(host)
			}
			before := hostSpec()
			if tt.edit != nil {
				tt.edit(before)
			}
			g, err := guestSpec(context.Background(), host, "c1", "/run/joey/shared/c1/rootfs", guestMounts)
			if err != nil {
				t.Fatal(err)
			}
			tt.check(t, g)
			if !reflect.DeepEqual(host, before) {
				t.Error("guestSpec changed the host's spec")
			}
		})
	}
}

func TestGuestSpecRefusesASpecWithoutProcess(t *testing.T) {
	s := hostSpec()
	s.Process = nil
	if _, err := guestSpec(context.Background(), s, "c1", "/r", nil); err == nil {
		t.Fatal("accepted a spec without process")
	}
}

func TestNetSysctlsAreTheSandboxs(t *testing.T) {
	got := netSysctls(hostSpec())
	if want := map[string]string{"net.ipv4.ip_unprivileged_port_start": "0"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("netSysctls = %v, want %v", got, want)
	}
}

func TestGuestProcessDropsLabelsOfExecs(t *testing.T) {
	p := &specs.Process{Args: []string{"ls"}, ApparmorProfile: "docker-default", SelinuxLabel: "x"}
	g := guestProcess(p)
	if g.ApparmorProfile != "" || g.SelinuxLabel != "" || g.Args[0] != "ls" {
		t.Fatalf("guestProcess = %+v", g)
	}
	if p.ApparmorProfile == "" {
		t.Fatal("guestProcess changed its argument")
	}
}

package image

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/joeyrt/joey/image/internal/imagetest"
	"github.com/joeyrt/joey/image/kmod"
)

func build(t *testing.T, o Options) *Result {
	t.Helper()
	var progress bytes.Buffer
	o.Progress = &progress
	res, err := Build(context.Background(), o)
	if err != nil {
		t.Fatalf("Build: %v\nprogress:\n%s", err, progress.String())
	}
	return res
}

// checkLoadOrder fails unless every module comes after its dependencies,
// none twice, using the dependencies of fakeModules.
func checkLoadOrder(t *testing.T, modules []string) {
	t.Helper()
	deps := map[string][]string{}
	for _, m := range fakeModules {
		if m.deps != "" {
			deps[kmod.Name(m.path)] = strings.Split(m.deps, ",")
		}
	}
	deps["ext4"] = append(deps["ext4"], "crc32c_generic") // its softdep
	pos := map[string]int{}
	for i, p := range modules {
		n := kmod.Name(p)
		if _, dup := pos[n]; dup {
			t.Errorf("%s is listed twice", n)
		}
		pos[n] = i
	}
	for n, i := range pos {
		for _, d := range deps[n] {
			if j, ok := pos[d]; d != "virtio_ring" && (!ok || j > i) {
				t.Errorf("%s is loaded before its dependency %s (positions %d, %d)", n, d, i, j)
			}
		}
	}
}

func TestBuildWritesKernelInitrdAndManifest(t *testing.T) {
	agent := fakeAgent(t)
	out := filepath.Join(t.TempDir(), "image")
	res := build(t, Options{KernelPackage: fakeKernelDeb(t), Agent: agent, Out: out})
	if res.UpToDate || res.Dir != out {
		t.Errorf("Result = %+v, want a fresh build in %s", res, out)
	}

	m, err := ReadManifest(out)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Verify(context.Background(), out); err != nil {
		t.Fatalf("Verify right after Build: %v", err)
	}
	if m.KernelVersion != fakeRelease || m.Kernel.Kind != "package" || m.Agent.Version != "fake-agent 1.0" || m.FormatVersion != FormatVersion {
		t.Errorf("manifest %+v", m)
	}
	checkLoadOrder(t, m.Modules)
	var names []string
	for _, p := range m.Modules {
		names = append(names, kmod.Name(p))
	}
	for _, want := range append(RootModules(), "jbd2", "fscache", "net_failover") {
		if !slices.Contains(names, want) {
			t.Errorf("modules %v lack %s", names, want)
		}
	}
	for _, unwanted := range []string{"unused", "crc32c_intel", "virtio_ring"} {
		if slices.Contains(names, unwanted) {
			t.Errorf("modules %v include %s (unneeded, other crc32c provider, or built in)", names, unwanted)
		}
	}

	agentBytes, _ := os.ReadFile(agent)
	vmlinux, _ := os.ReadFile(filepath.Join(out, VmlinuxFile))
	if !bytes.Equal(vmlinux, agentBytes) || m.VmlinuxPVH {
		t.Errorf("vmlinux is not the decompressed payload (%d bytes, want %d) or PVH is claimed (%v)", len(vmlinux), len(agentBytes), m.VmlinuxPVH)
	}

	files := readInitrd(t, filepath.Join(out, InitrdFile))
	if init, ok := files["init"]; !ok || !bytes.Equal(init.data, agentBytes) || init.mode != 0o100755 {
		t.Errorf("init: present %v, mode %o; want the agent, mode 100755", ok, init.mode)
	}
	list := files[modulesListPath].data
	if string(list) != strings.Join(m.Modules, "\n")+"\n" {
		t.Errorf("%s is\n%s\nwant the manifest's modules", modulesListPath, list)
	}
	for _, p := range m.Modules {
		if f, ok := files["lib/modules/"+fakeRelease+"/"+p]; !ok || f.mode != 0o100644 || len(f.data) == 0 {
			t.Errorf("initrd lacks module %s (or it is empty or not 0644)", p)
		}
	}
	if string(files[kernelVersionPath].data) != fakeRelease+"\n" {
		t.Errorf("%s = %q", kernelVersionPath, files[kernelVersionPath].data)
	}
	for _, d := range []string{"proc", "sys", "dev", "run", "tmp", "etc", "mnt", "lib/modules"} {
		if files[d].mode != 0o40755 {
			t.Errorf("directory /%s: mode %o, want 40755", d, files[d].mode)
		}
	}
	if files["dev/console"].mode != 0o20600 {
		t.Errorf("dev/console: mode %o, want 20600", files["dev/console"].mode)
	}
	for _, absent := range []string{busyboxPath, debugConsolePath} {
		if _, ok := files[absent]; ok {
			t.Errorf("%s is in an image built without --debug-console", absent)
		}
	}
}

func TestBuildIsReproducible(t *testing.T) {
	deb, agent := fakeKernelDeb(t), fakeAgent(t)
	a, b := filepath.Join(t.TempDir(), "a"), filepath.Join(t.TempDir(), "b")
	build(t, Options{KernelPackage: deb, Agent: agent, Out: a})
	build(t, Options{KernelPackage: deb, Agent: agent, Out: b})
	for _, name := range []string{VmlinuzFile, VmlinuxFile, InitrdFile, ManifestFile} {
		x, _ := os.ReadFile(filepath.Join(a, name))
		y, _ := os.ReadFile(filepath.Join(b, name))
		if len(x) == 0 || !bytes.Equal(x, y) {
			t.Errorf("%s differs between two builds of the same inputs (%d and %d bytes)", name, len(x), len(y))
		}
	}
}

func TestBuildReusesAnUpToDateImage(t *testing.T) {
	deb, agent := fakeKernelDeb(t), fakeAgent(t)
	out := filepath.Join(t.TempDir(), "image")
	first := build(t, Options{KernelPackage: deb, Agent: agent, Out: out})

	var progress bytes.Buffer
	again, err := Build(context.Background(), Options{KernelPackage: deb, Agent: agent, Out: out, Progress: &progress})
	if err != nil || !again.UpToDate || again.Manifest.InputsDigest != first.Manifest.InputsDigest {
		t.Fatalf("second Build = %+v, %v; want UpToDate with the same digest", again, err)
	}
	if strings.TrimSpace(progress.String()) != "guest image up to date" {
		t.Errorf("progress of an up-to-date build: %q", progress.String())
	}

	// A changed option or a damaged file means a real build again.
	if res := build(t, Options{KernelPackage: deb, Agent: agent, Out: out, DebugConsole: true, Busybox: agent}); res.UpToDate {
		t.Error("--debug-console did not change the inputs digest")
	}
	if err := os.WriteFile(filepath.Join(out, InitrdFile), []byte("damaged"), 0o644); err != nil {
		t.Fatal(err)
	}
	if res := build(t, Options{KernelPackage: deb, Agent: agent, Out: out, DebugConsole: true, Busybox: agent}); res.UpToDate {
		t.Error("a damaged initrd.img was reported up to date")
	}
	m, _ := ReadManifest(out)
	if err := m.Verify(context.Background(), out); err != nil {
		t.Errorf("the rebuild did not repair the image: %v", err)
	}
}

func TestBuildDebugConsoleAddsBusybox(t *testing.T) {
	busybox := DefaultBusybox
	if _, err := staticBinary(busybox, "busybox", ""); err != nil {
		t.Skipf("no static busybox here (apt-get install busybox-static): %v", err)
	}
	out := filepath.Join(t.TempDir(), "image")
	res := build(t, Options{KernelPackage: fakeKernelDeb(t), Agent: fakeAgent(t), Out: out, DebugConsole: true})
	files := readInitrd(t, filepath.Join(out, InitrdFile))
	want, _ := os.ReadFile(busybox)
	if f := files[busyboxPath]; !bytes.Equal(f.data, want) || f.mode != 0o100755 {
		t.Errorf("%s: %d bytes mode %o, want /bin/busybox (%d bytes) mode 100755", busyboxPath, len(f.data), f.mode, len(want))
	}
	if string(files[debugConsolePath].data) != "1\n" || !res.Manifest.DebugConsole {
		t.Errorf("%s = %q, manifest debug_console %v", debugConsolePath, files[debugConsolePath].data, res.Manifest.DebugConsole)
	}
}

// leftovers lists what a build left beside out: nothing but out itself.
func leftovers(t *testing.T, out string) []string {
	entries, _ := os.ReadDir(filepath.Dir(out))
	var names []string
	for _, e := range entries {
		if e.Name() != filepath.Base(out) {
			names = append(names, e.Name())
		}
	}
	return names
}

func TestFailedBuildKeepsThePreviousImage(t *testing.T) {
	agent := fakeAgent(t)
	out := filepath.Join(t.TempDir(), "image")
	build(t, Options{KernelPackage: fakeKernelDeb(t), Agent: agent, Out: out})
	before, _ := os.ReadFile(filepath.Join(out, ManifestFile))

	// A kernel whose bzImage payload is not xz or gzip fails after
	// vmlinuz is already written to the staging directory.
	files := fakeKernelFiles(t, []byte("x"))
	files["boot/vmlinuz-"+fakeRelease] = imagetest.BzImage(27, 0x020f, 0x3a5, []byte("BZh91AY&SY not supported"))
	badPayload := imagetest.BuildDeb(t, files)

	tests := []struct {
		name, deb, want string
	}{
		{"missing module", fakeKernelDeb(t, "overlay"), "required module overlay is neither"},
		{"undecodable kernel", badPayload, "only xz and gzip"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Build(context.Background(), Options{KernelPackage: tt.deb, Agent: agent, Out: out})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Build error %v, want one containing %q", err, tt.want)
			}
			after, _ := os.ReadFile(filepath.Join(out, ManifestFile))
			if !bytes.Equal(before, after) {
				t.Error("the failed build changed the manifest")
			}
			m, _ := ReadManifest(out)
			if err := m.Verify(context.Background(), out); err != nil {
				t.Errorf("the previous image is damaged: %v", err)
			}
			if l := leftovers(t, out); len(l) != 0 {
				t.Errorf("the failed build left %v beside %s", l, out)
			}
		})
	}
}

func TestBuildFromAnInstalledKernel(t *testing.T) {
	agent := fakeAgent(t)
	vmlinux, _ := os.ReadFile(agent)
	root := t.TempDir()
	files := fakeKernelFiles(t, vmlinux)
	// depmod's modules.dep, from the modules' own dependencies.
	var dep strings.Builder
	paths := map[string]string{}
	for _, m := range fakeModules {
		paths[kmod.Name(m.path)] = m.path
	}
	for _, m := range fakeModules {
		dep.WriteString(m.path + ":")
		for _, d := range strings.Split(m.deps, ",") {
			if p, ok := paths[d]; ok {
				dep.WriteString(" " + p)
			}
		}
		dep.WriteString("\n")
	}
	mods := "lib/modules/" + fakeRelease + "/"
	files[mods+"modules.dep"] = []byte(dep.String())
	files[mods+"modules.softdep"] = []byte("softdep ext4 pre: crypto-crc32c\n")
	files[mods+"modules.alias"] = []byte("alias crypto-crc32c crc32c_generic\nalias crypto-crc32c crc32c_intel\n")
	imagetest.WriteTree(t, root, files)

	out := filepath.Join(t.TempDir(), "image")
	res := build(t, Options{KernelVersion: fakeRelease, Root: root, Agent: agent, Out: out})
	if res.Manifest.Kernel.Kind != "installed" || res.Manifest.Kernel.Name != fakeRelease {
		t.Errorf("manifest kernel %+v, want installed %s", res.Manifest.Kernel, fakeRelease)
	}
	checkLoadOrder(t, res.Manifest.Modules)
	if !build(t, Options{KernelVersion: fakeRelease, Root: root, Agent: agent, Out: out}).UpToDate {
		t.Error("second build from the same installed kernel was not up to date")
	}
	// Changing a module the image carries changes the inputs.
	os.WriteFile(filepath.Join(root, mods, "kernel/fs/overlayfs/overlay.ko"),
		imagetest.Module("vermagic="+fakeRelease+" SMP", "description=rebuilt"), 0o644)
	if build(t, Options{KernelVersion: fakeRelease, Root: root, Agent: agent, Out: out}).UpToDate {
		t.Error("a rebuilt overlay.ko did not change the inputs digest")
	}
}

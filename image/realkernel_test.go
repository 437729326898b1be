package image

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/joeyrt/joey/image/kernel"
	"github.com/joeyrt/joey/image/kmod"
	"github.com/joeyrt/joey/internal/testutil"
)

// The tests below build from a real Debian kernel package, named by
// JOEY_KERNEL_DEB (make test sets it). Two images are built once per run
// and shared: each build streams the ~70 MB package twice.
var (
	realOnce    sync.Once
	realA       string // the first build
	realB       string // a second build of the same inputs elsewhere
	realErr     error
	realElapsed time.Duration
)

func realImages(t *testing.T) (a, b string) {
	t.Helper()
	deb := os.Getenv("JOEY_KERNEL_DEB")
	if deb == "" {
		testutil.Unavailable(t, "JOEY_KERNEL_DEB is not set: point it at a Debian linux-image .deb (make test sets it)")
	}
	if _, err := os.Stat(deb); err != nil {
		t.Fatalf("JOEY_KERNEL_DEB: %v", err)
	}
	agent := fakeAgent(t)
	realOnce.Do(func() {
		start := time.Now()
		realA, realB = filepath.Join(testTmp, "real-a"), filepath.Join(testTmp, "real-b")
		for _, out := range []string{realA, realB} {
			if _, realErr = Build(context.Background(), Options{KernelPackage: deb, Agent: agent, Out: out}); realErr != nil {
				return
			}
		}
		realElapsed = time.Since(start)
	})
	if realErr != nil {
		t.Fatalf("Build from %s: %v", deb, realErr)
	}
	t.Logf("two builds from %s took %v", filepath.Base(deb), realElapsed.Round(time.Millisecond))
	return realA, realB
}

func TestRealKernelImageContents(t *testing.T) {
	dir, _ := realImages(t)
	m, err := ReadManifest(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Verify(context.Background(), dir); err != nil {
		t.Fatal(err)
	}
	if pvh, err := kernel.CheckVmlinux(filepath.Join(dir, VmlinuxFile)); err != nil || !pvh {
		t.Errorf("vmlinux: PVH %v, %v; want an ELF with a PVH entry", pvh, err)
	}
	if !m.VmlinuxPVH {
		t.Error("manifest says vmlinux has no PVH entry")
	}

	files := readInitrd(t, filepath.Join(dir, InitrdFile))
	agent, _ := os.ReadFile(fakeAgent(t))
	if !bytes.Equal(files["init"].data, agent) {
		t.Error("/init is not the agent")
	}
	listed := strings.Split(strings.TrimSuffix(string(files[modulesListPath].data), "\n"), "\n")
	if !slices.Equal(listed, m.Modules) {
		t.Errorf("/%s lists %v, the manifest %v", modulesListPath, listed, m.Modules)
	}
	pos := map[string]int{}
	for i, p := range listed {
		f, ok := files["lib/modules/"+m.KernelVersion+"/"+p]
		if !ok || !bytes.HasPrefix(f.data, []byte("\x7fELF")) {
			t.Errorf("%s is listed but not in the initrd as an ELF module", p)
		}
		if !strings.HasSuffix(p, ".ko") {
			t.Errorf("%s is not stored as a plain .ko", p)
		}
		if _, dup := pos[kmod.Name(p)]; dup {
			t.Errorf("%s is listed twice", p)
		}
		pos[kmod.Name(p)] = i
	}
	for _, want := range RootModules() {
		if _, ok := pos[want]; !ok {
			t.Errorf("module %s is missing from %v", want, listed)
		}
	}
	// Dependencies before their users, and ext4's crc32c softdep honoured.
	for _, before := range [][2]string{
		{"netfs", "9p"}, {"fscache", "9p"}, {"9pnet", "9pnet_virtio"}, {"virtio_ring", "virtio_console"},
		{"jbd2", "ext4"}, {"crc32c_generic", "ext4"}, {"fuse", "virtiofs"}, {"vsock", "vmw_vsock_virtio_transport"},
	} {
		if pos[before[0]] >= pos[before[1]] {
			t.Errorf("%s is loaded after %s", before[0], before[1])
		}
	}
	t.Logf("%d modules, initrd.img %d bytes", len(listed), m.Files[InitrdFile].Size)
}

func TestRealKernelBuildIsReproducible(t *testing.T) {
	a, b := realImages(t)
	for _, name := range []string{VmlinuzFile, VmlinuxFile, InitrdFile, ManifestFile} {
		x, _ := os.ReadFile(filepath.Join(a, name))
		y, _ := os.ReadFile(filepath.Join(b, name))
		if len(x) == 0 || !bytes.Equal(x, y) {
			t.Errorf("%s differs between two builds of the same inputs", name)
		}
	}
}

func TestRealKernelRebuildIsUpToDate(t *testing.T) {
	a, _ := realImages(t)
	res, err := Build(context.Background(), Options{KernelPackage: os.Getenv("JOEY_KERNEL_DEB"), Agent: fakeAgent(t), Out: a})
	if err != nil || !res.UpToDate {
		t.Fatalf("Build into an up-to-date image = %+v, %v; want UpToDate", res, err)
	}
}

// The image boots: the kernel runs /init, which loads every module of
// /etc/joey/modules in order with finit_module and reports on the serial
// console. A wrong order fails there with "Unknown symbol".
func TestRealKernelImageBootsAndLoadsModules(t *testing.T) {
	qemu := testutil.RequireQEMU(t)
	dir, _ := realImages(t)
	m, err := ReadManifest(dir)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, qemu,
		"-machine", "microvm,x-option-roms=off,isa-serial=on,rtc=on", "-accel", "tcg", "-cpu", "max,la57=off",
		"-m", "256M", "-smp", "1", "-nodefaults", "-no-user-config", "-nographic", "-no-reboot",
		"-serial", "stdio", "-kernel", filepath.Join(dir, VmlinuxFile), "-initrd", filepath.Join(dir, InitrdFile),
		"-append", "console=ttyS0 panic=-1 reboot=t"+tscKHz())
	testutil.CountVM(t)
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		t.Fatalf("the VM did not end within 2 minutes; console ends:\n%s", tail(out, 40))
	}
	if err != nil {
		t.Fatalf("qemu: %v; console ends:\n%s", err, tail(out, 40))
	}
	want := "joey-test: loaded " + strconv.Itoa(len(m.Modules)) + " modules"
	if !bytes.Contains(out, []byte(want)) || bytes.Contains(out, []byte("joey-test: FAIL")) {
		t.Fatalf("console does not say %q without failures; it ends:\n%s", want, tail(out, 40))
	}
}

// tscKHz tells the guest the TSC rate, which TCG passes through from the
// host: on a busy host the kernel's PIT calibration fails and boot stalls.
func tscKHz() string {
	b, _ := os.ReadFile("/proc/cpuinfo")
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "cpu MHz" {
			if mhz, err := strconv.ParseFloat(strings.TrimSpace(v), 64); err == nil && mhz > 0 {
				return " tsc_early_khz=" + strconv.Itoa(int(mhz*1000))
			}
		}
	}
	return ""
}

func tail(out []byte, n int) string {
	lines := strings.Split(strings.TrimRight(string(out), "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

package image

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/joeyrt/joey/image/internal/imagetest"
)

// fakeAgentSource is a static stand-in for joey-agent. Asked for its
// version it answers like the real one; as PID 1 of a VM it loads the
// modules /etc/joey/modules lists, in order, reports on the console and
// ends the VM, which is what proves an image's module order boots.
const fakeAgentSource = `package main

import (
	"bufio"
	"fmt"
	"os"
	"strings"
	"syscall"
	"unsafe"
)

// finit_module on x86-64; the frozen syscall package has no name for it.
const sysFinitModule = 313

func main() {
	if len(os.Args) > 1 && os.Args[1] == "--version" {
		fmt.Println("fake-agent 1.0")
		return
	}
	if os.Getpid() != 1 {
		fmt.Println("fake agent: not PID 1, nothing to do")
		return
	}
	release, _ := os.ReadFile("/etc/joey/kernel-version")
	dir := "/lib/modules/" + strings.TrimSpace(string(release)) + "/"
	f, err := os.Open("/etc/joey/modules")
	if err != nil {
		fmt.Println("joey-test: FAIL", err)
	}
	n := 0
	sc := bufio.NewScanner(f)
	for err == nil && sc.Scan() {
		m, oerr := os.Open(dir + sc.Text())
		if oerr != nil {
			fmt.Println("joey-test: FAIL", oerr)
			break
		}
		params := []byte{0}
		_, _, e := syscall.Syscall(sysFinitModule, m.Fd(), uintptr(unsafe.Pointer(&params[0])), 0)
		m.Close()
		if e != 0 && e != syscall.EEXIST {
			fmt.Printf("joey-test: FAIL load %s: %v\n", sc.Text(), e)
			break
		}
		n++
	}
	fmt.Printf("joey-test: loaded %d modules\n", n)
	syscall.Sync()
	syscall.Reboot(syscall.LINUX_REBOOT_CMD_RESTART)
}
`

var (
	fakeAgentOnce sync.Once
	fakeAgentPath string
	fakeAgentErr  error
	testTmp       string
)

func TestMain(m *testing.M) {
	var err error
	if testTmp, err = os.MkdirTemp("", "joey-image-test-"); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(testTmp)
	os.Exit(code)
}

// fakeAgent builds the fake agent once per test run: a static Go binary
// (CGO_ENABLED=0), like the real joey-agent.
func fakeAgent(t testing.TB) string {
	t.Helper()
	fakeAgentOnce.Do(func() {
		dir := filepath.Join(testTmp, "agent")
		if fakeAgentErr = os.MkdirAll(dir, 0o755); fakeAgentErr != nil {
			return
		}
		if fakeAgentErr = os.WriteFile(filepath.Join(dir, "main.go"), []byte(fakeAgentSource), 0o644); fakeAgentErr != nil {
			return
		}
		goBin, err := exec.LookPath("go")
		if err != nil {
			goBin = filepath.Join(runtime.GOROOT(), "bin", "go")
		}
		cmd := exec.Command(goBin, "build", "-trimpath", "-o", "joey-agent", "main.go")
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64", "GOFLAGS=")
		if out, err := cmd.CombinedOutput(); err != nil {
			fakeAgentErr = fmt.Errorf("build fake agent: %v\n%s", err, out)
			return
		}
		fakeAgentPath = filepath.Join(dir, "joey-agent")
	})
	if fakeAgentErr != nil {
		t.Fatal(fakeAgentErr)
	}
	return fakeAgentPath
}

const fakeRelease = "9.9.9-joey"

// fakeModules is a kernel shaped like Debian's: every root module, with
// the dependencies and ext4's crc32c softdep of the real ones, virtio_ring
// built in, and modules nobody needs.
var fakeModules = []struct {
	path, deps string
	extra      []string
}{
	{"kernel/drivers/virtio/virtio.ko", "", nil},
	{"kernel/drivers/virtio/virtio_pci.ko", "virtio,virtio_ring", nil},
	{"kernel/drivers/virtio/virtio_mmio.ko", "virtio,virtio_ring", nil},
	{"kernel/drivers/char/virtio_console.ko", "virtio,virtio_ring", nil},
	{"kernel/net/core/failover.ko", "", nil},
	{"kernel/drivers/net/net_failover.ko", "failover", nil},
	{"kernel/drivers/net/virtio_net.ko", "net_failover,virtio,virtio_ring", nil},
	{"kernel/drivers/block/virtio_blk.ko", "virtio,virtio_ring", nil},
	{"kernel/drivers/char/hw_random/virtio-rng.ko", "virtio,virtio_ring", nil},
	{"kernel/net/9p/9pnet.ko", "", nil},
	{"kernel/net/9p/9pnet_virtio.ko", "virtio,9pnet,virtio_ring", nil},
	{"kernel/fs/netfs/netfs.ko", "", nil},
	{"kernel/fs/fscache/fscache.ko", "netfs", nil},
	{"kernel/fs/9p/9p.ko", "9pnet,fscache,netfs", nil},
	{"kernel/fs/fuse/fuse.ko", "", nil},
	{"kernel/fs/fuse/virtiofs.ko", "fuse,virtio,virtio_ring", nil},
	{"kernel/fs/overlayfs/overlay.ko", "", nil},
	{"kernel/lib/crc16.ko", "", nil},
	{"kernel/fs/mbcache.ko", "", nil},
	{"kernel/fs/jbd2/jbd2.ko", "", nil},
	{"kernel/fs/ext4/ext4.ko", "jbd2,mbcache,crc16", []string{"softdep=pre: crypto-crc32c"}},
	{"kernel/crypto/crc32c_generic.ko", "", []string{"alias=crypto-crc32c"}},
	{"kernel/arch/x86/crypto/crc32c-intel.ko", "", []string{"alias=crypto-crc32c"}},
	{"kernel/net/vmw_vsock/vsock.ko", "", nil},
	{"kernel/net/vmw_vsock/vmw_vsock_virtio_transport_common.ko", "vsock", nil},
	{"kernel/net/vmw_vsock/vmw_vsock_virtio_transport.ko", "virtio,vmw_vsock_virtio_transport_common,virtio_ring,vsock", nil},
	{"kernel/sound/unused.ko", "", nil},
}

// fakeKernelFiles returns the files of a fake kernel whose vmlinux is the
// given ELF, laid out as a package (or an installed system) has them;
// modules named in drop are left out.
func fakeKernelFiles(t testing.TB, vmlinux []byte, drop ...string) map[string][]byte {
	mods := "lib/modules/" + fakeRelease + "/"
	files := map[string][]byte{
		"boot/vmlinuz-" + fakeRelease:   imagetest.BzImage(27, 0x020f, 0x3a5, imagetest.Gzip(vmlinux)),
		mods + "modules.builtin":        []byte("kernel/drivers/virtio/virtio_ring.ko\n"),
		"usr/share/doc/linux/changelog": []byte("nothing\n"),
	}
next:
	for _, m := range fakeModules {
		for _, d := range drop {
			if strings.Contains(m.path, "/"+d+".ko") {
				continue next
			}
		}
		info := append([]string{"depends=" + m.deps, "vermagic=" + fakeRelease + " SMP preempt mod_unload"}, m.extra...)
		files[mods+m.path] = imagetest.Module(info...)
	}
	return files
}

// fakeKernelDeb packs a fake kernel package whose vmlinux is the fake
// agent (any static x86-64 executable is an ELF vmlinux to the builder).
func fakeKernelDeb(t testing.TB, drop ...string) string {
	t.Helper()
	vmlinux, err := os.ReadFile(fakeAgent(t))
	if err != nil {
		t.Fatal(err)
	}
	return imagetest.BuildDeb(t, fakeKernelFiles(t, vmlinux, drop...))
}

type cpioFile struct {
	mode uint32
	data []byte
}

// readInitrd reads a gzip'd newc archive into name → file. It is written
// here, independently of package cpio, so a bug there cannot hide itself.
func readInitrd(t testing.TB, path string) map[string]cpioFile {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	files := map[string]cpioFile{}
	align := func(n int) int { return (n + 3) &^ 3 }
	for off := 0; ; {
		if off+110 > len(raw) || string(raw[off:off+6]) != "070701" {
			t.Fatalf("initrd: no newc header at offset %d", off)
		}
		field := func(i int) int {
			v, err := strconv.ParseUint(string(raw[off+6+8*i:off+14+8*i]), 16, 32)
			if err != nil {
				t.Fatalf("initrd: bad header field at %d: %v", off, err)
			}
			return int(v)
		}
		mode, size, namesize := field(1), field(6), field(11)
		name := string(bytes.TrimSuffix(raw[off+110:off+110+namesize], []byte{0}))
		dataOff := align(off + 110 + namesize)
		if name == "TRAILER!!!" {
			return files
		}
		files[name] = cpioFile{mode: uint32(mode), data: raw[dataOff : dataOff+size]}
		off = align(dataOff + size)
	}
}

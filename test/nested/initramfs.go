package nested

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/joeyrt/joey/image/cpio"
	"github.com/joeyrt/joey/image/kernel"
	"github.com/joeyrt/joey/test/nested/job"
)

// l1Modules are what L1 needs: KVM for AMD (TCG emulates SVM), 9p over
// virtio-mmio for the shares (microvm's devices are virtio-mmio), TAP and
// veth links for the network an inner test gives its L2 guest, and the
// ingress qdisc, u32 filter and mirred action of joey's tcfilter network
// model.
var l1Modules = []string{"kvm_amd", "9p", "9pnet_virtio", "virtio_mmio", "tun", "veth", "sch_ingress", "cls_u32", "act_mirred"}

// buildInitramfs writes L1's initramfs to path: the static nestedinit as
// /init and the modules it loads, taken from the kernel package deb.
// It is left uncompressed: TCG is slow at inflating, and it is small.
func buildInitramfs(ctx context.Context, deb, path string) error {
	k, err := kernel.ReadDeb(ctx, deb)
	if err != nil {
		return err
	}
	mods, err := k.Modules.Resolve(l1Modules)
	if err != nil {
		return fmt.Errorf("resolve L1 modules: %w", err)
	}
	var paths []string
	for _, m := range mods {
		paths = append(paths, m.Path)
	}
	files, err := k.ReadModules(ctx, paths)
	if err != nil {
		return err
	}
	tmp, err := os.MkdirTemp(filepath.Dir(path), "build-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	initBin, err := buildInit(ctx, tmp)
	if err != nil {
		return err
	}
	modDir := "lib/modules/" + k.Version
	entries := []cpio.Entry{
		cpio.File("init", 0o755, initBin),
		cpio.File(strings.TrimPrefix(job.ModuleList, "/"), 0o644, []byte(strings.Join(paths, "\n")+"\n")),
		cpio.Dir("proc", 0o755), cpio.Dir("sys", 0o755), cpio.Dir("dev", 0o755),
		cpio.Dir("share", 0o755), cpio.Dir("host", 0o755),
		cpio.CharDevice("dev/console", 0o600, 5, 1),
	}
	for _, p := range paths {
		entries = append(entries, cpio.File(modDir+"/"+p, 0o644, files[p]))
	}
	var buf bytes.Buffer
	if err := cpio.Write(&buf, withParents(entries)); err != nil {
		return fmt.Errorf("write L1 initramfs: %w", err)
	}
	part := filepath.Join(tmp, "l1.cpio")
	if err := os.WriteFile(part, buf.Bytes(), 0o644); err != nil {
		return err
	}
	return os.Rename(part, path)
}

// buildInit compiles the static L1 init from this package's source tree.
func buildInit(ctx context.Context, dir string) ([]byte, error) {
	_, self, _, ok := runtime.Caller(0)
	if !ok {
		return nil, fmt.Errorf("build L1 init: cannot locate the harness source")
	}
	out := filepath.Join(dir, "nestedinit")
	cmd := exec.CommandContext(ctx, goTool(), "build", "-o", out, "./cmd/nestedinit")
	cmd.Dir = filepath.Dir(self)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("build L1 init: %w\n%s", err, b)
	}
	return os.ReadFile(out)
}

// goTool is the go command that builds test binaries and the L1 init.
func goTool() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	if root := runtime.GOROOT(); root != "" {
		return filepath.Join(root, "bin", "go")
	}
	return "/usr/local/go/bin/go"
}

// withParents adds the directories the entries' paths pass through, which
// the kernel's initramfs unpacker does not create by itself.
func withParents(entries []cpio.Entry) []cpio.Entry {
	have := map[string]bool{}
	for _, e := range entries {
		have[e.Name] = true
	}
	out := entries
	for _, e := range entries {
		for d := path.Dir(e.Name); d != "." && d != "/" && !have[d]; d = path.Dir(d) {
			have[d] = true
			out = append(out, cpio.Dir(d, 0o755))
		}
	}
	return out
}

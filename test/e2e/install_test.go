package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/joeyrt/joey/config"
	"github.com/joeyrt/joey/image"
	"github.com/joeyrt/joey/internal/hostcheck"
	"github.com/joeyrt/joey/internal/ociimage"
	"github.com/joeyrt/joey/internal/testutil"
)

// installedFiles is what `make install` writes under DESTDIR (PREFIX
// /usr/local), with each file's mode.
var installedFiles = map[string]os.FileMode{
	"usr/local/bin/joey":                    0o755,
	"usr/local/bin/containerd-shim-joey-v2": 0o755,
	"usr/local/lib/joey/joey-agent":         0o755,
	"etc/joey/config.toml":                  0o644,
	"var/lib/joey/image/vmlinux":            0o644,
	"var/lib/joey/image/vmlinuz":            0o644,
	"var/lib/joey/image/initrd.img":         0o644,
	"var/lib/joey/image/manifest.json":      0o644,
}

func TestInstallIntoDestdirStaysThereRunsAContainerAndKeepsAnEditedConfig(t *testing.T) {
	testutil.RequireRoot(t)
	testutil.RequireQEMU(t)
	deb := os.Getenv("JOEY_KERNEL_DEB")
	if deb == "" {
		testutil.Unavailable(t, "JOEY_KERNEL_DEB is not set: run `make test`, or export the path of a Debian linux-image .deb")
	}
	if _, err := exec.LookPath("make"); err != nil {
		testutil.Unavailable(t, "make not found (apt-get install make)")
	}
	// Where an install that ignored DESTDIR would write on this host.
	var absent []string
	for _, p := range []string{image.DefaultOut, image.DefaultDownloadDir} {
		if _, err := os.Lstat(p); err == nil {
			t.Logf("%s exists already: not checking that the install left it alone", p)
		} else {
			absent = append(absent, p)
		}
	}

	dest := t.TempDir()
	makeInstall(t, dest, deb)
	for rel, mode := range installedFiles {
		fi, err := os.Stat(filepath.Join(dest, rel))
		if err != nil {
			t.Error(err)
		} else if !fi.Mode().IsRegular() || fi.Mode().Perm() != mode {
			t.Errorf("%s: mode %v, want a regular file with %v", rel, fi.Mode(), mode)
		}
	}
	for _, p := range absent {
		if _, err := os.Lstat(p); err == nil {
			t.Errorf("make install DESTDIR=%s wrote %s on the host", dest, p)
		}
	}
	// With DESTDIR empty the installed config must find the installed image.
	confPath := filepath.Join(dest, "etc/joey/config.toml")
	cfg, err := config.Load(confPath)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{cfg.Image.KernelPath(), cfg.Image.InitrdPath()} {
		if _, err := os.Stat(filepath.Join(dest, p)); err != nil {
			t.Errorf("the installed config names %s, which the install did not put there: %v", p, err)
		}
	}
	if t.Failed() {
		t.FailNow()
	}

	joey := filepath.Join(dest, "usr/local/bin/joey")
	imageDir := filepath.Join(dest, cfg.Image.Dir)
	stdout, stderr, code := command(t, joey, "check", "--json", "--image", imageDir)
	var report hostcheck.Report
	if err := json.Unmarshal([]byte(stdout), &report); err != nil {
		t.Fatalf("joey check --json: exit %d, %v\n%s%s", code, err, stdout, stderr)
	}
	if c, _ := report.Check("image"); code != 0 || !report.OK || c.Status != hostcheck.OK {
		t.Fatalf("joey check --image %s: exit %d, ok %v, image %s (%s)", imageDir, code, report.OK, c.Status, c.Detail)
	}

	// Edit the installed config as an administrator would, pointing it at
	// a short state directory (unix socket paths are limited) and at the
	// image under DESTDIR; a second install must keep the edit.
	root, err := os.MkdirTemp("", "joey-e2e-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(root) })
	stateDir := filepath.Join(root, "state")
	orig, err := os.ReadFile(confPath)
	if err != nil {
		t.Fatal(err)
	}
	edited := string(orig)
	for from, to := range map[string]string{
		fmt.Sprintf("state_dir = %q", cfg.Runtime.StateDir): fmt.Sprintf("state_dir = %q", stateDir),
		fmt.Sprintf("dir = %q", cfg.Image.Dir):              fmt.Sprintf("dir = %q", imageDir),
	} {
		if strings.Count(edited, from) != 1 {
			t.Fatalf("the installed config does not hold %s exactly once", from)
		}
		edited = strings.Replace(edited, from, to, 1)
	}
	if err := os.WriteFile(confPath, []byte(edited), 0o644); err != nil {
		t.Fatal(err)
	}
	if out := makeInstall(t, dest, deb); !strings.Contains(out, "keeping "+confPath) {
		t.Errorf("the second make install did not say it kept %s:\n%s", confPath, out)
	}
	if now, err := os.ReadFile(confPath); err != nil || string(now) != edited {
		t.Fatalf("the second make install replaced the edited %s (%v)", confPath, err)
	}

	rootfs := filepath.Join(t.TempDir(), "rootfs")
	if err := ociimage.BusyboxRootfs(rootfs); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { (&env{stateDir: stateDir}).checkNothingLeft(t, root) })
	testutil.CountVM(t)
	began := time.Now()
	stdout, stderr, code = command(t, joey, "run", "--config", confPath, "--rootfs", rootfs,
		"sh", "-c", "echo hello from the installed joey; exit 3")
	t.Logf("installed joey run: %v", time.Since(began).Round(time.Millisecond))
	if code != 3 || stdout != "hello from the installed joey\n" {
		t.Errorf("installed joey run: exit %d, stdout %q, stderr %q; want 3 and the greeting", code, stdout, stderr)
	}
}

// makeInstall runs `make install DESTDIR=dest KERNEL_DEB=deb` in the
// repository and returns its output.
func makeInstall(t *testing.T, dest, deb string) string {
	t.Helper()
	repo, err := repoRoot()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "make", "-C", repo, "install", "PREFIX=/usr/local", "DESTDIR="+dest, "KERNEL_DEB="+deb)
	// Under `make test` the outer make's flags would reach this one.
	for _, kv := range os.Environ() {
		if name, _, _ := strings.Cut(kv, "="); name != "MAKEFLAGS" && name != "MFLAGS" && name != "MAKELEVEL" {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	began := time.Now()
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("make install DESTDIR=%s: %v\n%s", dest, err, out)
	}
	t.Logf("make install: %v", time.Since(began).Round(time.Millisecond))
	return string(out)
}

// command runs name with args and returns its stdout, stderr and exit code.
func command(t *testing.T, name string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	return testutil.Run(t, exec.CommandContext(testContext(t, 3*time.Minute), name, args...))
}

// Package nested is the harness for every test that needs real KVM. The
// host's /dev/kvm is PVM, which cannot boot a stock kernel, so the harness
// boots an L1 Debian guest under QEMU TCG (which emulates AMD SVM), whose
// tiny initramfs holds a static init and the kvm_amd and 9p modules. L1
// mounts the host's root read-only over 9p, chroots into it, runs the
// given command with /dev/kvm available, and prints a verdict line on the
// serial console. The repository path is the same inside L1, so a test can
// re-run its own test binary there (see RunGoTest).
package nested

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/joeyrt/joey/internal/testutil"
	"github.com/joeyrt/joey/test/nested/job"
)

// InsideEnv is set to "1" in the environment of every command the harness
// runs in L1; a test uses it to tell its inner run from its outer one.
const InsideEnv = "JOEY_NESTED_L1"

// Options describe one nested run.
type Options struct {
	// Command runs in L1, chrooted into the host's root.
	Command []string
	// Env is added to a default environment (PATH, HOME, InsideEnv=1).
	Env []string
	// Dir is the command's working directory; default the caller's.
	Dir string
	// Timeout bounds one run, L1 boot included (a run L1 itself fails is
	// retried at most twice); default 5 minutes. The command itself is killed 45 s
	// before, so that L1 still reports.
	Timeout time.Duration
	// MemoryMiB is L1's RAM; default 2048.
	MemoryMiB int
}

// Result is what the command did.
type Result struct {
	// Exit is the command's exit status.
	Exit int
	// Output is its stdout and stderr.
	Output string
	// Console is L1's serial console, kernel messages included.
	Console string
	// Elapsed is the whole run, QEMU start to exit.
	Elapsed time.Duration
}

var verdictRE = regexp.MustCompile(regexp.QuoteMeta(job.VerdictPrefix) + ` (PASS|FAIL) exit=(-?\d+)`)

// Run boots L1 and runs opts.Command in it. It fails t when L1 cannot be
// booted or gives no verdict, and calls testutil.Unavailable when QEMU,
// root, the kernel package or the guest image are missing.
func Run(t testing.TB, opts Options) Result {
	t.Helper()
	return run(t, t.TempDir(), opts)
}

// RunGoTest builds pkg's test binary on the host with `go test -c` and runs
// it in L1 with -test.run=pattern -test.v, InsideEnv=1 set and
// opts.Command as extra arguments. The binary lives in the job share
// (job.ShareDir in L1).
func RunGoTest(t testing.TB, pkg, pattern string, opts Options) Result {
	t.Helper()
	requirements(t)
	share := t.TempDir()
	bin := filepath.Join(share, "inner.test")
	cmd := exec.Command(goTool(), "test", "-c", "-o", bin, pkg)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go test -c %s: %v\n%s", pkg, err, out)
	}
	opts.Command = append([]string{job.ShareDir + "/inner.test", "-test.run", pattern, "-test.v", "-test.count=1"}, opts.Command...)
	return run(t, share, opts)
}

// l1 is what booting L1 needs, prepared once per test process.
type l1 struct {
	qemu, kernel, initrd string
}

var (
	prepOnce sync.Once
	prepared l1
	prepErr  error
)

// requirements checks the host can run L1 and prepares its initramfs.
func requirements(t testing.TB) l1 {
	t.Helper()
	testutil.RequireRoot(t)
	qemu := testutil.RequireQEMU(t)
	image := testutil.GuestImage(t)
	deb := os.Getenv("JOEY_KERNEL_DEB")
	if deb == "" {
		testutil.Unavailable(t, "JOEY_KERNEL_DEB is not set: run `make test`, or export the path of the Debian linux-image .deb")
	}
	kernel := filepath.Join(image, "vmlinux")
	if _, err := os.Stat(kernel); err != nil {
		testutil.Unavailable(t, fmt.Sprintf("guest image has no vmlinux: %v", err))
	}
	prepOnce.Do(func() {
		// One fixed directory, rewritten by each test process through a
		// rename, so runs leave no trail of temporary initramfs files.
		dir := filepath.Join(os.TempDir(), "joey-nested")
		if prepErr = os.MkdirAll(dir, 0o755); prepErr != nil {
			return
		}
		initrd := filepath.Join(dir, "l1.cpio")
		prepErr = buildInitramfs(context.Background(), deb, initrd)
		prepared = l1{qemu: qemu, kernel: kernel, initrd: initrd}
	})
	if prepErr != nil {
		t.Fatalf("prepare L1: %v", prepErr)
	}
	return prepared
}

func run(t testing.TB, share string, opts Options) Result {
	t.Helper()
	l := requirements(t)
	if opts.Timeout == 0 {
		opts.Timeout = 5 * time.Minute
	}
	if opts.MemoryMiB == 0 {
		opts.MemoryMiB = 2048
	}
	if opts.Dir == "" {
		wd, err := os.Getwd()
		if err != nil {
			t.Fatal(err)
		}
		opts.Dir = wd
	}
	j := job.Job{
		Command: opts.Command,
		Env:     append([]string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/root", "TMPDIR=" + job.ShareDir, InsideEnv + "=1"}, opts.Env...),
		Dir:     opts.Dir,
		// The command gets the run's time less a margin for L1 to boot and
		// report, so a hanging command still yields a verdict.
		TimeoutSeconds: int(max(opts.Timeout-45*time.Second, 30*time.Second).Seconds()),
	}
	raw, err := json.Marshal(j)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(share, job.File), raw, 0o644); err != nil {
		t.Fatal(err)
	}
	// QEMU TCG's emulation of nested SVM occasionally resets or hangs L1
	// itself while an L2 runs (QEMU exits, -no-reboot, or goes silent, with
	// no verdict). Such a run is retried at most twice, with a fresh
	// deadline, and logged; a third one fails the test.
	for attempt := 1; ; attempt++ {
		testutil.CountVM(t)
		os.Remove(filepath.Join(share, job.OutputFile))
		ctx, cancel := context.WithTimeout(context.Background(), opts.Timeout)
		res, died := bootL1(ctx, l, share, opts)
		cancel()
		if died == nil {
			if res.Exit == -1 {
				t.Fatalf("L1 could not run the command; console:\n%s", res.Console)
			}
			return res
		}
		out, _ := os.ReadFile(filepath.Join(share, job.OutputFile))
		msg := fmt.Sprintf("%v after %v; command output so far:\n%s\nL1 console:\n%s", died, res.Elapsed, out, res.Console)
		if attempt == 3 {
			t.Fatal(msg)
		}
		t.Logf("attempt %d: %s", attempt, msg)
	}
}

// bootL1 runs QEMU once. It returns an error when L1 ended without a
// verdict, with what it printed in the Result.
func bootL1(ctx context.Context, l l1, share string, opts Options) (Result, error) {
	args := []string{
		"-M", "microvm", "-accel", "tcg", "-cpu", "max,la57=off",
		"-m", strconv.Itoa(opts.MemoryMiB), "-smp", "2",
		"-nodefaults", "-no-user-config", "-nographic", "-no-reboot",
		"-serial", "stdio",
		"-kernel", l.kernel, "-initrd", l.initrd,
		"-append", "console=ttyS0 rdinit=/init panic=-1" + tscParam(),
		"-fsdev", "local,id=root,path=/,readonly=on,security_model=none,multidevs=remap",
		"-device", "virtio-9p-device,fsdev=root,mount_tag=" + job.RootTag,
		"-fsdev", "local,id=share,path=" + share + ",security_model=none",
		"-device", "virtio-9p-device,fsdev=share,mount_tag=" + job.ShareTag,
	}
	cmd := exec.CommandContext(ctx, l.qemu, args...)
	cmd.WaitDelay = 5 * time.Second
	var console bytes.Buffer
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return Result{}, fmt.Errorf("start QEMU: %w", err)
	}
	verdict := make(chan []string, 1)
	scanned := make(chan struct{})
	go func() {
		defer close(scanned)
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			line := sc.Text()
			console.WriteString(line + "\n")
			if m := verdictRE.FindStringSubmatch(line); m != nil {
				select {
				case verdict <- m:
				default:
				}
			}
		}
	}()
	waitErr := make(chan error, 1)
	go func() { waitErr <- cmd.Wait(); pw.Close() }()
	var v []string
	var died error
	select {
	case v = <-verdict:
		// L1 powers off by itself; give it a moment, then kill it.
		select {
		case <-waitErr:
		case <-time.After(15 * time.Second):
			cmd.Process.Kill()
			<-waitErr
		}
	case err := <-waitErr:
		died = fmt.Errorf("L1 exited without a verdict (%v)", err)
	}
	<-scanned
	if v == nil {
		select {
		case v = <-verdict: // printed just before QEMU exited
			died = nil
		default:
		}
	}
	res := Result{Console: console.String(), Elapsed: time.Since(start)}
	if died != nil {
		return res, died
	}
	res.Exit, _ = strconv.Atoi(v[2])
	out, err := os.ReadFile(filepath.Join(share, job.OutputFile))
	if err != nil && res.Exit != -1 {
		return res, fmt.Errorf("read L1 output: %w", err)
	}
	res.Output = string(out)
	return res, nil
}

// String formats a result for a failure message.
func (r Result) String() string {
	return fmt.Sprintf("exit %d after %v\n--- output ---\n%s\n--- L1 console ---\n%s", r.Exit, r.Elapsed.Round(time.Millisecond), r.Output, strings.TrimSpace(r.Console))
}

// tscParam tells L1 the TSC rate. Under TCG on a busy host the kernel's
// calibration of the TSC against the PIT fails, it marks the TSC unstable
// and, on microvm (no HPET, no ACPI PM timer), hangs early in boot; with
// the rate given it skips the calibration. Under TCG the guest TSC is the
// host's, whose rate /proc/cpuinfo's "cpu MHz" shows on constant-TSC CPUs.
func tscParam() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return ""
	}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok || strings.TrimSpace(k) != "cpu MHz" {
			continue
		}
		mhz, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
		if err != nil || mhz <= 0 {
			return ""
		}
		return " tsc_early_khz=" + strconv.Itoa(int(mhz*1000))
	}
	return ""
}

// BootedMarker is the line an inner test prints (with CountL2Boot) for
// every L2 VM it boots, so the outer test can count them.
const BootedMarker = "L2-VM-BOOTED"

// CountL2Boot records, from inside L1, that the inner test booted a VM.
func CountL2Boot() { fmt.Println(BootedMarker) }

// DiedMarker starts the line an inner test prints (with ReportL2Death)
// when its L2 VM died under it after booting.
const DiedMarker = "L2-VM-DIED"

// ReportL2Death records, from inside L1, that the inner test's VM ended on
// its own (how: end) while the test still used it, or that every boot it
// tried died. Under QEMU TCG's emulation of nested SVM an L2 VM
// occasionally triple-faults or hangs at a random point, and an L1 can get
// into a state where every L2 boot hangs at the same point; RunInner then
// runs the whole inner test again in a fresh L1.
func ReportL2Death(end fmt.Stringer) { fmt.Println(DiedMarker, end) }

// RunInner is RunGoTest for a test that re-runs itself in L1: it counts
// the L2 boots the inner run reported, fails t unless the inner run
// passed, and logs the inner run's verdict lines. An inner run that failed
// because its VM died (see ReportL2Death) is run again, at most twice.
func RunInner(t testing.TB, pkg, pattern string, opts Options) Result {
	t.Helper()
	var res Result
	for attempt := 1; ; attempt++ {
		res = RunGoTest(t, pkg, pattern, opts)
		for range strings.Count(res.Output, BootedMarker+"\n") {
			testutil.CountVM(t)
		}
		passed := res.Exit == 0 && strings.Contains(res.Output, "--- PASS")
		if passed || attempt == 3 || !strings.Contains(res.Output, DiedMarker) {
			break
		}
		t.Logf("attempt %d: the L2 VM died under the inner test; running it again:\n%s", attempt, res.Output)
	}
	if res.Exit != 0 || !strings.Contains(res.Output, "--- PASS") {
		t.Fatalf("inner test failed:\n%v", res)
	}
	// On success, only the verdicts and log lines: the full boot log is in
	// res.Output.
	var summary []string
	for _, line := range strings.Split(res.Output, "\n") {
		if strings.Contains(line, "_test.go:") || strings.Contains(line, "--- ") {
			summary = append(summary, line)
		}
	}
	t.Logf("nested run took %v:\n%s", res.Elapsed.Round(time.Millisecond), strings.Join(summary, "\n"))
	return res
}

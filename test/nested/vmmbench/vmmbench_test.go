// Package vmmbench compares the built-in VMM with QEMU on KVM, which our
// machines only have nested: from one run in the same L1, the time from
// VM start to the agent's first answer and each VMM's own memory (the
// VMM process's RSS less what the guest's RAM mapping holds), plus what
// the built-in VMM adds to the shim binary. Figures are printed, never
// asserted: the machines are noisy. `make bench` runs it.
package vmmbench

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/joeyrt/joey/internal/ociimage"
	"github.com/joeyrt/joey/internal/testutil"
	"github.com/joeyrt/joey/test/nested"
)

// rounds is how many sandboxes each VMM boots; the median is reported.
const rounds = 3

// memoryMiB is the guest RAM of every benchmark VM.
const memoryMiB = 512

// hypervisors maps a name to the runtime.hypervisor setting; both get the
// same guest size, and QEMU is held to KVM on its default machine.
var hypervisors = []struct{ name, driver string }{
	{"builtin", "builtin"},
	{"qemu-kvm", "qemu"},
}

func BenchmarkBuiltinVMMAgainstQEMU(b *testing.B) {
	if os.Getenv(nested.InsideEnv) == "1" {
		inner(b)
		return
	}
	_, self, _, _ := runtime.Caller(0)
	repo := filepath.Join(filepath.Dir(self), "../../..")
	joeyBin := filepath.Join(repo, "bin/joey")
	if _, err := os.Stat(joeyBin); err != nil {
		testutil.Unavailable(b, "bin/joey is missing: run `make build`")
	}
	res := nested.RunGoTest(b, "github.com/joeyrt/joey/test/nested/vmmbench", "^$", nested.Options{
		Env:     []string{"JOEY_TEST_IMAGE=" + testutil.GuestImage(b), "JOEY_BIN=" + joeyBin},
		Command: []string{"-test.bench", "^BenchmarkBuiltinVMMAgainstQEMU$", "-test.benchtime", "1x"},
		Timeout: 8 * time.Minute,
	})
	for range strings.Count(res.Output, nested.BootedMarker+"\n") {
		testutil.CountVM(b)
	}
	var figures []string
	for _, line := range strings.Split(res.Output, "\n") {
		if strings.HasPrefix(line, "FIGURE ") {
			figures = append(figures, strings.TrimPrefix(line, "FIGURE "))
		}
	}
	if res.Exit != 0 || len(figures) == 0 {
		b.Fatalf("inner benchmark failed:\n%v", res)
	}
	with, without := shimSize(b, repo, ""), shimSize(b, repo, "no_builtin_vmm")
	figures = append(figures,
		fmt.Sprintf("containerd-shim-joey-v2: %.1f MiB with the built-in VMM, %.1f MiB with -tags no_builtin_vmm: the VMM adds %.1f MiB (%.0f%%)",
			mib(with), mib(without), mib(with-without), 100*float64(with-without)/float64(without)))
	fmt.Printf("\nBuilt-in VMM vs QEMU with KVM (nested, one L1, %d boots each, median):\n  %s\n\n", rounds, strings.Join(figures, "\n  "))
}

// shimSize builds the shim as the Makefile does (stripped) and returns its
// size in bytes.
func shimSize(b *testing.B, repo, tags string) int64 {
	out := filepath.Join(b.TempDir(), "shim")
	args := []string{"build", "-trimpath", "-ldflags", "-s -w", "-o", out}
	if tags != "" {
		args = append(args, "-tags", tags)
	}
	cmd := exec.Command(filepath.Join(runtime.GOROOT(), "bin/go"), append(args, "./cmd/containerd-shim-joey-v2")...)
	cmd.Dir = repo
	if o, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("build shim (tags %q): %v\n%s", tags, err, o)
	}
	fi, err := os.Stat(out)
	if err != nil {
		b.Fatal(err)
	}
	return fi.Size()
}

func mib(n int64) float64 { return float64(n) / (1 << 20) }

// sample is one sandbox's figures.
type sample struct {
	boot   time.Duration
	ownKiB int64
}

func inner(b *testing.B) {
	dir, err := os.MkdirTemp("/run", "jv")
	if err != nil {
		b.Fatal(err)
	}
	defer os.RemoveAll(dir)
	rootfs := filepath.Join(dir, "rootfs")
	if err := ociimage.BusyboxRootfs(rootfs); err != nil {
		b.Fatal(err)
	}
	results := map[string][]sample{}
	// Alternate the VMMs so that drift in L1 (caches, memory) hits both.
	for round := range rounds {
		for _, hv := range hypervisors {
			var s sample
			for attempt := 1; ; attempt++ {
				var err error
				if s, err = runOnce(b, dir, rootfs, hv.name, hv.driver); err == nil {
					break
				}
				if attempt == 3 {
					nested.ReportL2Death(err.(bootFailure))
					b.Fatalf("%s: %v", hv.name, err)
				}
				b.Logf("round %d %s, attempt %d: %v", round+1, hv.name, attempt, err)
			}
			b.Logf("round %d %s: boot to agent %v, own memory %d KiB", round+1, hv.name, s.boot, s.ownKiB)
			results[hv.name] = append(results[hv.name], s)
		}
	}
	bi, qe := median(results["builtin"]), median(results["qemu-kvm"])
	fmt.Printf("FIGURE boot to agent ready: built-in %v, QEMU %v: built-in/QEMU = %.2f\n",
		bi.boot.Round(time.Millisecond), qe.boot.Round(time.Millisecond), float64(bi.boot)/float64(qe.boot))
	fmt.Printf("FIGURE VMM's own memory (RSS less the guest RAM mapping's Rss): built-in %.1f MiB (the whole joey process), QEMU %.1f MiB: built-in/QEMU = %.2f\n",
		float64(bi.ownKiB)/1024, float64(qe.ownKiB)/1024, float64(bi.ownKiB)/float64(qe.ownKiB))
}

func median(s []sample) sample {
	boots := make([]time.Duration, len(s))
	mems := make([]int64, len(s))
	for i, x := range s {
		boots[i], mems[i] = x.boot, x.ownKiB
	}
	sort.Slice(boots, func(i, j int) bool { return boots[i] < boots[j] })
	sort.Slice(mems, func(i, j int) bool { return mems[i] < mems[j] })
	return sample{boot: boots[len(boots)/2], ownKiB: mems[len(mems)/2]}
}

var bootRE = regexp.MustCompile(`msg="sandbox running" boot=([0-9.]+m?s)`)

// runOnce starts `joey run` with a container that waits, reads the boot
// time the runtime logs, measures the VMM process, then stops it. A VM
// that died or hung before its agent answered (about one nested boot in
// eight, see test/nested/linuxboot) is an error to retry on; anything else
// fails b.
func runOnce(b *testing.B, dir, rootfs, name, driver string) (sample, error) {
	state := filepath.Join(dir, "state-"+name)
	cfgPath := filepath.Join(dir, name+".toml")
	toml := fmt.Sprintf(`[runtime]
state_dir = %q
hypervisor = %q
[image]
dir = %q
[agent]
dial_timeout = "150s"
[hypervisor.builtin]
vcpus = 1
memory_mib = %d
[hypervisor.qemu]
accel = "kvm"
machine = "microvm"
vcpus = 1
memory_mib = %d
`, state, driver, os.Getenv("JOEY_TEST_IMAGE"), memoryMiB, memoryMiB)
	if err := os.WriteFile(cfgPath, []byte(toml), 0o644); err != nil {
		b.Fatal(err)
	}
	nested.CountL2Boot()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Getenv("JOEY_BIN"), "run", "--config", cfgPath, "--rootfs", rootfs,
		"sh", "-c", "trap 'exit 0' TERM; echo ready; while :; do sleep 1; done")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		b.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	defer cmd.Wait()
	defer cmd.Process.Kill()
	var boot time.Duration
	sc := bufio.NewScanner(stderr)
	var log []string
	for sc.Scan() {
		log = append(log, sc.Text())
		if m := bootRE.FindStringSubmatch(sc.Text()); m != nil {
			if boot, err = time.ParseDuration(m[1]); err != nil {
				b.Fatal(err)
			}
			break
		}
	}
	if boot == 0 {
		all := strings.Join(log, "\n")
		if strings.Contains(all, "the VM ended before its agent answered") || strings.Contains(all, "agent.dial_timeout") {
			return sample{}, bootFailure(all)
		}
		b.Fatalf("%s: no boot time logged:\n%s", name, all)
	}
	var rest testutil.SyncBuffer
	copied := make(chan struct{})
	go func() { io.Copy(&rest, stderr); close(copied) }()
	if line, err := bufio.NewReader(stdout).ReadString('\n'); err != nil || line != "ready\n" {
		b.Fatalf("%s: container did not start: %q %v", name, line, err)
	}
	pid := cmd.Process.Pid
	if name != "builtin" {
		pid = childNamed(b, pid, "qemu-system")
	}
	own := ownMemoryKiB(b, pid, memoryMiB)
	cmd.Process.Signal(syscall.SIGTERM)
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	select {
	case err := <-exited:
		if err != nil {
			b.Fatalf("%s: joey run: %v\n%s", name, err, rest.String())
		}
	case <-time.After(time.Minute):
		// A dump of joey's goroutines says where it hangs.
		cmd.Process.Signal(syscall.SIGQUIT)
		<-exited
		<-copied
		b.Fatalf("%s: joey run still running a minute after SIGTERM:\n%s", name, rest.String())
	}
	return sample{boot: boot, ownKiB: own}, nil
}

// bootFailure is joey run's log of a VM that did not boot; it is also
// nested.ReportL2Death's description.
type bootFailure string

func (f bootFailure) Error() string  { return "the VM did not boot:\n" + string(f) }
func (f bootFailure) String() string { return f.Error() }

// childNamed finds the process under parent whose command starts with name.
func childNamed(b *testing.B, parent int, name string) int {
	procs, _ := filepath.Glob("/proc/[0-9]*/stat")
	for _, p := range procs {
		raw, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...
		s := string(raw)
		i := strings.LastIndexByte(s, ')')
		fields := strings.Fields(s[i+1:])
		if len(fields) < 2 || fields[1] != strconv.Itoa(parent) {
			continue
		}
		cmd, _ := os.ReadFile(filepath.Join(filepath.Dir(p), "cmdline"))
		if strings.Contains(filepath.Base(strings.SplitN(string(cmd), "\x00", 2)[0]), name) {
			pid, _ := strconv.Atoi(filepath.Base(filepath.Dir(p)))
			return pid
		}
	}
	b.Fatalf("no %s process under pid %d", name, parent)
	return 0
}

// ownMemoryKiB is the process's Rss less the Rss of its guest-RAM mapping:
// the one anonymous mapping of the guest's size (QEMU may round its RAM
// block up by a little).
func ownMemoryKiB(b *testing.B, pid, guestMiB int) int64 {
	f, err := os.Open(fmt.Sprintf("/proc/%d/smaps", pid))
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	var total, ram int64
	var size int64
	sc := bufio.NewScanner(f)
	want := int64(guestMiB) << 10
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 2 {
			continue
		}
		switch fields[0] {
		case "Size:":
			size, _ = strconv.ParseInt(fields[1], 10, 64)
		case "Rss:":
			rss, _ := strconv.ParseInt(fields[1], 10, 64)
			total += rss
			if size >= want && size <= want+4096 && rss > ram {
				ram = rss
			}
		}
	}
	if ram == 0 {
		b.Fatalf("pid %d has no %d MiB mapping with pages in it", pid, guestMiB)
	}
	return total - ram
}

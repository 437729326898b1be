// Command nestedinit is PID 1 of the L1 guest the nested-KVM test harness
// boots under QEMU TCG. It loads the kvm and 9p modules from its
// initramfs, mounts the host's root read-only and the job share writable,
// chroots into the host root and runs the job's command there, then prints
// the verdict line on the console and powers off.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"time"

	"golang.org/x/sys/unix"

	"github.com/joeyrt/joey/guest/boot"
	"github.com/joeyrt/joey/test/nested/job"
)

func main() {
	code, err := run()
	if err != nil {
		fmt.Printf("nestedinit: %v\n", err)
		fmt.Printf("%s FAIL exit=-1\n", job.VerdictPrefix)
	} else {
		verdict := "PASS"
		if code != 0 {
			verdict = "FAIL"
		}
		fmt.Printf("%s %s exit=%d\n", job.VerdictPrefix, verdict, code)
	}
	unix.Sync()
	unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF)
	select {}
}

type mount struct {
	src, dst, fstype string
	flags            uintptr
	data             string
}

func mountAll(ms []mount) error {
	for _, m := range ms {
		if err := os.MkdirAll(m.dst, 0o755); err != nil && !errors.Is(err, unix.EROFS) {
			return err
		}
		// virtio devices are probed asynchronously after their driver
		// loads, so a 9p tag may not exist yet: retry for a while.
		var err error
		for i := 0; i < 100; i++ {
			err = unix.Mount(m.src, m.dst, m.fstype, m.flags, m.data)
			if m.fstype != "9p" || !errors.Is(err, unix.ENODEV) && !errors.Is(err, unix.ENOENT) {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if err != nil {
			return fmt.Errorf("mount %s on %s: %w", m.src, m.dst, err)
		}
	}
	return nil
}

const ninep = "trans=virtio,version=9p2000.L,msize=524288,cache=loose"

func run() (int, error) {
	if err := mountAll([]mount{
		{"proc", "/proc", "proc", 0, ""},
		{"sysfs", "/sys", "sysfs", 0, ""},
		{"devtmpfs", "/dev", "devtmpfs", 0, ""},
	}); err != nil {
		return 0, err
	}
	var uts unix.Utsname
	if err := unix.Uname(&uts); err != nil {
		return 0, err
	}
	if _, err := os.Stat(job.ModuleList); err != nil {
		return 0, err
	}
	if _, err := boot.LoadModules(job.ModuleList, "/lib/modules/"+unix.ByteSliceToString(uts.Release[:])); err != nil {
		return 0, err
	}
	if err := mountAll([]mount{
		{job.ShareTag, "/share", "9p", 0, "trans=virtio,version=9p2000.L,msize=524288"},
		{job.RootTag, "/host", "9p", unix.MS_RDONLY, ninep},
	}); err != nil {
		return 0, err
	}
	raw, err := os.ReadFile("/share/" + job.File)
	if err != nil {
		return 0, err
	}
	var j job.Job
	if err := json.Unmarshal(raw, &j); err != nil {
		return 0, fmt.Errorf("parse job: %w", err)
	}
	if err := mountAll([]mount{
		{"devtmpfs", "/host/dev", "devtmpfs", 0, ""},
		{"proc", "/host/proc", "proc", 0, ""},
		{"sysfs", "/host/sys", "sysfs", 0, ""},
		{"tmpfs", "/host/run", "tmpfs", 0, ""},
		{"/share", "/host" + job.ShareDir, "", unix.MS_BIND, ""},
	}); err != nil {
		return 0, err
	}
	if err := unix.Chroot("/host"); err != nil {
		return 0, fmt.Errorf("chroot: %w", err)
	}
	if err := os.Chdir(j.Dir); err != nil {
		return 0, err
	}
	out, err := os.Create(job.ShareDir + "/" + job.OutputFile)
	if err != nil {
		return 0, err
	}
	defer out.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(j.TimeoutSeconds)*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, j.Command[0], j.Command[1:]...)
	cmd.Env = j.Env
	cmd.Stdout, cmd.Stderr = out, out
	err = cmd.Run()
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		return exit.ExitCode(), nil
	}
	if err != nil {
		return 0, err
	}
	return 0, nil
}

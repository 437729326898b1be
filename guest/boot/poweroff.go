package boot

import (
	"golang.org/x/sys/unix"
)

// PowerOff flushes the filesystems and asks the kernel to power the VM off.
// Without ACPI handling in PID 1 this is the only way the VM ends cleanly;
// the kernel falls back to halting if no power-off method exists, and the
// host then kills the VMM.
func PowerOff() error {
	unix.Sync()
	return unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF)
}

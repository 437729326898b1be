package shim

import (
	"bytes"
	"os"
	"strconv"

	"github.com/joeyrt/joey/internal/procutil"
)

// pfExiting is the kernel's PF_EXITING task flag: set at the start of
// exit, before the process's files (its sockets) are closed.
const pfExiting = 0x4

// shimAlive reports whether the shim process recorded as pid and startTime
// still runs. A shim killed a moment ago is not alive although its pid is
// still there: containerd sees its connection close, and runs the delete
// command, while the kernel is still tearing it down or before its parent
// reaped it.
func shimAlive(pid int, startTime uint64) bool {
	if !procutil.Matches(pid, startTime) {
		return false
	}
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	return !exiting(stat)
}

// exiting reads a /proc/PID/stat line: the process is a zombie, dead, or
// has begun to exit. Fields count after the command name, which is in
// parentheses and may itself hold spaces and ')'.
func exiting(stat []byte) bool {
	end := bytes.LastIndexByte(stat, ')')
	if end < 0 {
		return true
	}
	fields := bytes.Fields(stat[end+1:])
	// fields[0] is field 3 (state); field 9 (flags) is fields[6].
	if len(fields) < 7 {
		return true
	}
	switch fields[0][0] {
	case 'Z', 'X', 'x':
		return true
	}
	flags, err := strconv.ParseUint(string(fields[6]), 10, 64)
	return err != nil || flags&pfExiting != 0
}

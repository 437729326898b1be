// Package procutil identifies a process across pid reuse. A pid alone names
// whichever process holds it now: a shim that recorded QEMU's pid, died, and
// is followed by `delete` minutes later could otherwise kill an unrelated
// process that inherited the number. The pid plus the process's start time
// (which the kernel never changes) names one process per boot: the start
// time counts clock ticks (10 ms), and pids are handed out cyclically, so a
// false match needs the whole pid space to wrap within one tick.
package procutil

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
)

// StartTime returns when process pid started, in clock ticks after boot:
// field 22 of /proc/PID/stat. Record it next to the pid when starting a
// process that cleanup may have to kill.
func StartTime(pid int) (uint64, error) {
	if pid <= 0 {
		return 0, fmt.Errorf("start time of pid %d: not a process id", pid)
	}
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, fmt.Errorf("start time of pid %d: %w", pid, err)
	}
	st, err := parseStartTime(data)
	if err != nil {
		return 0, fmt.Errorf("start time of pid %d: %w", pid, err)
	}
	return st, nil
}

// Matches reports whether pid is still the process that started at
// startTime, so that signalling it is safe. It is false for a pid that is
// gone or reused, for pid <= 0 (kill(0) and kill(-1) signal whole groups)
// and for startTime 0 (never recorded, so unknown).
func Matches(pid int, startTime uint64) bool {
	if pid <= 0 || startTime == 0 {
		return false
	}
	st, err := StartTime(pid)
	return err == nil && st == startTime
}

// parseStartTime reads field 22 of a /proc/PID/stat line. Field 2, the
// command name, is in parentheses and may itself contain spaces and ')', so
// counting starts after the last ')'.
func parseStartTime(stat []byte) (uint64, error) {
	end := bytes.LastIndexByte(stat, ')')
	if end < 0 {
		return 0, fmt.Errorf("malformed stat %q: no ')' after the command name", stat)
	}
	fields := bytes.Fields(stat[end+1:])
	// fields[0] is field 3 (state), so field 22 is fields[19].
	const idx = 22 - 3
	if len(fields) <= idx {
		return 0, fmt.Errorf("malformed stat %q: %d fields after the command name, want at least %d", stat, len(fields), idx+1)
	}
	st, err := strconv.ParseUint(string(fields[idx]), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("malformed stat: start time %q: %w", fields[idx], err)
	}
	return st, nil
}

// Zombie reports whether pid has exited but not been reaped: it holds no
// files any more, which is all a cleanup waits for.
func Zombie(pid int) bool {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	i := bytes.LastIndexByte(data, ')')
	return i >= 0 && i+2 < len(data) && data[i+2] == 'Z'
}

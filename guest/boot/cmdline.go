package boot

import (
	"os"
	"strings"
)

// Settings are joey-agent's boot settings, taken from `joey.*` words of the
// kernel command line: the host's driver puts them there, and the kernel
// keeps dotted words out of init's environment, so /proc/cmdline is read.
type Settings struct {
	// Channel is the agent channel ("serial:agent.0", "vsock:1024").
	Channel string
	// DebugConsole names a virtio-console port for a busybox shell; empty
	// means none. It works only in images built with --debug-console.
	DebugConsole string
	// LogLevel of the agent ("info", "debug").
	LogLevel string
}

// ParseCmdline reads joey.channel=, joey.debug_console= and joey.log= from
// a kernel command line; unknown words are ignored.
func ParseCmdline(cmdline string) Settings {
	s := Settings{Channel: "serial:agent.0", LogLevel: "info"}
	for _, w := range strings.Fields(cmdline) {
		k, v, ok := strings.Cut(w, "=")
		if !ok {
			continue
		}
		switch k {
		case "joey.channel":
			s.Channel = v
		case "joey.debug_console":
			s.DebugConsole = v
		case "joey.log":
			s.LogLevel = v
		}
	}
	return s
}

// ReadSettings parses /proc/cmdline.
func ReadSettings() Settings {
	b, _ := os.ReadFile("/proc/cmdline")
	return ParseCmdline(string(b))
}

// Package job is the contract between the nested-KVM harness on the host
// and the init it boots in the L1 guest.
package job

// Names shared by the harness and nestedinit.
const (
	// VerdictPrefix starts the line the L1 init prints on the console when
	// the command has ended: "NESTED-VERDICT: PASS exit=0".
	VerdictPrefix = "NESTED-VERDICT:"
	// ModuleList is the initramfs file listing the modules to load, paths
	// relative to /lib/modules/<release>/, dependencies first.
	ModuleList = "/etc/nested/modules"
	// RootTag and ShareTag are the 9p mount tags of the host's root and
	// of the writable job share.
	RootTag  = "hostroot"
	ShareTag = "share"
	// ShareDir is where the job share appears in L1 after the chroot, and
	// the command's TMPDIR. It is not /tmp: the repository under test may
	// itself live in the host's /tmp, which must stay visible.
	ShareDir = "/run/joey-nested"
	// File is the job description in the share; OutputFile receives the
	// command's stdout and stderr.
	File       = "job.json"
	OutputFile = "output"
)

// Job is what L1 runs.
type Job struct {
	// Command is run after chroot into the host's root.
	Command []string `json:"command"`
	// Env is the command's whole environment.
	Env []string `json:"env"`
	// Dir is its working directory.
	Dir string `json:"dir"`
	// TimeoutSeconds bounds the command; it is killed after.
	TimeoutSeconds int `json:"timeout_seconds"`
}

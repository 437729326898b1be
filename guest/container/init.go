package container

import (
	"os"

	"github.com/opencontainers/runc/libcontainer"
	// Without it the cgroup managers cannot apply the spec's device rules
	// and fail on any container that has some (every OCI spec does).
	_ "github.com/opencontainers/cgroups/devices"
	// nsenter's C constructor joins or creates the namespaces of a
	// container process before the Go runtime starts in "init".
	_ "github.com/opencontainers/runc/libcontainer/nsenter"
)

// initArg is how libcontainer re-executes the binary (/proc/self/exe) as a
// container's init and as each exec's setns stage.
const initArg = "init"

// MaybeInit turns this process into a container's init when libcontainer
// re-executed it for that: with "init" as the first argument it never
// returns. Call it first thing in main (and in TestMain of any test that
// starts containers), before anything else starts goroutines or reads flags.
func MaybeInit() {
	if len(os.Args) > 1 && os.Args[1] == initArg {
		libcontainer.Init()
	}
}

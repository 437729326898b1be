package containerdtest

import (
	"bytes"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"
)

// mountsUnder lists the mount points at or below any of dirs, deepest first so
// that they can be unmounted in that order.
func mountsUnder(dirs ...string) ([]string, error) {
	var points []string
	for _, dir := range dirs {
		infos, err := mountinfo.GetMounts(mountinfo.PrefixFilter(dir))
		if err != nil {
			return nil, fmt.Errorf("list mounts under %s: %w", dir, err)
		}
		for _, m := range infos {
			points = append(points, m.Mountpoint)
		}
	}
	sort.Slice(points, func(i, j int) bool { return len(points[i]) > len(points[j]) })
	return points, nil
}

// unmountAll detaches every mount point in points. A lazy unmount cannot be
// blocked by a process still inside, and the tree is removed right after.
func unmountAll(points []string) error {
	var errs []string
	for _, p := range points {
		if err := unix.Unmount(p, unix.MNT_DETACH); err != nil && err != unix.EINVAL && err != unix.ENOENT {
			errs = append(errs, fmt.Sprintf("%s: %v", p, err))
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("unmount: %s", strings.Join(errs, "; "))
	}
	return nil
}

// process is a running process found in /proc.
type process struct {
	pid     int
	cmdline string
}

// processesWithArg finds processes whose command line has the two arguments
// flag and value next to each other. Shims are started by containerd with
// "-address <its socket>", and every daemon here has a socket of its own, so
// this finds exactly the shims of one daemon, also after they have been
// reparented away from it.
func processesWithArg(flag, value string) ([]process, error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, fmt.Errorf("list processes: %w", err)
	}
	self := os.Getpid()
	var found []process
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self {
			continue
		}
		raw, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue // gone meanwhile, or a kernel thread
		}
		args := strings.Split(string(bytes.TrimRight(raw, "\x00")), "\x00")
		for i := 0; i+1 < len(args); i++ {
			if args[i] == flag && args[i+1] == value {
				found = append(found, process{pid: pid, cmdline: strings.Join(args, " ")})
				break
			}
		}
	}
	return found, nil
}

// descendants returns the pids of every process below pid: a shim's
// children are its containers' processes (runc's init, reparented to the
// shim) or its VMM, which would outlive a shim killed alone.
func descendants(pid int) []int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	children := map[int][]int{}
	for _, e := range entries {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// "pid (comm) state ppid ...": comm may hold spaces and parentheses.
		rest := stat[bytes.LastIndexByte(stat, ')')+1:]
		fields := strings.Fields(string(rest))
		if len(fields) < 2 {
			continue
		}
		if ppid, err := strconv.Atoi(fields[1]); err == nil {
			children[ppid] = append(children[ppid], p)
		}
	}
	var out []int
	queue := []int{pid}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		out = append(out, children[p]...)
		queue = append(queue, children[p]...)
	}
	return out
}

// cgroupRoot is where the host mounts its cgroup hierarchies (v1 controllers
// side by side, and the v2 "unified" one).
const cgroupRoot = "/sys/fs/cgroup"

// removeNamespaceCgroups removes the cgroups ctr made for namespace ns (its
// containers get "/<ns>/<id>") in every hierarchy. Without this each daemon,
// having a namespace of its own, would leave an empty cgroup behind in every
// controller. It returns the container cgroups it found below the namespace's
// (a runtime that did not clean up after itself) and those it could not
// remove.
func removeNamespaceCgroups(ns string) (found, left []string) {
	tops, _ := filepath.Glob(filepath.Join(cgroupRoot, "*", ns))
	if info, err := os.Stat(filepath.Join(cgroupRoot, ns)); err == nil && info.IsDir() {
		tops = append(tops, filepath.Join(cgroupRoot, ns))
	}
	for _, top := range tops {
		var dirs []string
		filepath.WalkDir(top, func(p string, d fs.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, p)
			}
			return nil
		})
		found = append(found, dirs[min(1, len(dirs)):]...)
		// A cgroup can only go once its children have.
		sort.Slice(dirs, func(i, j int) bool { return len(dirs[i]) > len(dirs[j]) })
		for _, d := range dirs {
			if err := os.Remove(d); err != nil && !os.IsNotExist(err) {
				left = append(left, fmt.Sprintf("%s: %v", d, err))
			}
		}
	}
	return found, left
}

package hostcheck

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

func tun(h Host) Check {
	const dev = "/dev/net/tun"
	c := Check{Name: "tun", Required: true}
	// Opening without TUNSETIFF creates nothing; it proves the device works
	// for this user, not only that a node exists.
	f, err := os.OpenFile(filepath.Join(h.Root, dev), os.O_RDWR, 0)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		c.Status = Missing
		c.Detail = dev + " does not exist: the VM's network needs TAP devices"
		c.Fix = "modprobe tun (CONFIG_TUN); without udev: mkdir -p /dev/net && mknod /dev/net/tun c 10 200"
	case err != nil:
		c.Status = Missing
		c.Detail = fmt.Sprintf("open %s: %v", dev, err)
		c.Fix = "run joey as root (it needs CAP_NET_ADMIN for TAP devices)"
	default:
		f.Close()
		c.Status, c.Value, c.Detail = OK, dev, dev+" opens: TAP devices for the VM's network"
	}
	return c
}

func vhostNet(h Host) Check {
	return optionalDevice(h, "vhost-net", "/dev/vhost-net",
		"virtio-net is served by QEMU's own user-space backend (slower)",
		"modprobe vhost_net (CONFIG_VHOST_NET)")
}

func vhostVsock(h Host) Check {
	return optionalDevice(h, "vhost-vsock", "/dev/vhost-vsock",
		"QEMU's agent channel uses virtio-serial (the default) instead of vsock; the built-in VMM's vsock needs no vhost-vsock",
		"modprobe vhost_vsock (CONFIG_VHOST_VSOCK)")
}

// optionalDevice checks a device node that only an opt-in feature uses.
func optionalDevice(h Host, name, dev, without, fix string) Check {
	c := Check{Name: name}
	if _, err := os.Stat(filepath.Join(h.Root, dev)); err != nil {
		c.Status = Unavailable
		c.Detail = fmt.Sprintf("%s: %v; %s", dev, unwrapPath(err), without)
		c.Fix = fix
		return c
	}
	c.Status, c.Value, c.Detail = OK, dev, dev+" exists"
	return c
}

// unwrapPath drops the *PathError's path, which under a test root is not
// the path a reader knows.
func unwrapPath(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// virtiofsdPaths are where distributions install virtiofsd outside PATH.
// Debian 12's qemu-system-common ships QEMU 7.2's own (C) virtiofsd in the
// second; later releases package the Rust one separately.
var virtiofsdPaths = []string{"/usr/libexec/virtiofsd", "/usr/lib/qemu/virtiofsd"}

func virtiofsd(ctx context.Context, h Host) Check {
	c := Check{Name: "virtiofsd"}
	// exe is what to run, path what to show: they differ under a test root.
	exe := lookPath(h.PATH, "virtiofsd")
	path := exe
	for _, p := range virtiofsdPaths {
		if exe == "" && isExecutable(filepath.Join(h.Root, p)) {
			exe, path = filepath.Join(h.Root, p), p
		}
	}
	if exe == "" {
		c.Status = Unavailable
		c.Detail = "virtiofsd not found on PATH, in " + strings.Join(virtiofsdPaths, " or ") + "; the container rootfs is shared over virtio-9p (the default)"
		c.Fix = "optional: install virtiofsd (Debian 13's virtiofsd package, or build it from gitlab.com/virtio-fs/virtiofsd) to share it with virtio-fs"
		return c
	}
	out, err := run(ctx, exe, "--version")
	if err != nil {
		c.Status = Unavailable
		c.Detail = fmt.Sprintf("%s does not run: %v; the container rootfs is shared over virtio-9p (the default)", path, err)
		c.Fix = "reinstall virtiofsd, or remove it"
		return c
	}
	// The daemon is here, but the runtime does not drive virtio-fs yet:
	// saying "ok" would promise what hypervisor.qemu.shared_fs cannot give.
	c.Status, c.Value = Unavailable, path
	c.Detail = fmt.Sprintf("%s (%s) is installed, but joey does not drive virtio-fs yet; the container rootfs is shared over virtio-9p (the default)", path, firstLine(out))
	c.Fix = "none needed: keep hypervisor.qemu.shared_fs = \"9p\""
	return c
}

// cgroupV2 reads the mount table to tell a unified (v2-only) host from a
// hybrid or v1 one. Containers get cgroup v2 inside the VM either way.
func cgroupV2(h Host) Check {
	c := Check{Name: "cgroup-v2"}
	mounts, err := readMounts(filepath.Join(h.Root, "proc/self/mountinfo"))
	if err != nil {
		c.Status, c.Value = Unavailable, "none"
		c.Detail = fmt.Sprintf("read the mount table: %v", err)
		c.Fix = "mount /proc"
		return c
	}
	const v2Fix = "optional: boot the host with systemd.unified_cgroup_hierarchy=1 for a cgroup v2-only host"
	inside := " (containers get cgroup v2 inside the VM either way)"
	switch {
	case mounts["/sys/fs/cgroup"] == "cgroup2":
		c.Status, c.Value = OK, "unified"
		c.Detail = "unified hierarchy (cgroup v2) at /sys/fs/cgroup"
	case mounts["/sys/fs/cgroup/unified"] == "cgroup2":
		c.Status, c.Value = Unavailable, "hybrid"
		c.Detail = "hybrid: v1 controllers under /sys/fs/cgroup, cgroup2 at /sys/fs/cgroup/unified without them" + inside
		c.Fix = v2Fix
	case mountsUnder(mounts, "/sys/fs/cgroup", "cgroup"):
		c.Status, c.Value = Unavailable, "v1"
		c.Detail = "cgroup v1 hierarchy under /sys/fs/cgroup" + inside
		c.Fix = v2Fix
	default:
		c.Status, c.Value = Unavailable, "none"
		c.Detail = "no cgroup hierarchy mounted at /sys/fs/cgroup" + inside
		c.Fix = "mount -t cgroup2 none /sys/fs/cgroup"
	}
	return c
}

// readMounts maps each mount point in a mountinfo file to its filesystem
// type (the later mount wins, as it hides the earlier one).
func readMounts(path string) (map[string]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, unwrapPath(err)
	}
	defer f.Close()
	mounts := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [OPTIONAL…] - FSTYPE SOURCE SUPER
		fields := strings.Fields(sc.Text())
		for i, w := range fields {
			if w == "-" && i+1 < len(fields) && len(fields) > 4 {
				mounts[fields[4]] = fields[i+1]
				break
			}
		}
	}
	return mounts, sc.Err()
}

func mountsUnder(mounts map[string]string, dir, fstype string) bool {
	for mp, t := range mounts {
		if t == fstype && (mp == dir || strings.HasPrefix(mp, dir+"/")) {
			return true
		}
	}
	return false
}

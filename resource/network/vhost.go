package network

import (
	"errors"
	"fmt"
	"io/fs"
	"os"

	"golang.org/x/sys/unix"
)

// openVhostNet opens one vhost-net file per queue from path, or none when
// the host has no vhost-net (the VMM then moves the frames itself).
func openVhostNet(path string, queues int) (_ []*os.File, retErr error) {
	if path == "" {
		return nil, nil
	}
	var files []*os.File
	defer func() {
		if retErr != nil {
			closeAll(files)
		}
	}()
	for q := range queues {
		fd, err := unix.Open(path, unix.O_RDWR|unix.O_CLOEXEC, 0)
		if q == 0 && errors.Is(err, fs.ErrNotExist) {
			return nil, nil
		}
		if err != nil {
			return nil, fmt.Errorf("open %s for queue %d: %w (set NoVhostNet to go without)", path, q, err)
		}
		files = append(files, os.NewFile(uintptr(fd), path))
	}
	return files, nil
}

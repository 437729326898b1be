package testutil

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// GuestRAMRss reads /proc/PID/smaps of a VMM and returns, in KiB, the
// resident size of its guest RAM mapping (the largest-Rss mapping whose
// size is the guest's memory, give or take the 4 MiB a VMM may align it
// by) and of all its mappings together.
func GuestRAMRss(pid, memMiB int) (ram, total int64, err error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/smaps", pid))
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	var size int64
	want := int64(memMiB) << 10
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 2 {
			continue
		}
		switch fields[0] {
		case "Size:":
			size, _ = strconv.ParseInt(fields[1], 10, 64)
		case "Rss:":
			rss, _ := strconv.ParseInt(fields[1], 10, 64)
			total += rss
			if size >= want && size <= want+4096 && rss > ram {
				ram = rss
			}
		}
	}
	if err := sc.Err(); err != nil {
		return 0, 0, fmt.Errorf("read /proc/%d/smaps: %w", pid, err)
	}
	if ram == 0 {
		return 0, 0, fmt.Errorf("pid %d has no %d MiB mapping with pages in it", pid, memMiB)
	}
	return ram, total, nil
}

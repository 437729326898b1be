package container

import (
	"os"
	"path/filepath"
	"testing"
)

func TestOOMKillsReadsTheKillCountOfMemoryEvents(t *testing.T) {
	dir := t.TempDir()
	for name, tc := range map[string]struct {
		content string
		want    uint64
	}{
		"kills":     {"low 0\nhigh 0\nmax 3\noom 2\noom_kill 2\noom_group_kill 0\n", 2},
		"none":      {"low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\n", 0},
		"malformed": {"oom_kill x\n", 0},
	} {
		p := filepath.Join(dir, name)
		os.WriteFile(p, []byte(tc.content), 0o644)
		if got := oomKills(p); got != tc.want {
			t.Errorf("%s: oomKills = %d, want %d", name, got, tc.want)
		}
	}
	if got := oomKills(filepath.Join(dir, "absent")); got != 0 {
		t.Errorf("absent file: %d", got)
	}
}

package nldump

import (
	"errors"
	"fmt"
	"testing"

	"github.com/vishvananda/netlink"
)

func TestDoRepeatsOnlyInterruptedDumpsAndGivesUp(t *testing.T) {
	calls := 0
	v, err := Do(func() (int, error) {
		calls++
		if calls < 3 {
			return 0, fmt.Errorf("list links: %w", netlink.ErrDumpInterrupted)
		}
		return 7, nil
	})
	if v != 7 || err != nil || calls != 3 {
		t.Fatalf("Do = %d, %v after %d calls; want 7, nil after 3", v, err, calls)
	}
	calls = 0
	other := errors.New("permission denied")
	if _, err := Do(func() (int, error) { calls++; return 0, other }); err != other || calls != 1 {
		t.Fatalf("a plain error was retried (%d calls) or changed (%v)", calls, err)
	}
	calls = 0
	if _, err := Do(func() (int, error) { calls++; return 0, netlink.ErrDumpInterrupted }); !errors.Is(err, netlink.ErrDumpInterrupted) || calls != retries {
		t.Fatalf("endless interruption: %v after %d calls, want the error after %d", err, calls, retries)
	}
}

package hostcheck

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
)

// WriteTable prints r for a person: one row per check, the fix under any
// row that has one, and a closing verdict.
func WriteTable(w io.Writer, r Report) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "CHECK\tSTATUS\tDETAIL")
	var missing []string
	for _, c := range r.Checks {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", c.Name, c.Status, c.Detail)
		if c.Fix != "" {
			fmt.Fprintf(tw, "\t\tfix: %s\n", c.Fix)
		}
		if c.Status == Missing {
			missing = append(missing, c.Name)
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	var err error
	if r.OK {
		_, err = fmt.Fprintf(w, "\njoey can run containers on this host (QEMU with %s).\n", strings.ToUpper(r.Accelerator))
	} else {
		_, err = fmt.Fprintf(w, "\njoey cannot run containers on this host: missing %s (see the fixes above).\n", strings.Join(missing, ", "))
	}
	return err
}

// WriteJSON prints r in the stable JSON form documented on Report.
func WriteJSON(w io.Writer, r Report) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

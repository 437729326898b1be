package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"sort"
	"text/tabwriter"
	"time"

	"github.com/containerd/errdefs"

	"github.com/joeyrt/joey/config"
	"github.com/joeyrt/joey/internal/procutil"
	"github.com/joeyrt/joey/persist"
	"github.com/joeyrt/joey/persist/api"
)

func init() {
	register("ps", "list sandboxes from the persisted state", runPS)
	register("inspect", "print the persisted state of a sandbox as JSON", runInspect)
}

func openStore(configPath string) (*persist.Store, error) {
	cfg, err := config.Load(configPath)
	if err != nil {
		return nil, err
	}
	return persist.NewStore(cfg.Runtime.StateDir)
}

func runPS(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("joey ps", flag.ContinueOnError)
	ns := fs.String("namespace", "", "only this namespace (default: all)")
	configPath := fs.String("config", "", "joey config file")
	asJSON := fs.Bool("json", false, "print JSON")
	if err := fs.Parse(args); err != nil {
		return err
	}
	store, err := openStore(*configPath)
	if err != nil {
		return err
	}
	list, listErr := store.List(ctx, *ns)
	sort.Slice(list, func(i, j int) bool { return list[i].CreatedAt.Before(list[j].CreatedAt) })
	if *asJSON {
		if list == nil {
			list = []*api.SandboxState{}
		}
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(list); err != nil {
			return err
		}
		return listErr
	}
	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SANDBOX\tNAMESPACE\tSTATUS\tHYPERVISOR\tVMM PID\tCONTAINERS\tCREATED")
	for _, s := range list {
		pid := "-"
		if s.VMM.Pid > 0 {
			pid = fmt.Sprint(s.VMM.Pid)
			if !procutil.Matches(s.VMM.Pid, s.VMM.StartTime) {
				pid += " (gone)"
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%s\n", s.ID, s.Namespace, s.Status, s.Hypervisor, pid,
			len(s.Containers), s.CreatedAt.Local().Format(time.DateTime))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	return listErr
}

func runInspect(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("joey inspect", flag.ContinueOnError)
	ns := fs.String("namespace", "", "namespace of the sandbox (default: search all)")
	configPath := fs.String("config", "", "joey config file")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return errors.New("usage: joey inspect [--namespace NS] SANDBOX-ID")
	}
	id := fs.Arg(0)
	if err := persist.ValidateID(id); err != nil {
		return err
	}
	store, err := openStore(*configPath)
	if err != nil {
		return err
	}
	var found []*api.SandboxState
	if *ns != "" {
		st, err := store.Load(ctx, *ns, id)
		if err != nil {
			return err
		}
		found = append(found, st)
	} else {
		list, err := store.List(ctx, "")
		if err != nil && len(list) == 0 {
			return err
		}
		for _, s := range list {
			if s.ID == id {
				found = append(found, s)
			}
		}
	}
	switch len(found) {
	case 0:
		return fmt.Errorf("sandbox %s: %w (see joey ps)", id, errdefs.ErrNotFound)
	case 1:
	default:
		return fmt.Errorf("sandbox %s exists in %d namespaces: give --namespace", id, len(found))
	}
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(found[0])
}

package qmp

import (
	"context"
	"errors"
	"fmt"
	"os"
)

// Status is the answer of query-status.
type Status struct {
	// Status is QEMU's run state: "prelaunch", "running", "paused",
	// "shutdown", "internal-error", ….
	Status  string `json:"status"`
	Running bool   `json:"running"`
}

// QueryStatus asks for the VM's run state.
func (c *Client) QueryStatus(ctx context.Context) (Status, error) {
	var s Status
	err := c.Execute(ctx, "query-status", nil, &s)
	return s, err
}

// Stop pauses the vCPUs. It returns once they are stopped.
func (c *Client) Stop(ctx context.Context) error { return c.Execute(ctx, "stop", nil, nil) }

// Cont resumes the vCPUs (or starts them, for a QEMU started with -S).
func (c *Client) Cont(ctx context.Context) error { return c.Execute(ctx, "cont", nil, nil) }

// SystemPowerdown presses the ACPI power button; it needs a guest that
// listens for it.
func (c *Client) SystemPowerdown(ctx context.Context) error {
	return c.Execute(ctx, "system_powerdown", nil, nil)
}

// Quit makes QEMU exit at once. QEMU may close the socket before its answer
// arrives; that counts as success.
func (c *Client) Quit(ctx context.Context) error {
	err := c.Execute(ctx, "quit", nil, nil)
	if errors.Is(err, ErrClosed) {
		return nil
	}
	return err
}

// DeviceAdd plugs in a device: driver is the QEMU device name, props its
// properties besides driver and id (bus, drive, netdev, …).
func (c *Client) DeviceAdd(ctx context.Context, driver, id string, props map[string]any) error {
	args := map[string]any{"driver": driver, "id": id}
	for k, v := range props {
		if k == "driver" || k == "id" {
			return fmt.Errorf("qmp device_add %s: pass %q as an argument, not a property", id, k)
		}
		args[k] = v
	}
	return c.Execute(ctx, "device_add", args, nil)
}

// DeviceDel asks for a device's removal. The device is gone once the
// DEVICE_DELETED event names it; on PCI that takes the guest's consent.
func (c *Client) DeviceDel(ctx context.Context, id string) error {
	return c.Execute(ctx, "device_del", map[string]string{"id": id}, nil)
}

// CPU is one entry of query-cpus-fast.
type CPU struct {
	Index    int    `json:"cpu-index"`
	QOMPath  string `json:"qom-path"`
	ThreadID int    `json:"thread-id"`
	Target   string `json:"target"`
}

// QueryCPUsFast lists the vCPUs without interrupting them.
func (c *Client) QueryCPUsFast(ctx context.Context) ([]CPU, error) {
	var cpus []CPU
	err := c.Execute(ctx, "query-cpus-fast", nil, &cpus)
	return cpus, err
}

// MemorySizeSummary is the answer of query-memory-size-summary, in bytes.
type MemorySizeSummary struct {
	BaseMemory    uint64 `json:"base-memory"`
	PluggedMemory uint64 `json:"plugged-memory"`
}

// QueryMemorySizeSummary reports the guest's boot and hot-plugged RAM.
func (c *Client) QueryMemorySizeSummary(ctx context.Context) (MemorySizeSummary, error) {
	var m MemorySizeSummary
	err := c.Execute(ctx, "query-memory-size-summary", nil, &m)
	return m, err
}

// GetFD hands f to QEMU under name, for a later netdev_add or similar. QEMU
// holds its own copy; the caller still owns f.
func (c *Client) GetFD(ctx context.Context, name string, f *os.File) error {
	return c.ExecuteWithFiles(ctx, "getfd", map[string]string{"fdname": name}, nil, f)
}

// CloseFD drops a file QEMU received with GetFD and has not consumed.
func (c *Client) CloseFD(ctx context.Context, name string) error {
	return c.Execute(ctx, "closefd", map[string]string{"fdname": name}, nil)
}

// BlockdevAdd adds a block node; opts is the blockdev-add argument object.
func (c *Client) BlockdevAdd(ctx context.Context, opts any) error {
	return c.Execute(ctx, "blockdev-add", opts, nil)
}

// BlockdevDel removes a block node no device uses any more.
func (c *Client) BlockdevDel(ctx context.Context, nodeName string) error {
	return c.Execute(ctx, "blockdev-del", map[string]string{"node-name": nodeName}, nil)
}

// NetdevAdd adds a network backend; args is the netdev_add argument object.
func (c *Client) NetdevAdd(ctx context.Context, args any) error {
	return c.Execute(ctx, "netdev_add", args, nil)
}

// NetdevDel removes a network backend.
func (c *Client) NetdevDel(ctx context.Context, id string) error {
	return c.Execute(ctx, "netdev_del", map[string]string{"id": id}, nil)
}

package cmdline

import (
	"fmt"
)

// SerialFile is the first serial port, written to a file. microvm keeps only
// one -serial (a second is dropped silently), so there is one such value.
type SerialFile struct {
	ID   string // chardev id
	Path string
}

// Args implements Option.
func (s SerialFile) Args(*FDs) ([]string, error) {
	if err := checkID("serial", s.ID); err != nil {
		return nil, err
	}
	if err := checkPath("serial "+s.ID, "path", s.Path); err != nil {
		return nil, err
	}
	return []string{
		"-chardev", props{"id=" + s.ID, "path=" + escape(s.Path)}.join("file"),
		"-serial", "chardev:" + s.ID,
	}, nil
}

// QMPSocket is the QMP monitor on a unix socket QEMU listens on.
type QMPSocket struct {
	Path string
}

// Args implements Option.
func (q QMPSocket) Args(*FDs) ([]string, error) {
	if err := checkPath("qmp", "path", q.Path); err != nil {
		return nil, err
	}
	return []string{
		"-chardev", props{"id=qmp", "path=" + escape(q.Path), "server=on", "wait=off"}.join("socket"),
		"-mon", "chardev=qmp,mode=control",
	}, nil
}

// ChardevSocket is a unix-socket character device: QEMU listens on it
// (Server) or connects to it (a vhost-user daemon's socket).
type ChardevSocket struct {
	ID     string
	Path   string
	Server bool
}

// Args implements Option.
func (c ChardevSocket) Args(*FDs) ([]string, error) {
	if err := checkID("chardev", c.ID); err != nil {
		return nil, err
	}
	if err := checkPath("chardev "+c.ID, "path", c.Path); err != nil {
		return nil, err
	}
	p := props{"id=" + c.ID, "path=" + escape(c.Path)}
	if c.Server {
		// wait=off: QEMU must not block at start-up until a client comes.
		p = append(p, "server=on", "wait=off")
	}
	return []string{"-chardev", p.join("socket")}, nil
}

// DeviceVirtioSerial is a virtio-serial controller; its ports are
// DeviceVirtSerialPort values.
type DeviceVirtioSerial struct {
	ID        string
	Transport Transport
	Bus       string // PCI bus; empty lets QEMU choose
}

// Args implements Option.
func (d DeviceVirtioSerial) Args(*FDs) ([]string, error) {
	return plainDevice("virtio-serial", d.ID, d.Transport, d.Bus)
}

// DeviceVirtSerialPort is a named port of a virtio-serial controller whose
// host side is a chardev. The guest finds it by Name in
// /sys/class/virtio-ports/*/name.
type DeviceVirtSerialPort struct {
	ID      string
	Serial  string // the DeviceVirtioSerial's ID
	Chardev string
	Name    string
}

// Args implements Option.
func (d DeviceVirtSerialPort) Args(*FDs) ([]string, error) {
	if err := checkID("virtserialport", d.ID); err != nil {
		return nil, err
	}
	if err := checkRefs("virtserialport "+d.ID, "serial", d.Serial, "chardev", d.Chardev); err != nil {
		return nil, err
	}
	if d.Name == "" {
		return nil, fmt.Errorf("virtserialport %s: name is empty", d.ID)
	}
	p := props{"id=" + d.ID, "bus=" + d.Serial + ".0", "chardev=" + d.Chardev, "name=" + escape(d.Name)}
	return []string{"-device", p.join("virtserialport")}, nil
}

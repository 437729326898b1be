package vm

import (
	"fmt"

	"github.com/joeyrt/joey/vmm/p9fs"
	"github.com/joeyrt/joey/vmm/virtio"
	"github.com/joeyrt/joey/vmm/virtio/p9"
)

// shareDevices serves each share's directory with an in-process 9P2000.L
// server behind a virtio-9p device: no virtiofsd, no second process.
func (v *VM) shareDevices(shares []Share) ([]virtio.Device, error) {
	var devs []virtio.Device
	for _, s := range shares {
		srv, err := p9fs.New(s.Dir, p9fs.Options{ReadOnly: s.ReadOnly})
		if err != nil {
			return nil, fmt.Errorf("share %q: %w", s.Tag, err)
		}
		d, err := p9.New(s.Tag, srv)
		if err != nil {
			srv.Close()
			return nil, fmt.Errorf("share %q: %w", s.Tag, err)
		}
		// The device goes first: it stops serving before its server closes.
		v.closers = append(v.closers, srv, d)
		devs = append(devs, d)
	}
	return devs, nil
}

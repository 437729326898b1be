package netconf

import "time"

// SetRescanWait shortens UpdateInterface's wait for a hot-added NIC, so tests
// of a NIC that never appears need not take seconds.
func (c *Config) SetRescanWait(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.rescanWait = d
}

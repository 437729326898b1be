package hypervisor

// Capabilities is what a driver's VMs can do on this host, and why not when
// they cannot; `joey check` prints it.
type Capabilities struct {
	// Accel is what AccelAuto resolves to here, and AccelReason why.
	Accel       Accel
	AccelReason string
	// The optional abilities (Hotplugger, Resizer, Pauser, Snapshotter).
	Hotplug  Support
	Resize   Support
	Pause    Support
	Snapshot Support
	// SharedFS and AgentChannels list the kinds a Config may use here.
	SharedFS      []SharedFSKind
	AgentChannels []ChannelKind
}

// Support says whether an ability works and under which conditions.
type Support struct {
	Available bool
	Reason    string
}

//go:build unix && !linux

package pluginhost

// waitExited: without Linux's waitid here, the runner reaps at once and
// kills only the process itself, never a group after its leader is reaped.
func waitExited(int) bool { return false }

package pluginhost

// SetSignalGroup replaces the process group kill for a test; the returned
// function restores it. Call it before any plugin starts and restore it
// after every plugin stopped.
func SetSignalGroup(f func(pgid int)) (restore func()) {
	old := signalGroup
	signalGroup = func(pgid int) { f(pgid); old(pgid) }
	return func() { signalGroup = old }
}

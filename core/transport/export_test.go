package transport

// ReadinessAvailable reports whether connections are read on readiness.
func ReadinessAvailable() bool { return pollerReady() }

// ReadinessRegistered is how many connections the poller holds (0 where
// there is none).
func ReadinessRegistered() int {
	if !pollerReady() {
		return 0
	}
	return thePoller.registered()
}

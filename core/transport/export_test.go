package transport

// ReadinessAvailable reports whether connections are read on readiness.
func ReadinessAvailable() bool { return pollerReady() }

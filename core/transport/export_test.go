package transport

// ReadinessAvailable reports whether connections are read on readiness.
func ReadinessAvailable() bool { return pollerReady() }

// URingTurns is how many writer turns went through io_uring so far.
func URingTurns() int64 { return uringTurns.Load() }

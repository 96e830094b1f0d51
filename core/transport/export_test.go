package transport

// ReadinessAvailable reports whether connections are read on readiness.
func ReadinessAvailable() bool { return pollerReady() }

// URingTurns is how many writer turns went through io_uring so far, and
// whether io_uring is off in this process (unavailable, or a ring failed).
func URingTurns() (turns int64, off bool) { return uringTurns.Load(), rings.off.Load() }

package transport

// URingTurns is how many writer turns went through io_uring so far, and
// whether io_uring is off (unavailable here, or failed).
func URingTurns() (turns int64, off bool) { return uringTurns.Load(), uringOff.Load() }

package transport

// IsRegistered reports whether c is registered with the poller.
func IsRegistered(c *Conn) bool {
	if !pollerReady() {
		return false
	}
	thePoller.mu.Lock()
	defer thePoller.mu.Unlock()
	return thePoller.conns[c.rd.pollID] == c
}

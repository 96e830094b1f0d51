//go:build !linux

package transport

// IsRegistered reports whether c is registered with the poller: there is
// none on this platform.
func IsRegistered(*Conn) bool { return false }

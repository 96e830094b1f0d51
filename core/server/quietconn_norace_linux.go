//go:build linux && !race

package server

// See quietconn_race_linux.go: only the race detector needs these.
func ioRelease() {}

func ioAcquire() {}

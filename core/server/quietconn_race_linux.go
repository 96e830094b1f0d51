//go:build linux && race

package server

import (
	"os"
	"sync"
	"syscall"
)

// Under the race detector, quietConn's raw syscalls tell it what the
// syscall package's Read and Write tell it: a write(2) releases, and a
// read(2) that succeeded acquires, one object shared by all I/O
// (syscall's ioSync), so that what a goroutine did before writing to a
// socket happens before what another does after reading it from the
// other end. Bypassed, the detector would lose every happens-before edge
// that runs through an HTTP exchange with a client that uses net.Conn.
// That object is the syscall package's own, so the only way to reach it
// is through its Read and Write: on /dev/null, with nothing to move.
// Without -race both functions are empty (quietconn_norace_linux.go).
var devNull = sync.OnceValue(func() int {
	f, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	if err != nil {
		return -1
	}
	devNullFile = f // kept, so that no finalizer closes the descriptor
	return int(f.Fd())
})

var devNullFile *os.File

func ioRelease() { _, _ = syscall.Write(devNull(), nil) }

func ioAcquire() { _, _ = syscall.Read(devNull(), nil) }

//go:build linux

package server

import (
	"io"
	"net"
	"os"
	"syscall"
	"unsafe"
)

// quietListener hands out TCP connections whose reads and writes are raw
// syscalls made through the socket's RawConn (waiting in Go's netpoller
// as net.Conn does when the socket is not ready).
//
// Why: a syscall made the usual way (syscall.Read, as net.Conn's Read
// does) tells the scheduler it entered a syscall, and when the runtime's
// sysmon thread is in its deep sleep (every processor idle, as between
// two requests of a backend publishing at a moderate rate) that wakes it
// into its 20 µs polling cycle, which it keeps until it finds the
// processors idle again. In scenario c (200 requests/s) sysmon was 11.5 %
// of herald's CPU and in a 6 % (docs/performance.md, "Quieter sockets for
// the HTTP API"). Herald's own writes to WebSockets are raw syscalls for
// the same reason (transport's writeFd); these are the HTTP API's. A read
// or write of a non-blocking socket returns at once, so the scheduler
// loses nothing by not being told.
type quietListener struct{ net.Listener }

// quietListen wraps ln (a TCP listener) so that its connections are
// quietConns; a listener of another kind is returned as it is.
func quietListen(ln net.Listener) net.Listener {
	if _, ok := ln.(*net.TCPListener); !ok {
		return ln
	}
	return quietListener{ln}
}

func (l quietListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return c, nil
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return c, nil
	}
	return &quietConn{TCPConn: tc, rc: rc}, nil
}

// quietConn is a *net.TCPConn whose Read and Write are raw syscalls (see
// quietListener). Everything else (deadlines, Close, SyscallConn, which
// the WebSocket transport uses once a connection is upgraded) is the
// TCPConn's.
type quietConn struct {
	*net.TCPConn
	rc syscall.RawConn
}

func (c *quietConn) Read(b []byte) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	var n int
	var errno syscall.Errno
	err := c.rc.Read(func(fd uintptr) bool {
		for {
			r, _, e := syscall.RawSyscall(syscall.SYS_READ, fd, uintptr(unsafe.Pointer(unsafe.SliceData(b))), uintptr(len(b)))
			switch e {
			case syscall.EINTR:
				continue
			case syscall.EAGAIN:
				return false // wait until readable (or the deadline)
			}
			n, errno = int(r), e
			return true
		}
	})
	switch {
	case err != nil:
		return 0, c.opError("read", err)
	case errno != 0:
		return 0, c.opError("read", errno)
	case n == 0:
		return 0, io.EOF
	}
	ioAcquire()
	return n, nil
}

func (c *quietConn) Write(b []byte) (int, error) {
	written := 0
	var errno syscall.Errno
	ioRelease()
	err := c.rc.Write(func(fd uintptr) bool {
		for written < len(b) {
			rest := b[written:]
			r, _, e := syscall.RawSyscall(syscall.SYS_WRITE, fd, uintptr(unsafe.Pointer(unsafe.SliceData(rest))), uintptr(len(rest)))
			switch e {
			case 0:
				written += int(r)
			case syscall.EINTR:
			case syscall.EAGAIN:
				return false // wait until writable (or the deadline)
			default:
				errno = e
				return true
			}
		}
		return true
	})
	switch {
	case err != nil:
		return written, c.opError("write", err)
	case errno != 0:
		return written, c.opError("write", errno)
	}
	return written, nil
}

// opError wraps err as net.Conn's methods do, so that callers that look
// for a *net.OpError or a net.Error's Timeout (net/http does) see the same.
func (c *quietConn) opError(op string, err error) error {
	if errno, ok := err.(syscall.Errno); ok {
		err = os.NewSyscallError(op, errno)
	}
	return &net.OpError{Op: op, Net: "tcp", Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: err}
}

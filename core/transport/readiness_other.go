//go:build !linux

package transport

import (
	"errors"
	"syscall"
)

// Readiness-based reading is Linux's (readiness_linux.go); elsewhere every
// connection has a reader goroutine (ReadLoop).

type poller struct{}

var thePoller *poller

func pollerReady() bool { return false }

var errNoPoller = errors.New("transport: no readiness-based reading on this platform")

func (p *poller) newID() uint64     { return 0 }
func (p *poller) add(*Conn) error   { return errNoPoller }
func (p *poller) rearm(*Conn) error { return errNoPoller }
func (p *poller) remove(*Conn)      {}

func rawTryRead(syscall.RawConn) func(p []byte) (int, error, bool) { return nil }

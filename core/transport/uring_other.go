//go:build !linux

package transport

import (
	"errors"
	"sync/atomic"
)

// uring is io_uring's ring, which only Linux has: every write elsewhere is
// a write(2) of its own.
type uring struct{}

// sendReq is one send of a turn (see uring_linux.go).
type sendReq struct {
	fd int
	b  []byte
	n  int
}

func (r *uring) send([]sendReq) error { panic("transport: io_uring is Linux's") }

// rings is what Linux's rings keep; here only that io_uring is off.
var rings struct{ off atomic.Bool }

func init() { rings.off.Store(true) }

// URingStatus says that the writers write with write(2): io_uring is
// Linux's.
func URingStatus() error { return errors.New("io_uring is off: only Linux has it") }

func turnOff(error) {}

func takeRing() *uring { return nil }

func giveRing(*uring, bool, []sendReq) {}

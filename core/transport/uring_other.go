//go:build !linux

package transport

import "errors"

// uring is Linux's io_uring; elsewhere every write is a write(2) of its own.
type uring struct{ entries uint32 }

type sendReq struct {
	fd int
	b  []byte
	n  int
}

func newURing(uint32) (*uring, error) { return nil, errors.New("io_uring: Linux only") }

func (r *uring) close() {}

func (r *uring) send([]sendReq) error { return errors.New("io_uring: Linux only") }

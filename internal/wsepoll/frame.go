package wsepoll

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Opcode is a frame's type (RFC 6455 §5.2).
type Opcode byte

// The opcodes a server sends.
const (
	OpContinuation Opcode = 0x0
	OpText         Opcode = 0x1
	OpBinary       Opcode = 0x2
	OpClose        Opcode = 0x8
	OpPing         Opcode = 0x9
	OpPong         Opcode = 0xa
)

// DefaultMaxFrame bounds a frame's payload when no other bound is given:
// far above what herald or Centrifugo send a client, far below what would
// let one client's length field take the generator's memory.
const DefaultMaxFrame = 16 << 20

// Frame is one whole frame. Payload points into the caller's bytes: it is
// valid until Parse (or Stream.Feed) returns.
type Frame struct {
	Op Opcode
	// Fin is set on the last frame of a message. The servers the tools
	// measure never fragment; a fragment is handed on as it comes.
	Fin     bool
	Payload []byte
}

// Errors for frames Parse refuses; they come wrapped with the frame's
// details.
var (
	// ErrMasked is a masked frame, which a server must not send.
	ErrMasked = errors.New("masked frame from a server")
	// ErrTooBig is a frame whose payload is over the bound.
	ErrTooBig = errors.New("frame over the size bound")
)

// CloseError is the end of a connection by the server's close frame.
type CloseError struct {
	// Code is the close frame's status code, 1005 (none given) if it has
	// none.
	Code   int
	Reason string
}

func (e *CloseError) Error() string {
	return fmt.Sprintf("closed by the server: %d %q", e.Code, e.Reason)
}

// closeError reads a close frame's payload.
func closeError(payload []byte) *CloseError {
	if len(payload) < 2 {
		return &CloseError{Code: 1005}
	}
	return &CloseError{Code: int(binary.BigEndian.Uint16(payload)), Reason: string(payload[2:])}
}

// Parse calls each for every whole frame at the start of b, in order, and
// returns how many bytes those frames took: b[n:] is the start of a frame
// not yet whole. It stops at the first error of each, and at a frame it
// refuses: masked, or with a payload over max bytes (max <= 0:
// DefaultMaxFrame), which it refuses as soon as the length is read.
func Parse(b []byte, max int, each func(Frame) error) (n int, err error) {
	if max <= 0 {
		max = DefaultMaxFrame
	}
	for {
		size, hdr, whole, err := header(b[n:], max)
		if err != nil || !whole {
			return n, err
		}
		f := Frame{Op: Opcode(b[n] & 0x0f), Fin: b[n]&0x80 != 0, Payload: b[n+hdr : n+hdr+size]}
		if err := each(f); err != nil {
			return n, err
		}
		n += hdr + size
	}
}

// header reads the frame header at the start of b: the payload's length
// and the header's; whole when the payload is in b too.
func header(b []byte, max int) (size, hdr int, whole bool, err error) {
	if len(b) < 2 {
		return 0, 0, false, nil
	}
	if b[1]&0x80 != 0 {
		return 0, 0, false, fmt.Errorf("opcode %#x: %w", b[0]&0x0f, ErrMasked)
	}
	n, hdr := uint64(b[1]&0x7f), 2
	switch n {
	case 126:
		if len(b) < 4 {
			return 0, 0, false, nil
		}
		n, hdr = uint64(binary.BigEndian.Uint16(b[2:])), 4
	case 127:
		if len(b) < 10 {
			return 0, 0, false, nil
		}
		n, hdr = binary.BigEndian.Uint64(b[2:]), 10
	}
	if n > uint64(max) {
		return 0, 0, false, fmt.Errorf("opcode %#x, %d bytes, bound %d: %w", b[0]&0x0f, n, max, ErrTooBig)
	}
	return int(n), hdr, len(b)-hdr >= int(n), nil
}

// Stream is one connection's frames as reads bring its bytes: it keeps
// what a read left of an unfinished frame until the next completes it. The
// zero Stream takes frames up to DefaultMaxFrame.
type Stream struct {
	// Max bounds a frame's payload (0: DefaultMaxFrame).
	Max     int
	partial []byte
}

// Feed takes one read's bytes and calls each for every frame they
// complete, stopping at the first error (each's or Parse's). Once it has
// returned an error the stream's state is undefined.
func (s *Stream) Feed(data []byte, each func(Frame) error) error {
	if len(s.partial) > 0 {
		s.partial = append(s.partial, data...)
		data = s.partial
	}
	n, err := Parse(data, s.Max, each)
	if err != nil {
		return err
	}
	if len(s.partial) > 0 { // data is s.partial: keep its rest at the start
		if n > 0 {
			s.partial = s.partial[:copy(s.partial, s.partial[n:])]
		}
	} else {
		s.partial = append(s.partial, data[n:]...)
	}
	if len(s.partial) == 0 && cap(s.partial) > 64<<10 {
		// A big frame's buffer is not kept for every idle client.
		s.partial = nil
	}
	return nil
}

// Pending is how many bytes of an unfinished frame the stream holds.
func (s *Stream) Pending() int { return len(s.partial) }

// appendClientFrame appends a whole client frame: masked, as a client's
// must be, with a zero key, which leaves the payload as it is.
func appendClientFrame(dst []byte, op Opcode, payload []byte) []byte {
	dst = append(dst, 0x80|byte(op))
	switch n := len(payload); {
	case n <= 125:
		dst = append(dst, 0x80|byte(n))
	case n <= 0xffff:
		dst = append(dst, 0x80|126, byte(n>>8), byte(n))
	default:
		dst = append(dst, 0x80|127)
		dst = binary.BigEndian.AppendUint64(dst, uint64(n))
	}
	dst = append(dst, 0, 0, 0, 0)
	return append(dst, payload...)
}

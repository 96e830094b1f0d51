package transport

import (
	"io"
	"net"
	"sync"
)

// framer is what gorilla reads from on a connection upgraded by Upgrade:
// it reads the socket into a buffer of its own and hands gorilla the bytes
// of one frame at most per Read, never past the frame's end. So gorilla's
// bufio.Reader holds nothing once ReadMessage has returned a message, and
// whether more input waits is a question the framer answers (more) without
// a goroutine blocked in gorilla: that is what lets an idle connection be
// read on readiness (reader.go) rather than by a goroutine parked on it.
//
// At a frame boundary it consumes valid ping and pong frames itself (a
// ping's pong is queued, both count as hearing from the peer): gorilla
// would loop past them in ReadMessage and block for the next data frame.
// Anything else (data frames, close frames, control frames that are not
// valid) goes to gorilla, which judges it as it always did.
//
// Its buffer is pooled: taken when the socket is read, given back as soon
// as it is empty, so an idle connection holds none.
//
// A framer is used by one goroutine at a time (the connection's reader).
type framer struct {
	src net.Conn
	// tryRead reads what the socket holds without waiting; wouldBlock
	// when it holds nothing. Nil: the socket cannot be read so (more
	// then looks at the buffer only).
	tryRead func(p []byte) (n int, err error, wouldBlock bool)
	// ping and pong are told of the peer's control frames at boundaries;
	// ping's payload is unmasked and the framer's (it may be kept).
	ping func(payload []byte)
	pong func()

	buf  *[]byte // nil while nothing is buffered
	r, w int     // buf[r:w] is read and not yet consumed
	// rem is what is left to hand gorilla of the piece of a frame it is
	// reading; next is the piece after it (pieceNone: the frame's end).
	// A frame goes to gorilla in the pieces gorilla reads it in (its first
	// two bytes, its extended length, its mask, its payload), so that
	// gorilla fails on a bad header where it would reading the socket
	// itself, without the framer waiting for bytes gorilla does not need.
	rem  int64
	next int
	// extLen and masked describe the header being handed out; plen is
	// the frame's payload length once known.
	extLen int
	masked bool
	plen   int64
	err    error // the socket's error, returned once the buffer is drained
}

// The pieces of a frame after its first two bytes.
const (
	pieceNone = iota
	pieceExt
	pieceMask
	piecePayload
)

// framerBufferSize is the framer's buffer: large enough for any control
// frame (14 bytes of header, 125 of payload), and for the small frames
// clients send to arrive with one read.
const framerBufferSize = 4096

var framerBuffers = sync.Pool{New: func() any { b := make([]byte, framerBufferSize); return &b }}

// maxControlFrame is a control frame's size at most: a 2-byte header, a
// 4-byte mask and 125 bytes of payload (RFC 6455 section 5.5).
const maxControlFrame = 2 + 4 + 125

// Read hands gorilla the bytes of the frame it reads, at most up to its
// end; at a boundary it first consumes pings and pongs, blocking for input
// as a reader would.
func (f *framer) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	for f.rem == 0 {
		var err error
		if f.next == pieceNone {
			_, err = f.boundary(true)
		} else {
			err = f.nextPiece()
		}
		if err != nil {
			return 0, err
		}
	}
	if f.r == f.w {
		if err := f.fill(); err != nil {
			return 0, err
		}
	}
	n := f.w - f.r
	if int64(n) > f.rem {
		n = int(f.rem)
	}
	n = copy(p[:min(len(p), n)], (*f.buf)[f.r:])
	f.r += n
	f.rem -= int64(n)
	if f.rem == 0 && f.next == piecePayload && f.plen == 0 {
		f.next = pieceNone // an empty frame ends with its header
	}
	f.releaseIfEmpty()
	return n, nil
}

// more reports whether a frame for gorilla waits (or the socket failed:
// gorilla is to see the error), consuming pings and pongs on the way. It
// blocks only for the rest of a frame the peer has begun; with nothing
// buffered it looks at the socket without waiting.
func (f *framer) more() bool {
	if f.rem > 0 || f.next != pieceNone {
		return true // gorilla stopped inside a frame: it failed, and is to say so
	}
	ready, err := f.boundary(false)
	return ready || err != nil
}

// boundary consumes the complete ping and pong frames at the head of the
// input, until a frame for gorilla begins (ready: its first two bytes are
// the piece to hand out) or, unless block, until nothing is buffered and
// the socket holds nothing. It blocks for the rest of a ping or pong.
func (f *framer) boundary(block bool) (ready bool, err error) {
	for {
		if f.r == f.w {
			if f.err != nil {
				return false, f.err
			}
			if !block {
				n, ok := f.fillNow()
				if !ok {
					return false, nil // nothing waits
				}
				if n == 0 {
					return false, f.err
				}
			} else if err := f.fill(); err != nil {
				return false, err
			}
		}
		if f.w-f.r < 2 {
			if err := f.fill(); err != nil {
				return false, err
			}
			continue
		}
		b0, b1 := (*f.buf)[f.r], (*f.buf)[f.r+1]
		op, n := b0&0x0f, b1&0x7f
		// A valid ping or pong: final, no reserved bits, masked (a
		// client's), at most 125 bytes. Anything else is gorilla's to judge.
		if (op != 9 && op != 10) || b0&0xf0 != 0x80 || b1&0x80 == 0 || n > 125 {
			f.rem, f.masked, f.plen = 2, b1&0x80 != 0, int64(n)
			switch n {
			case 126:
				f.extLen, f.next = 2, pieceExt
			case 127:
				f.extLen, f.next = 8, pieceExt
			default:
				f.extLen, f.next = 0, pieceMask
			}
			return true, nil
		}
		size := 6 + int(n)
		for f.w-f.r < size {
			if err := f.fill(); err != nil {
				return false, err
			}
		}
		b := (*f.buf)[f.r : f.r+size]
		payload := append([]byte(nil), b[6:]...)
		for i := range payload {
			payload[i] ^= b[2+i&3]
		}
		f.r += size
		f.releaseIfEmpty()
		if op == 9 {
			f.ping(payload)
		} else {
			f.pong()
		}
	}
}

// nextPiece sets up the next piece of the frame gorilla reads, once it has
// been handed the one before.
func (f *framer) nextPiece() error {
	switch f.next {
	case pieceExt:
		for f.w-f.r < f.extLen {
			if err := f.fill(); err != nil {
				return err
			}
		}
		f.plen = 0
		for _, c := range (*f.buf)[f.r : f.r+f.extLen] {
			f.plen = f.plen<<8 | int64(c)
		}
		if f.plen < 0 {
			f.plen = 0 // invalid: gorilla fails on the length it was handed
		}
		f.rem, f.next = int64(f.extLen), pieceMask
	case pieceMask:
		f.next = piecePayload
		if f.masked {
			f.rem = 4
		} else if f.plen == 0 {
			f.next = pieceNone
		}
	case piecePayload:
		f.rem, f.next = f.plen, pieceNone
	}
	return nil
}

// fill reads the socket, waiting for input, after what is buffered; it
// keeps what is buffered at the head of the buffer so that a whole control
// frame always fits.
func (f *framer) fill() error {
	if f.err != nil {
		return f.err
	}
	f.take()
	n, err := f.src.Read((*f.buf)[f.w:])
	f.w += n
	if err != nil {
		f.err = err
		if n == 0 {
			f.releaseIfEmpty()
			return err
		}
	}
	if n == 0 {
		f.releaseIfEmpty()
		return io.ErrNoProgress
	}
	return nil
}

// fillNow reads what the socket holds without waiting: ok is false when
// it holds nothing (or cannot be read so). A failure is kept in f.err.
func (f *framer) fillNow() (n int, ok bool) {
	if f.tryRead == nil || f.err != nil {
		return 0, f.err != nil
	}
	f.take()
	n, err, wouldBlock := f.tryRead((*f.buf)[f.w:])
	if wouldBlock {
		f.releaseIfEmpty()
		return 0, false
	}
	f.w += n
	if err == nil && n == 0 {
		err = io.EOF
	}
	if err != nil {
		f.err = err
	}
	f.releaseIfEmpty()
	return n, true
}

// take makes sure there is a buffer with room after what is buffered.
func (f *framer) take() {
	if f.buf == nil {
		f.buf = framerBuffers.Get().(*[]byte)
		f.r, f.w = 0, 0
		return
	}
	if f.r > 0 && (f.w == len(*f.buf) || len(*f.buf)-f.r < maxControlFrame+8) {
		f.w = copy(*f.buf, (*f.buf)[f.r:f.w])
		f.r = 0
	}
}

// releaseIfEmpty gives the buffer back once everything in it is consumed.
func (f *framer) releaseIfEmpty() {
	if f.buf != nil && f.r == f.w {
		framerBuffers.Put(f.buf)
		f.buf, f.r, f.w = nil, 0, 0
	}
}

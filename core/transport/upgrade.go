package transport

import (
	"bufio"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
)

// Upgrade upgrades an HTTP request to a WebSocket connection whose every
// write goes through the connection's outbox and writer, gorilla's own
// included.
//
// gorilla writes to the socket by itself in two cases: a close frame when a
// frame passes the read limit (1009), and one on a protocol error. Those
// writes would land between two writes of one of our frames (a large frame
// the socket took in part, whose rest a goroutine of its own writes), and
// gorilla's write deadline would cut ours short: the peer would read a
// corrupt stream. So the socket gorilla sees is a guardedConn: once NewConn
// arms it, a frame gorilla writes is parsed and queued like any close frame
// of ours, after what is queued; its 1009, which has no reason, is given
// one naming the setting (SetReadLimit).
func Upgrade(up *websocket.Upgrader, w http.ResponseWriter, r *http.Request, opts *Options) (*Conn, error) {
	ws, err := up.Upgrade(hijackGuard{w}, r, nil)
	if err != nil {
		return nil, err
	}
	return NewConn(ws, opts), nil
}

// hijackGuard hands gorilla a guardedConn when it hijacks the connection.
type hijackGuard struct{ http.ResponseWriter }

func (h hijackGuard) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	nc, brw, err := http.NewResponseController(h.ResponseWriter).Hijack()
	if err != nil {
		return nil, nil, err
	}
	return &guardedConn{Conn: nc}, brw, nil
}

// guardedConn passes writes through until it is armed (the handshake's
// response), then sends them to the Conn's outbox.
type guardedConn struct {
	net.Conn
	conn atomic.Pointer[Conn]
	// fr, set by NewConn before anything is read, is what gorilla reads
	// through (framer.go).
	fr *framer
}

// Read is gorilla's: through the framer once NewConn set one.
func (g *guardedConn) Read(p []byte) (int, error) {
	if g.fr != nil {
		return g.fr.Read(p)
	}
	return g.Conn.Read(p)
}

func (g *guardedConn) arm(c *Conn) { g.conn.Store(c) }

// Write takes one frame gorilla wrote after the handshake: a control frame,
// unmasked (a server's), so its header is two bytes. A close frame is
// queued as our own closes are; anything else gorilla might write (it only
// writes pongs from a ping handler, which NewConn replaces) is queued as a
// control frame of its kind.
func (g *guardedConn) Write(b []byte) (int, error) {
	c := g.conn.Load()
	if c == nil {
		return g.Conn.Write(b)
	}
	if len(b) < 2 || b[1]&0x7f > 125 || len(b) != 2+int(b[1]&0x7f) {
		// Not a control frame: gorilla writes none once NewConn owns the
		// connection. Refusing it keeps the stream whole.
		return 0, net.ErrClosed
	}
	op, payload := b[0]&0x0f, append([]byte(nil), b[2:]...)
	if op == websocket.CloseMessage {
		code := websocket.CloseNoStatusReceived
		if len(payload) >= 2 {
			code = int(payload[0])<<8 | int(payload[1])
		}
		if code == CloseTooBig && len(payload) == 2 {
			// gorilla's, on the read limit: give it a reason.
			frameLen := int64(-1)
			if g.fr != nil {
				frameLen = g.fr.plen
			}
			c.closeTooBig(c.tooBigClose(frameLen))
			return len(b), nil
		}
		c.closeByPeerError(code, payload)
	} else {
		c.control(op, payload)
	}
	return len(b), nil
}

// SetWriteDeadline is ignored once armed: the writer sets its own, and
// gorilla's would cut a write of ours short.
func (g *guardedConn) SetWriteDeadline(t time.Time) error {
	if g.conn.Load() != nil {
		return nil
	}
	return g.Conn.SetWriteDeadline(t)
}

// SetDeadline sets only the read deadline once armed (see SetWriteDeadline).
func (g *guardedConn) SetDeadline(t time.Time) error {
	if g.conn.Load() != nil {
		return g.Conn.SetReadDeadline(t)
	}
	return g.Conn.SetDeadline(t)
}

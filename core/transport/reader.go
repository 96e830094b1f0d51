package transport

import (
	"errors"
	"os"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
)

// The reader side of a Conn. Two ways to read, one API (Serve):
//
//   - On Linux, a connection upgraded by Upgrade on a socket with a
//     descriptor is read on readiness: it is registered with the poller
//     (readiness_linux.go) and holds no goroutine while idle. Input starts
//     a short-lived goroutine (serve) that reads and handles frames while
//     input is buffered or waiting on the socket, then re-arms the
//     registration and ends. The framer under gorilla (framer.go) is what
//     makes "while input is buffered" answerable: gorilla's own buffer is
//     empty whenever it returned a message, and pings and pongs are
//     consumed without a goroutine blocking for the next data frame.
//   - Elsewhere (other platforms, TLS connections, sockets without a
//     descriptor, a poller that failed), a reader goroutine per connection
//     (ReadLoop), parked in gorilla's ReadMessage while idle.
//
// Either way frames are handled one at a time, in order, and everything a
// reader's end does (the read limit's 1009, the close handshake's linger,
// terminate) is endRead's.

// Reader states of a connection read on readiness.
const (
	rdNone    = iota // not read on readiness
	rdParked         // registered and armed, no goroutine
	rdRunning        // a goroutine (serve) reads
	rdDone           // ended
)

// readSide is a Conn's reader state.
type readSide struct {
	fr      *framer      // nil: gorilla reads the socket itself (not upgraded by Upgrade)
	handle  func([]byte) // Serve's
	ended   func(error)  // Serve's
	pollID  uint64       // the poller's id for the connection
	state   atomic.Int32
	polled  atomic.Bool // registered with the poller
	expired atomic.Bool // the read deadline of a close handshake passed
}

// Serve reads the connection in the background, handing each text frame
// to handle (in order, one at a time; binary frames as nil, to be answered
// as a parse error), until the connection ends; then it closes it and
// calls ended with the reason. handle must not keep frame. It returns at
// once.
//
// On Linux an idle connection upgraded by Upgrade holds no goroutine (see
// readSide); elsewhere a goroutine runs ReadLoop.
func (c *Conn) Serve(handle func(frame []byte), ended func(err error)) {
	if ended == nil {
		ended = func(error) {}
	}
	if c.rd.fr != nil && c.rd.fr.tryRead != nil && pollerReady() {
		c.rd.handle, c.rd.ended = handle, ended
		c.rd.pollID = thePoller.newID() // before polled: terminate reads it then
		c.rd.state.Store(rdParked)
		c.rd.polled.Store(true)
		if err := thePoller.add(c); err != nil {
			// Closed meanwhile (or the poller refused it): serve finds out
			// and ends, or reads with a goroutine of its own.
			c.wakeReader()
		}
		return
	}
	go func() { ended(c.ReadLoop(handle)) }()
}

// wakeReader starts the reader of a parked connection: its socket is
// ready, closed, or past its read deadline.
func (c *Conn) wakeReader() {
	if c.rd.state.CompareAndSwap(rdParked, rdRunning) {
		go c.serve()
	}
}

// serve reads and handles frames while input waits, then parks the
// connection (re-arms its registration) and ends. It blocks only for the
// rest of a frame the peer has begun, and while handle runs.
func (c *Conn) serve() {
	for {
		if !c.rd.fr.more() {
			c.rd.state.Store(rdParked)
			if c.rd.expired.Load() {
				// closeWritten's deadline passed with no answer from the peer.
				if c.rd.state.CompareAndSwap(rdParked, rdRunning) {
					c.finishServe(os.ErrDeadlineExceeded)
				}
				return
			}
			if err := thePoller.rearm(c); err != nil {
				if !c.rd.state.CompareAndSwap(rdParked, rdRunning) {
					return // terminate took it over: a new serve runs
				}
				// Cannot wait for readiness (the socket closed, or epoll
				// refused): read as a reader goroutine would; a closed
				// socket ends it at once.
				c.finishServe(c.readMessages(c.rd.handle))
			}
			return
		}
		typ, frame, err := c.ws.ReadMessage()
		if err != nil {
			c.finishServe(err)
			return
		}
		c.heardAt.Store(nanotime())
		if typ != websocket.TextMessage {
			frame = nil // not part of the protocol: answered as a parse error
		}
		c.rd.handle(frame)
	}
}

// finishServe ends a connection read on readiness: as ReadLoop ends.
func (c *Conn) finishServe(err error) {
	thePoller.remove(c)
	err = c.endRead(err)
	c.rd.state.Store(rdDone)
	c.rd.ended(err)
}

// stopPolling deregisters the connection before its socket closes.
func (c *Conn) stopPolling() {
	if c.rd.polled.Load() {
		thePoller.remove(c)
	}
}

// closeHandshakeDeadline is closeWritten's: a reader blocked in a read has
// the socket's deadline; a parked one is woken once it passed.
func (c *Conn) closeHandshakeDeadline(d time.Duration) {
	_ = c.ws.SetReadDeadline(time.Now().Add(d))
	if c.rd.polled.Load() {
		time.AfterFunc(d, func() {
			c.rd.expired.Store(true)
			c.wakeReader()
		})
	}
}

// readMessages reads until the connection fails, each frame handled on a
// short-lived goroutine while the reader waits: handling (JSON decoding,
// subscribing, plugin calls) grows a stack to 8 KiB and more, and a reader
// that handled frames itself would park between frames on that grown
// stack.
func (c *Conn) readMessages(handle func(frame []byte)) error {
	handled := make(chan struct{})
	for {
		typ, frame, err := c.ws.ReadMessage()
		if err != nil {
			return err
		}
		c.heardAt.Store(nanotime())
		if typ != websocket.TextMessage {
			// Binary frames are not part of the protocol; answer as a parse error would.
			frame = nil
		}
		go func() {
			defer func() { handled <- struct{}{} }()
			handle(frame)
		}()
		<-handled
	}
}

// endRead ends the connection once its reader failed with err, and
// returns err.
func (c *Conn) endRead(err error) error {
	defer c.terminate()
	if errors.Is(err, websocket.ErrReadLimit) {
		c.closeCode.Store(CloseTooBig)
		// gorilla writes its 1009 only for a length within int64; a
		// length field out of range ends the read with no close at all.
		// A close already queued (gorilla's, or ours) makes this a no-op.
		c.closeTooBig(c.tooBigClose(frameLenOutOfRange))
	}
	// A close frame we queued (our answer to the peer's, or ours)
	// gets a moment to leave before the socket closes.
	// It waits as long as a write may take (WriteTimeout): a close
	// queued behind a large frame leaves once the peer has read it.
	c.mu.Lock()
	out := c.closeOut
	c.mu.Unlock()
	if out != nil {
		wait := c.opts.WriteTimeout
		if wait <= 0 {
			wait = time.Second
		}
		t := time.NewTimer(wait)
		select {
		case <-out:
			c.linger()
		case <-t.C:
		}
		t.Stop()
	}
	return err
}

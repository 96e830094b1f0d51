//go:build linux

package main

import (
	"errors"
	"fmt"
	"runtime"
	"syscall"

	"github.com/heraldhq/herald/internal/wsepoll"
)

// The epoll reader takes each client's socket away from gorilla once it
// has subscribed (a dup of its descriptor; the original is closed) and
// reads all of them from a goroutine per two processors
// (internal/wsepoll). Per frame that is one read(2) and no goroutine
// switch, where a goroutine per client costs a wake-up, a switch and a
// second read that finds the socket empty. On the 2-CPU bench machine the
// generator shares the CPUs with herald, so every cycle it saves is one
// herald can use: the measured latency is then herald's, not the
// generator's queueing.

const defaultReader = "epoll"

// rawReaders is the state of the epoll reader: its poller and the
// descriptors it took, which are closed only once the poller stopped.
type rawReaders struct {
	poller *wsepoll.Poller
	fds    []int
}

// rawClient is what a frame read by the epoll reader means to a client.
type rawClient struct {
	f     *fleet
	index int
}

var _ wsepoll.Client = (*rawClient)(nil)

func (f *fleet) startEpoll() error {
	// Half the processors: the publisher and the server need the others.
	// The pollers never block in epoll_wait (wsepoll.Options.NoWait says
	// why) and pause -read-pause when few sockets were ready.
	p, err := wsepoll.New(wsepoll.Options{
		Pollers: max(1, runtime.GOMAXPROCS(0)/2),
		NoWait:  true,
		Pause:   f.readPause,
	})
	if err != nil {
		return err
	}
	r := &rawReaders{poller: p}
	f.raw = r
	for _, c := range f.clients {
		// gorilla has read nothing past the subscribe reply: herald sends
		// nothing more until the first publish.
		fd, err := wsepoll.Detach(c.ws.UnderlyingConn())
		if err != nil {
			return fmt.Errorf("client %d: %w", c.index, err)
		}
		r.fds = append(r.fds, fd)
		if err := p.Add(fd, &rawClient{f: f, index: c.index}); err != nil {
			return fmt.Errorf("client %d: %w", c.index, err)
		}
	}
	p.Start()
	return nil
}

// Frame counts a frame's notifications and answers it as the server
// expects, if it does (Centrifugo's pings: fleet.answer).
func (c *rawClient) Frame(fr wsepoll.Frame, now int64) []byte {
	c.f.count(c.index, fr.Payload, now)
	if c.f.answer != nil {
		return c.f.answer(fr.Payload)
	}
	return nil
}

// Ended counts a client whose connection ended, by close code (-1: no
// close frame).
func (c *rawClient) Ended(err error) {
	code := -1
	if ce := (*wsepoll.CloseError)(nil); errors.As(err, &ce) {
		code = ce.Code
	}
	c.f.dropOut(code)
}

// stopRaw stops the epoll reader's pollers, then closes the sockets they
// read, so that none reads a descriptor closed and reused meanwhile.
func (f *fleet) stopRaw() {
	if f.raw == nil {
		return
	}
	f.raw.poller.Stop() // they see stopping within a pause
	for _, fd := range f.raw.fds {
		_ = syscall.Close(fd)
	}
}

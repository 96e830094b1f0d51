package transport

import (
	"fmt"
	"os"
	"sync"
	"syscall"
)

// The Linux poller: one epoll instance for the process, in which every
// connection read on readiness (reader.go) is registered with
// EPOLLIN|EPOLLRDHUP|EPOLLONESHOT, level-triggered. Its event data is the
// connection's id, not its descriptor (a descriptor is reused once
// closed): a stale event finds no connection and is dropped. An event
// disables the registration (one-shot) until the connection's reader
// re-arms it (EPOLL_CTL_MOD, which reports input that arrived meanwhile at
// once), so at most one reader runs per connection. Go's own netpoller
// keeps its registration of the socket: the reader's blocking reads (the
// rest of a frame) and writes use it as before.
//
// The poller's goroutine exists while connections are registered: the last
// one to leave wakes it (an eventfd in the set) and it ends.
type poller struct {
	epfd, evfd int
	// epf holds the epoll descriptor in Go's own netpoller (an epoll set
	// is readable while it has events), so that the poller's goroutine
	// waits parked like any reader, not in a blocking epoll_wait that
	// takes an OS thread off the scheduler and back at every event. nil:
	// Go could not poll it; the goroutine then blocks in epoll_wait.
	epf *os.File
	erc syscall.RawConn

	mu      sync.Mutex
	conns   map[uint64]*Conn
	nextID  uint64
	running bool
}

var (
	pollerOnce sync.Once
	thePoller  *poller
	pollerErr  error
)

// pollerReady reports whether readiness-based reading is available.
func pollerReady() bool {
	pollerOnce.Do(func() { thePoller, pollerErr = newPoller() })
	return pollerErr == nil
}

// evfdID is the event data of the poller's own eventfd; connection ids
// start at 1.
const evfdID = 0

func newPoller() (*poller, error) {
	epfd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("transport: epoll_create1: %w", err)
	}
	r1, _, errno := syscall.Syscall(syscall.SYS_EVENTFD2, 0, syscall.O_CLOEXEC|syscall.O_NONBLOCK, 0)
	if errno != 0 {
		_ = syscall.Close(epfd)
		return nil, fmt.Errorf("transport: eventfd2: %w", errno)
	}
	evfd := int(r1)
	ev := syscall.EpollEvent{Events: syscall.EPOLLIN}
	setEventID(&ev, evfdID)
	if err := syscall.EpollCtl(epfd, syscall.EPOLL_CTL_ADD, evfd, &ev); err != nil {
		_ = syscall.Close(epfd)
		_ = syscall.Close(evfd)
		return nil, fmt.Errorf("transport: epoll_ctl add eventfd: %w", err)
	}
	p := &poller{epfd: epfd, evfd: evfd, conns: make(map[uint64]*Conn)}
	if syscall.SetNonblock(epfd, true) == nil {
		// Kept for the process's life: its finalizer would close epfd.
		p.epf = os.NewFile(uintptr(epfd), "transport-epoll")
		if rc, err := p.epf.SyscallConn(); err == nil {
			p.erc = rc
		}
	}
	return p, nil
}

// wait returns the events of the set, waiting for some.
func (p *poller) wait(events []syscall.EpollEvent) (int, error) {
	if p.erc != nil {
		var n int
		var werr error
		err := p.erc.Read(func(fd uintptr) bool {
			n, werr = syscall.EpollWait(int(fd), events, 0)
			return n > 0 || (werr != nil && werr != syscall.EINTR)
		})
		if err == nil {
			return n, werr
		}
		// Not pollable after all: wait in epoll_wait from now on.
		p.erc = nil
	}
	return syscall.EpollWait(p.epfd, events, -1)
}

func setEventID(ev *syscall.EpollEvent, id uint64) {
	ev.Fd, ev.Pad = int32(uint32(id)), int32(uint32(id>>32))
}

func eventID(ev *syscall.EpollEvent) uint64 {
	return uint64(uint32(ev.Fd)) | uint64(uint32(ev.Pad))<<32
}

const readEvents = syscall.EPOLLIN | syscall.EPOLLRDHUP | syscall.EPOLLONESHOT

// newID is a connection's id, never used before.
func (p *poller) newID() uint64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.nextID++
	return p.nextID
}

// add registers c (its id from newID), armed: its first readiness event
// starts its reader. It fails if c's socket is closed already.
func (p *poller) add(c *Conn) error {
	p.mu.Lock()
	p.conns[c.rd.pollID] = c
	start := !p.running
	p.running = true
	p.mu.Unlock()
	if start {
		go p.run()
	}
	if err := p.ctl(c, syscall.EPOLL_CTL_ADD); err != nil {
		p.remove(c)
		return err
	}
	return nil
}

// rearm enables c's registration again once its reader found nothing more
// to read. It fails if c's socket is closed.
func (p *poller) rearm(c *Conn) error { return p.ctl(c, syscall.EPOLL_CTL_MOD) }

// ctl runs an epoll_ctl on c's descriptor while the descriptor cannot be
// closed (RawConn.Control holds it): a closed one is not touched, so a
// descriptor reused by another socket never is.
func (p *poller) ctl(c *Conn, op int) error {
	var cerr error
	err := c.raw.Control(func(fd uintptr) {
		ev := syscall.EpollEvent{Events: readEvents}
		setEventID(&ev, c.rd.pollID)
		if op == syscall.EPOLL_CTL_DEL {
			cerr = syscall.EpollCtl(p.epfd, op, int(fd), nil)
		} else {
			cerr = syscall.EpollCtl(p.epfd, op, int(fd), &ev)
		}
	})
	if err != nil {
		return fmt.Errorf("transport: epoll_ctl on a closed socket: %w", err)
	}
	if cerr != nil {
		return fmt.Errorf("transport: epoll_ctl %d: %w", op, cerr)
	}
	return nil
}

// remove deregisters c (before its socket closes; closing would drop the
// registration too) and forgets its id; an event already taken for it is
// dropped. The last connection to leave ends the poller's goroutine.
func (p *poller) remove(c *Conn) {
	_ = p.ctl(c, syscall.EPOLL_CTL_DEL) // fails if closed already: then the kernel dropped it
	p.mu.Lock()
	_, ok := p.conns[c.rd.pollID]
	delete(p.conns, c.rd.pollID)
	last := ok && len(p.conns) == 0
	p.mu.Unlock()
	if last {
		one := [8]byte{1}
		_, _ = syscall.Write(p.evfd, one[:])
	}
}

// run waits for readiness and hands each ready connection to its reader,
// until no connection is registered.
func (p *poller) run() {
	events := make([]syscall.EpollEvent, 256)
	ready := make([]*Conn, 0, len(events))
	for {
		n, err := p.wait(events)
		if err != nil {
			if err == syscall.EINTR {
				continue
			}
			// Not expected with valid arguments; nothing else could wake
			// the readers, so keep trying rather than strand them.
			continue
		}
		ready = ready[:0]
		woken := false
		p.mu.Lock()
		for i := range events[:n] {
			id := eventID(&events[i])
			if id == evfdID {
				woken = true
				continue
			}
			if c := p.conns[id]; c != nil {
				ready = append(ready, c)
			}
		}
		if woken {
			var b [8]byte
			_, _ = syscall.Read(p.evfd, b[:])
		}
		if len(p.conns) == 0 {
			p.running = false
			p.mu.Unlock()
			for _, c := range ready {
				c.wakeReader()
			}
			return
		}
		p.mu.Unlock()
		for _, c := range ready {
			c.wakeReader()
		}
		clear(ready)
	}
}

// rawTryRead reads what the socket holds without waiting (see
// framer.tryRead). A read deadline that passed, or a closed socket, is an
// error, as for a blocking read.
func rawTryRead(rc syscall.RawConn) func(p []byte) (int, error, bool) {
	return func(p []byte) (n int, err error, wouldBlock bool) {
		var serr error
		rerr := rc.Read(func(fd uintptr) bool {
			for {
				n, serr = syscall.Read(int(fd), p)
				if serr != syscall.EINTR {
					return true
				}
			}
		})
		if rerr != nil {
			return 0, rerr, false
		}
		if serr == syscall.EAGAIN {
			return 0, nil, true
		}
		if serr != nil {
			return 0, serr, false
		}
		return n, nil, false
	}
}

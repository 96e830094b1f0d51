package wsepoll

import (
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"
)

// Client is what a Poller tells about one socket. A poller calls its
// methods from its own goroutine, one call at a time.
type Client interface {
	// Frame is a whole data frame (text, binary or a continuation) that
	// arrived at now, in unix ns: when the read that completed it
	// returned. Its payload is valid only during the call. A reply that is
	// not nil is sent back as a text frame, at once; a socket with no room
	// for it skips it.
	Frame(f Frame, now int64) (reply []byte)
	// Ended says the socket ended and will not be read again: err is a
	// *CloseError for the server's close frame, wraps ErrMasked or
	// ErrTooBig for a frame refused, else is the read's (io.EOF: the
	// server closed the connection without a close frame). It is not
	// called for the sockets a stopping poller leaves.
	Ended(err error)
}

// Options are a Poller's; the zero value is one goroutine that blocks in
// epoll_wait, 64 KiB reads, frames up to DefaultMaxFrame.
type Options struct {
	// Pollers is the number of goroutines, each with its own epoll set;
	// sockets go to them in turn (0: 1).
	Pollers int
	// NoWait makes a poller never block in epoll_wait: it takes what is
	// ready and, when that was under a quarter of its event buffer, sleeps
	// Pause on a Go timer so that one wake-up reads many sockets. A
	// goroutine blocked in a syscall keeps the runtime's sysmon waking
	// every 20 µs to take its processor back, which on a 2-CPU machine
	// costs more than the reading. The pause only ever adds to a latency
	// measured, never takes from it. Without NoWait a poller blocks in
	// epoll_wait for at most 50 ms at a time.
	NoWait bool
	Pause  time.Duration
	// ReadBuffer is the bytes a read may take (0: 64 KiB), one buffer per
	// poller.
	ReadBuffer int
	// MaxFrame bounds a frame's payload (0: DefaultMaxFrame).
	MaxFrame int
}

// Poller reads sockets added to it from its goroutines, from Start to
// Stop. It never closes a socket: the caller does, after Stop, so that no
// poller reads a descriptor that was closed and given to another file.
type Poller struct {
	opts     Options
	sets     []*set
	added    int
	stopping atomic.Bool
	wg       sync.WaitGroup
	stopOnce sync.Once
}

// set is one goroutine's epoll set and its sockets, which only that
// goroutine touches once started.
type set struct {
	p       *Poller
	epfd    int
	sockets map[int32]*socket
	out     []byte // a reply being written
}

// socket is one client's descriptor and unfinished frame.
type socket struct {
	fd     int
	client Client
	stream Stream
	now    int64             // the time of the read being parsed
	take   func(Frame) error // s.frame, bound once rather than per read
}

// New makes a poller's epoll sets.
func New(o Options) (*Poller, error) {
	o.Pollers = max(1, o.Pollers)
	if o.ReadBuffer <= 0 {
		o.ReadBuffer = 64 << 10
	}
	p := &Poller{opts: o}
	for range o.Pollers {
		epfd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
		if err != nil {
			p.closeSets()
			return nil, fmt.Errorf("epoll_create1: %w", err)
		}
		p.sets = append(p.sets, &set{p: p, epfd: epfd, sockets: map[int32]*socket{}})
	}
	return p, nil
}

// Add makes the poller read fd, a non-blocking stream socket, and tell c
// what comes of it. Every Add comes before Start.
func (p *Poller) Add(fd int, c Client) error {
	s := p.sets[p.added%len(p.sets)]
	sk := &socket{fd: fd, client: c, stream: Stream{Max: p.opts.MaxFrame}}
	sk.take = func(f Frame) error { return s.frame(sk, f) }
	// Edge-triggered: a socket is read until it is drained, and only new
	// data raises a new event.
	ev := syscall.EpollEvent{Events: syscall.EPOLLIN | syscall.EPOLLRDHUP | -syscall.EPOLLET, Fd: int32(fd)}
	if err := syscall.EpollCtl(s.epfd, syscall.EPOLL_CTL_ADD, fd, &ev); err != nil {
		return fmt.Errorf("epoll_ctl add %d: %w", fd, err)
	}
	s.sockets[int32(fd)] = sk
	p.added++
	return nil
}

// Start starts a goroutine per epoll set; Stop ends them.
func (p *Poller) Start() {
	for _, s := range p.sets {
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			s.poll()
		}()
	}
}

// Stop ends the poller's goroutines, waits for them (they see it within a
// pause, or 50 ms) and closes the epoll sets, not the sockets. It may be
// called more than once, and without Start.
func (p *Poller) Stop() {
	p.stopOnce.Do(func() {
		p.stopping.Store(true)
		p.wg.Wait()
		p.closeSets()
	})
}

func (p *Poller) closeSets() {
	for _, s := range p.sets {
		_ = syscall.Close(s.epfd)
	}
}

// poll reads s's sockets until the poller stops.
func (s *set) poll() {
	events := make([]syscall.EpollEvent, 256)
	buf := make([]byte, s.p.opts.ReadBuffer)
	for !s.p.stopping.Load() {
		n, err := s.wait(events)
		if err != nil {
			if errors.Is(err, syscall.EINTR) {
				continue
			}
			// epoll_wait fails only on a bad set: nothing more will be
			// read, and the clients are told so.
			for _, sk := range s.sockets {
				s.end(sk, fmt.Errorf("epoll_wait: %w", err))
			}
			return
		}
		if s.p.stopping.Load() {
			return
		}
		for _, ev := range events[:n] {
			if sk := s.sockets[ev.Fd]; sk != nil {
				s.drain(sk, buf)
			}
		}
		if s.p.opts.NoWait && n < len(events)/4 {
			time.Sleep(s.p.opts.Pause)
		}
	}
}

func (s *set) wait(events []syscall.EpollEvent) (int, error) {
	if !s.p.opts.NoWait {
		return syscall.EpollWait(s.epfd, events, 50)
	}
	r, _, errno := syscall.RawSyscall6(syscall.SYS_EPOLL_PWAIT, uintptr(s.epfd),
		uintptr(unsafe.Pointer(&events[0])), uintptr(len(events)), 0, 0, 0)
	if errno != 0 {
		return 0, errno
	}
	return int(r), nil
}

// drain reads sk's socket until it is empty (a short read: new data raises
// a new event) and hands on its whole frames.
func (s *set) drain(sk *socket, buf []byte) {
	for {
		// Raw: a read of a non-blocking socket never blocks, so the
		// runtime need not know of it.
		n, _, errno := syscall.RawSyscall(syscall.SYS_READ, uintptr(sk.fd), uintptr(unsafe.Pointer(&buf[0])), uintptr(len(buf)))
		switch {
		case errno == syscall.EAGAIN:
			return
		case errno == syscall.EINTR:
			continue
		case errno != 0:
			s.end(sk, fmt.Errorf("read: %w", errno))
			return
		case n == 0:
			s.end(sk, io.EOF)
			return
		}
		sk.now = time.Now().UnixNano()
		if err := sk.stream.Feed(buf[:n], sk.take); err != nil {
			s.end(sk, err)
			return
		}
		if int(n) < len(buf) {
			return
		}
	}
}

// frame does what a whole frame asks of the client.
func (s *set) frame(sk *socket, f Frame) error {
	switch f.Op {
	case OpText, OpBinary, OpContinuation:
		if reply := sk.client.Frame(f, sk.now); reply != nil {
			s.write(sk.fd, OpText, reply)
		}
	case OpPing:
		s.write(sk.fd, OpPong, f.Payload)
	case OpClose:
		return closeError(f.Payload)
	}
	return nil // a pong, or an opcode no server of ours sends
}

// write sends a short client frame: a pong, or a client's reply. The
// socket has room for a few bytes; if not, the next ping is answered.
func (s *set) write(fd int, op Opcode, payload []byte) {
	s.out = appendClientFrame(s.out[:0], op, payload)
	_, _, _ = syscall.RawSyscall(syscall.SYS_WRITE, uintptr(fd), uintptr(unsafe.Pointer(&s.out[0])), uintptr(len(s.out)))
}

// end stops reading sk and tells its client why. The descriptor stays
// open, so taking it out of the set cannot fail for a closed one.
func (s *set) end(sk *socket, err error) {
	_ = syscall.EpollCtl(s.epfd, syscall.EPOLL_CTL_DEL, sk.fd, nil)
	delete(s.sockets, int32(sk.fd))
	sk.client.Ended(err)
}

// Descriptor is nc's socket descriptor, for a poller that reads it in
// place: the caller keeps nc, reads nothing from it meanwhile, and closes
// it only after the poller stopped.
func Descriptor(nc net.Conn) (int, error) {
	rc, err := rawConn(nc)
	if err != nil {
		return -1, err
	}
	fd := -1
	if err := rc.Control(func(d uintptr) { fd = int(d) }); err != nil {
		return -1, fmt.Errorf("descriptor of %T: %w", nc, err)
	}
	return fd, nil
}

// Detach takes nc's socket away from Go's netpoller: it returns a
// non-blocking duplicate of its descriptor and closes nc, which only drops
// the original descriptor. The caller owns the duplicate and closes it
// after the poller stopped.
func Detach(nc net.Conn) (int, error) {
	rc, err := rawConn(nc)
	if err != nil {
		return -1, err
	}
	dup := -1
	var derr error
	if err := rc.Control(func(fd uintptr) { dup, derr = syscall.Dup(int(fd)) }); err != nil {
		return -1, fmt.Errorf("descriptor of %T: %w", nc, err)
	}
	if derr != nil {
		return -1, fmt.Errorf("dup: %w", derr)
	}
	syscall.CloseOnExec(dup)
	if err := syscall.SetNonblock(dup, true); err != nil {
		_ = syscall.Close(dup)
		return -1, fmt.Errorf("set non-blocking: %w", err)
	}
	_ = nc.Close()
	return dup, nil
}

func rawConn(nc net.Conn) (syscall.RawConn, error) {
	sc, ok := nc.(syscall.Conn)
	if !ok {
		return nil, fmt.Errorf("%T has no descriptor", nc)
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil, fmt.Errorf("descriptor of %T: %w", nc, err)
	}
	return rc, nil
}

//go:build linux

package main

import (
	"encoding/binary"
	"fmt"
	"net"
	"runtime"
	"sync"
	"syscall"
	"time"
	"unsafe"
)

// The epoll reader takes each client's socket away from gorilla once it
// has subscribed (a dup of its descriptor; the original is closed) and
// reads all of them from a goroutine per two processors. Per frame that is
// one read(2) and no goroutine switch, where a goroutine per client costs a
// wake-up, a switch and a second read that finds the socket empty. On the
// 2-CPU bench machine the generator shares the CPUs with herald, so every
// cycle it saves is one herald can use: the measured latency is then
// herald's, not the generator's queueing.

const defaultReader = "epoll"

// rawReaders is the state of the epoll reader.
type rawReaders struct {
	pollers []*poller
	wg      sync.WaitGroup
}

type poller struct {
	epfd    int
	clients map[int32]*rawClient
}

// rawClient is one client's socket and its unfinished frame, if any.
type rawClient struct {
	index   int
	fd      int
	partial []byte // bytes of a frame not yet whole
	closed  bool
}

// stolenFD returns a non-blocking duplicate of ws's socket and closes the
// original, so that Go's poller no longer watches it.
func stolenFD(nc net.Conn) (int, error) {
	sc, ok := nc.(syscall.Conn)
	if !ok {
		return -1, fmt.Errorf("%T has no descriptor", nc)
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return -1, err
	}
	dup := -1
	var derr error
	if err := rc.Control(func(fd uintptr) { dup, derr = syscall.Dup(int(fd)) }); err != nil {
		return -1, err
	}
	if derr != nil {
		return -1, fmt.Errorf("dup: %w", derr)
	}
	syscall.CloseOnExec(dup)
	if err := syscall.SetNonblock(dup, true); err != nil {
		syscall.Close(dup)
		return -1, fmt.Errorf("set non-blocking: %w", err)
	}
	// Closing the original only drops its descriptor: the socket stays
	// open through the duplicate.
	_ = nc.Close()
	return dup, nil
}

func (f *fleet) startEpoll() error {
	// Half the processors: the publisher and the server need the others.
	n := max(1, runtime.GOMAXPROCS(0)/2)
	r := &rawReaders{}
	for range n {
		epfd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
		if err != nil {
			r.closeAll()
			return fmt.Errorf("epoll_create1: %w", err)
		}
		r.pollers = append(r.pollers, &poller{epfd: epfd, clients: map[int32]*rawClient{}})
	}
	f.raw = r
	for i, c := range f.clients {
		// gorilla has read nothing past the subscribe reply: herald sends
		// nothing more until the first publish.
		fd, err := stolenFD(c.ws.UnderlyingConn())
		if err != nil {
			return fmt.Errorf("client %d: %w", c.index, err)
		}
		p := r.pollers[i%n]
		p.clients[int32(fd)] = &rawClient{index: c.index, fd: fd}
		ev := syscall.EpollEvent{Events: syscall.EPOLLIN | syscall.EPOLLRDHUP | -syscall.EPOLLET, Fd: int32(fd)}
		if err := syscall.EpollCtl(p.epfd, syscall.EPOLL_CTL_ADD, fd, &ev); err != nil {
			return fmt.Errorf("client %d: epoll_ctl: %w", c.index, err)
		}
	}
	for _, p := range r.pollers {
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			f.poll(p)
		}()
	}
	return nil
}

// poll reads p's sockets until the fleet stops. It never blocks in a
// syscall: epoll_wait does not wait, and when little was ready the poller
// sleeps on a Go timer. A poller blocked in epoll_wait keeps the runtime's
// sysmon waking every 20µs to take its processor back, which on the bench
// machine cost more CPU than the reading itself.
func (f *fleet) poll(p *poller) {
	events := make([]syscall.EpollEvent, 256)
	buf := make([]byte, 64<<10)
	for !f.stopping.Load() {
		r, _, errno := syscall.RawSyscall6(syscall.SYS_EPOLL_PWAIT, uintptr(p.epfd),
			uintptr(unsafe.Pointer(&events[0])), uintptr(len(events)), 0, 0, 0)
		if errno != 0 {
			if errno == syscall.EINTR {
				continue
			}
			return
		}
		n := int(r)
		for _, ev := range events[:n] {
			if c := p.clients[ev.Fd]; c != nil && !c.closed {
				f.drain(c, buf)
			}
		}
		if n < len(events)/4 {
			// Few sockets were ready: let more become ready before looking
			// again rather than wake for each frame; a wake-up costs more
			// than a read on this kind of machine. The pause only ever adds
			// to the latency measured, never takes from it.
			time.Sleep(f.readPause)
		}
	}
}

// drain reads c's socket until it is empty (edge-triggered: a short read
// means empty, and new data raises a new event), counting whole frames.
func (f *fleet) drain(c *rawClient, buf []byte) {
	for {
		n, _, errno := syscall.RawSyscall(syscall.SYS_READ, uintptr(c.fd), uintptr(unsafe.Pointer(&buf[0])), uintptr(len(buf)))
		switch {
		case errno == syscall.EAGAIN:
			return
		case errno == syscall.EINTR:
			continue
		case errno != 0 || n == 0:
			c.closed = true
			f.dropOut(-1)
			return
		}
		now := time.Now().UnixNano()
		data := buf[:n]
		if len(c.partial) > 0 {
			c.partial = append(c.partial, data...)
			data = c.partial
		}
		rest, code := f.parseFrames(c.index, data, now, func(op byte, payload []byte) { writeFrame(c.fd, op, payload) })
		if code != 0 {
			c.closed = true
			f.dropOut(code)
			return
		}
		c.partial = append(c.partial[:0], rest...)
		if len(c.partial) == 0 && cap(c.partial) > 64<<10 {
			c.partial = nil
		}
		if int(n) < len(buf) {
			return
		}
	}
}

// parseFrames counts the whole server frames at the start of data and returns
// what is left of an unfinished one; a close frame returns its code. What
// a client must send back goes to reply with its opcode: a pong (0xA) with
// a ping's payload, and f.answer's text (0x1), if any, for a text frame.
func (f *fleet) parseFrames(index int, data []byte, now int64, reply func(op byte, payload []byte)) (rest []byte, closeCode int) {
	for len(data) >= 2 {
		op := data[0] & 0x0f
		size, hdr := uint64(data[1]&0x7f), 2
		switch size {
		case 126:
			if len(data) < 4 {
				return data, 0
			}
			size, hdr = uint64(binary.BigEndian.Uint16(data[2:])), 4
		case 127:
			if len(data) < 10 {
				return data, 0
			}
			size, hdr = binary.BigEndian.Uint64(data[2:]), 10
		}
		if data[1]&0x80 != 0 {
			hdr += 4 // a masked frame would be a server bug; skip its key
		}
		if len(data) < hdr || uint64(len(data)-hdr) < size {
			return data, 0
		}
		payload := data[hdr : hdr+int(size)]
		switch op {
		case 0x1, 0x0: // text, continuation: herald does not fragment
			f.count(index, payload, now)
			if f.answer != nil {
				if text := f.answer(payload); text != nil {
					reply(0x1, text)
				}
			}
		case 0x9:
			reply(0xa, payload)
		case 0x8:
			code := 1005
			if len(payload) >= 2 {
				code = int(binary.BigEndian.Uint16(payload))
			}
			return nil, code
		}
		data = data[hdr+int(size):]
	}
	return data, 0
}

// writeFrame sends a short client frame: a pong as herald's
// server.ping_interval expects, or Centrifugo's {} answer to its ping;
// masked (with a zero key, which leaves the payload as is). The socket has
// room for a few bytes; if not, the next ping will be answered.
func writeFrame(fd int, op byte, payload []byte) {
	if len(payload) > 125 {
		payload = payload[:125]
	}
	frame := append([]byte{0x80 | op, 0x80 | byte(len(payload)), 0, 0, 0, 0}, payload...)
	_, _, _ = syscall.RawSyscall(syscall.SYS_WRITE, uintptr(fd), uintptr(unsafe.Pointer(&frame[0])), uintptr(len(frame)))
}

// stopRaw closes the sockets the epoll reader took and waits for its
// threads.
func (f *fleet) stopRaw() {
	if f.raw == nil {
		return
	}
	f.raw.wg.Wait() // they see stopping within a pause
	f.raw.closeAll()
}

func (r *rawReaders) closeAll() {
	for _, p := range r.pollers {
		for _, c := range p.clients {
			syscall.Close(c.fd)
		}
		syscall.Close(p.epfd)
	}
}

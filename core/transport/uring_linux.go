//go:build linux

package transport

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"syscall"
	"unsafe"
)

// uring is a minimal io_uring, through raw syscalls (no dependency): a
// writer hands it many sockets' frames at once and it sends them all with
// one io_uring_enter, where write(2) per socket is one syscall each. On
// this machine a syscall's entry and exit are half of a small loopback
// write (BenchmarkFanOutFloor, docs/performance.md "Broadcast fan-out on
// every core"). A uring is used by one goroutine at a time.
type uring struct {
	fd       int
	sqRing   []byte
	cqRing   []byte
	sqes     []byte
	entries  uint32
	sqHead   *uint32
	sqTail   *uint32
	sqMask   uint32
	sqArray  []uint32
	cqHead   *uint32
	cqTail   *uint32
	cqMask   uint32
	cqesOff  uint32
	singleMM bool
}

// The kernel's ABI (include/uapi/linux/io_uring.h).
const (
	sysIOURingSetup = 425
	sysIOURingEnter = 426

	ioringOffSQRing = 0
	ioringOffCQRing = 0x8000000
	ioringOffSQEs   = 0x10000000

	ioringFeatSingleMmap = 1 << 0
	ioringEnterGetEvents = 1 << 0
	ioringSetupSubmitAll = 1 << 7 // keep submitting after an entry fails
	ioringOpSend         = 26
	sqeSize, cqeSize     = 64, 16
	msgDontWait          = 0x40
	msgNoSignal          = 0x4000
)

type ioSQRingOffsets struct {
	Head, Tail, RingMask, RingEntries, Flags, Dropped, Array, Resv1 uint32
	UserAddr                                                        uint64
}

type ioCQRingOffsets struct {
	Head, Tail, RingMask, RingEntries, Overflow, CQEs, Flags, Resv1 uint32
	UserAddr                                                        uint64
}

type ioURingParams struct {
	SQEntries, CQEntries, Flags, SQThreadCPU, SQThreadIdle, Features, WQFd uint32
	Resv                                                                   [3]uint32
	SQOff                                                                  ioSQRingOffsets
	CQOff                                                                  ioCQRingOffsets
}

// newURing sets up a ring of at least entries submissions (twice as many
// completions, the kernel's default, so that completions never overflow).
func newURing(entries uint32) (*uring, error) {
	p := ioURingParams{Flags: ioringSetupSubmitAll}
	fd, _, e := syscall.Syscall(sysIOURingSetup, uintptr(entries), uintptr(unsafe.Pointer(&p)), 0)
	if e != 0 {
		return nil, fmt.Errorf("io_uring_setup: %w", e)
	}
	syscall.CloseOnExec(int(fd))
	r := &uring{fd: int(fd), entries: p.SQEntries}
	sqSize := int(p.SQOff.Array + p.SQEntries*4)
	cqSize := int(p.CQOff.CQEs + p.CQEntries*cqeSize)
	r.singleMM = p.Features&ioringFeatSingleMmap != 0
	if r.singleMM {
		sqSize = max(sqSize, cqSize)
	}
	var err error
	if r.sqRing, err = syscall.Mmap(r.fd, ioringOffSQRing, sqSize, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_SHARED|syscall.MAP_POPULATE); err != nil {
		r.close()
		return nil, fmt.Errorf("io_uring: mmap the submission ring: %w", err)
	}
	if r.singleMM {
		r.cqRing = r.sqRing
	} else if r.cqRing, err = syscall.Mmap(r.fd, ioringOffCQRing, cqSize, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_SHARED|syscall.MAP_POPULATE); err != nil {
		r.close()
		return nil, fmt.Errorf("io_uring: mmap the completion ring: %w", err)
	}
	if r.sqes, err = syscall.Mmap(r.fd, ioringOffSQEs, int(p.SQEntries*sqeSize), syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_SHARED|syscall.MAP_POPULATE); err != nil {
		r.close()
		return nil, fmt.Errorf("io_uring: mmap the submission entries: %w", err)
	}
	r.sqHead = (*uint32)(unsafe.Pointer(&r.sqRing[p.SQOff.Head]))
	r.sqTail = (*uint32)(unsafe.Pointer(&r.sqRing[p.SQOff.Tail]))
	r.sqMask = *(*uint32)(unsafe.Pointer(&r.sqRing[p.SQOff.RingMask]))
	r.sqArray = unsafe.Slice((*uint32)(unsafe.Pointer(&r.sqRing[p.SQOff.Array])), p.SQEntries)
	r.cqHead = (*uint32)(unsafe.Pointer(&r.cqRing[p.CQOff.Head]))
	r.cqTail = (*uint32)(unsafe.Pointer(&r.cqRing[p.CQOff.Tail]))
	r.cqMask = *(*uint32)(unsafe.Pointer(&r.cqRing[p.CQOff.RingMask]))
	r.cqesOff = p.CQOff.CQEs
	return r, nil
}

func (r *uring) close() {
	if r.sqes != nil {
		_ = syscall.Munmap(r.sqes)
	}
	if r.cqRing != nil && !r.singleMM {
		_ = syscall.Munmap(r.cqRing)
	}
	if r.sqRing != nil {
		_ = syscall.Munmap(r.sqRing)
	}
	_ = syscall.Close(r.fd)
}

// sendReq is one send: b to the socket fd, which the caller keeps open
// (and b alive) until send returns. n is what the socket took, or a
// negative errno.
type sendReq struct {
	fd int
	b  []byte
	n  int
}

// rawSendBytes is the most a submission may copy in a syscall the
// scheduler is not told of (see send): ~100 µs of copying.
const rawSendBytes = 256 << 10

// send submits every request (at most r.entries) as a non-blocking send
// and returns once all have completed. It returns an error only if the
// ring failed; the requests it did not complete then have n set by
// write(2) instead (those the kernel had not taken) or -EIO (those it
// had taken, whose fate is unknown: their connection is failed).
func (r *uring) send(reqs []sendReq) error {
	k := uint32(len(reqs))
	if k == 0 {
		return nil
	}
	tail := atomic.LoadUint32(r.sqTail)
	for i := range reqs {
		idx := (tail + uint32(i)) & r.sqMask
		sqe := r.sqes[idx*sqeSize : (idx+1)*sqeSize]
		clear(sqe)
		sqe[0] = ioringOpSend
		*(*int32)(unsafe.Pointer(&sqe[4])) = int32(reqs[i].fd)
		*(*uint64)(unsafe.Pointer(&sqe[16])) = uint64(uintptr(unsafe.Pointer(unsafe.SliceData(reqs[i].b))))
		*(*uint32)(unsafe.Pointer(&sqe[24])) = uint32(len(reqs[i].b))
		*(*uint32)(unsafe.Pointer(&sqe[28])) = msgDontWait | msgNoSignal
		*(*uint64)(unsafe.Pointer(&sqe[32])) = uint64(i) // user_data
		r.sqArray[idx] = idx
		reqs[i].n = -int(syscall.EIO)
	}
	atomic.StoreUint32(r.sqTail, tail+k)
	done := uint32(0)
	var failed error
	// The first enter only submits: every send is non-blocking
	// (MSG_DONTWAIT), so the kernel completes each one inline, and for a
	// submission of a few hundred small frames the call is made without
	// telling the scheduler, as write(2) is (rawWrite1). One that copies
	// more than rawSendBytes could hold its processor for milliseconds:
	// the scheduler is told of it, as it is of the wait for a send still
	// incomplete after the first enter.
	bytes := 0
	for i := range reqs {
		bytes += len(reqs[i].b)
	}
	wait, told := false, bytes > rawSendBytes
loop:
	for done < k {
		toSubmit := tail + k - atomic.LoadUint32(r.sqHead)
		var e syscall.Errno
		switch {
		case wait:
			_, _, e = syscall.Syscall6(sysIOURingEnter, uintptr(r.fd), uintptr(toSubmit), uintptr(k-done), ioringEnterGetEvents, 0, 0)
		case told:
			_, _, e = syscall.Syscall6(sysIOURingEnter, uintptr(r.fd), uintptr(toSubmit), 0, 0, 0, 0)
		default:
			_, _, e = syscall.RawSyscall6(sysIOURingEnter, uintptr(r.fd), uintptr(toSubmit), 0, 0, 0, 0)
		}
		done += r.reap(reqs)
		wait = true
		switch e {
		case 0, syscall.EINTR, syscall.EAGAIN, syscall.EBUSY:
			continue
		}
		failed = fmt.Errorf("io_uring_enter: %w", e)
		break loop
	}
	if failed == nil {
		return nil
	}
	// Take back what the kernel has not consumed, and write it as
	// write(2) would; what it consumed and has not completed stays -EIO.
	head := atomic.LoadUint32(r.sqHead)
	for i := head - tail; i < k; i++ {
		m, e := rawWrite1(uintptr(reqs[i].fd), reqs[i].b)
		if e != 0 {
			m = -int(e)
		}
		reqs[i].n = m
	}
	atomic.StoreUint32(r.sqTail, head)
	return failed
}

// reap records the completions that arrived; it returns how many.
func (r *uring) reap(reqs []sendReq) uint32 {
	head, tail := atomic.LoadUint32(r.cqHead), atomic.LoadUint32(r.cqTail)
	n := tail - head
	for ; head != tail; head++ {
		off := r.cqesOff + (head&r.cqMask)*cqeSize
		i := *(*uint64)(unsafe.Pointer(&r.cqRing[off]))
		if i < uint64(len(reqs)) {
			reqs[i].n = int(*(*int32)(unsafe.Pointer(&r.cqRing[off+8])))
		}
	}
	atomic.StoreUint32(r.cqHead, head)
	return n
}

// rings keeps the rings of the writers between their turns: a writer
// takes one for a large turn and gives it back after, so that a process
// has as many rings as it ever had large turns at once (its writers, at
// most), each set up once and kept for the process's life.
var rings struct {
	mu   sync.Mutex
	free []*uring
	// off is set once io_uring could not be set up (an old kernel, a
	// seccomp filter, kernel.io_uring_disabled) or a ring failed: every
	// write is then a write(2) of its own.
	off atomic.Bool
	// kept holds, for the life of the process, the buffers of sends a
	// failed ring had taken and not completed: the kernel may still read
	// them. It is filled at most once (off is set at the same time).
	kept [][]byte
	// why says why off was set (for URingStatus).
	why error
}

// URingStatus reports whether the writers can send through io_uring in
// this process, setting up the first ring if none was yet; if not, the
// error says why (they write with write(2) then).
func URingStatus() error {
	r := takeRing()
	if r == nil {
		rings.mu.Lock()
		defer rings.mu.Unlock()
		return fmt.Errorf("io_uring is off: %w", rings.why)
	}
	giveRing(r, false, nil)
	return nil
}

// turnOff sets io_uring off for the process, for why.
func turnOff(why error) {
	rings.mu.Lock()
	if rings.why == nil {
		rings.why = why
	}
	rings.mu.Unlock()
	rings.off.Store(true)
}

// takeRing returns a ring of turnMax entries, or nil where io_uring is off.
func takeRing() *uring {
	if rings.off.Load() {
		return nil
	}
	rings.mu.Lock()
	if n := len(rings.free); n > 0 {
		r := rings.free[n-1]
		rings.free = rings.free[:n-1]
		rings.mu.Unlock()
		return r
	}
	rings.mu.Unlock()
	r, err := newURing(turnMax)
	if err != nil {
		turnOff(err)
		return nil
	}
	return r
}

// giveRing gives back a ring taken with takeRing; failed says its last
// send failed, with reqs what it was given: the ring is then not used
// again, nor is any ring after it.
func giveRing(r *uring, failed bool, reqs []sendReq) {
	if failed {
		turnOff(errors.New("a submission failed"))
		rings.mu.Lock()
		for _, q := range reqs {
			if q.n == -int(syscall.EIO) {
				rings.kept = append(rings.kept, q.b)
			}
		}
		rings.mu.Unlock()
		// Not closed: a send it holds may still complete.
		return
	}
	rings.mu.Lock()
	rings.free = append(rings.free, r)
	rings.mu.Unlock()
}

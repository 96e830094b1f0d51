//go:build linux

package transport

import (
	"fmt"
	"sync/atomic"
	"syscall"
	"unsafe"
)

// uring is a minimal io_uring (raw syscalls, no dependency) for
// BenchmarkFanOutFloor: it submits one IORING_OP_SEND per socket, many per
// io_uring_enter, and waits for their completions. It is a measurement,
// not a writer: it knows only what the benchmark needs.
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
	ioringOpSend         = 26
	sqeSize, cqeSize     = 64, 16
	msgDontWait          = 0x40
	ioringSetupSubmitAll = 1 << 7 // keep submitting after an entry fails
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

func newURing(entries uint32) (*uring, error) {
	p := ioURingParams{Flags: ioringSetupSubmitAll}
	fd, _, e := syscall.Syscall(sysIOURingSetup, uintptr(entries), uintptr(unsafe.Pointer(&p)), 0)
	if e != 0 {
		return nil, fmt.Errorf("io_uring_setup: %w", e)
	}
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
		return nil, fmt.Errorf("mmap the submission ring: %w", err)
	}
	if r.singleMM {
		r.cqRing = r.sqRing
	} else if r.cqRing, err = syscall.Mmap(r.fd, ioringOffCQRing, cqSize, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_SHARED|syscall.MAP_POPULATE); err != nil {
		r.close()
		return nil, fmt.Errorf("mmap the completion ring: %w", err)
	}
	if r.sqes, err = syscall.Mmap(r.fd, ioringOffSQEs, int(p.SQEntries*sqeSize), syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_SHARED|syscall.MAP_POPULATE); err != nil {
		r.close()
		return nil, fmt.Errorf("mmap the submission entries: %w", err)
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

// sendEach sends frame to each descriptor once, r.entries per
// io_uring_enter, and returns how many sends did not take it all.
func (r *uring) sendEach(fds []int, frame []byte) (short int) {
	addr := uint64(uintptr(unsafe.Pointer(unsafe.SliceData(frame))))
	for len(fds) > 0 {
		k := min(len(fds), int(r.entries))
		tail := atomic.LoadUint32(r.sqTail)
		for i := range k {
			idx := (tail + uint32(i)) & r.sqMask
			sqe := r.sqes[idx*sqeSize : (idx+1)*sqeSize]
			clear(sqe)
			sqe[0] = ioringOpSend
			*(*int32)(unsafe.Pointer(&sqe[4])) = int32(fds[i])
			*(*uint64)(unsafe.Pointer(&sqe[16])) = addr
			*(*uint32)(unsafe.Pointer(&sqe[24])) = uint32(len(frame))
			*(*uint32)(unsafe.Pointer(&sqe[28])) = msgDontWait
			r.sqArray[idx] = idx
		}
		atomic.StoreUint32(r.sqTail, tail+uint32(k))
		done := 0
		for done < k {
			_, _, e := syscall.Syscall6(sysIOURingEnter, uintptr(r.fd), uintptr(k-done)*boolToUintptr(done == 0), uintptr(k-done), ioringEnterGetEvents, 0, 0)
			if e != 0 && e != syscall.EINTR {
				return short + k - done
			}
			head, ctail := atomic.LoadUint32(r.cqHead), atomic.LoadUint32(r.cqTail)
			for ; head != ctail; head++ {
				off := r.cqesOff + (head&r.cqMask)*cqeSize
				if res := *(*int32)(unsafe.Pointer(&r.cqRing[off+8])); res != int32(len(frame)) {
					short++
				}
				done++
			}
			atomic.StoreUint32(r.cqHead, head)
		}
		fds = fds[k:]
	}
	return short
}

func boolToUintptr(b bool) uintptr {
	if b {
		return 1
	}
	return 0
}

//go:build linux

package transport

import (
	"fmt"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"
)

// sendEach sends frame to each descriptor once, r.entries per
// io_uring_enter (BenchmarkFanOutFloor), and returns how many sends did
// not take it all.
func (r *uring) sendEach(fds []int, frame []byte) (short int) {
	reqs := make([]sendReq, 0, r.entries)
	for len(fds) > 0 {
		k := min(len(fds), int(r.entries))
		reqs = reqs[:0]
		for _, fd := range fds[:k] {
			reqs = append(reqs, sendReq{fd: fd, b: frame})
		}
		if err := r.send(reqs); err != nil {
			return short + k
		}
		for _, q := range reqs {
			if q.n != len(frame) {
				short++
			}
		}
		fds = fds[k:]
	}
	return short
}

// The ring's sends land whole on sockets that take them, report what a
// full socket took (a short count or -EAGAIN, never a block), and report a
// dead peer's socket as an error, each request on its own.
func TestURingSend(t *testing.T) {
	r, err := newURing(turnMax)
	if err != nil {
		t.Skipf("io_uring: %v", err)
	}
	defer r.close()
	pair := func() (int, int) {
		fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_NONBLOCK|syscall.SOCK_CLOEXEC, 0)
		require.NoError(t, err)
		t.Cleanup(func() { _ = syscall.Close(fds[0]); _ = syscall.Close(fds[1]) })
		return fds[0], fds[1]
	}
	const n = 40
	var reqs []sendReq
	var peers []int
	for i := range n {
		a, b := pair()
		reqs = append(reqs, sendReq{fd: a, b: []byte(fmt.Sprintf("frame %d", i))})
		peers = append(peers, b)
	}
	// A socket with a small buffer and a frame larger than it holds.
	full, _ := pair()
	require.NoError(t, syscall.SetsockoptInt(full, syscall.SOL_SOCKET, syscall.SO_SNDBUF, 4096))
	big := make([]byte, 1<<20)
	reqs = append(reqs, sendReq{fd: full, b: big})
	// A socket whose peer is gone.
	dead, deadPeer := pair()
	require.NoError(t, syscall.Close(deadPeer))
	reqs = append(reqs, sendReq{fd: dead, b: []byte("to nobody")})

	require.NoError(t, r.send(reqs))
	for i := range n {
		require.Equal(t, len(reqs[i].b), reqs[i].n, "request %d", i)
		buf := make([]byte, 64)
		m, err := syscall.Read(peers[i], buf)
		require.NoError(t, err)
		require.Equal(t, fmt.Sprintf("frame %d", i), string(buf[:m]))
	}
	short := reqs[n].n
	require.True(t, short == -int(syscall.EAGAIN) || (short > 0 && short < len(big)), "a full socket takes part or nothing: %d", short)
	require.Equal(t, -int(syscall.EPIPE), reqs[n+1].n, "a dead peer's socket")

	// The ring is reusable: a second submission on the same sockets.
	again := []sendReq{{fd: reqs[0].fd, b: []byte("again")}}
	require.NoError(t, r.send(again))
	require.Equal(t, 5, again[0].n)
}

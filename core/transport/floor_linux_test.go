//go:build linux

package transport

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"
)

// floorFixtureFor is the floor's sockets for a benchmark:
// HERALD_FLOOR_CONNS of them (default 10,000), skipped where they cannot
// be set up.
func floorFixtureFor(b *testing.B) *floorFixture {
	b.Helper()
	n := 10000
	if v := os.Getenv("HERALD_FLOOR_CONNS"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n <= 0 {
			b.Fatalf("HERALD_FLOOR_CONNS=%q: not a positive number", v)
		}
	}
	f, err := newFloorFixture(n)
	if err != nil {
		b.Skipf("floor fixture: %v", err)
	}
	return f
}

// BenchmarkFanOutFloor measures the floor of one broadcast's fan-out on
// this machine: one ~300-byte frame written to each of 10,000 loopback TCP
// sockets (HERALD_FLOOR_CONNS), with nothing else in the way — no outbox,
// no shard queue, no locks. The sockets' other ends are drained by a
// separate reader process (this test binary again: TestMain runs floorReader)
// with epoll, one thread per processor (HERALD_FLOOR_POLLERS: herald-bench's
// epoll reader has one per two processors), so that the writer never waits
// for a reader; a process of its own because 10,000 pairs in one process
// would pass the machine's 20,000 open files. The reader shares the CPUs,
// as herald's clients do in scenario b5.
//
// One op is one fan-out (10,000 writes); ns/write is per socket. The
// sub-benchmarks:
//
//   - write/g=N: write(2) per socket (a raw syscall on the non-blocking
//     descriptor, as the writers make), the sockets split in N contiguous
//     parts written by N goroutines at once (N = 1, 2, GOMAXPROCS);
//   - syscall/g=N: the same through syscall.Write, which tells the Go
//     scheduler of each syscall;
//   - rawconn/g=N: the same through syscall.RawConn.Write, herald's path
//     before it wrote the descriptor directly (performance.md section 10);
//   - uring/g=N: the writes submitted as io_uring IORING_OP_SEND entries,
//     a ring per goroutine, up to 4,096 sockets per io_uring_enter
//     (skipped where the kernel or a seccomp filter refuses io_uring);
//   - uring/per=K: one goroutine, K sockets per io_uring_enter (K = 1, 2,
//     4, 8, 32, 256: the writers' turns are of 1 to 256), which says from
//     what turn a submission costs less than K write(2)s.
//
// cpu-ns/write is the writing process's CPU time per write (getrusage),
// which the machine's other load does not stretch; the reader's is not in
// it. eagain/op counts writes the socket refused (its buffer full: the reader
// fell behind); such a frame is dropped, the figure says how far the
// floor is one without waiting.
//
//	go test -run '^$' -bench FanOutFloor -benchtime 50x ./core/transport/
func BenchmarkFanOutFloor(b *testing.B) {
	f := floorFixtureFor(b)
	defer f.close()
	n := len(f.conns)
	frame := make([]byte, 300)
	frame[0], frame[1] = 0x81, 126
	frame[2], frame[3] = byte((len(frame)-4)>>8), byte(len(frame)-4)
	for i := 4; i < len(frame); i++ {
		frame[i] = 'x'
	}
	gs := []int{1, 2}
	if p := runtime.GOMAXPROCS(0); p > 2 {
		gs = append(gs, p)
	}
	type floorCase struct {
		name string
		kind string
		g    int
		per  int // sockets per io_uring_enter
	}
	var cases []floorCase
	for _, kind := range []string{"write", "syscall", "rawconn", "uring"} {
		for _, g := range gs {
			cases = append(cases, floorCase{fmt.Sprintf("%s/g=%d", kind, g), kind, g, 4096})
		}
	}
	for _, per := range []int{1, 2, 4, 8, 32, 256} {
		cases = append(cases, floorCase{fmt.Sprintf("uring/per=%d", per), "uring", 1, per})
	}
	for _, fc := range cases {
		kind, g, per := fc.kind, fc.g, fc.per
		{
			b.Run(fc.name, func(b *testing.B) {
				parts := f.split(g)
				var rings []*uring
				if kind == "uring" {
					for range g {
						r, err := newURing(uint32(per))
						if err != nil {
							b.Skipf("io_uring: %v", err)
						}
						defer r.close()
						rings = append(rings, r)
					}
				}
				var eagain int
				var mu sync.Mutex
				cpu0 := processCPU()
				b.ResetTimer()
				for range b.N {
					var wg sync.WaitGroup
					for i, part := range parts {
						wg.Add(1)
						go func() {
							defer wg.Done()
							var e int
							switch kind {
							case "write":
								e = writeEach(part.fds, frame)
							case "syscall":
								e = writeEachSyscall(part.fds, frame)
							case "rawconn":
								e = writeEachRawConn(part.raws, frame)
							case "uring":
								e = rings[i].sendEach(part.fds, frame)
							}
							if e > 0 {
								mu.Lock()
								eagain += e
								mu.Unlock()
							}
						}()
					}
					wg.Wait()
				}
				b.StopTimer()
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/write")
				b.ReportMetric(float64(processCPU()-cpu0)/float64(b.N*n), "cpu-ns/write")
				b.ReportMetric(float64(eagain)/float64(b.N), "eagain/op")
				// Let the reader catch up, so that the next
				// sub-benchmark starts with empty sockets.
				time.Sleep(100 * time.Millisecond)
			})
		}
	}
}

// processCPU is the CPU time this process used so far (user and system,
// ns): on a machine shared with other work, elapsed time measures the
// load as much as the writes.
func processCPU() int64 {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}

// writeEach writes frame to each descriptor once; it returns how many
// writes did not take it all.
func writeEach(fds []int, frame []byte) (short int) {
	for _, fd := range fds {
		if m, e := rawWrite1(uintptr(fd), frame); e != 0 || m < len(frame) {
			short++
		}
	}
	return short
}

// writeEachSyscall is writeEach through syscall.Write, which tells the
// scheduler of each syscall (entersyscall/exitsyscall).
func writeEachSyscall(fds []int, frame []byte) (short int) {
	for _, fd := range fds {
		if m, err := syscall.Write(fd, frame); err != nil || m < len(frame) {
			short++
		}
	}
	return short
}

func writeEachRawConn(raws []syscall.RawConn, frame []byte) (short int) {
	// The callback and its results live in w, made once per fan-out: a
	// closure per write would allocate, which herald's writer does not.
	w := &rawConnWrite{frame: frame}
	f := w.write
	for _, rc := range raws {
		if err := rc.Write(f); err != nil || w.e != 0 || w.m < len(frame) {
			short++
		}
	}
	return short
}

type rawConnWrite struct {
	frame []byte
	m     int
	e     syscall.Errno
}

func (w *rawConnWrite) write(fd uintptr) bool {
	w.m, w.e = rawWrite1(fd, w.frame)
	return true
}

// floorFixture is n accepted loopback connections whose peers are in a
// reader process.
type floorFixture struct {
	conns  []*net.TCPConn
	fds    []int
	raws   []syscall.RawConn
	reader *exec.Cmd
	stdin  interface{ Close() error }
}

type floorPart struct {
	fds  []int
	raws []syscall.RawConn
}

func (f *floorFixture) split(g int) []floorPart {
	parts := make([]floorPart, g)
	for i := range g {
		lo, hi := i*len(f.fds)/g, (i+1)*len(f.fds)/g
		parts[i] = floorPart{fds: f.fds[lo:hi], raws: f.raws[lo:hi]}
	}
	return parts
}

func newFloorFixture(n int) (*floorFixture, error) {
	ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return nil, fmt.Errorf("listen: %w", err)
	}
	defer ln.Close()
	cmd := exec.Command(os.Args[0], "-test.run=^$") // TestMain runs floorReader
	cmd.Env = append(os.Environ(), "HERALD_FLOOR_READER="+ln.Addr().String()+","+strconv.Itoa(n))
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start the reader process: %w", err)
	}
	f := &floorFixture{reader: cmd, stdin: stdin}
	accepted := make(chan error, 1)
	go func() {
		for len(f.conns) < n {
			c, err := ln.AcceptTCP()
			if err != nil {
				accepted <- err
				return
			}
			f.conns = append(f.conns, c)
		}
		accepted <- nil
	}()
	select {
	case err = <-accepted:
	case <-time.After(60 * time.Second):
		err = fmt.Errorf("%d of %d connections in 60s", len(f.conns), n)
		_ = ln.Close()
		<-accepted
	}
	if err != nil {
		f.close()
		return nil, fmt.Errorf("accept: %w", err)
	}
	for _, c := range f.conns {
		rc, err := c.SyscallConn()
		if err != nil {
			f.close()
			return nil, err
		}
		_ = rc.Control(func(fd uintptr) { f.fds = append(f.fds, int(fd)) })
		f.raws = append(f.raws, rc)
	}
	return f, nil
}

func (f *floorFixture) close() {
	for _, c := range f.conns {
		_ = c.Close()
	}
	_ = f.stdin.Close() // the reader ends when its stdin does
	done := make(chan struct{})
	go func() { _ = f.reader.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = f.reader.Process.Kill()
		<-done
	}
}

func init() { floorReaderMain = floorReader }

// floorReader is BenchmarkFanOutFloor's reader process (TestMain runs it
// when the test binary is started with HERALD_FLOOR_READER=addr,n): it
// connects n sockets to addr and reads everything that arrives on them
// with epoll, one locked thread per processor, until its stdin closes.
func floorReader(spec string) {
	var addr string
	var n int
	for i := len(spec) - 1; i >= 0; i-- {
		if spec[i] == ',' {
			addr = spec[:i]
			n, _ = strconv.Atoi(spec[i+1:])
			break
		}
	}
	ta, err := net.ResolveTCPAddr("tcp", addr)
	if err != nil || n <= 0 {
		fmt.Fprintf(os.Stderr, "floor reader: bad HERALD_FLOOR_READER %q\n", spec)
		os.Exit(2)
	}
	pollers := runtime.GOMAXPROCS(0)
	if v, err := strconv.Atoi(os.Getenv("HERALD_FLOOR_POLLERS")); err == nil && v > 0 {
		pollers = v
	}
	epfds := make([]int, pollers)
	for i := range epfds {
		if epfds[i], err = syscall.EpollCreate1(syscall.EPOLL_CLOEXEC); err != nil {
			fmt.Fprintf(os.Stderr, "floor reader: epoll_create1: %v\n", err)
			os.Exit(2)
		}
	}
	sa := &syscall.SockaddrInet4{Port: ta.Port}
	copy(sa.Addr[:], ta.IP.To4())
	for i := range n {
		fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
		if err == nil {
			err = syscall.Connect(fd, sa)
		}
		if err == nil {
			err = syscall.SetNonblock(fd, true)
		}
		if err == nil {
			ev := syscall.EpollEvent{Events: syscall.EPOLLIN, Fd: int32(fd)}
			err = syscall.EpollCtl(epfds[i%pollers], syscall.EPOLL_CTL_ADD, fd, &ev)
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "floor reader: connection %d: %v\n", i, err)
			os.Exit(2)
		}
	}
	for _, epfd := range epfds {
		go func() {
			runtime.LockOSThread()
			events := make([]syscall.EpollEvent, 256)
			buf := make([]byte, 64<<10)
			for {
				k, err := syscall.EpollWait(epfd, events, -1)
				if err != nil && err != syscall.EINTR {
					return
				}
				for _, ev := range events[:max(k, 0)] {
					for {
						m, err := syscall.Read(int(ev.Fd), buf)
						if m <= 0 || err != nil {
							if m == 0 {
								_ = syscall.EpollCtl(epfd, syscall.EPOLL_CTL_DEL, int(ev.Fd), nil)
								_ = syscall.Close(int(ev.Fd))
							}
							break
						}
					}
				}
			}
		}()
	}
	// Until the benchmark closes our stdin (or ends).
	_, _ = bufio.NewReader(os.Stdin).ReadString(0)
	os.Exit(0)
}

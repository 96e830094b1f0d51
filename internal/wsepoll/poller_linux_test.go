package wsepoll

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// recorder is a Client that keeps what the poller told it.
type recorder struct {
	mu     sync.Mutex
	frames []string
	times  []int64
	ended  chan error
}

func (r *recorder) Frame(f Frame, now int64) []byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.frames = append(r.frames, string(f.Payload))
	r.times = append(r.times, now)
	if string(f.Payload) == "answer me" {
		return []byte("{}")
	}
	return nil
}

func (r *recorder) Ended(err error) { r.ended <- err }

// payload is frame i of client c: every length encoding, and its number,
// so that a frame handed on twice, torn or out of order shows.
func payload(c, i int) string {
	size := []int{10, 125, 126, 3000, 70_000}[i%5]
	head := fmt.Sprintf("client %d frame %d ", c, i)
	return head + strings.Repeat(string(rune('a'+i%26)), size-min(size, len(head)))
}

// Real loopback sockets, several clients per poller, the server writing
// frames in pieces of every size: every frame arrives once, whole and in
// order; a ping is answered; a reply goes back; a close frame and a plain
// end each end their client. In both ways of waiting.
func TestPollerReadsEveryFrameOnceAndWhole(t *testing.T) {
	for _, o := range []Options{
		{Pollers: 2, ReadBuffer: 4096},
		{Pollers: 2, NoWait: true, Pause: 100 * time.Microsecond},
	} {
		t.Run(fmt.Sprintf("NoWait=%v", o.NoWait), func(t *testing.T) {
			const clients, perClient = 6, 40
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			require.NoError(t, err)
			defer ln.Close()

			p, err := New(o)
			require.NoError(t, err)
			recs := make([]*recorder, clients)
			var fds []int
			servers := make([]net.Conn, clients)
			for c := range clients {
				nc, err := net.Dial("tcp", ln.Addr().String())
				require.NoError(t, err)
				servers[c], err = ln.Accept()
				require.NoError(t, err)
				defer servers[c].Close()
				// Even clients are read in place, odd ones detached.
				var fd int
				if c%2 == 0 {
					defer nc.Close()
					fd, err = Descriptor(nc)
				} else {
					fd, err = Detach(nc)
					fds = append(fds, fd)
				}
				require.NoError(t, err)
				recs[c] = &recorder{ended: make(chan error, 1)}
				require.NoError(t, p.Add(fd, recs[c]))
			}
			p.Start()
			stopped := false
			defer func() {
				if !stopped {
					p.Stop()
				}
			}()

			var wg sync.WaitGroup
			serverErrs := make(chan error, clients)
			for c, conn := range servers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					serverErrs <- serve(conn, c, perClient)
				}()
			}
			wg.Wait()
			close(serverErrs)
			for err := range serverErrs {
				require.NoError(t, err)
			}
			for c, r := range recs {
				select {
				case err := <-r.ended:
					if c%3 == 2 {
						require.ErrorIs(t, err, io.EOF, "client %d: its server closed without a close frame", c)
					} else {
						var ce *CloseError
						require.ErrorAs(t, err, &ce, "client %d", c)
						require.Equal(t, &CloseError{Code: 4000 + c, Reason: "bye"}, ce)
					}
				case <-time.After(time.Minute):
					t.Fatalf("client %d never ended", c)
				}
			}
			p.Stop()
			stopped = true
			for _, fd := range fds {
				require.NoError(t, syscall.Close(fd))
			}
			for c, r := range recs {
				r.mu.Lock()
				require.Len(t, r.frames, perClient+1, "client %d", c)
				for i := range perClient {
					require.Equal(t, payload(c, i), r.frames[i], "client %d frame %d", c, i)
				}
				require.Equal(t, "answer me", r.frames[perClient])
				for _, at := range r.times {
					require.Positive(t, at, "client %d: every frame has its time", c)
				}
				r.mu.Unlock()
			}
		})
	}
}

// serve is client c's server: perClient frames written in pieces, a ping
// whose pong it reads, a frame its client answers, then the end (a close
// frame, or for every third client a plain close).
func serve(conn net.Conn, c, perClient int) error {
	// A client that stops reading fails the test rather than hang it.
	if err := conn.SetDeadline(time.Now().Add(time.Minute)); err != nil {
		return err
	}
	var stream []byte
	for i := range perClient {
		stream = append(stream, serverFrame(OpText, true, payload(c, i))...)
	}
	pieces := []int{1, 2, 3, 5, 8, 13, 100, 1000, 7000, 40_000}
	for off, k := 0, 0; off < len(stream); k++ {
		end := min(off+pieces[k%len(pieces)], len(stream))
		if _, err := conn.Write(stream[off:end]); err != nil {
			return fmt.Errorf("client %d: write: %w", c, err)
		}
		off = end
	}
	if _, err := conn.Write(serverFrame(OpPing, true, "hb")); err != nil {
		return fmt.Errorf("client %d: ping: %w", c, err)
	}
	in := bufio.NewReader(conn)
	pong := make([]byte, 8)
	if _, err := io.ReadFull(in, pong); err != nil {
		return fmt.Errorf("client %d: pong: %w", c, err)
	}
	if string(pong) != "\x8a\x82\x00\x00\x00\x00hb" {
		return fmt.Errorf("client %d: pong %q", c, pong)
	}
	if _, err := conn.Write(serverFrame(OpText, true, "answer me")); err != nil {
		return fmt.Errorf("client %d: write: %w", c, err)
	}
	answer := make([]byte, 8)
	if _, err := io.ReadFull(in, answer); err != nil {
		return fmt.Errorf("client %d: answer: %w", c, err)
	}
	if string(answer) != "\x81\x82\x00\x00\x00\x00{}" {
		return fmt.Errorf("client %d: answer %q", c, answer)
	}
	if c%3 == 2 {
		return conn.Close()
	}
	_, err := conn.Write(serverFrame(OpClose, true, string([]byte{byte((4000 + c) >> 8), byte(4000 + c)})+"bye"))
	return err
}

// Stop ends the pollers though their sockets stay open and quiet, and
// tells no client its socket ended.
func TestStopLeavesQuietSocketsAlone(t *testing.T) {
	for _, o := range []Options{{}, {Pollers: 3, NoWait: true, Pause: time.Millisecond}} {
		fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_NONBLOCK, 0)
		require.NoError(t, err)
		p, err := New(o)
		require.NoError(t, err)
		r := &recorder{ended: make(chan error, 1)}
		require.NoError(t, p.Add(fds[0], r))
		p.Start()
		_, err = syscall.Write(fds[1], serverFrame(OpText, true, "one"))
		require.NoError(t, err)
		for {
			r.mu.Lock()
			n := len(r.frames)
			r.mu.Unlock()
			if n == 1 {
				break
			}
			time.Sleep(time.Millisecond)
		}
		p.Stop()
		p.Stop() // twice is fine
		require.Empty(t, r.ended)
		require.NoError(t, syscall.Close(fds[0]))
		require.NoError(t, syscall.Close(fds[1]))
	}
}

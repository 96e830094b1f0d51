package transport_test

import (
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/require"

	"github.com/heraldhq/herald/core/transport"
)

// fleet is n server-side Conns (their readers running) and their clients,
// which read only when the test does.
type fleet struct {
	conns   []*transport.Conn
	clients []*websocket.Conn
}

// newFleet dials n clients; if buf is not 0, the first connection's
// sockets get buffers of buf bytes on both ends (a reader that stalls then
// fills its socket soon).
func newFleet(t *testing.T, n int, opts *transport.Options, buf int) *fleet {
	up := websocket.Upgrader{ReadBufferSize: 512, WriteBufferSize: 512}
	accepted := make(chan *transport.Conn, n)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := transport.Upgrade(&up, w, r, opts)
		if err != nil {
			return
		}
		accepted <- c
		_ = c.ReadLoop(func([]byte) {})
	}))
	srv.Listener = &smallFirst{Listener: srv.Listener, buf: buf}
	srv.Start()
	f := &fleet{}
	url := "ws" + strings.TrimPrefix(srv.URL, "http")
	for i := range n {
		d := *websocket.DefaultDialer
		if i == 0 && buf > 0 {
			nd := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
				var serr error
				err := rc.Control(func(fd uintptr) {
					serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, buf)
				})
				return errors.Join(err, serr)
			}}
			d.NetDialContext = nd.DialContext
		}
		ws, _, err := d.Dial(url, nil)
		require.NoError(t, err)
		f.clients = append(f.clients, ws)
		f.conns = append(f.conns, <-accepted)
	}
	t.Cleanup(func() {
		for i, c := range f.conns {
			_ = f.clients[i].Close()
			c.Close(websocket.CloseNormalClosure, "")
		}
		srv.CloseClientConnections()
		srv.Close()
	})
	return f
}

// smallFirst gives the first connection it accepts a send buffer of buf
// bytes.
type smallFirst struct {
	net.Listener
	buf, n int
}

func (l *smallFirst) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil && l.n == 0 && l.buf > 0 {
		_ = c.(*net.TCPConn).SetWriteBuffer(l.buf)
	}
	l.n++
	return c, err
}

// broadcast delivers one publication of a publish to every connection
// (More: each holds its frame for the rest) and ends the publish, so that
// every connection is due at once.
func (f *fleet) broadcast(opts *transport.Options, seq uint64, object string) {
	p := pubOf(seq, object)
	p.More = true
	for _, c := range f.conns {
		c.Deliver(p)
	}
	opts.EndGroup()
}

// readSeqs reads frames from c until it has want notifications, and
// returns their seqs in arrival order.
func readSeqs(c *websocket.Conn, want int) ([]uint64, error) {
	var seqs []uint64
	_ = c.SetReadDeadline(time.Now().Add(time.Minute))
	for len(seqs) < want {
		_, frame, err := c.ReadMessage()
		if err != nil {
			return seqs, err
		}
		var msg struct {
			Params struct{ Notifications []struct{ Seq uint64 } }
		}
		if err := json.Unmarshal(frame, &msg); err != nil {
			return seqs, err
		}
		for _, n := range msg.Params.Notifications {
			seqs = append(seqs, n.Seq)
		}
	}
	return seqs, nil
}

// eachWriteMode runs f with the writers' two ways of writing: io_uring
// submissions for turns of several sockets (the default, where the kernel
// offers io_uring), and write(2) per socket (Options.NoURing). With
// io_uring it checks that turns did go through it.
func eachWriteMode(t *testing.T, f func(t *testing.T, noURing bool)) {
	t.Run("io_uring", func(t *testing.T) {
		if err := transport.URingStatus(); err != nil {
			t.Skip(err)
		}
		before := transport.URingTurns()
		f(t, false)
		after := transport.URingTurns()
		require.Greater(t, after, before, "no writer turn went through io_uring")
	})
	t.Run("write", func(t *testing.T) { f(t, true) })
}

func seqsUpTo(n int) []uint64 {
	s := make([]uint64, n)
	for i := range s {
		s[i] = uint64(i + 1)
	}
	return s
}

// A broadcast makes many connections due at once, round after round, while
// the writer is still on earlier ones: every connection gets every
// publication, in order.
func TestBroadcastKeepsEachConnectionsOrder(t *testing.T) {
	eachWriteMode(t, testBroadcastKeepsEachConnectionsOrder)
}

func testBroadcastKeepsEachConnectionsOrder(t *testing.T, noURing bool) {
	const conns, rounds = 80, 12
	// MaxDelay is short: a connection the writer reached after part of a
	// round may hold a batch short of MaxBatch, which leaves MaxDelay
	// after the previous frame (an hour here once stranded the last
	// notifications under load).
	opts := &transport.Options{MaxBatch: 4, MaxDelay: time.Millisecond, OutboxLimit: 1000, WriteTimeout: 30 * time.Second, Writers: 1, NoURing: noURing}
	f := newFleet(t, conns, opts, 0)
	for r := range rounds {
		f.broadcast(opts, uint64(r+1), `{"n":1}`)
	}
	var wg sync.WaitGroup
	got := make([][]uint64, conns)
	errs := make([]error, conns)
	for i, c := range f.clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got[i], errs[i] = readSeqs(c, rounds)
		}()
	}
	wg.Wait()
	for i := range conns {
		require.NoError(t, errs[i], "connection %d", i)
		require.Equal(t, seqsUpTo(rounds), got[i], "connection %d", i)
	}
}

// A socket that stops taking bytes in the middle of a broadcast (a short
// write or none) is handed to a goroutine of its own: the others get
// everything, and the stalled one, once it reads, gets all of it in order.
func TestStalledSocketInABroadcastDelaysNobody(t *testing.T) {
	eachWriteMode(t, testStalledSocketInABroadcastDelaysNobody)
}

func testStalledSocketInABroadcastDelaysNobody(t *testing.T, noURing bool) {
	const conns, rounds = 20, 30
	opts := &transport.Options{MaxBatch: 1, MaxDelay: time.Hour, OutboxLimit: 1 << 16, WriteTimeout: time.Minute, Writers: 1, NoURing: noURing}
	f := newFleet(t, conns, opts, 8192)
	big := `"` + strings.Repeat("z", 40_000) + `"` // 30 rounds, ~1.2 MB: more than the stalled socket holds
	var wg sync.WaitGroup
	got := make([][]uint64, conns)
	errs := make([]error, conns)
	for i, c := range f.clients[1:] {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got[i+1], errs[i+1] = readSeqs(c, rounds)
		}()
	}
	for r := range rounds {
		f.broadcast(opts, uint64(r+1), big)
	}
	wg.Wait()
	for i := 1; i < conns; i++ {
		require.NoError(t, errs[i], "connection %d", i)
		require.Equal(t, seqsUpTo(rounds), got[i], "connection %d", i)
	}
	require.Greater(t, f.conns[0].Queued(), 0, "the stalled connection still has a backlog")
	got[0], errs[0] = readSeqs(f.clients[0], rounds)
	require.NoError(t, errs[0])
	require.Equal(t, seqsUpTo(rounds), got[0])
}

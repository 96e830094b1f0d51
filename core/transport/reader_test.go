package transport_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/require"

	"github.com/heraldhq/herald/core/transport"
)

// The tests of the connection's reader that the rawPair tests run in the
// other mode too: those that pass with Serve pass with ReadLoop.
func TestReadLoopKeepsTheReaderContract(t *testing.T) {
	rawPairReadLoop = true
	defer func() { rawPairReadLoop = false }()
	t.Run("ping and peer close", TestPingAndPeerClose)
	t.Run("heartbeat", TestHeartbeatPingsThenClosesTheSilent)
	t.Run("oversize frame", TestCloseOnOversizeFrameDoesNotCorruptAFrameBeingWritten)
	t.Run("echo in order", TestServeHandlesFramesInOrder)
}

// echoServer accepts connections read by Serve (or ReadLoop, as
// rawPairReadLoop says) whose handler echoes each frame; binary frames
// come as nil and are echoed as "nil". ended counts the connections whose
// end was reported, and fails the test on a second report.
type echoServer struct {
	srv   *httptest.Server
	url   string
	mu    sync.Mutex
	conns []*transport.Conn
	ended atomic.Int64
}

func newEchoServer(t *testing.T) *echoServer {
	opts := &transport.Options{MaxBatch: 8, MaxDelay: time.Millisecond, OutboxLimit: 10_000, WriteTimeout: 10 * time.Second}
	up := websocket.Upgrader{ReadBufferSize: 128, WriteBufferSize: 512}
	e := &echoServer{}
	readLoop := rawPairReadLoop
	e.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := transport.Upgrade(&up, w, r, opts)
		if err != nil {
			return
		}
		e.mu.Lock()
		e.conns = append(e.conns, c)
		e.mu.Unlock()
		handle := func(frame []byte) {
			if frame == nil {
				c.Send([]byte("nil"))
				return
			}
			c.Send(append([]byte(nil), frame...))
		}
		var once atomic.Bool
		ended := func(error) {
			if !once.CompareAndSwap(false, true) {
				t.Error("a connection's end was reported twice")
			}
			e.ended.Add(1)
		}
		if readLoop {
			go func() { ended(c.ReadLoop(handle)) }()
		} else {
			c.Serve(handle, ended)
		}
	}))
	e.url = "ws" + strings.TrimPrefix(e.srv.URL, "http")
	t.Cleanup(func() {
		e.mu.Lock()
		for _, c := range e.conns {
			c.Close(websocket.CloseNormalClosure, "")
		}
		e.mu.Unlock()
		e.srv.CloseClientConnections()
		e.srv.Close()
	})
	return e
}

func (e *echoServer) dial(t *testing.T) *websocket.Conn {
	ws, _, err := websocket.DefaultDialer.Dial(e.url, nil)
	require.NoError(t, err)
	t.Cleanup(func() { _ = ws.Close() })
	return ws
}

// Frames are handled one at a time, in order, on every connection, pipelined
// or not, text or binary.
func TestServeHandlesFramesInOrder(t *testing.T) {
	e := newEchoServer(t)
	const conns, frames = 40, 100
	var wg sync.WaitGroup
	clients := make([]*websocket.Conn, conns)
	for i := range clients {
		clients[i] = e.dial(t)
	}
	for i, ws := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range frames {
				typ, msg := websocket.TextMessage, fmt.Appendf(nil, "%d-%d", i, j)
				if j%10 == 9 {
					typ, msg = websocket.BinaryMessage, []byte{1}
				}
				if err := ws.WriteMessage(typ, msg); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	for i, ws := range clients {
		for j := range frames {
			want := fmt.Sprintf("%d-%d", i, j)
			if j%10 == 9 {
				want = "nil"
			}
			_, got, err := ws.ReadMessage()
			require.NoError(t, err)
			require.Equal(t, want, string(got))
		}
	}
	wg.Wait()
}

// An idle connection read by Serve holds no goroutine: after a frame, a
// ping and a pong alone, the goroutines go back to what they were without
// the connections (a generous allowance, far below one per connection).
func TestIdleConnectionsHoldNoGoroutine(t *testing.T) {
	if !transport.ReadinessAvailable() {
		t.Skip("no readiness-based reading on this platform")
	}
	e := newEchoServer(t)
	settle := func() int {
		// The count after what is ending has ended: the lowest of a few
		// looks a moment apart.
		low := runtime.NumGoroutine()
		for range 20 {
			time.Sleep(20 * time.Millisecond)
			low = min(low, runtime.NumGoroutine())
		}
		return low
	}
	base := settle()
	const conns = 200
	clients := make([]*websocket.Conn, conns)
	for i := range clients {
		clients[i] = e.dial(t)
	}
	for _, ws := range clients {
		pong := make(chan struct{}, 1)
		ws.SetPongHandler(func(string) error { pong <- struct{}{}; return nil })
		require.NoError(t, ws.WriteControl(websocket.PingMessage, []byte("p"), time.Now().Add(10*time.Second)))
		require.NoError(t, ws.WriteMessage(websocket.TextMessage, []byte("x")))
		_, got, err := ws.ReadMessage() // the pong is queued before the echo
		require.NoError(t, err)
		require.Equal(t, "x", string(got))
		<-pong
		require.NoError(t, ws.WriteControl(websocket.PongMessage, nil, time.Now().Add(10*time.Second)))
	}
	// Generous: goroutines that are ending get a minute to end.
	now := settle()
	for deadline := time.Now().Add(time.Minute); now >= base+conns/4 && time.Now().Before(deadline); {
		now = settle()
	}
	require.Less(t, now, base+conns/4, "goroutines with %d idle connections; %d before them", conns, base)
}

// Connections closed while input waits (the peer writing, the server
// closing, the peer dropping its socket) all end once, and none stays
// registered.
func TestServeCloseWhileReady(t *testing.T) {
	e := newEchoServer(t)
	const conns = 60
	clients := make([]*websocket.Conn, conns)
	for i := range clients {
		clients[i] = e.dial(t)
	}
	require.Eventually(t, func() bool {
		e.mu.Lock()
		defer e.mu.Unlock()
		return len(e.conns) == conns
	}, 30*time.Second, time.Millisecond)
	var wg sync.WaitGroup
	for i, ws := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 50 {
				if ws.WriteMessage(websocket.TextMessage, []byte("payload")) != nil {
					return
				}
			}
			if i%2 == 0 {
				_ = ws.UnderlyingConn().Close() // dropped, unannounced
			}
		}()
	}
	e.mu.Lock()
	for i, c := range e.conns {
		if i%3 == 0 {
			c.Close(websocket.CloseGoingAway, "bye")
		}
	}
	e.mu.Unlock()
	wg.Wait()
	for _, ws := range clients {
		_ = ws.UnderlyingConn().Close()
	}
	require.Eventually(t, func() bool { return e.ended.Load() == conns }, 60*time.Second, time.Millisecond)
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, c := range e.conns {
		require.False(t, transport.IsRegistered(c), "an ended connection is still registered")
	}
}

// A descriptor freed by a closed connection and reused by the next one
// reaches the new connection only: the old one's registration is gone and
// its id is not the new one's.
func TestServeDescriptorReuse(t *testing.T) {
	e := newEchoServer(t)
	for round := range 30 {
		a := e.dial(t)
		require.NoError(t, a.WriteMessage(websocket.TextMessage, []byte("a")))
		_, got, err := a.ReadMessage()
		require.NoError(t, err)
		require.Equal(t, "a", string(got))
		before := e.ended.Load()
		_ = a.UnderlyingConn().Close()
		require.Eventually(t, func() bool { return e.ended.Load() == before+1 }, 30*time.Second, time.Millisecond, "round %d", round)
		b := e.dial(t) // likely on the descriptor a's server end had
		require.NoError(t, b.WriteMessage(websocket.TextMessage, []byte("b")))
		_, got, err = b.ReadMessage()
		require.NoError(t, err)
		require.Equal(t, "b", string(got))
		require.Equal(t, before+1, e.ended.Load(), "only a ended")
		_ = b.UnderlyingConn().Close()
		require.Eventually(t, func() bool { return e.ended.Load() == before+2 }, 30*time.Second, time.Millisecond, "round %d", round)
	}
}

// A close the peer never answers ends the connection once the close
// handshake's deadline passed, whether a reader waits on the socket or
// (read on readiness) none does.
func TestUnansweredCloseEnds(t *testing.T) {
	for _, loop := range []bool{false, true} {
		rawPairReadLoop = loop
		p := newRawPair(t, &transport.Options{MaxBatch: 8, MaxDelay: time.Millisecond, OutboxLimit: 100, WriteTimeout: 5 * time.Second})
		rawPairReadLoop = false
		p.conn.Close(websocket.CloseNormalClosure, "bye") // the client reads nothing, answers nothing
		select {
		case <-p.conn.Done():
		case <-time.After(30 * time.Second):
			t.Fatalf("ReadLoop %v: a close the peer did not answer left the connection open", loop)
		}
	}
}

// A peer that stops in the middle of a frame holds a goroutine blocked
// for the rest of it, and the heartbeat still ends it with 4009.
func TestStallMidFrameEndsWithNoPong(t *testing.T) {
	p := newRawPair(t, &transport.Options{MaxBatch: 8, MaxDelay: time.Millisecond, OutboxLimit: 100, WriteTimeout: 5 * time.Second})
	// A masked text frame of 10 bytes, of which the header and 3 arrive.
	_, err := p.client.UnderlyingConn().Write([]byte{0x81, 0x80 | 10, 1, 2, 3, 4, 'a', 'b', 'c'})
	require.NoError(t, err)
	require.True(t, p.conn.Heartbeat(time.Nanosecond), "first: a ping")
	require.False(t, p.conn.Heartbeat(time.Nanosecond), "second: nothing heard since, closed")
	select {
	case <-p.conn.Done():
	case <-time.After(30 * time.Second):
		t.Fatal("a peer stalled mid-frame was not ended")
	}
	require.Equal(t, transport.CloseNoPong, p.conn.CloseCode())
}

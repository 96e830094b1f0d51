package transport_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/require"

	"github.com/heraldhq/herald/core/broker"
	"github.com/heraldhq/herald/core/transport"
)

func pubOf(seq uint64, object string) *broker.Publication {
	n := broker.Notification{Channel: "c", Event: "e", ObjectType: "t", Object: []byte(object)}
	return &broker.Publication{Channel: "c", Seq: seq, Data: broker.Encode(nil, &n, "id", seq, 1)}
}

// The writer frames payloads itself: every length encoding (7-bit, 16-bit,
// 64-bit) must reach a standard client intact, in order.
func TestFramesOfEveryLength(t *testing.T) {
	opts := &transport.Options{MaxBatch: 1, MaxDelay: time.Millisecond, OutboxLimit: 100, WriteTimeout: 5 * time.Second}
	p := newRawPair(t, opts)
	sizes := []int{0, 20, 125 - 90, 126, 200, 65535 - 90, 65536, 70_000, 300_000}
	for i, n := range sizes {
		p.conn.Deliver(pubOf(uint64(i+1), `"`+strings.Repeat("x", n)+`"`))
	}
	p.conn.Send([]byte(`{"jsonrpc":"2.0","id":1,"result":"pong"}`))
	for i, n := range sizes {
		var msg struct {
			Params struct {
				Notifications []struct {
					Seq    uint64
					Object string
				}
			}
		}
		_, frame, err := p.client.ReadMessage()
		require.NoError(t, err)
		require.NoError(t, json.Unmarshal(frame, &msg), "size %d", n)
		require.Len(t, msg.Params.Notifications, 1)
		require.Equal(t, uint64(i+1), msg.Params.Notifications[0].Seq)
		require.Len(t, msg.Params.Notifications[0].Object, n)
	}
	_, frame, err := p.client.ReadMessage()
	require.NoError(t, err)
	require.JSONEq(t, `{"jsonrpc":"2.0","id":1,"result":"pong"}`, string(frame))
}

// Pings are answered through the outbox, and a close from the peer is
// answered before the connection ends.
func TestPingAndPeerClose(t *testing.T) {
	opts := &transport.Options{MaxBatch: 8, MaxDelay: time.Millisecond, OutboxLimit: 100, WriteTimeout: 5 * time.Second}
	p := newRawPair(t, opts)
	pong := make(chan string, 1)
	p.client.SetPongHandler(func(s string) error { pong <- s; return nil })
	require.NoError(t, p.client.WriteControl(websocket.PingMessage, []byte("hi"), time.Now().Add(time.Second)))
	go func() { _, _, _ = p.client.ReadMessage() }() // control frames are seen while reading
	select {
	case s := <-pong:
		require.Equal(t, "hi", s)
	case <-time.After(5 * time.Second):
		t.Fatal("no pong")
	}
	require.NoError(t, p.client.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(1000, ""), time.Now().Add(time.Second)))
	select {
	case <-p.conn.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("connection did not end after the peer's close")
	}
	require.Equal(t, 0, p.conn.CloseCode(), "the peer closed first")
}

// A reader that stops reading fills its socket; the shared writers hand it
// a goroutine of its own and keep serving the others.
func TestStalledSocketDelaysNobody(t *testing.T) {
	opts := &transport.Options{MaxBatch: 128, MaxDelay: time.Millisecond, OutboxLimit: 1 << 16, WriteTimeout: 30 * time.Second, Writers: 1}
	stalled := newRawPair(t, opts)
	fine := newRawPair(t, opts)
	big := `"` + strings.Repeat("z", 60_000) + `"`
	for i := range 200 { // ~12 MB: more than the socket buffers hold
		stalled.conn.Deliver(pubOf(uint64(i+1), big))
	}
	time.Sleep(50 * time.Millisecond)
	fine.conn.Deliver(pubOf(1, `{}`))
	_ = fine.client.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, frame, err := fine.client.ReadMessage()
	require.NoError(t, err, "the fine connection waited behind the stalled one")
	require.Contains(t, string(frame), `"seq":1`)
	require.Greater(t, stalled.conn.Queued(), 0, "the stalled connection still has a backlog")
}

// batchSeqs reads one onNotificationReceived frame and returns its seqs.
func batchSeqs(t *testing.T, c *websocket.Conn) []uint64 {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, frame, err := c.ReadMessage()
	require.NoError(t, err)
	var msg struct {
		Method string
		Params struct{ Notifications []struct{ Seq uint64 } }
	}
	require.NoError(t, json.Unmarshal(frame, &msg))
	require.Equal(t, "onNotificationReceived", msg.Method)
	var seqs []uint64
	for _, n := range msg.Params.Notifications {
		seqs = append(seqs, n.Seq)
	}
	return seqs
}

// The batching delay is for streams: a publication on a quiet connection
// leaves at once. With a delay of an hour, waiting for it would hang.
func TestLonePublicationDoesNotWaitForTheBatchingDelay(t *testing.T) {
	opts := &transport.Options{MaxBatch: 128, MaxDelay: time.Hour, OutboxLimit: 100, WriteTimeout: 5 * time.Second}
	p := newRawPair(t, opts)
	p.conn.Deliver(pubOf(1, `{}`))
	require.Equal(t, []uint64{1}, batchSeqs(t, p.client))
}

// The publications of one publish (all but the last marked More) share a
// frame: the connection holds it until the hub says the publish is
// delivered (EndGroup), not for the whole batching delay.
func TestPublishOfSeveralLeavesInOneFrameAtItsEnd(t *testing.T) {
	opts := &transport.Options{MaxBatch: 128, MaxDelay: time.Hour, OutboxLimit: 100, WriteTimeout: 5 * time.Second}
	p := newRawPair(t, opts)
	for seq := uint64(1); seq <= 3; seq++ {
		pub := pubOf(seq, `{}`)
		pub.More = seq < 3
		p.conn.Deliver(pub)
	}
	opts.EndGroup()
	require.Equal(t, []uint64{1, 2, 3}, batchSeqs(t, p.client))
}

// A reply is not held behind the batching delay of publications queued
// while a frame was being written.
func TestRepliesAreNotHeldByTheBatchingDelay(t *testing.T) {
	opts := &transport.Options{MaxBatch: 128, MaxDelay: time.Hour, OutboxLimit: 100, WriteTimeout: 5 * time.Second}
	p := newRawPair(t, opts)
	p.conn.Send([]byte(`{"jsonrpc":"2.0","id":1,"result":"pong"}`))
	_ = p.client.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, frame, err := p.client.ReadMessage()
	require.NoError(t, err)
	require.JSONEq(t, `{"jsonrpc":"2.0","id":1,"result":"pong"}`, string(frame))
}

// A connection that sent nothing is pinged; if it has still sent nothing
// at the next heartbeat, it is closed with 4009. One that answers stays.
func TestHeartbeatPingsThenClosesTheSilent(t *testing.T) {
	opts := &transport.Options{MaxBatch: 8, MaxDelay: time.Millisecond, OutboxLimit: 100, WriteTimeout: 5 * time.Second}
	mute := newRawPair(t, opts)
	pinged := make(chan struct{}, 10)
	mute.client.SetPingHandler(func(string) error { pinged <- struct{}{}; return nil }) // never answers
	readErr := make(chan error, 1)
	go func() {
		_ = mute.client.SetReadDeadline(time.Now().Add(10 * time.Second))
		_, _, err := mute.client.ReadMessage()
		readErr <- err
	}()
	require.True(t, mute.conn.Heartbeat(time.Nanosecond), "first: a ping")
	select {
	case <-pinged:
	case <-time.After(10 * time.Second):
		t.Fatal("no ping")
	}
	require.False(t, mute.conn.Heartbeat(time.Nanosecond), "second: no answer, closed")
	var ce *websocket.CloseError
	require.ErrorAs(t, <-readErr, &ce)
	require.Equal(t, transport.CloseNoPong, ce.Code)

	talker := newRawPair(t, opts)
	go func() { _, _, _ = talker.client.ReadMessage() }() // answers pings while reading
	require.True(t, talker.conn.Heartbeat(time.Nanosecond))
	require.Eventually(t, func() bool { return talker.conn.Heartbeat(time.Hour) }, 10*time.Second, 10*time.Millisecond)
	select {
	case <-talker.conn.Done():
		t.Fatal("a connection that answered was closed")
	default:
	}
}

type rawPair struct {
	conn   *transport.Conn
	client *websocket.Conn
}

// rawPairReadLoop makes newRawPair's connections read with ReadLoop (a
// goroutine per connection) rather than Serve (on readiness, on Linux).
var rawPairReadLoop bool

// newRawPair is one server-side Conn (its reader running) and the client
// end, which reads only when the test does.
func newRawPair(t *testing.T, opts *transport.Options) *rawPair {
	return newRawPairLimit(t, opts, 0)
}

// newRawPairLimit is newRawPair with a read limit on the server's side.
func newRawPairLimit(t *testing.T, opts *transport.Options, readLimit int64) *rawPair {
	up := websocket.Upgrader{ReadBufferSize: 512, WriteBufferSize: 512}
	readLoop := rawPairReadLoop
	accepted := make(chan *transport.Conn, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := transport.Upgrade(&up, w, r, opts)
		if err != nil {
			return
		}
		if readLimit > 0 {
			c.SetReadLimit(readLimit, "limits.max_frame_bytes")
		}
		accepted <- c
		if readLoop {
			_ = c.ReadLoop(func([]byte) {})
		} else {
			c.Serve(func([]byte) {}, nil)
		}
	}))
	ws, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(srv.URL, "http"), nil)
	require.NoError(t, err)
	p := &rawPair{conn: <-accepted, client: ws}
	t.Cleanup(func() {
		_ = p.client.Close()
		p.conn.Close(websocket.CloseNormalClosure, "")
		srv.CloseClientConnections()
		srv.Close()
	})
	return p
}

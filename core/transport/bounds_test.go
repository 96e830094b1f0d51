package transport_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/require"

	"github.com/heraldhq/herald/core/transport"
)

// readFrame reads one frame within a generous bound; a frame held behind
// a batching delay of an hour fails it.
func readFrame(t *testing.T, c *websocket.Conn) []byte {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(20 * time.Second))
	_, frame, err := c.ReadMessage()
	require.NoError(t, err)
	return frame
}

// A reply queued while the connection waits to send a batch (MaxDelay
// after its previous one) leaves at once, with what is queued before it:
// with a delay of an hour, waiting for the batch's due time hangs.
func TestReplyOvertakesTheBatchingDelay(t *testing.T) {
	opts := &transport.Options{MaxBatch: 128, MaxDelay: time.Hour, OutboxLimit: 100, WriteTimeout: 5 * time.Second}
	p := newRawPair(t, opts)
	p.conn.Deliver(pubOf(1, `{}`)) // lone: leaves at once
	require.Equal(t, []uint64{1}, batchSeqs(t, p.client))
	p.conn.Deliver(pubOf(2, `{}`)) // due an hour after the first batch
	p.conn.Send([]byte(`{"jsonrpc":"2.0","id":7,"result":"pong"}`))
	require.Equal(t, []uint64{2}, batchSeqs(t, p.client), "publications keep their place before the reply")
	require.JSONEq(t, `{"jsonrpc":"2.0","id":7,"result":"pong"}`, string(readFrame(t, p.client)))
}

// The same for a reply queued while a publish's publications wait for the
// rest of it (More), and for a close frame.
func TestReplyAndCloseOvertakeAHeldPublish(t *testing.T) {
	opts := &transport.Options{MaxBatch: 128, MaxDelay: time.Hour, OutboxLimit: 100, WriteTimeout: 5 * time.Second}
	p := newRawPair(t, opts)
	pub := pubOf(1, `{}`)
	pub.More = true // the rest of the publish never comes
	p.conn.Deliver(pub)
	p.conn.Send([]byte(`{"jsonrpc":"2.0","id":1,"result":"pong"}`))
	require.Equal(t, []uint64{1}, batchSeqs(t, p.client))
	require.JSONEq(t, `{"jsonrpc":"2.0","id":1,"result":"pong"}`, string(readFrame(t, p.client)))

	pub = pubOf(2, `{}`)
	pub.More = true
	p.conn.Deliver(pub)
	p.conn.Close(transport.CloseGoingAway, "bye")
	require.Equal(t, []uint64{2}, batchSeqs(t, p.client))
	_ = p.client.SetReadDeadline(time.Now().Add(20 * time.Second))
	_, _, err := p.client.ReadMessage()
	var ce *websocket.CloseError
	require.ErrorAs(t, err, &ce)
	require.Equal(t, transport.CloseGoingAway, ce.Code)
}

// A publish of more publications than the outbox holds, to a client that
// reads, is not a slow consumer: the held group leaves in frames of
// MaxBatch as it is delivered, and a publisher that finds the outbox full
// writes it out itself before calling the connection slow.
func TestPublishBiggerThanTheOutboxReachesAReader(t *testing.T) {
	opts := &transport.Options{MaxBatch: 4, MaxDelay: time.Hour, OutboxLimit: 6, WriteTimeout: 5 * time.Second}
	p := newRawPair(t, opts)
	const n = 300
	for seq := uint64(1); seq <= n; seq++ {
		pub := pubOf(seq, `{}`)
		pub.More = seq < n
		p.conn.Deliver(pub)
	}
	opts.EndGroup()
	var got []uint64
	for len(got) < n {
		seqs := batchSeqs(t, p.client)
		require.LessOrEqual(t, len(seqs), 4, "at most MaxBatch per call")
		got = append(got, seqs...)
	}
	for i, seq := range got {
		require.Equal(t, uint64(i+1), seq)
	}
	require.Equal(t, 0, p.conn.CloseCode(), "a reader was taken for a slow consumer")
}

// The outbox is bounded in bytes too, replies included: a client that
// sends requests and never reads is closed with 4008 once its replies pass
// OutboxBytes (and the socket's buffers), however few they are in number.
func TestOutboxIsBoundedInBytes(t *testing.T) {
	opts := &transport.Options{MaxBatch: 128, MaxDelay: time.Millisecond, OutboxLimit: 1 << 30, OutboxBytes: 64 << 10, WriteTimeout: 30 * time.Second}
	p := newRawPair(t, opts)
	reply := []byte(`{"jsonrpc":"2.0","id":1,"error":{"code":-32600,"message":"` + strings.Repeat("x", 1000) + `"}}`)
	sent := 0
	for ; sent < 200_000 && p.conn.CloseCode() == 0; sent++ { // 200 MB if nothing bounds it
		p.conn.Send(reply)
	}
	require.Less(t, sent, 200_000, "never closed")
	require.Equal(t, transport.CloseSlowConsumer, p.conn.CloseCode())
}

// A frame over the read limit is answered with a 1009 close frame that
// leaves after the frame being written, whole: gorilla's own write of it
// must not land in the middle of one of ours, nor cut it short.
func TestCloseOnOversizeFrameDoesNotCorruptAFrameBeingWritten(t *testing.T) {
	opts := &transport.Options{MaxBatch: 128, MaxDelay: time.Millisecond, OutboxLimit: 100, WriteTimeout: 60 * time.Second}
	p := newRawPairLimit(t, opts, 1024)
	big := strings.Repeat("y", 8<<20) // more than the socket buffers: written in parts
	p.conn.Deliver(pubOf(1, `"`+big+`"`))
	require.Eventually(t, func() bool { return p.conn.Queued() == 0 }, 20*time.Second, time.Millisecond)
	require.NoError(t, p.client.WriteMessage(websocket.TextMessage, []byte(strings.Repeat(" ", 4096))))
	time.Sleep(100 * time.Millisecond) // let the server read it while its write is stuck
	frame := readFrame(t, p.client)
	var msg struct {
		Params struct{ Notifications []struct{ Object string } }
	}
	require.NoError(t, json.Unmarshal(frame, &msg), "the frame being written arrived corrupt")
	require.Len(t, msg.Params.Notifications, 1)
	require.Equal(t, big, msg.Params.Notifications[0].Object)
	_, _, err := p.client.ReadMessage()
	var ce *websocket.CloseError
	require.ErrorAs(t, err, &ce)
	require.Equal(t, websocket.CloseMessageTooBig, ce.Code)
}

// Room and WhenDrained let a producer of many (a resume) page them: Room is
// what keeps the outbox under half its limit (one at least), WhenDrained
// calls back once what was queued has been written.
func TestRoomAndWhenDrained(t *testing.T) {
	opts := &transport.Options{MaxBatch: 128, MaxDelay: time.Hour, OutboxLimit: 8, WriteTimeout: 5 * time.Second}
	p := newRawPair(t, opts)
	require.Equal(t, 4, p.conn.Room())
	drained := make(chan struct{}, 1)
	p.conn.WhenDrained(func() { drained <- struct{}{} })
	select {
	case <-drained: // empty: at once
	case <-time.After(20 * time.Second):
		t.Fatal("WhenDrained on an empty outbox did not call back")
	}
	for seq := uint64(1); seq <= 4; seq++ {
		pub := pubOf(seq, `{}`)
		pub.More = true // held: stays queued until the test ends the group
		p.conn.Deliver(pub)
	}
	require.Equal(t, 0, p.conn.Room())
	// Two producers wait (a resume of two channels): both are called
	// back, in the order they asked.
	order := make(chan int, 2)
	p.conn.WhenDrained(func() { order <- 1; drained <- struct{}{} })
	p.conn.WhenDrained(func() { order <- 2 })
	select {
	case <-drained:
		t.Fatal("called back with four publications queued")
	default:
	}
	opts.EndGroup()
	require.Equal(t, []uint64{1, 2, 3, 4}, batchSeqs(t, p.client))
	select {
	case <-drained:
	case <-time.After(20 * time.Second):
		t.Fatal("WhenDrained did not call back once the outbox was written")
	}
	require.Equal(t, 1, <-order)
	select {
	case second := <-order:
		require.Equal(t, 2, second)
	case <-time.After(20 * time.Second):
		t.Fatal("the second WhenDrained was dropped: only the last of two producers would go on")
	}
	require.Equal(t, 4, p.conn.Room())

	tiny := newRawPair(t, &transport.Options{MaxBatch: 1, OutboxLimit: 1, WriteTimeout: 5 * time.Second})
	require.Equal(t, 1, tiny.conn.Room(), "an empty outbox always has room for one")
}

package transport_test

import (
	"crypto/tls"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/require"

	"github.com/heraldhq/herald/core/transport"
)

// A frame over the read limit closes the connection with 1009 and a reason
// that names the setting to raise (or the frame to shrink), whichever
// reader reads it: on readiness (Linux, plain TCP), a ReadLoop goroutine,
// or the goroutine Serve starts for a TLS connection (a TLS socket cannot
// be read on readiness). gorilla writes that close itself, with no reason.
func TestFrameOverTheReadLimitClosesWithAReason(t *testing.T) {
	for _, mode := range []string{"serve", "readloop", "tls"} {
		t.Run(mode, func(t *testing.T) {
			opts := &transport.Options{MaxBatch: 8, MaxDelay: time.Millisecond, OutboxLimit: 100, WriteTimeout: 5 * time.Second}
			up := websocket.Upgrader{ReadBufferSize: 512, WriteBufferSize: 512}
			accepted := make(chan *transport.Conn, 1)
			srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				c, err := transport.Upgrade(&up, w, r, opts)
				if err != nil {
					return
				}
				c.SetReadLimit(1024, "limits.max_frame_bytes")
				if mode == "readloop" {
					go func() { _ = c.ReadLoop(func([]byte) {}) }()
				} else {
					c.Serve(func([]byte) {}, nil)
				}
				accepted <- c
			}))
			dialer := *websocket.DefaultDialer
			if mode == "tls" {
				srv.StartTLS()
				dialer.TLSClientConfig = &tls.Config{RootCAs: srv.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs}
			} else {
				srv.Start()
			}
			t.Cleanup(srv.Close)
			ws, _, err := dialer.Dial("ws"+strings.TrimPrefix(srv.URL, "http"), nil) // https: wss
			require.NoError(t, err)
			t.Cleanup(func() { _ = ws.Close() })
			c := <-accepted
			if mode == "serve" {
				require.Equal(t, transport.ReadinessAvailable(), transport.IsRegistered(c), "plain TCP is read on readiness where there is a poller")
			} else {
				require.False(t, transport.IsRegistered(c), "read by a goroutine, not on readiness")
			}

			require.NoError(t, ws.WriteMessage(websocket.TextMessage, []byte(strings.Repeat(" ", 2000))))
			_, _, err = ws.ReadMessage()
			var ce *websocket.CloseError
			require.ErrorAs(t, err, &ce)
			require.Equal(t, websocket.CloseMessageTooBig, ce.Code)
			require.Equal(t, "frame of 2000 bytes over limits.max_frame_bytes (1024)", ce.Text)
			<-c.Done()
			require.Equal(t, transport.CloseTooBig, c.CloseCode())
		})
	}
}

// A message that passes the limit over several fragments, none of them over
// it alone, is named a message.
func TestFragmentedMessageOverTheReadLimitClosesWithAReason(t *testing.T) {
	p := newRawPairLimit(t, &transport.Options{MaxBatch: 8, MaxDelay: time.Millisecond, OutboxLimit: 100, WriteTimeout: 5 * time.Second}, 1024)
	// A text frame and a continuation of 600 bytes each, neither final
	// (the second passes the limit; nothing more is read), masked (a
	// client's) with a zero mask.
	for _, op := range []byte{websocket.TextMessage, 0} {
		frame := append([]byte{op, 0x80 | 126, 600 >> 8, 600 & 0xff, 0, 0, 0, 0}, strings.Repeat(" ", 600)...)
		_, err := p.client.UnderlyingConn().Write(frame)
		require.NoError(t, err)
	}
	_, _, err := p.client.ReadMessage()
	var ce *websocket.CloseError
	require.ErrorAs(t, err, &ce)
	require.Equal(t, websocket.CloseMessageTooBig, ce.Code)
	require.Equal(t, "message over limits.max_frame_bytes (1024)", ce.Text)
}

// A frame whose 64-bit length has its top bit set (RFC 6455 forbids it) is
// refused by gorilla as over the read limit without writing any close: the
// peer still gets a 1009 that says why.
func TestFrameLengthOutOfRangeClosesWithAReason(t *testing.T) {
	p := newRawPairLimit(t, &transport.Options{MaxBatch: 8, MaxDelay: time.Millisecond, OutboxLimit: 100, WriteTimeout: 5 * time.Second}, 1024)
	frame := []byte{0x80 | websocket.TextMessage, 0x80 | 127, 0x80, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0}
	_, err := p.client.UnderlyingConn().Write(frame)
	require.NoError(t, err)
	_, _, err = p.client.ReadMessage()
	var ce *websocket.CloseError
	require.ErrorAs(t, err, &ce)
	require.Equal(t, websocket.CloseMessageTooBig, ce.Code)
	require.Equal(t, "frame length out of range, over limits.max_frame_bytes (1024)", ce.Text)
}

// BeforeTooBig holds the 1009 close of a frame over the read limit until
// what it waits for is done: an answer a handler still works on leaves
// before the close, whichever reader reads the frame.
func TestTooBigCloseWaitsForAnswersUnderWay(t *testing.T) {
	for _, mode := range []string{"serve", "readloop"} {
		t.Run(mode, func(t *testing.T) {
			opts := &transport.Options{MaxBatch: 8, MaxDelay: time.Millisecond, OutboxLimit: 100, WriteTimeout: 5 * time.Second}
			up := websocket.Upgrader{ReadBufferSize: 512, WriteBufferSize: 512}
			reached, release := make(chan struct{}), make(chan struct{})
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				c, err := transport.Upgrade(&up, w, r, opts)
				if err != nil {
					return
				}
				c.SetReadLimit(1024, "limits.max_frame_bytes")
				var answering sync.WaitGroup
				c.BeforeTooBig(func() {
					close(reached)
					answering.Wait()
				})
				handle := func(frame []byte) {
					answering.Add(1)
					go func() {
						defer answering.Done()
						<-release
						c.Send([]byte(`{"answer":` + string(frame) + `}`))
					}()
				}
				if mode == "readloop" {
					go func() { _ = c.ReadLoop(handle) }()
				} else {
					c.Serve(handle, nil)
				}
			}))
			t.Cleanup(srv.Close)
			ws, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(srv.URL, "http"), nil)
			require.NoError(t, err)
			t.Cleanup(func() { _ = ws.Close() })

			require.NoError(t, ws.WriteMessage(websocket.TextMessage, []byte("1")))
			require.NoError(t, ws.WriteMessage(websocket.TextMessage, []byte(strings.Repeat(" ", 2000))))
			<-reached // the reader met the frame over the limit, and waits
			close(release)
			require.NoError(t, ws.SetReadDeadline(time.Now().Add(10*time.Second)))
			_, frame, err := ws.ReadMessage()
			require.NoError(t, err, "the answer under way leaves before the close")
			require.Equal(t, `{"answer":1}`, string(frame))
			_, _, err = ws.ReadMessage()
			var ce *websocket.CloseError
			require.ErrorAs(t, err, &ce)
			require.Equal(t, websocket.CloseMessageTooBig, ce.Code)
			require.Equal(t, "frame of 2000 bytes over limits.max_frame_bytes (1024)", ce.Text)
		})
	}
}

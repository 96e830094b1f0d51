package transport_test

import (
	"fmt"
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

// TestWriteNeverReachesAReusedDescriptor closes connections abruptly (the
// peer drops the socket: the server's reader fails and terminates the
// connection, which stays in the broadcaster's list) while a broadcaster
// keeps sending each connection a frame naming it, and new connections
// keep arriving, which the kernel gives the descriptors just closed. The
// writers write to descriptors directly (tryWrite, and io_uring's sends): a write after the
// socket closed would land on the new connection that reused its
// descriptor. Each peer checks that every frame it reads names it.
func TestWriteNeverReachesAReusedDescriptor(t *testing.T) {
	eachWriteMode(t, testWriteNeverReachesAReusedDescriptor)
}

func testWriteNeverReachesAReusedDescriptor(t *testing.T, noURing bool) {
	const peers, lives, frames = 16, 25, 3
	opts := &transport.Options{MaxBatch: 16, OutboxLimit: 1 << 16, WriteTimeout: 10 * time.Second, NoURing: noURing}
	type named struct {
		c  *transport.Conn
		id string
	}
	var (
		mu   sync.Mutex
		list []named
	)
	up := websocket.Upgrader{ReadBufferSize: 512, WriteBufferSize: 512}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := transport.Upgrade(&up, w, r, opts)
		if err != nil {
			return
		}
		first := true
		_ = c.ReadLoop(func(frame []byte) {
			if first {
				first = false
				mu.Lock()
				list = append(list, named{c, string(frame)})
				mu.Unlock()
			}
		})
	}))
	defer srv.Close()

	stop := make(chan struct{})
	broadcasting := make(chan struct{})
	go func() {
		defer close(broadcasting)
		for {
			select {
			case <-stop:
				return
			default:
			}
			mu.Lock()
			all := append([]named(nil), list...)
			mu.Unlock()
			// Connections whose peer left stay in the list: they are
			// sent to as long as the test runs.
			for _, n := range all {
				n.c.Send([]byte(`{"to":"` + n.id + `"}`))
			}
			time.Sleep(time.Millisecond)
		}
	}()

	url := "ws" + strings.TrimPrefix(srv.URL, "http")
	errs := make(chan error, peers)
	var wg sync.WaitGroup
	for p := range peers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for life := range lives {
				id := fmt.Sprintf("p%d-%d", p, life)
				if err := peerLife(url, id, frames); err != nil {
					errs <- fmt.Errorf("%s: %w", id, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(stop)
	<-broadcasting
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
}

// peerLife connects, names itself, reads frames until it got want naming
// it (any other frame is an error), then drops the socket without a close
// handshake.
func peerLife(url, id string, want int) error {
	ws, _, err := websocket.DefaultDialer.Dial(url, nil)
	if err != nil {
		return fmt.Errorf("dial: %w", err)
	}
	defer ws.Close() // the socket only: no close frame
	if err := ws.WriteMessage(websocket.TextMessage, []byte(id)); err != nil {
		return fmt.Errorf("name: %w", err)
	}
	_ = ws.SetReadDeadline(time.Now().Add(time.Minute))
	mine := `{"to":"` + id + `"}`
	for got := 0; got < want; {
		_, frame, err := ws.ReadMessage()
		if err != nil {
			return fmt.Errorf("read after %d frames: %w", got, err)
		}
		if string(frame) != mine {
			return fmt.Errorf("got a frame for another connection: %q", frame)
		}
		got++
	}
	return nil
}

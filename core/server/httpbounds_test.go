package server

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/require"

	"github.com/heraldhq/herald/core/config"
)

// serveBounded runs srv on a real listener through Serve (the http.Server
// and its bounds as herald builds them) until the test ends.
func serveBounded(t *testing.T, srv *Server) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			t.Error("Serve did not return after its context ended")
		}
	})
	return ln.Addr().String()
}

func boundedServer(t *testing.T, set func(c *config.Config)) *Server {
	t.Helper()
	cfg := testConfig()
	set(cfg)
	srv, err := New(Options{Config: cfg})
	require.NoError(t, err)
	return srv
}

// routePlugins serves route as the plugins' HTTP routes.
type routePlugins struct {
	noPlugins
	route http.HandlerFunc
}

func (p routePlugins) ServeHTTP(w http.ResponseWriter, r *http.Request) { p.route(w, r) }

// A body sent a byte at a time is cut at server.read_timeout with a 408
// naming it, on every route that reads one, where before it was read for
// as long as the client kept sending.
func TestSlowBodyIsCutAtReadTimeout(t *testing.T) {
	const adminToken = "0123456789abcdef-admin"
	srv := boundedServer(t, func(c *config.Config) {
		c.Server.ReadTimeout = time.Second
		c.Server.AdminToken = adminToken
	})
	addr := serveBounded(t, srv)
	for path, key := range map[string]string{"/v1/publish": "test-key", "/v1/plugins/kb/search": "test-key", "/admin/api/publish": adminToken} {
		t.Run(path, func(t *testing.T) {
			c, err := net.Dial("tcp", addr)
			require.NoError(t, err)
			defer c.Close()
			_, err = fmt.Fprintf(c, "POST %s HTTP/1.1\r\nHost: herald\r\nAuthorization: Bearer %s\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{", path, key)
			require.NoError(t, err)
			stop := make(chan struct{})
			defer close(stop)
			go func() { // a byte every 100ms: 100000 of them would take hours
				for {
					select {
					case <-stop:
						return
					case <-time.After(100 * time.Millisecond):
					}
					if _, err := c.Write([]byte(" ")); err != nil {
						return
					}
				}
			}()
			require.NoError(t, c.SetReadDeadline(time.Now().Add(20*time.Second)))
			br := bufio.NewReader(c)
			resp, err := http.ReadResponse(br, nil)
			require.NoError(t, err, "no answer while the body trickled in")
			body, _ := io.ReadAll(resp.Body)
			require.Equal(t, http.StatusRequestTimeout, resp.StatusCode, string(body))
			require.Contains(t, string(body), "server.read_timeout")
			// Closed: a clean EOF, or a reset when the trickle's next byte
			// reached the socket after herald closed it (unread data).
			_, err = br.ReadByte()
			require.Truef(t, errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET),
				"the connection stays open after the 408: read gave %v", err)
		})
	}
}

// A keep-alive connection that sends no next request is closed after
// server.idle_timeout.
func TestIdleKeepAliveIsClosed(t *testing.T) {
	srv := boundedServer(t, func(c *config.Config) { c.Server.IdleTimeout = time.Second })
	addr := serveBounded(t, srv)
	c, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	defer c.Close()
	_, err = fmt.Fprint(c, "GET /healthz HTTP/1.1\r\nHost: herald\r\n\r\n")
	require.NoError(t, err)
	require.NoError(t, c.SetReadDeadline(time.Now().Add(20*time.Second)))
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	require.NoError(t, err)
	_, _ = io.Copy(io.Discard, resp.Body)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.False(t, resp.Close, "the answer closes the connection: nothing to test")
	_, err = br.ReadByte()
	require.ErrorIs(t, err, io.EOF, "the idle connection is still open")
}

// A client that does not read its reply frees the handler (and the reply)
// once a write of it made no progress for delivery.write_timeout.
func TestUnreadReplyIsCutAtWriteTimeout(t *testing.T) {
	srv := boundedServer(t, func(c *config.Config) { c.Delivery.WriteTimeout = time.Second })
	wrote := make(chan error, 1)
	srv.SetPlugins(routePlugins{route: func(w http.ResponseWriter, r *http.Request) {
		_, err := w.Write(make([]byte, 64<<20)) // far more than the sockets' buffers hold
		wrote <- err
	}})
	addr := serveBounded(t, srv)
	c, err := net.DialTCP("tcp", nil, mustResolve(t, addr))
	require.NoError(t, err)
	defer c.Close()
	require.NoError(t, c.SetReadBuffer(4096))
	_, err = fmt.Fprint(c, "GET /big HTTP/1.1\r\nHost: herald\r\n\r\n")
	require.NoError(t, err)
	select {
	case err := <-wrote:
		require.Error(t, err, "the reply was written whole to a client that reads nothing")
	case <-time.After(30 * time.Second):
		t.Fatal("the handler is still writing to a client that reads nothing")
	}
}

func mustResolve(t *testing.T, addr string) *net.TCPAddr {
	t.Helper()
	a, err := net.ResolveTCPAddr("tcp", addr)
	require.NoError(t, err)
	return a
}

// A streamed route (kb's notifications) outlives both bounds while it
// makes progress: neither server.read_timeout (the request was read) nor
// delivery.write_timeout (each write went through) ends it.
func TestStreamOutlivesReadAndWriteTimeouts(t *testing.T) {
	srv := boundedServer(t, func(c *config.Config) {
		c.Server.ReadTimeout = time.Second
		c.Delivery.WriteTimeout = time.Second
	})
	const lines = 12 // 12 × 250ms: three times either bound
	srv.SetPlugins(routePlugins{route: func(w http.ResponseWriter, r *http.Request) {
		rc := http.NewResponseController(w)
		w.WriteHeader(http.StatusOK)
		for i := range lines {
			select {
			case <-r.Context().Done():
				return
			case <-time.After(250 * time.Millisecond):
			}
			if _, err := fmt.Fprintf(w, "line %d\n", i); err != nil {
				return
			}
			if err := rc.Flush(); err != nil {
				return
			}
		}
	}})
	addr := serveBounded(t, srv)
	resp, err := http.Get("http://" + addr + "/v1/kb/k1/notifications")
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err, "the stream was cut")
	require.Equal(t, lines, strings.Count(string(body), "\n"), string(body))
}

// A WebSocket outlives server.read_timeout: the deadline set for reading
// its upgrade request does not stay on the connection it became.
func TestWebSocketOutlivesReadTimeout(t *testing.T) {
	srv := boundedServer(t, func(c *config.Config) { c.Server.ReadTimeout = time.Second })
	addr := serveBounded(t, srv)
	for _, tc := range []struct {
		path   string
		header http.Header
		call   string
		want   string
	}{
		{"/ws", nil, `{"jsonrpc":"2.0","id":1,"method":"no.such"}`, `"id":1`}, // anonymous
		{"/v1/publish/ws", http.Header{"Authorization": {"Bearer test-key"}},
			`{"jsonrpc":"2.0","id":2,"method":"publish","params":{"channel":"news","event":"e","object":{}}}`, `"id":2`},
	} {
		t.Run(tc.path, func(t *testing.T) {
			ws, _, err := websocket.DefaultDialer.Dial("ws://"+addr+tc.path, tc.header)
			require.NoError(t, err)
			defer ws.Close()
			time.Sleep(2500 * time.Millisecond) // past server.read_timeout
			require.NoError(t, ws.WriteMessage(websocket.TextMessage, []byte(tc.call)))
			require.NoError(t, ws.SetReadDeadline(time.Now().Add(20*time.Second)))
			for {
				_, frame, err := ws.ReadMessage()
				require.NoError(t, err, "the connection ended after server.read_timeout")
				if strings.Contains(string(frame), tc.want) {
					return
				}
			}
		})
	}
}

// writeBodyError tells the causes apart: before, every failed read was a
// 413 "larger than".
func TestWriteBodyError(t *testing.T) {
	for _, tc := range []struct {
		err    error
		status int
		says   string
	}{
		{&http.MaxBytesError{Limit: 10}, http.StatusRequestEntityTooLarge, "limits.max_publish_bytes"},
		{&net.OpError{Op: "read", Err: osDeadline()}, http.StatusRequestTimeout, "server.read_timeout"},
		{io.ErrUnexpectedEOF, http.StatusBadRequest, "unexpected EOF"},
	} {
		rec := httptest.NewRecorder()
		writeBodyError(rec, tc.err, 10, time.Second)
		require.Equal(t, tc.status, rec.Code, tc.err.Error())
		require.Contains(t, rec.Body.String(), tc.says)
	}
}

func osDeadline() error {
	c1, c2 := net.Pipe()
	defer c1.Close()
	defer c2.Close()
	_ = c1.SetReadDeadline(time.Now().Add(-time.Second))
	_, err := c1.Read(make([]byte, 1))
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		panic(fmt.Sprintf("expected a timeout, got %v", err))
	}
	return err
}

//go:build linux

package server

import (
	"bytes"
	"crypto/rand"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// quietPair is a connection accepted through quietListen and its client.
func quietPair(t *testing.T) (server net.Conn, client *net.TCPConn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	ql := quietListen(ln)
	t.Cleanup(func() { _ = ql.Close() })
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ql.Accept()
		if err == nil {
			accepted <- c
		}
		close(accepted)
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	server = <-accepted
	require.NotNil(t, server)
	t.Cleanup(func() { _ = server.Close() })
	require.IsType(t, &quietConn{}, server)
	return server, c.(*net.TCPConn)
}

// Bytes go both ways intact, a write larger than the socket buffers
// waits for the peer to read, and the peer's close reads as io.EOF.
func TestQuietConnReadsAndWritesLikeTCP(t *testing.T) {
	server, client := quietPair(t)

	big := make([]byte, 8<<20) // more than loopback's socket buffers hold
	_, _ = rand.Read(big)
	got := make(chan []byte, 1)
	go func() {
		b, _ := io.ReadAll(io.LimitReader(client, int64(len(big))))
		got <- b
	}()
	n, err := server.Write(big)
	require.NoError(t, err)
	require.Equal(t, len(big), n)
	require.True(t, bytes.Equal(big, <-got), "the bytes arrived intact and in order")

	_, err = client.Write([]byte("hello"))
	require.NoError(t, err)
	buf := make([]byte, 16)
	n, err = io.ReadAtLeast(server, buf, 5)
	require.NoError(t, err)
	require.Equal(t, "hello", string(buf[:n]))
	n, err = server.Read(nil)
	require.NoError(t, err, "a read of nothing returns at once")
	require.Zero(t, n)

	require.NoError(t, client.Close())
	_, err = server.Read(buf)
	require.ErrorIs(t, err, io.EOF)
}

// Deadlines work as on a TCPConn and fail with the same errors: a
// net.Error whose Timeout is true, os.ErrDeadlineExceeded underneath, and
// a write cut short says how much it wrote.
func TestQuietConnDeadlines(t *testing.T) {
	server, _ := quietPair(t)

	require.NoError(t, server.SetReadDeadline(time.Now().Add(50*time.Millisecond)))
	_, err := server.Read(make([]byte, 16))
	var ne net.Error
	require.ErrorAs(t, err, &ne)
	require.True(t, ne.Timeout())
	require.ErrorIs(t, err, os.ErrDeadlineExceeded)
	var op *net.OpError
	require.ErrorAs(t, err, &op)
	require.Equal(t, "read", op.Op)

	// The client never reads: the write fills the socket buffers, then
	// waits until its deadline.
	// The buffer is made first: under -race on a loaded machine, making
	// 64 MiB took longer than the deadline, and the write then wrote nothing.
	big := make([]byte, 64<<20)
	require.NoError(t, server.SetWriteDeadline(time.Now().Add(200*time.Millisecond)))
	n, err := server.Write(big)
	require.ErrorIs(t, err, os.ErrDeadlineExceeded)
	require.Positive(t, n)
	require.Less(t, n, 64<<20)
}

// A peer that resets the connection is reported as read(2) reports it,
// wrapped as net.Conn wraps it.
func TestQuietConnReset(t *testing.T) {
	server, client := quietPair(t)
	require.NoError(t, client.SetLinger(0)) // close sends a reset
	_, err := client.Write([]byte("x"))
	require.NoError(t, err)
	require.NoError(t, client.Close())
	buf := make([]byte, 16)
	var rerr error
	for rerr == nil {
		_, rerr = server.Read(buf) // the "x" first, then the reset
	}
	require.ErrorIs(t, rerr, syscall.ECONNRESET)
	var se *os.SyscallError
	require.ErrorAs(t, rerr, &se)
	require.Equal(t, "read", se.Syscall)
}

// net/http over quiet connections: keep-alive requests with bodies, each
// of which starts and then aborts the server's background read (a read
// woken by a deadline in the past), all answered.
func TestQuietConnServesHTTP(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		_, _ = w.Write(bytes.ToUpper(b))
	}), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(quietListen(ln)) }()
	t.Cleanup(func() { _ = srv.Close() })

	client := &http.Client{Transport: &http.Transport{MaxConnsPerHost: 1}, Timeout: 10 * time.Second}
	for i := range 200 {
		body := strings.Repeat("ab", i+1)
		resp, err := client.Post("http://"+ln.Addr().String(), "text/plain", strings.NewReader(body))
		require.NoError(t, err)
		got, err := io.ReadAll(resp.Body)
		require.NoError(t, resp.Body.Close())
		require.NoError(t, err)
		require.Equal(t, strings.ToUpper(body), string(got))
	}
}

// A listener that is not TCP is left as it is.
func TestQuietListenLeavesOtherListeners(t *testing.T) {
	ln, err := net.Listen("unix", t.TempDir()+"/s")
	require.NoError(t, err)
	defer ln.Close()
	require.Same(t, ln, quietListen(ln))
}

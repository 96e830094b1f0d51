package server

import (
	"context"
	"net"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/require"

	"github.com/heraldhq/herald/internal/heraldtest"
)

func counterValue(t *testing.T, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	require.NoError(t, c.Write(&m))
	return m.GetCounter().GetValue()
}

// net/http's "Accept error" line (INFO before: no level of its own)
// becomes a WARN that says what to do, counted, and logged at most once
// per acceptWarnEvery with the count of those left out; its other lines
// keep their inferred levels.
func TestHTTPErrorLogMapsAcceptErrors(t *testing.T) {
	out := &heraldtest.Buffer{}
	log := hclog.New(&hclog.LoggerOptions{Output: out, Level: hclog.Trace})
	accepts := prometheus.NewCounter(prometheus.CounterOpts{Name: "t"})
	l := newHTTPErrorLog(log, accepts)
	now := time.Unix(1000, 0)
	l.now = func() time.Time { return now }

	emfile := "http: Accept error: accept tcp 127.0.0.1:7512: accept4: too many open files; retrying in 1s\n"
	_, err := l.Write([]byte(emfile))
	require.NoError(t, err)
	got := out.Take()
	require.Contains(t, got, "[WARN]")
	require.Contains(t, got, "out of file descriptors")
	require.Contains(t, got, "LimitNOFILE")
	require.Contains(t, got, `error="accept tcp 127.0.0.1:7512: accept4: too many open files"`)
	require.Contains(t, got, "retrying_in=1s")
	require.Equal(t, 1.0, counterValue(t, accepts))

	now = now.Add(time.Second)
	_, _ = l.Write([]byte(emfile))
	_, _ = l.Write([]byte(emfile))
	require.Empty(t, out.Take(), "logged again within acceptWarnEvery")
	require.Equal(t, 3.0, counterValue(t, accepts), "every failed accept is counted")

	now = now.Add(acceptWarnEvery)
	_, _ = l.Write([]byte("http: Accept error: accept tcp [::]:7512: accept4: too many open files in system; retrying in 1s\n"))
	got = out.Take()
	require.Contains(t, got, "[WARN]")
	require.Contains(t, got, "fs.file-max")
	require.Contains(t, got, "more_since_last_logged=2")

	_, _ = l.Write([]byte("http: TLS handshake error from 10.0.0.1:5000: EOF\n"))
	got = out.Take()
	require.Contains(t, got, "[INFO]")
	require.Contains(t, got, "TLS handshake error")
	_, _ = l.Write([]byte("[ERROR] something\n"))
	require.Contains(t, out.Take(), "[ERROR]")
	require.Equal(t, 4.0, counterValue(t, accepts))
}

// failingListener fails its first accepts as a process out of descriptors
// does, then waits for Close.
type failingListener struct {
	fails  int
	mu     sync.Mutex
	closed chan struct{}
	once   sync.Once
}

func (l *failingListener) Accept() (net.Conn, error) {
	l.mu.Lock()
	fail := l.fails > 0
	l.fails--
	l.mu.Unlock()
	if fail {
		return nil, &net.OpError{Op: "accept", Net: "tcp", Addr: l.Addr(), Err: os.NewSyscallError("accept4", syscall.EMFILE)}
	}
	<-l.closed
	return nil, net.ErrClosed
}

func (l *failingListener) Close() error {
	l.once.Do(func() { close(l.closed) })
	return nil
}

func (l *failingListener) Addr() net.Addr {
	return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 7512}
}

// Through the real http.Server: an accept failing with EMFILE reaches the
// admin page's errors (warnings and errors only) and the metric.
func TestAcceptErrorReachesAdminErrors(t *testing.T) {
	log := hclog.NewInterceptLogger(&hclog.LoggerOptions{Output: &heraldtest.Buffer{}, Level: hclog.Info})
	srv, err := New(Options{Config: testConfig(), Logger: log})
	require.NoError(t, err)
	ln := &failingListener{fails: 3, closed: make(chan struct{})}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	defer func() { cancel(); <-done }()

	require.Eventually(t, func() bool {
		for _, e := range srv.admin.errors.list() {
			if e.Level == "warn" && strings.Contains(e.Message, "out of file descriptors") {
				return true
			}
		}
		return false
	}, 20*time.Second, 10*time.Millisecond, "no warning on the admin page for a failing accept")
	require.Eventually(t, func() bool { return counterValue(t, srv.metrics.acceptErrors) == 3 },
		20*time.Second, 10*time.Millisecond)
}

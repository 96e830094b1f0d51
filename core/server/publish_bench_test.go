package server

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/require"
)

// benchServer is a server on a loopback listener that speaks HTTP/1.1 and
// h2c, as Serve's does.
func benchServer(tb testing.TB) (*Server, *httptest.Server) {
	srv, err := New(Options{Config: testConfig()})
	require.NoError(tb, err)
	ts := httptest.NewUnstartedServer(srv.Handler())
	ts.Config.Protocols = serveProtocols()
	ts.Config.HTTP2 = srv.serveHTTP2()
	ts.Start()
	tb.Cleanup(ts.Close)
	return srv, ts
}

// benchBody is one notification to its own open channel, as scenario c
// publishes (one subscriber per channel; here none, so that the figure is
// the request's cost and not the fan-out's).
func benchBody(i int64) []byte {
	return []byte(`{"channel":"u` + strconv.FormatInt(i%10000, 10) + `","event":"tick","object_type":"bench","object":{"t":1700000000000000000,"n":` + strconv.FormatInt(i, 10) + `}}`)
}

// BenchmarkPublishHTTP is a publish through POST /v1/publish over
// HTTP/1.1 keep-alive connections, or over one h2c connection: the
// per-request cost a persistent publishing connection can remove.
func BenchmarkPublishHTTP(b *testing.B) {
	for _, proto := range []string{"http1", "h2c"} {
		b.Run(proto, func(b *testing.B) {
			_, ts := benchServer(b)
			tr := &http.Transport{MaxIdleConnsPerHost: 64}
			if proto == "h2c" {
				tr.Protocols = new(http.Protocols)
				tr.Protocols.SetUnencryptedHTTP2(true)
			}
			defer tr.CloseIdleConnections()
			hc := &http.Client{Transport: tr}
			var n atomic.Int64
			b.ReportAllocs()
			b.SetParallelism(8)
			b.ResetTimer()
			defer reportCPU(b)()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					req, _ := http.NewRequest(http.MethodPost, ts.URL+"/v1/publish", bytes.NewReader(benchBody(n.Add(1))))
					req.Header.Set("Authorization", "Bearer test-key")
					req.Header.Set("Content-Type", "application/json")
					resp, err := hc.Do(req)
					if err != nil {
						b.Error(err)
						return
					}
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode != http.StatusOK {
						b.Errorf("status %d", resp.StatusCode)
						return
					}
				}
			})
		})
	}
}

// BenchmarkPublishWS is the same publish over one publishing WebSocket,
// pipelined: up to limits.max_inflight_calls requests in flight.
func BenchmarkPublishWS(b *testing.B) {
	srv, ts := benchServer(b)
	ws, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(ts.URL, "http")+"/v1/publish/ws", http.Header{"Authorization": {"Bearer test-key"}})
	require.NoError(b, err)
	defer ws.Close()
	window := make(chan struct{}, srv.cfg.Limits.MaxInflightCalls)
	done := make(chan error, 1)
	b.ReportAllocs()
	b.ResetTimer()
	defer reportCPU(b)()
	go func() {
		for range b.N {
			_, frame, err := ws.ReadMessage()
			if err != nil {
				done <- err
				return
			}
			if !bytes.Contains(frame, []byte(`"result"`)) {
				done <- fmt.Errorf("reply %s", frame)
				return
			}
			<-window
		}
		done <- nil
	}()
	var frame []byte
	for i := range b.N {
		window <- struct{}{}
		frame = append(frame[:0], `{"jsonrpc":"2.0","id":`...)
		frame = strconv.AppendInt(frame, int64(i), 10)
		frame = append(frame, `,"method":"publish","params":`...)
		frame = append(frame, benchBody(int64(i))...)
		frame = append(frame, '}')
		if err := ws.WriteMessage(websocket.TextMessage, frame); err != nil {
			b.Fatal(err)
		}
	}
	require.NoError(b, <-done)
}

// reportCPU reports the process's CPU time per op (client and server
// together: both run here) from now to the call of the function returned.
func reportCPU(b *testing.B) func() {
	start := cpuTime()
	return func() {
		b.ReportMetric(float64((cpuTime()-start).Nanoseconds())/float64(b.N), "cpu-ns/op")
	}
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// scenarioCBody is a request of scenario c: batch notifications, each to
// its own open channel, in the form herald-bench sends.
func scenarioCBody(batch int, first int64) []byte {
	b := []byte(`{"notifications":[`)
	for i := range int64(batch) {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"channel":"bench-`...)
		b = strconv.AppendInt(b, (first+i)%10000, 10)
		b = append(b, `","event":"tick","object_type":"bench","object":{"sent_ns":1763920000000000000,"n":`...)
		b = strconv.AppendInt(b, first+i, 10)
		b = append(b, `}}`...)
	}
	return append(b, `]}`...)
}

// BenchmarkParsePublish is the parsing of a scenario c request (10
// notifications): per request, and per notification (ns/notif).
func BenchmarkParsePublish(b *testing.B) {
	body := scenarioCBody(10, 1)
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	defer reportCPU(b)()
	for b.Loop() {
		if _, err := parsePublish(body); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*10), "ns/notif")
}

// BenchmarkPublishBody is a scenario c request from its body to its
// reply, without HTTP: parse, checks, broker (ids, encoding, history),
// hub (no subscriber here: the fan-out is BenchmarkOutbox's) and the
// reply. Channels cycle over 10,000, so their history rings are full, as
// in a long run.
func BenchmarkPublishBody(b *testing.B) {
	srv, err := New(Options{Config: testConfig()})
	require.NoError(b, err)
	bodies := scenarioCBodies(1000)
	defer reportCPU(b)()
	publishLoop(b, srv, bodies)
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*10), "ns/notif")
}

// BenchmarkPublishDeliver is BenchmarkPublishBody with a subscriber on
// each channel: a scenario c request from its body to the writes of its
// ten notifications to ten WebSocket connections (100 channels of one
// subscriber each). The subscribers read raw bytes from their sockets and
// count the notifications in them, allocating nothing, so that allocs/op
// are the server's: parse, broker, hub, transport Deliver and write.
func BenchmarkPublishDeliver(b *testing.B) {
	const channels = 100
	p := &pubTest{}
	p.srv, p.ts = benchServer(b)
	var delivered atomic.Int64
	pattern := []byte(`"seq":`)
	for i := range channels {
		ws, _, err := websocket.DefaultDialer.Dial(p.wsURL("/ws"), nil)
		require.NoError(b, err)
		b.Cleanup(func() { ws.Close() })
		require.NoError(b, ws.WriteMessage(websocket.TextMessage, []byte(`{"jsonrpc":"2.0","id":1,"method":"subscribe","params":{"channels":["bench-`+strconv.Itoa(i)+`"]}}`)))
		_, reply, err := ws.ReadMessage()
		require.NoError(b, err)
		require.Contains(b, string(reply), `"subscriptions"`)
		go func() { // ends when the connection closes (Cleanup)
			buf := make([]byte, 64<<10)
			carry := 0 // bytes kept from the last read: a pattern cut in two
			for {
				n, err := ws.UnderlyingConn().Read(buf[carry:])
				if err != nil {
					return
				}
				data := buf[:carry+n]
				delivered.Add(int64(bytes.Count(data, pattern)))
				// Fewer bytes than the pattern: none counted twice.
				carry = min(len(pattern)-1, len(data))
				copy(buf, data[len(data)-carry:])
			}
		}()
	}
	bodies := scenarioCBodies(channels / 10)
	defer reportCPU(b)() // to the end: the writes after the loop count
	i := publishLoop(b, p.srv, bodies)
	// Every notification reaches its subscriber (a generous bound on
	// waiting: the benchmark measures, this only checks).
	for deadline := time.Now().Add(time.Minute); delivered.Load() < int64(10*i); {
		if time.Now().After(deadline) {
			b.Fatalf("delivered %d of %d", delivered.Load(), 10*i)
		}
		time.Sleep(time.Millisecond)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(i*10), "ns/notif")
}

// scenarioCBodies is n scenario c request bodies, ten notifications
// each, to a window of channels that moves by ten a body.
func scenarioCBodies(n int) [][]byte {
	bodies := make([][]byte, n)
	for i := range bodies {
		bodies[i] = scenarioCBody(10, int64(i*10))
	}
	return bodies
}

// publishLoop publishes the bodies in turn through srv.publishBody for the
// benchmark's loop, reporting allocations; it returns how many it
// published.
func publishLoop(b *testing.B, srv *Server, bodies [][]byte) int {
	b.Helper()
	ctx := context.Background()
	i := 0
	b.ReportAllocs()
	for b.Loop() {
		status, reply := srv.publishBody(ctx, time.Now(), "test-key", "", bodies[i%len(bodies)])
		if status != http.StatusOK {
			b.Fatalf("status %d: %s", status, reply)
		}
		i++
	}
	return i
}

//go:build linux

package transport

import (
	"net"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/heraldhq/herald/core/broker"
)

// BenchmarkFanOutConn is BenchmarkFanOutFloor's fan-out made by herald's
// write path: one publication delivered to each of HERALD_FLOOR_CONNS
// (default 10,000) Conns, whose sockets' other ends are drained by the
// floor's reader process, then written by the shared writers. Its
// sub-benchmarks, on the same sockets, back to back:
//
//   - floor: write(2) of a frame of the same size per socket, one
//     goroutine (BenchmarkFanOutFloor's write/g=1);
//   - conn: Deliver to every Conn (MaxDelay 0: each is due at once), then
//     wait until every write completed (an Observer counts Delivered).
//
// cpu-ns/write is this process's CPU time per socket written: for conn,
// the publisher's Deliver loop, the writers, and the Observer calls a
// server makes; what it has over floor is what herald adds to the
// kernel's work.
//
//	go test -run '^$' -bench FanOutConn -benchtime 50x ./core/transport/
func BenchmarkFanOutConn(b *testing.B) {
	f := floorFixtureFor(b)
	defer f.close()
	n := len(f.conns)

	obs := &countingObserver{reached: make(chan struct{}, 1)}
	opts := &Options{MaxBatch: 128, OutboxLimit: 1024, WriteTimeout: 10 * time.Second, Observer: obs}
	conns := make([]*Conn, n)
	for i, tc := range f.conns {
		conns[i] = upgradeOnto(b, tc, opts)
	}
	defer func() {
		for _, c := range conns {
			c.terminate()
		}
	}()

	// The publication's frame is as long as the floor's (300 bytes).
	data := make([]byte, 300-4-len(batchPrefix)-len(batchSuffix))
	for i := range data {
		data[i] = 'x'
	}
	data[0], data[len(data)-1] = '"', '"'
	frame := make([]byte, 300)
	frame[0], frame[1] = 0x81, 126
	frame[2], frame[3] = byte((len(frame)-4)>>8), byte(len(frame)-4)

	b.Run("floor", func(b *testing.B) {
		cpu0 := processCPU()
		short := 0
		for range b.N {
			short += writeEach(f.fds, frame)
		}
		b.StopTimer()
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/write")
		b.ReportMetric(float64(processCPU()-cpu0)/float64(b.N*n), "cpu-ns/write")
		b.ReportMetric(float64(short)/float64(b.N), "eagain/op")
		time.Sleep(100 * time.Millisecond) // the reader catches up
	})
	b.Run("conn", func(b *testing.B) {
		b.ReportAllocs()
		obs.count.Store(0)
		cpu0 := processCPU()
		b.ResetTimer()
		for i := range b.N {
			p := &broker.Publication{Channel: "bench", Seq: uint64(i + 1), Data: data, Accepted: time.Now()}
			obs.target.Store(int64((i + 1) * n))
			for _, c := range conns {
				c.Deliver(p)
			}
			select {
			case <-obs.reached:
			case <-time.After(time.Minute):
				b.Fatalf("round %d: %d of %d writes in a minute", i, obs.count.Load(), (i+1)*n)
			}
		}
		b.StopTimer()
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/write")
		b.ReportMetric(float64(processCPU()-cpu0)/float64(b.N*n), "cpu-ns/write")
		time.Sleep(100 * time.Millisecond)
	})
}

// countingObserver counts completed writes and signals when the count
// reaches target.
type countingObserver struct {
	count, target atomic.Int64
	reached       chan struct{}
}

func (o *countingObserver) SlowConsumer(SlowReason) {}
func (o *countingObserver) Sent(s *Sent) {
	n := int64(len(s.Latencies))
	if c := o.count.Add(n); c >= o.target.Load() && c-n < o.target.Load() {
		select {
		case o.reached <- struct{}{}:
		default:
		}
	}
}

// upgradeOnto makes a Conn of the server end of an established socket, as
// Upgrade does (the handshake's response goes to the peer, which discards
// it).
func upgradeOnto(tb testing.TB, nc net.Conn, opts *Options) *Conn {
	tb.Helper()
	r, err := http.NewRequest(http.MethodGet, "http://x/ws", nil)
	if err != nil {
		tb.Fatal(err)
	}
	r.Header.Set("Connection", "Upgrade")
	r.Header.Set("Upgrade", "websocket")
	r.Header.Set("Sec-WebSocket-Version", "13")
	r.Header.Set("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
	up := websocket.Upgrader{ReadBufferSize: 512, WriteBufferSize: 512, CheckOrigin: func(*http.Request) bool { return true }}
	c, err := Upgrade(&up, hijacker{nc: nc}, r, opts)
	if err != nil {
		tb.Fatalf("upgrade: %v", err)
	}
	return c
}

package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
)

// stampKey marks the publisher's send time (unix nanoseconds) in an object.
// Nothing in herald's envelope has that key, so counting it counts
// notifications without decoding the frame.
const stampKey = `"sent_ns":`

const shards = 64

// fleet is every client of a run. Counters are sharded by client index so
// that thousands of readers do not fight over one cache line.
type fleet struct {
	clients   []*client
	delivered [shards]paddedCounter
	frames    [shards]paddedCounter // onNotificationReceived frames
	latency   [shards]histogram
	wg        sync.WaitGroup

	// dropped counts clients whose connection ended before the run did.
	dropped    atomic.Int64
	closeMu    sync.Mutex
	closeCodes map[int]int
	stopping   atomic.Bool
	raw        *rawReaders // the epoll reader's state, if it is the reader
	readPause  time.Duration
	// answer, if set, is what a client sends back for a text frame (nil:
	// nothing): Centrifugo's pings are text messages (centrifugo.go).
	answer func(frame []byte) []byte

	// nodeOf is the node (index into options.URLs) of each client index;
	// nodeDelivered counts deliveries per node. Empty in tests that build
	// a fleet by hand.
	nodeOf        []int
	nodeDelivered []paddedCounter
}

type paddedCounter struct {
	n atomic.Int64
	_ [56]byte
}

type client struct {
	index   int
	node    int
	channel string
	ws      *websocket.Conn
}

func (f *fleet) deliveredTotal() int64 { return total(&f.delivered) }

func total(cs *[shards]paddedCounter) int64 {
	var n int64
	for i := range cs {
		n += cs[i].n.Load()
	}
	return n
}

func channelName(mode string, i int) string {
	if mode == "personal" {
		return "bench-" + strconv.Itoa(i)
	}
	return "bench"
}

// wsURL is the WebSocket endpoint of a node's base URL, with the token.
func wsURL(base, token string) string {
	u, _ := url.Parse(base)
	u.Scheme = strings.Replace(u.Scheme, "http", "ws", 1)
	u.Path = "/ws"
	u.RawQuery = "token=" + url.QueryEscape(token)
	return u.String()
}

// newFleet assigns the clients to the client nodes round-robin: client i
// connects to clientNodes[i % len(clientNodes)].
func newFleet(o options, clientNodes []int) *fleet {
	f := &fleet{
		closeCodes:    map[int]int{},
		nodeOf:        make([]int, o.Clients),
		nodeDelivered: make([]paddedCounter, len(o.URLs)),
	}
	for i := range f.nodeOf {
		f.nodeOf[i] = clientNodes[i%len(clientNodes)]
	}
	return f
}

// reset forgets every delivery counted so far (after a warm-up, once its
// deliveries are all in).
func (f *fleet) reset() {
	for i := range f.delivered {
		f.delivered[i].n.Store(0)
		f.frames[i].n.Store(0)
		for b := range f.latency[i].counts {
			f.latency[i].counts[b].Store(0)
		}
		f.latency[i].max.Store(0)
	}
	for i := range f.nodeDelivered {
		f.nodeDelivered[i].n.Store(0)
	}
}

// nodeCounts is how many clients connected to each node and how many
// notifications each node delivered to them.
func (f *fleet) nodeCounts() (clients, delivered []int64) {
	clients = make([]int64, len(f.nodeDelivered))
	delivered = make([]int64, len(f.nodeDelivered))
	for _, c := range f.clients {
		clients[c.node]++
	}
	for i := range f.nodeDelivered {
		delivered[i] = f.nodeDelivered[i].n.Load()
	}
	return clients, delivered
}

// connect opens and subscribes up to n clients at most rate per second,
// within timeout, spread over the client nodes. It returns the fleet of
// those that made it and the errors of the others (the first few, with a
// count).
func connect(ctx context.Context, o options, token string, clientNodes []int) (*fleet, int, []string) {
	wsURLs := make([]string, len(o.URLs))
	for i, base := range o.URLs {
		wsURLs[i] = wsURL(base, token)
	}
	dialer := websocket.Dialer{HandshakeTimeout: 10 * time.Second, ReadBufferSize: 4096, WriteBufferSize: 512}

	ctx, cancel := context.WithTimeout(ctx, o.Connect)
	defer cancel()
	f := newFleet(o, clientNodes)
	dial := func(i int) (*client, error) {
		return dialAndSubscribe(ctx, &dialer, wsURLs[f.nodeOf[i]], i, channelName(o.Mode, i))
	}
	if o.Server == serverCentrifugo {
		f.answer = centrifugoPong
		dial = func(i int) (*client, error) {
			return centrifugoDialAndSubscribe(ctx, &dialer, centrifugoWSURL(o.URLs[f.nodeOf[i]]), token, i, channelName(o.Mode, i))
		}
	}
	slots := make([]*client, o.Clients)
	var (
		errMu    sync.Mutex
		errs     []string
		failures int
	)
	work := make(chan int)
	var dialers sync.WaitGroup
	for range o.Dialers {
		dialers.Add(1)
		go func() {
			defer dialers.Done()
			for i := range work {
				c, err := dial(i)
				if err != nil {
					errMu.Lock()
					failures++
					if len(errs) < 5 {
						errs = append(errs, err.Error())
					}
					errMu.Unlock()
					continue
				}
				c.node = f.nodeOf[i]
				slots[i] = c
			}
		}()
	}
	interval := time.Second / time.Duration(o.ConnectRate)
	start := time.Now()
feed:
	for i := range o.Clients {
		if wait := time.Until(start.Add(time.Duration(i) * interval)); wait > 0 {
			select {
			case <-time.After(wait):
			case <-ctx.Done():
				break feed
			}
		}
		select {
		case work <- i:
		case <-ctx.Done():
			break feed
		}
	}
	close(work)
	dialers.Wait()
	for _, c := range slots {
		if c != nil {
			f.clients = append(f.clients, c)
		}
	}
	if missing := o.Clients - len(f.clients) - failures; missing > 0 {
		failures += missing
		errs = append(errs, fmt.Sprintf("%d not attempted within -connect-timeout %v", missing, o.Connect))
	}
	return f, failures, errs
}

func dialAndSubscribe(ctx context.Context, d *websocket.Dialer, wsURL string, i int, channel string) (*client, error) {
	ws, _, err := d.DialContext(ctx, wsURL, nil)
	if err != nil {
		return nil, fmt.Errorf("client %d: dial: %w", i, err)
	}
	req := `{"jsonrpc":"2.0","id":1,"method":"subscribe","params":{"channel":"` + channel + `"}}`
	_ = ws.SetWriteDeadline(time.Now().Add(10 * time.Second))
	if err := ws.WriteMessage(websocket.TextMessage, []byte(req)); err != nil {
		ws.Close()
		return nil, fmt.Errorf("client %d: subscribe: %w", i, err)
	}
	_ = ws.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, reply, err := ws.ReadMessage()
	if err != nil {
		ws.Close()
		return nil, fmt.Errorf("client %d: subscribe reply: %w", i, err)
	}
	if !bytes.Contains(reply, []byte(`"result"`)) {
		ws.Close()
		return nil, fmt.Errorf("client %d: subscribe refused: %.200s", i, reply)
	}
	_ = ws.SetReadDeadline(time.Time{})
	_ = ws.SetWriteDeadline(time.Time{})
	return &client{index: i, channel: channel, ws: ws}, nil
}

// start reads every client until stop: with a goroutine and gorilla's
// reader per client, or (reader "epoll") with raw sockets polled by a
// goroutine per two processors, which costs the machine about half as much CPU per
// frame and so leaves more of it to the server being measured.
func (f *fleet) start(reader string) error {
	if reader == "epoll" {
		return f.startEpoll()
	}
	f.startGorilla()
	return nil
}

func (f *fleet) startGorilla() {
	for _, c := range f.clients {
		f.wg.Add(1)
		go func() {
			defer f.wg.Done()
			f.read(c)
		}()
	}
}

// read counts the notifications of each frame and the latency of each,
// from the send time in its object to the frame's arrival.
func (f *fleet) read(c *client) {
	var buf []byte
	for {
		_, r, err := c.ws.NextReader()
		if err != nil {
			code := -1
			var ce *websocket.CloseError
			if errors.As(err, &ce) {
				code = ce.Code
			}
			f.dropOut(code)
			return
		}
		buf, err = readAll(r, buf[:0])
		if err != nil {
			continue // the next NextReader reports the broken connection
		}
		f.count(c.index, buf, time.Now().UnixNano())
		if f.answer != nil {
			if reply := f.answer(buf); reply != nil {
				_ = c.ws.WriteMessage(websocket.TextMessage, reply) // a failed write shows as the next read's error
			}
		}
	}
}

// count records the notifications of one frame that arrived at now (unix
// ns): how many, and the latency of each from the send time in its object.
func (f *fleet) count(index int, frame []byte, now int64) {
	n := int64(0)
	hist := &f.latency[index%shards]
	for {
		k := bytes.Index(frame, []byte(stampKey))
		if k < 0 {
			break
		}
		frame = frame[k+len(stampKey):]
		var sent int64
		end := 0
		for end < len(frame) && frame[end] >= '0' && frame[end] <= '9' {
			sent = sent*10 + int64(frame[end]-'0')
			end++
		}
		if end > 0 {
			hist.record(now - sent)
			n++
		}
	}
	if n > 0 {
		f.delivered[index%shards].n.Add(n)
		f.frames[index%shards].n.Add(1)
		if index < len(f.nodeOf) {
			f.nodeDelivered[f.nodeOf[index]].n.Add(n)
		}
	}
}

// dropOut counts a client whose connection ended before the run did, by
// close code (-1: none).
func (f *fleet) dropOut(code int) {
	if f.stopping.Load() {
		return
	}
	f.dropped.Add(1)
	f.closeMu.Lock()
	f.closeCodes[code]++
	f.closeMu.Unlock()
}

// readAll reads r into buf, reusing its space across frames.
func readAll(r io.Reader, buf []byte) ([]byte, error) {
	if cap(buf) == 0 {
		buf = make([]byte, 0, 2048)
	}
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return buf, err
		}
	}
}

// stop closes every client and waits for the readers, at most timeout.
func (f *fleet) stop(timeout time.Duration) {
	if !f.stopping.CompareAndSwap(false, true) {
		return
	}
	for _, c := range f.clients {
		_ = c.ws.Close()
	}
	f.stopRaw()
	done := make(chan struct{})
	go func() { f.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(timeout):
	}
}

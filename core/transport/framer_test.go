package transport

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/require"
)

// clientFrame is a masked client frame (RFC 6455 section 5.2).
func clientFrame(fin bool, op byte, payload []byte) []byte {
	b0 := op
	if fin {
		b0 |= 0x80
	}
	var h []byte
	switch n := len(payload); {
	case n <= 125:
		h = []byte{b0, 0x80 | byte(n)}
	case n <= 0xffff:
		h = []byte{b0, 0x80 | 126, byte(n >> 8), byte(n)}
	default:
		h = []byte{b0, 0x80 | 127}
		h = binary.BigEndian.AppendUint64(h, uint64(n))
	}
	key := [4]byte{0x12, 0x34, 0x56, 0x78}
	h = append(h, key[:]...)
	for i, c := range payload {
		h = append(h, c^key[i&3])
	}
	return h
}

// chunkConn is a socket whose reads return at most k bytes: a stream split
// at every k-byte boundary. Its reads past the end fail with io.EOF; its
// non-blocking reads (tryRead) say there is nothing (an idle socket).
type chunkConn struct {
	r *bytes.Reader
	k int
	w bytes.Buffer
}

func (c *chunkConn) Read(p []byte) (int, error) {
	if len(p) > c.k {
		p = p[:c.k]
	}
	return c.r.Read(p)
}

func (c *chunkConn) tryRead(p []byte) (int, error, bool) {
	if c.r.Len() == 0 {
		return 0, nil, true
	}
	n, err := c.Read(p)
	return n, err, false
}

func (c *chunkConn) Write(p []byte) (int, error)      { return c.w.Write(p) }
func (c *chunkConn) Close() error                     { return nil }
func (c *chunkConn) LocalAddr() net.Addr              { return &net.TCPAddr{} }
func (c *chunkConn) RemoteAddr() net.Addr             { return &net.TCPAddr{} }
func (c *chunkConn) SetDeadline(time.Time) error      { return nil }
func (c *chunkConn) SetReadDeadline(time.Time) error  { return nil }
func (c *chunkConn) SetWriteDeadline(time.Time) error { return nil }

// hijacker is the ResponseWriter of a request upgraded onto nc.
type hijacker struct {
	http.ResponseWriter
	nc net.Conn
}

func (h hijacker) Header() http.Header { return http.Header{} }
func (h hijacker) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	return h.nc, bufio.NewReadWriter(bufio.NewReader(eofReader{}), bufio.NewWriter(h.nc)), nil
}

type eofReader struct{}

func (eofReader) Read([]byte) (int, error) { return 0, io.EOF }

// serverWS is gorilla's server end of nc, as Upgrade makes it.
func serverWS(t testing.TB, nc net.Conn, readBuf int) *websocket.Conn {
	r, err := http.NewRequest(http.MethodGet, "http://x/ws", nil)
	require.NoError(t, err)
	r.Header.Set("Connection", "Upgrade")
	r.Header.Set("Upgrade", "websocket")
	r.Header.Set("Sec-WebSocket-Version", "13")
	r.Header.Set("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
	up := websocket.Upgrader{ReadBufferSize: readBuf, CheckOrigin: func(*http.Request) bool { return true }}
	ws, err := up.Upgrade(hijacker{nc: nc}, r, nil)
	require.NoError(t, err)
	return ws
}

// readResult is what a reader got from a stream: its messages, the pings
// and pongs it saw, and how it ended.
type readResult struct {
	msgs  []string // "t:payload" or "b:payload"
	pings []string
	pongs int
	err   string
}

// readDirect reads the stream with gorilla alone.
func readDirect(t testing.TB, stream []byte, k int) readResult {
	var res readResult
	nc := &chunkConn{r: bytes.NewReader(stream), k: k}
	ws := serverWS(t, nc, 128)
	ws.SetPingHandler(func(s string) error { res.pings = append(res.pings, s); return nil })
	ws.SetPongHandler(func(string) error { res.pongs++; return nil })
	ws.SetCloseHandler(func(int, string) error { return nil })
	for {
		typ, msg, err := ws.ReadMessage()
		if err != nil {
			res.err = err.Error()
			return res
		}
		res.msgs = append(res.msgs, fmt.Sprintf("%d:%s", typ, msg))
	}
}

// readFramed reads the stream with gorilla over a framer, as a Conn read
// on readiness does: each message only once more says one waits. It
// checks after each message that gorilla holds nothing beyond it (handed
// is what the framer gave gorilla; ends the offsets, in bytes handed to
// gorilla, where messages end) and reports whether more ever blocked
// (it may only for a frame the peer had begun).
func readFramed(t testing.TB, stream []byte, k int, ends []int) readResult {
	var res readResult
	nc := &chunkConn{r: bytes.NewReader(stream), k: k}
	f := &framer{src: nc, tryRead: nc.tryRead}
	f.ping = func(p []byte) { res.pings = append(res.pings, string(p)) }
	f.pong = func() { res.pongs++ }
	cc := &countConn{chunkConn: nc, f: f}
	ws := serverWS(t, cc, 128)
	ws.SetPingHandler(func(s string) error { t.Errorf("gorilla saw a valid ping %q", s); return nil })
	ws.SetPongHandler(func(string) error { t.Error("gorilla saw a valid pong"); return nil })
	ws.SetCloseHandler(func(int, string) error { return nil })
	cc.armed = true
	for i := 0; ; i++ {
		if !f.more() {
			require.Zero(t, nc.r.Len(), "more said nothing waits with input left")
			require.Nil(t, f.buf, "an idle framer holds no buffer")
			res.err = "idle"
			return res
		}
		typ, msg, err := ws.ReadMessage()
		if err != nil {
			res.err = err.Error()
			return res
		}
		res.msgs = append(res.msgs, fmt.Sprintf("%d:%s", typ, msg))
		if ends != nil {
			require.Equal(t, ends[i], cc.handed, "message %d: gorilla was handed bytes past its end", i)
			require.Zero(t, f.rem)
		}
	}
}

// countConn hands gorilla the framer's bytes and counts them.
type countConn struct {
	*chunkConn
	f      *framer
	armed  bool // the handshake is written
	handed int
}

func (c *countConn) Read(p []byte) (int, error) {
	n, err := c.f.Read(p)
	c.handed += n
	return n, err
}

// testStream is a client's stream: text and binary messages of every
// length encoding, some in fragments, with pings and pongs between
// messages and between fragments. ends are where each message ends in the
// bytes gorilla is handed (control frames left out: the framer takes them).
func testStream(rng *rand.Rand, messages int, sizes ...int) (stream []byte, ends []int, want readResult) {
	handed := 0
	control := func() {
		switch rng.IntN(4) {
		case 0:
			p := fmt.Sprintf("p%d", rng.IntN(1000))
			stream = append(stream, clientFrame(true, websocket.PingMessage, []byte(p))...)
			want.pings = append(want.pings, p)
		case 1:
			stream = append(stream, clientFrame(true, websocket.PongMessage, bytes.Repeat([]byte("o"), rng.IntN(126)))...)
			want.pongs++
		}
	}
	if sizes == nil {
		sizes = []int{0, 1, 7, 125, 126, 300, 4095, 4096, 4097, 65535, 65536, 70000}
	}
	for range messages {
		control()
		n := sizes[rng.IntN(len(sizes))]
		payload := make([]byte, n)
		for i := range payload {
			payload[i] = 'a' + byte(rng.IntN(26))
		}
		typ := websocket.TextMessage
		if rng.IntN(5) == 0 {
			typ = websocket.BinaryMessage
		}
		frags := 1 + rng.IntN(3)
		rest, op := payload, byte(typ)
		for i := range frags {
			part := rest
			if i < frags-1 {
				part = rest[:rng.IntN(len(rest)+1)]
			}
			rest = rest[len(part):]
			fr := clientFrame(i == frags-1, op, part)
			stream = append(stream, fr...)
			handed += len(fr)
			op = 0 // continuation
			if i < frags-1 {
				control()
			}
		}
		ends = append(ends, handed)
		want.msgs = append(want.msgs, fmt.Sprintf("%d:%s", typ, payload))
	}
	return stream, ends, want
}

// gorilla over the framer reads what gorilla alone reads, whatever the
// socket's reads return (split at every byte boundary, or a few bytes at a
// time, or all at once), and holds nothing past a message once it has
// returned it; pings and pongs (between messages and between a message's
// fragments) are the framer's; with only a pong left, more says nothing
// waits.
func TestFramerReadsAsGorillaDoes(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for round := range 16 {
		// Byte by byte (or nearly) for small messages; every length
		// encoding, with larger reads.
		sizes, ks := []int{0, 1, 7, 125, 126, 300}, []int{1, 2, 3, 5, 13}
		if round%2 == 1 {
			sizes, ks = nil, []int{131, 1000, 1 << 20}
		}
		stream, ends, want := testStream(rng, 8, sizes...)
		// A trailing pong alone: consumed, and the reader goes idle.
		stream = append(stream, clientFrame(true, websocket.PongMessage, nil)...)
		want.pongs++
		for _, k := range ks {
			direct := readDirect(t, stream, k)
			framed := readFramed(t, stream, k, ends)
			require.Equal(t, want.msgs, direct.msgs, "round %d k %d: gorilla alone", round, k)
			require.Equal(t, want.msgs, framed.msgs, "round %d k %d", round, k)
			require.Equal(t, want.pings, direct.pings)
			require.Equal(t, want.pings, framed.pings, "round %d k %d", round, k)
			require.Equal(t, want.pongs, direct.pongs)
			require.Equal(t, want.pongs, framed.pongs, "round %d k %d", round, k)
			require.NotEmpty(t, direct.err)
			require.Equal(t, "idle", framed.err)
		}
	}
}

// Pipelined frames arriving in one read are handed out one message at a
// time, and more says each next one waits without reading the socket.
func TestFramerPipelinedFrames(t *testing.T) {
	var stream []byte
	for i := range 50 {
		stream = append(stream, clientFrame(true, websocket.TextMessage, fmt.Appendf(nil, `{"id":%d}`, i))...)
	}
	got := readFramed(t, stream, len(stream), nil)
	require.Len(t, got.msgs, 50)
	for i, m := range got.msgs {
		require.Equal(t, fmt.Sprintf(`1:{"id":%d}`, i), m)
	}
}

// What the framer does not take (close frames, control frames that are
// not valid, unmasked frames, reserved opcodes) reaches gorilla, which
// fails as it would reading the socket itself.
func TestFramerPassesWhatItDoesNotTake(t *testing.T) {
	unmasked := clientFrame(true, websocket.PingMessage, []byte("x"))
	unmasked[1] &^= 0x80
	unmasked = append(unmasked[:2], []byte("x")...)
	longPing := clientFrame(true, websocket.PingMessage, bytes.Repeat([]byte("x"), 126))
	fragPing := clientFrame(false, websocket.PingMessage, []byte("x"))
	rsvPong := clientFrame(true, websocket.PongMessage, nil)
	rsvPong[0] |= 0x40
	for name, bad := range map[string][]byte{
		"close":     clientFrame(true, websocket.CloseMessage, websocket.FormatCloseMessage(1000, "bye")),
		"unmasked":  unmasked,
		"long ping": longPing,
		"frag ping": fragPing,
		"rsv pong":  rsvPong,
		"opcode 3":  clientFrame(true, 3, nil),
		"bad len":   {0x81, 0x80 | 127, 0x80, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4},
	} {
		stream := append(clientFrame(true, websocket.TextMessage, []byte("a")), bad...)
		stream = append(stream, clientFrame(true, websocket.TextMessage, []byte("b"))...)
		for _, k := range []int{1, 4, len(stream)} {
			direct := readDirect(t, stream, k)
			framed := readFramed(t, stream, k, nil)
			require.Equal(t, direct.msgs, framed.msgs, "%s k %d", name, k)
			require.Equal(t, direct.err, framed.err, "%s k %d", name, k)
			require.NotEmpty(t, direct.err)
		}
	}
}

// A frame cut short by the end of the stream fails as it does for gorilla
// alone.
func TestFramerTruncatedStream(t *testing.T) {
	stream, _, _ := testStream(rand.New(rand.NewPCG(3, 4)), 6, 0, 5, 125, 126, 200)
	for cut := 1; cut < len(stream); cut += 1 + cut/7 {
		s := stream[:cut]
		direct := readDirect(t, s, 3)
		framed := readFramedEOF(t, s, 3)
		require.Equal(t, direct.msgs, framed.msgs, "cut %d", cut)
		require.Equal(t, direct.err, framed.err, "cut %d", cut)
	}
}

// readFramedEOF reads through a framer with blocking reads only (a reader
// goroutine's way): the socket's end is an EOF.
func readFramedEOF(t testing.TB, stream []byte, k int) readResult {
	var res readResult
	nc := &chunkConn{r: bytes.NewReader(stream), k: k}
	f := &framer{src: nc}
	f.ping = func(p []byte) { res.pings = append(res.pings, string(p)) }
	f.pong = func() { res.pongs++ }
	ws := serverWS(t, &countConn{chunkConn: nc, f: f}, 128)
	ws.SetCloseHandler(func(int, string) error { return nil })
	for {
		typ, msg, err := ws.ReadMessage()
		if err != nil {
			res.err = err.Error()
			return res
		}
		res.msgs = append(res.msgs, fmt.Sprintf("%d:%s", typ, msg))
	}
}

// FuzzFramer: whatever a client sends, gorilla over the framer reads the
// messages gorilla alone reads and fails where it fails; the framer's
// pings are those gorilla alone saw.
func FuzzFramer(f *testing.F) {
	var stream []byte
	for _, fr := range [][]byte{
		clientFrame(true, 1, []byte(`{"id":1}`)), clientFrame(true, 9, []byte("hi")),
		clientFrame(false, 2, bytes.Repeat([]byte("b"), 130)), clientFrame(true, 10, nil),
		clientFrame(true, 0, []byte("end")), clientFrame(true, 1, nil),
	} {
		stream = append(stream, fr...)
	}
	f.Add(stream, uint8(1))
	f.Add(stream, uint8(7))
	f.Add(append(clientFrame(false, 1, []byte("ab")), append(clientFrame(true, 9, []byte("p")), clientFrame(true, 0, []byte("c"))...)...), uint8(2))
	f.Add(clientFrame(true, 10, nil), uint8(1))
	f.Add(clientFrame(true, 8, []byte{3, 232}), uint8(3))
	f.Add([]byte{0x81, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, uint8(5))
	f.Fuzz(func(t *testing.T, stream []byte, k uint8) {
		if len(stream) > 1<<12 {
			return
		}
		chunk := int(k%64) + 1
		direct := readDirect(t, stream, chunk)
		framed := readFramedEOF(t, stream, chunk)
		if !equalResults(direct, framed) {
			t.Fatalf("gorilla alone %+v\nover the framer %+v", direct, framed)
		}
	})
}

func equalResults(a, b readResult) bool {
	return fmt.Sprint(a.msgs) == fmt.Sprint(b.msgs) && fmt.Sprint(a.pings) == fmt.Sprint(b.pings) &&
		a.pongs == b.pongs && a.err == b.err
}

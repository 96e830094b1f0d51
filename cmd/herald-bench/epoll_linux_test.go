//go:build linux

package main

import (
	"encoding/binary"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/heraldhq/herald/internal/wsepoll"
	"github.com/stretchr/testify/require"
)

// serverFrame is an unmasked, unfragmented frame as herald writes it.
func serverFrame(op byte, payload string) []byte {
	b := []byte{0x80 | op}
	switch n := len(payload); {
	case n <= 125:
		b = append(b, byte(n))
	case n <= 0xffff:
		b = append(b, 126, 0, 0)
		binary.BigEndian.PutUint16(b[2:], uint16(n))
	default:
		b = append(b, 127, 0, 0, 0, 0, 0, 0, 0, 0)
		binary.BigEndian.PutUint64(b[2:], uint64(n))
	}
	return append(b, payload...)
}

// However the stream is cut into reads, whole frames are counted once and
// the unfinished one waits for the rest: the epoll reader's client, fed as
// its poller feeds it (internal/wsepoll's stream, one Feed a read).
func TestEpollClientCountsAcrossEveryCut(t *testing.T) {
	pad := strings.Repeat("x", 70_000) // a 64-bit length
	stream := append(serverFrame(1, batchOf(100, 200)), serverFrame(1, batchOf(300))...)
	stream = append(stream, serverFrame(1, `{"pad":"`+strings.Repeat("y", 300)+`","o":{`+stampKey+`400}}`)...) // 16-bit length
	stream = append(stream, serverFrame(1, `{"pad":"`+pad+`","o":{`+stampKey+`500}}`)...)
	stream = append(stream, serverFrame(1, `{"jsonrpc":"2.0","id":1,"result":"pong"}`)...)
	for _, cut := range []int{1, 2, 3, 7, 100, 333, 4096, len(stream)} {
		f := &fleet{closeCodes: map[int]int{}}
		c := &rawClient{f: f}
		var s wsepoll.Stream
		for off := 0; off < len(stream); off += cut {
			require.NoError(t, s.Feed(stream[off:min(off+cut, len(stream))], func(fr wsepoll.Frame) error {
				require.Nil(t, c.Frame(fr, 1000), "herald is not answered")
				return nil
			}))
		}
		require.Zero(t, s.Pending(), "cut %d", cut)
		require.Equal(t, int64(5), f.deliveredTotal(), "cut %d", cut)
		require.Equal(t, int64(4), total(&f.frames), "cut %d", cut)
		counts, maxNs := merged(f.latency[:])
		var n uint64
		for _, c := range counts {
			n += c
		}
		require.Equal(t, uint64(5), n)
		require.Equal(t, int64(900), maxNs, "latency is arrival minus the stamp")
	}
}

// Centrifugo's pings are text frames the client answers with {}.
func TestEpollClientAnswersCentrifugoPings(t *testing.T) {
	f := &fleet{closeCodes: map[int]int{}, answer: centrifugoPong}
	c := &rawClient{f: f}
	require.Equal(t, "{}", string(c.Frame(wsepoll.Frame{Op: wsepoll.OpText, Fin: true, Payload: []byte("{}")}, 10)))
	push := `{"push":{"pub":{"data":{` + stampKey + `5}}}}`
	require.Nil(t, c.Frame(wsepoll.Frame{Op: wsepoll.OpText, Fin: true, Payload: []byte(push)}, 10))
	require.Equal(t, int64(1), f.deliveredTotal())
}

// A connection that ends before the run is counted by its close code, -1
// when there was no close frame; once the fleet stops, not at all.
func TestEpollClientCountsDropsByCloseCode(t *testing.T) {
	f := &fleet{closeCodes: map[int]int{}}
	c := &rawClient{f: f}
	c.Ended(fmt.Errorf("client 0: %w", &wsepoll.CloseError{Code: 4008, Reason: "slow consumer"}))
	c.Ended(io.EOF)
	c.Ended(fmt.Errorf("frame: %w", wsepoll.ErrTooBig))
	require.Equal(t, int64(3), f.dropped.Load())
	require.Equal(t, map[int]int{4008: 1, -1: 2}, f.closeCodes)
	f.stopping.Store(true)
	c.Ended(io.EOF)
	require.Equal(t, int64(3), f.dropped.Load())
}

func FuzzEpollClient(f *testing.F) {
	f.Add(serverFrame(1, batchOf(5, 6)))
	f.Add(serverFrame(8, "\x03\xe8"))
	f.Add([]byte{0x81, 0xff, 0, 0, 0, 0, 0, 0, 0, 1})
	f.Add([]byte{0x81, 0xfe, 0, 3})
	f.Fuzz(func(t *testing.T, data []byte) {
		fl := &fleet{closeCodes: map[int]int{}, answer: centrifugoPong}
		c := &rawClient{f: fl}
		n, _ := wsepoll.Parse(data, 0, func(fr wsepoll.Frame) error {
			if reply := c.Frame(fr, 1); reply != nil {
				require.Equal(t, "{}", string(reply))
			}
			return nil
		})
		require.LessOrEqual(t, n, len(data))
	})
}

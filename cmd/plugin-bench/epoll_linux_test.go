//go:build linux

package main

import (
	"encoding/binary"
	"fmt"
	"testing"

	"github.com/heraldhq/herald/internal/wsepoll"
	"github.com/stretchr/testify/require"
)

// serverFrame is a text frame as a server sends it: unmasked, with the
// shortest length encoding.
func serverFrame(payload string) []byte {
	n := len(payload)
	var b []byte
	switch {
	case n < 126:
		b = []byte{0x81, byte(n)}
	case n < 1<<16:
		b = []byte{0x81, 126, 0, 0}
		binary.BigEndian.PutUint16(b[2:], uint16(n))
	default:
		b = make([]byte, 10)
		b[0], b[1] = 0x81, 127
		binary.BigEndian.PutUint64(b[2:], uint64(n))
	}
	return append(b, payload...)
}

func notifications(stamps ...int64) string {
	s := `{"jsonrpc":"2.0","method":"onNotificationReceived","params":{"notifications":[`
	for i, t := range stamps {
		if i > 0 {
			s += ","
		}
		s += fmt.Sprintf(`{"id":"x","channel":"emitter:1","seq":%d,"event":"tick","object_type":"bench","object":{"emit_ns":%d}}`, i+1, t)
	}
	return s + "]}}"
}

// Frames split anywhere, in every length encoding, are each taken once,
// whole, by the epoll reader (internal/wsepoll's stream, as its poller
// feeds it each read): every stamp counted, none twice.
func TestEpollClientTakesFramesSplitAnywhere(t *testing.T) {
	big := make([]int64, 400) // over 126 bytes and over 64 KiB in the second frame
	for i := range big {
		big[i] = 1000
	}
	huge := make([]int64, 1200)
	for i := range huge {
		huge[i] = 1000
	}
	var stream []byte
	stream = append(stream, serverFrame(notifications(900))...)
	stream = append(stream, serverFrame(notifications(big...))...)
	stream = append(stream, serverFrame(notifications(huge...))...)
	stream = append(stream, serverFrame(`{"jsonrpc":"2.0","id":1,"result":{}}`)...)
	want := int64(1 + len(big) + len(huge))
	require.Greater(t, len(serverFrame(notifications(huge...))), 1<<16)

	for _, cut := range []int{1, 2, 3, 5, 64, 127, 4096, len(stream) - 1} {
		c := &client{}
		var s wsepoll.Stream
		take := func(fr wsepoll.Frame) error {
			require.Nil(t, c.Frame(fr, 2000), "no reply")
			return nil
		}
		for off := 0; off < len(stream); off += cut {
			require.NoError(t, s.Feed(stream[off:min(off+cut, len(stream))], take), "cut %d", cut)
		}
		require.Equal(t, want, c.count.Load(), "cut %d", cut)
		require.Zero(t, s.Pending(), "cut %d", cut)
		require.Len(t, c.latencies, int(want))
		require.Equal(t, int64(1100), c.latencies[0])
		require.Equal(t, int64(1000), c.latencies[1])
	}
}

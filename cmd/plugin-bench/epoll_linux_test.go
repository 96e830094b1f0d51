//go:build linux

package main

import (
	"encoding/binary"
	"fmt"
	"syscall"
	"testing"

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

// Frames split at every possible point, in every length encoding, are
// each taken once, whole: every stamp counted, none twice.
func TestParseTakesFramesSplitAnywhere(t *testing.T) {
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
		c := &client{fd: -1}
		for off := 0; off < len(stream); off += cut {
			c.in = append(c.in, stream[off:min(off+cut, len(stream))]...)
			require.True(t, c.parse(2000), "cut %d", cut)
		}
		require.Equal(t, want, c.count.Load(), "cut %d", cut)
		require.Empty(t, c.in, "cut %d", cut)
		require.Len(t, c.latencies, int(want))
		require.Equal(t, int64(1100), c.latencies[0])
		require.Equal(t, int64(1000), c.latencies[1])
	}
}

func TestParseRefusesWhatAServerMustNotSend(t *testing.T) {
	masked := []byte{0x81, 0x80 | 2, 1, 2, 3, 4, 'h', 'i'}
	require.False(t, (&client{in: masked}).parse(0))
	tooBig := []byte{0x81, 127, 0, 0, 0, 0, 0xff, 0, 0, 0}
	require.False(t, (&client{in: tooBig}).parse(0))
	closing := []byte{0x88, 0}
	require.False(t, (&client{in: closing}).parse(0))
}

func FuzzFrameHeader(f *testing.F) {
	f.Add(serverFrame("hello"))
	f.Add(serverFrame(notifications(1, 2, 3)))
	f.Add([]byte{0x81, 126, 1})
	f.Add([]byte{0x81, 127, 0, 0, 0, 0, 0, 0, 0, 1})
	f.Fuzz(func(t *testing.T, b []byte) {
		_, n, h, complete, ok := frameHeader(b)
		if complete && (!ok || h+n > len(b) || n < 0) {
			t.Fatalf("complete frame of %d+%d bytes in %d", h, n, len(b))
		}
		c := &client{fd: -1, in: append([]byte(nil), b...)} // a pong goes nowhere
		_ = c.parse(0)                                      // never panics
	})
}

// herald pings a connection that sent nothing for server.ping_interval and
// closes it if no pong comes: the reader answers as a client must, masked.
func TestParseAnswersPing(t *testing.T) {
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM, 0)
	require.NoError(t, err)
	defer syscall.Close(fds[0])
	defer syscall.Close(fds[1])
	c := &client{fd: fds[0], in: []byte{0x89, 2, 'h', 'i'}}
	require.True(t, c.parse(0))
	buf := make([]byte, 64)
	n, err := syscall.Read(fds[1], buf)
	require.NoError(t, err)
	require.Equal(t, []byte{0x8a, 0x80 | 2, 0, 0, 0, 0, 'h', 'i'}, buf[:n])
}

//go:build linux

package main

import (
	"encoding/binary"
	"fmt"
	"strings"
	"testing"

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

func batchOf(stamps ...int64) string {
	var parts []string
	for _, s := range stamps {
		parts = append(parts, fmt.Sprintf(`{"channel":"bench","object":{%s%d,"n":1}}`, stampKey, s))
	}
	return `{"jsonrpc":"2.0","method":"onNotificationReceived","params":{"notifications":[` + strings.Join(parts, ",") + `]}}`
}

// However the stream is cut into reads, whole frames are counted once and
// the unfinished one waits for the rest.
func TestParseFramesAcrossEveryCut(t *testing.T) {
	pad := strings.Repeat("x", 70_000) // a 64-bit length
	stream := append(serverFrame(1, batchOf(100, 200)), serverFrame(1, batchOf(300))...)
	stream = append(stream, serverFrame(1, `{"pad":"`+strings.Repeat("y", 300)+`","o":{`+stampKey+`400}}`)...) // 16-bit length
	stream = append(stream, serverFrame(1, `{"pad":"`+pad+`","o":{`+stampKey+`500}}`)...)
	stream = append(stream, serverFrame(1, `{"jsonrpc":"2.0","id":1,"result":"pong"}`)...)
	for _, cut := range []int{1, 2, 3, 7, 100, 333, 4096, len(stream)} {
		f := &fleet{closeCodes: map[int]int{}}
		var partial []byte
		for off := 0; off < len(stream); off += cut {
			partial = append(partial, stream[off:min(off+cut, len(stream))]...)
			rest, code := f.parseFrames(0, partial, 1000, func(byte, []byte) {})
			require.Zero(t, code)
			partial = rest
		}
		require.Empty(t, partial, "cut %d", cut)
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

func TestParseFramesHandsOnPingsAndReportsTheCloseCode(t *testing.T) {
	f := &fleet{closeCodes: map[int]int{}}
	var pinged []string
	stream := append(serverFrame(9, "hb"), serverFrame(1, batchOf(1))...)
	rest, code := f.parseFrames(0, append(stream, serverFrame(8, "\x0f\xa8slow consumer")...), 10, func(op byte, p []byte) { pinged = append(pinged, fmt.Sprintf("%x %s", op, p)) })
	require.Nil(t, rest)
	require.Equal(t, 4008, code)
	require.Equal(t, int64(1), f.deliveredTotal())
	require.Equal(t, []string{"a hb"}, pinged)
}

func FuzzParseFrames(f *testing.F) {
	f.Add(serverFrame(1, batchOf(5, 6)))
	f.Add(serverFrame(8, "\x03\xe8"))
	f.Add([]byte{0x81, 0xff, 0, 0, 0, 0, 0, 0, 0, 1})
	f.Add([]byte{0x81, 0xfe, 0, 3})
	f.Fuzz(func(t *testing.T, data []byte) {
		fl := &fleet{closeCodes: map[int]int{}}
		rest, _ := fl.parseFrames(0, data, 1, func(byte, []byte) {})
		require.LessOrEqual(t, len(rest), len(data))
	})
}

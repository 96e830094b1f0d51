package wsepoll

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// serverFrame is a whole frame as a server writes it: unmasked, with the
// shortest length encoding.
func serverFrame(op Opcode, fin bool, payload string) []byte {
	b := []byte{byte(op)}
	if fin {
		b[0] |= 0x80
	}
	switch n := len(payload); {
	case n <= 125:
		b = append(b, byte(n))
	case n <= 0xffff:
		b = append(b, 126)
		b = binary.BigEndian.AppendUint16(b, uint16(n))
	default:
		b = append(b, 127)
		b = binary.BigEndian.AppendUint64(b, uint64(n))
	}
	return append(b, payload...)
}

// collect is a Feed or Parse callback that keeps a copy of every frame.
type collect []Frame

func (c *collect) each(f Frame) error {
	f.Payload = append([]byte(nil), f.Payload...)
	*c = append(*c, f)
	return nil
}

// frames is a stream of every length encoding and kind of frame a client
// sees, and the frames it holds.
func frames() ([]byte, []Frame) {
	want := []Frame{
		{OpText, true, []byte(`{"n":1}`)},
		{OpPing, true, []byte("hb")},
		{OpText, true, []byte(strings.Repeat("m", 125))},   // the longest 7-bit length
		{OpBinary, true, []byte(strings.Repeat("s", 126))}, // the shortest 16-bit one
		{OpText, false, []byte("frag")},
		{OpContinuation, true, []byte("ment")},
		{OpText, true, []byte(strings.Repeat("l", 0xffff))},  // the longest 16-bit length
		{OpText, true, []byte(strings.Repeat("h", 0x10000))}, // the shortest 64-bit one
		{OpText, true, nil},
		{OpClose, true, []byte("\x0f\xa8slow consumer")},
	}
	var stream []byte
	for _, f := range want {
		stream = append(stream, serverFrame(f.Op, f.Fin, string(f.Payload))...)
	}
	return stream, want
}

func requireFrames(t *testing.T, want, got []Frame, msgAndArgs ...any) {
	t.Helper()
	require.Len(t, got, len(want), msgAndArgs...)
	for i := range want {
		require.Equal(t, want[i].Op, got[i].Op, msgAndArgs...)
		require.Equal(t, want[i].Fin, got[i].Fin, msgAndArgs...)
		require.Equal(t, string(want[i].Payload), string(got[i].Payload), msgAndArgs...)
	}
}

func TestParseTakesSeveralFramesOfOneRead(t *testing.T) {
	stream, want := frames()
	var got collect
	n, err := Parse(stream, 0, got.each)
	require.NoError(t, err)
	require.Equal(t, len(stream), n)
	requireFrames(t, want, got)
}

// However reads cut the stream, every frame is handed on once, whole, in
// order, and the stream keeps only what belongs to the unfinished one.
func TestFeedTakesFramesCutAnywhere(t *testing.T) {
	stream, want := frames()
	feed := func(sizes func(off int) int) collect {
		var s Stream
		var got collect
		for off := 0; off < len(stream); {
			end := min(off+sizes(off), len(stream))
			require.NoError(t, s.Feed(stream[off:end], got.each))
			off = end
		}
		require.Zero(t, s.Pending())
		return got
	}
	// A read per byte: a cut at every byte boundary at once.
	requireFrames(t, want, feed(func(int) int { return 1 }), "a byte a read")
	for _, size := range []int{2, 3, 7, 10, 127, 4096, 65537} {
		requireFrames(t, want, feed(func(int) int { return size }), "reads of %d", size)
	}
	// Two reads, cut at every byte of the frames up to the 64-bit one.
	small := len(serverFrame(OpText, true, `{"n":1}`)) + 6 + 2 + 125 + 4 + 126 + 6 + 6
	for cut := 1; cut < small; cut++ {
		got := feed(func(off int) int {
			if off == 0 {
				return cut
			}
			return len(stream)
		})
		requireFrames(t, want, got, "cut at %d", cut)
	}
}

func TestParseRefusesWhatAServerMustNotSend(t *testing.T) {
	for _, c := range []struct {
		name  string
		frame []byte
		max   int
		want  error
	}{
		{"masked", []byte{0x81, 0x80 | 2, 1, 2, 3, 4, 'h', 'i'}, 0, ErrMasked},
		{"over the bound, 7-bit length", serverFrame(OpText, true, "abcdef"), 5, ErrTooBig},
		{"over the bound, 16-bit length", []byte{0x81, 126, 0x10, 0}, 0x0fff, ErrTooBig},
		{"over the default bound, 64-bit length, before its payload", []byte{0x81, 127, 0, 0, 0, 0, 1, 0, 0, 1}, 0, ErrTooBig},
		{"a length over int64", []byte{0x81, 127, 0xff, 0, 0, 0, 0, 0, 0, 0}, 0, ErrTooBig},
	} {
		t.Run(c.name, func(t *testing.T) {
			var got collect
			before := serverFrame(OpText, true, "ok")
			n, err := Parse(append(before, c.frame...), c.max, got.each)
			require.ErrorIs(t, err, c.want)
			require.Equal(t, len(before), n, "the frames before it are taken")
			require.Len(t, got, 1)
		})
	}
	// A frame exactly at the bound is taken.
	n, err := Parse(serverFrame(OpText, true, "abcde"), 5, func(Frame) error { return nil })
	require.NoError(t, err)
	require.Equal(t, 7, n)
}

func TestParseStopsAtTheCallbacksError(t *testing.T) {
	stream := append(serverFrame(OpText, true, "a"), serverFrame(OpClose, true, "\x03\xe8")...)
	stream = append(stream, serverFrame(OpText, true, "after the close")...)
	var texts []string
	n, err := Parse(stream, 0, func(f Frame) error {
		if f.Op == OpClose {
			return closeError(f.Payload)
		}
		texts = append(texts, string(f.Payload))
		return nil
	})
	var ce *CloseError
	require.ErrorAs(t, err, &ce)
	require.Equal(t, 1000, ce.Code)
	require.Equal(t, 3, n, "the close frame is not counted as taken")
	require.Equal(t, []string{"a"}, texts)
}

func TestCloseErrorCodes(t *testing.T) {
	require.Equal(t, &CloseError{Code: 1005}, closeError(nil))
	require.Equal(t, &CloseError{Code: 4008, Reason: "slow consumer"}, closeError([]byte("\x0f\xa8slow consumer")))
}

func TestAppendClientFrameIsMaskedWithAZeroKey(t *testing.T) {
	require.Equal(t, []byte{0x8a, 0x80 | 2, 0, 0, 0, 0, 'h', 'b'}, appendClientFrame(nil, OpPong, []byte("hb")))
	long := appendClientFrame(nil, OpText, []byte(strings.Repeat("x", 300)))
	require.Equal(t, []byte{0x81, 0x80 | 126, 1, 44, 0, 0, 0, 0}, long[:8])
	require.Len(t, long, 8+300)
	huge := appendClientFrame(nil, OpText, make([]byte, 0x10000))
	require.Equal(t, []byte{0x81, 0x80 | 127, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0}, huge[:14])
}

func FuzzParse(f *testing.F) {
	stream, _ := frames()
	f.Add(stream[:300], 0)
	f.Add(serverFrame(OpClose, true, "\x03\xe8"), 0)
	f.Add([]byte{0x81, 126, 1}, 0)
	f.Add([]byte{0x81, 127, 0, 0, 0, 0, 0, 0, 0, 1}, 10)
	f.Add([]byte{0x81, 0x80 | 2, 1, 2, 3, 4, 'h', 'i'}, -1)
	f.Fuzz(func(t *testing.T, b []byte, max int) {
		taken := 0
		n, err := Parse(b, max, func(fr Frame) error {
			taken += len(fr.Payload) + 2
			if len(fr.Payload) > 0 && cap(fr.Payload) > cap(b) {
				return fmt.Errorf("a payload of %d bytes outside the input", len(fr.Payload))
			}
			return nil
		})
		if err != nil && !errors.Is(err, ErrMasked) && !errors.Is(err, ErrTooBig) {
			t.Fatal(err)
		}
		require.GreaterOrEqual(t, n, 0)
		require.LessOrEqual(t, n, len(b), "more bytes taken than given")
		require.LessOrEqual(t, taken, n, "frames longer than the bytes taken")
	})
}

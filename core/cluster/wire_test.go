package cluster

import (
	"encoding/binary"
	"errors"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestRequestRoundTrip(t *testing.T) {
	t.Parallel()
	from, channel, err := decodeRequest(encodeRequest("node-1", "chat:group:2"))
	require.NoError(t, err)
	require.Equal(t, "node-1", from)
	require.Equal(t, "chat:group:2", channel)

	for _, bad := range [][]byte{nil, {}, {2, 1, 'a', 'c'}, {wireVersion}, {wireVersion, 5, 'a'}, {wireVersion, 1, 'a'}, {wireVersion, 0, 'c'}} {
		_, _, err := decodeRequest(bad)
		require.Error(t, err, "%q", bad)
	}
}

// writeAll returns every part a replyWriter produces.
func writeAll(w *replyWriter) [][]byte {
	var parts [][]byte
	for w.more() {
		parts = append(parts, append([]byte(nil), w.nextPart()...))
	}
	return parts
}

func TestReplyPartsStayUnderTheMaxAndCarryEveryUser(t *testing.T) {
	t.Parallel()
	users := []string{"alice", "bob", strings.Repeat("c", 40), "", "dave"}
	for _, max := range []int{1 << 20, 60, 48} {
		w := &replyWriter{node: "n1", count: 9, users: users, max: max}
		parts := writeAll(w)
		var got []string
		for i, p := range parts {
			require.LessOrEqual(t, len(p), max)
			h, err := decodeReply(p, func(u string) { got = append(got, u) }, nil)
			require.NoError(t, err)
			require.Equal(t, replyHeader{node: "n1", count: 9, part: i, last: i == len(parts)-1}, h)
		}
		require.Equal(t, users, got, "max %d", max)
		require.Empty(t, w.skipped)
	}

	// A user that cannot fit a part on its own is left out, not sent over the max.
	w := &replyWriter{node: "n1", count: 2, users: []string{"a", strings.Repeat("x", 100), "b"}, max: 30}
	var got []string
	for _, p := range writeAll(w) {
		require.LessOrEqual(t, len(p), 30)
		_, err := decodeReply(p, func(u string) { got = append(got, u) }, nil)
		require.NoError(t, err)
	}
	require.Equal(t, []string{"a", "b"}, got)
	require.Len(t, w.skipped, 1)

	// Nobody on the channel: one small part, still an answer.
	parts := writeAll(&replyWriter{node: "n1", max: 1 << 20})
	require.Len(t, parts, 1)
	h, err := decodeReply(parts[0], nil, nil)
	require.NoError(t, err)
	require.Equal(t, replyHeader{node: "n1", last: true}, h)
	require.Less(t, len(parts[0]), 8)
}

func TestTruncatedReplyAddsNothing(t *testing.T) {
	t.Parallel()
	parts := writeAll(&replyWriter{node: "n1", count: 2, users: []string{"alice", "bob"}, max: 1 << 20})
	full := parts[0]
	for cut := range len(full) {
		called := false
		_, err := decodeReply(full[:cut], func(string) { called = true }, nil)
		if err == nil {
			continue // a cut between two users is a shorter valid reply
		}
		require.False(t, called, "cut at %d handed out users", cut)
	}
}

// reply builds one part of a node's answer.
func reply(node string, count, part int, last bool, users ...string) []byte {
	b := appendString([]byte{wireVersion}, node)
	b = binary.AppendUvarint(b, uint64(count))
	b = binary.AppendUvarint(b, uint64(part))
	if last {
		b = append(b, 1)
	} else {
		b = append(b, 0)
	}
	for _, u := range users {
		b = appendString(b, u)
	}
	return b
}

func TestGatherCountsEachNodeOnce(t *testing.T) {
	t.Parallel()
	g := newGather("room", []string{"b", "c"}, 1, []string{"u1"})

	require.NoError(t, g.add(reply("b", 2, 0, true, "u1", "u2")))
	require.NoError(t, g.add(reply("b", 2, 0, true, "u1", "u2")), "a duplicate is ignored")
	require.NoError(t, g.add(reply("x", 50, 0, true, "intruder")), "a node not asked is ignored")
	select {
	case <-g.done:
		t.Fatal("done before c answered")
	default:
	}

	// c answers in two parts, the last one first, the first one twice.
	require.NoError(t, g.add(reply("c", 3, 1, true, "u4")))
	require.NoError(t, g.add(reply("c", 3, 0, false, "u3")))
	require.NoError(t, g.add(reply("c", 3, 0, false, "u3")))
	<-g.done

	count, users, err := g.result(nil)
	require.NoError(t, err)
	require.Equal(t, 6, count)
	require.Equal(t, []string{"u1", "u2", "u3", "u4"}, sorted(users))

	require.NoError(t, g.add(reply("c", 3, 2, true, "late")), "after the result, nothing is added")
	count, _, _ = g.result(nil)
	require.Equal(t, 6, count)
}

func TestGatherEndsWhenMissingNodesLeave(t *testing.T) {
	t.Parallel()
	g := newGather("room", []string{"b", "c"}, 0, nil)
	require.NoError(t, g.add(reply("c", 4, 0, false, "u3")))
	g.forget("b")
	select {
	case <-g.done:
		t.Fatal("done while c's answer is partial")
	default:
	}
	cause := errors.New("deadline")
	g.abort(cause)
	<-g.done
	count, users, err := g.result(nil)
	var inc *IncompleteError
	require.ErrorAs(t, err, &inc)
	require.Equal(t, []string{"c"}, inc.Missing)
	require.ErrorIs(t, err, cause)
	require.Equal(t, 4, count, "a partial answer's count is still counted once")
	require.Equal(t, []string{"u3"}, users)
}

func TestHeartbeatDecodeRefusesNonsense(t *testing.T) {
	t.Parallel()
	good := heartbeat{V: wireVersion, ID: "a", Inst: "i", EveryMS: 1000, Busy: true, Lead: true}
	h, err := decodeHeartbeat(encodeHeartbeat(good))
	require.NoError(t, err)
	require.Equal(t, good, h)
	for _, bad := range []string{`{`, `{"v":2,"id":"a","every_ms":1}`, `{"v":1,"every_ms":1}`, `{"v":1,"id":"a"}`, `{"v":1,"id":"a","every_ms":-5}`} {
		_, err := decodeHeartbeat([]byte(bad))
		require.Error(t, err, bad)
	}
}

func FuzzDecodeReply(f *testing.F) {
	for _, p := range writeAll(&replyWriter{node: "n1", count: 3, users: []string{"alice", "bob"}, max: 20}) {
		f.Add(p)
	}
	f.Add([]byte{wireVersion, 1, 'n', 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01})
	f.Fuzz(func(t *testing.T, b []byte) {
		var users []string
		h, err := decodeReply(b, func(u string) { users = append(users, u) }, nil)
		if err != nil {
			require.Empty(t, users)
			return
		}
		// What decodes says the same once re-encoded.
		var again []string
		h2, err := decodeReply(reply(h.node, h.count, h.part, h.last, users...), func(u string) { again = append(again, u) }, nil)
		require.NoError(t, err)
		require.Equal(t, h, h2)
		require.Equal(t, users, again)
	})
}

func FuzzDecodeRequest(f *testing.F) {
	f.Add(encodeRequest("node-1", "chat:group:2"))
	f.Fuzz(func(t *testing.T, b []byte) {
		from, channel, err := decodeRequest(b)
		if err != nil {
			return
		}
		from2, channel2, err := decodeRequest(encodeRequest(from, channel))
		require.NoError(t, err)
		require.Equal(t, [2]string{from, channel}, [2]string{from2, channel2})
	})
}

package cluster

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// wireVersion is the first byte of every presence message and the "v" of
// every heartbeat. A node ignores messages of another version (and logs
// them), so a rolling upgrade that changes the layout degrades presence to
// the nodes that speak the same version instead of misreading bytes.
const wireVersion = 1

// heartbeat is what a node publishes on <prefix>.nodes every interval. It
// is JSON: a few dozen bytes a second per node, worth being readable with
// `nats sub 'herald.nodes'`.
type heartbeat struct {
	V int `json:"v"`
	// ID is the node's id; Inst is random per process, so that two
	// processes configured with the same id are noticed.
	ID   string `json:"id"`
	Inst string `json:"inst"`
	// EveryMS is the sender's heartbeat interval: receivers declare it gone
	// after three of them without a word.
	EveryMS int64 `json:"every_ms"`
	// Busy is the sender's own overload state.
	Busy bool `json:"busy"`
	// Announced is the cluster busy state last announced, as the sender
	// knows it; Lead is set by the node that leads the busy signal and Ready
	// by a node whose view of the membership is complete. A node follows
	// the leader's Announced, and while its own view is still partial any
	// ready node's, so that a new leader continues from what was announced
	// instead of announcing a flip twice.
	Announced bool `json:"announced,omitempty"`
	Lead      bool `json:"lead,omitempty"`
	Ready     bool `json:"ready,omitempty"`
	// Hello asks every node to answer with its heartbeat at once (a node
	// that starts or reconnects learns the membership in one round trip).
	Hello bool `json:"hello,omitempty"`
	// Bye says the node is closing: receivers drop it at once.
	Bye bool `json:"bye,omitempty"`
}

func (h heartbeat) every() time.Duration { return time.Duration(h.EveryMS) * time.Millisecond }

func encodeHeartbeat(h heartbeat) []byte {
	b, err := json.Marshal(h)
	if err != nil {
		// A struct of strings, bools and ints always marshals.
		panic(fmt.Sprintf("cluster: marshal heartbeat: %v", err))
	}
	return b
}

func decodeHeartbeat(b []byte) (heartbeat, error) {
	var h heartbeat
	if err := json.Unmarshal(b, &h); err != nil {
		return heartbeat{}, fmt.Errorf("decode heartbeat: %w", err)
	}
	switch {
	case h.V != wireVersion:
		return heartbeat{}, fmt.Errorf("decode heartbeat: version %d, want %d", h.V, wireVersion)
	case h.ID == "":
		return heartbeat{}, errors.New("decode heartbeat: no node id")
	case h.EveryMS <= 0:
		return heartbeat{}, fmt.Errorf("decode heartbeat from %q: interval %d ms", h.ID, h.EveryMS)
	}
	return h, nil
}

// A presence request is
//
//	version (1 byte) | uvarint len(from) | from | channel
//
// and a presence reply (one per part) is
//
//	version (1 byte) | uvarint len(node) | node | uvarint count |
//	uvarint part | flags (1 byte, bit 0: last part) |
//	{ uvarint len(user) | user }...
//
// Binary rather than JSON because a reply of a large channel carries
// thousands of user ids: length-prefixed strings need no escaping and no
// second pass to decode.

var errShort = errors.New("truncated")

func encodeRequest(from, channel string) []byte {
	b := make([]byte, 0, 1+binary.MaxVarintLen64+len(from)+len(channel))
	b = append(b, wireVersion)
	b = appendString(b, from)
	return append(b, channel...)
}

func decodeRequest(b []byte) (from, channel string, err error) {
	if len(b) == 0 || b[0] != wireVersion {
		return "", "", errors.New("decode presence request: unknown version")
	}
	from, rest, err := readString(b[1:])
	if err != nil {
		return "", "", fmt.Errorf("decode presence request: sender: %w", err)
	}
	if from == "" || len(rest) == 0 {
		return "", "", errors.New("decode presence request: no sender or no channel")
	}
	return from, string(rest), nil
}

// replyHeader is the fixed part of a presence reply.
type replyHeader struct {
	node  string
	count int
	part  int
	last  bool
}

// maxParts bounds the part index a reply may carry: a node would need more
// than 65536 max-payload messages of user ids to reach it.
const maxParts = 1 << 16

// replyWriter cuts one node's answer into parts of at most max bytes. It
// reuses buf across parts: the caller publishes each part before asking for
// the next (nats.go copies the payload on Publish).
type replyWriter struct {
	node  string
	count int
	users []string
	max   int
	buf   []byte

	next    int // index into users
	part    int
	skipped []string // users that alone do not fit in a part
}

// more reports whether a part remains to be written (there is always at
// least one, possibly with no users).
func (w *replyWriter) more() bool { return w.part == 0 || w.next < len(w.users) }

// nextPart returns the next part; the slice is valid until the next call.
func (w *replyWriter) nextPart() []byte {
	b := w.buf[:0]
	b = append(b, wireVersion)
	b = appendString(b, w.node)
	b = binary.AppendUvarint(b, uint64(w.count))
	b = binary.AppendUvarint(b, uint64(w.part))
	flags := len(b)
	b = append(b, 0)
	header := len(b)
	for w.next < len(w.users) {
		u := w.users[w.next]
		size := uvarintLen(uint64(len(u))) + len(u)
		if len(b)+size > w.max {
			if len(b) == header {
				// Nothing else in this part and still too big: leave it out.
				w.skipped = append(w.skipped, u)
				w.next++
				continue
			}
			break
		}
		b = appendString(b, u)
		w.next++
	}
	if w.next >= len(w.users) {
		b[flags] = 1
	}
	w.part++
	w.buf = b
	return b
}

// decodeReply reads a reply's header, asks accept whether to take the part
// (nil: take it), and if so calls each for every user id in it.
func decodeReply(b []byte, each func(user string), accept func(replyHeader) bool) (replyHeader, error) {
	var h replyHeader
	if len(b) == 0 || b[0] != wireVersion {
		return h, errors.New("decode presence reply: unknown version")
	}
	node, rest, err := readString(b[1:])
	if err != nil {
		return h, fmt.Errorf("decode presence reply: node: %w", err)
	}
	count, n := binary.Uvarint(rest)
	if n <= 0 || count > 1<<40 {
		return h, errors.New("decode presence reply: bad count")
	}
	rest = rest[n:]
	part, n := binary.Uvarint(rest)
	if n <= 0 || part >= maxParts {
		return h, errors.New("decode presence reply: bad part index")
	}
	rest = rest[n:]
	if len(rest) == 0 {
		return h, fmt.Errorf("decode presence reply: flags: %w", errShort)
	}
	h = replyHeader{node: node, count: int(count), part: int(part), last: rest[0]&1 == 1}
	if node == "" {
		return h, errors.New("decode presence reply: no node id")
	}
	rest = rest[1:]
	// Validate the whole body before handing out any user, so that a
	// truncated message adds nothing.
	for r := rest; len(r) > 0; {
		_, next, err := readBytes(r)
		if err != nil {
			return h, fmt.Errorf("decode presence reply from %q: user: %w", node, err)
		}
		r = next
	}
	if accept != nil && !accept(h) {
		return h, nil
	}
	if each != nil {
		// One string for the whole body, users are slices of it: one
		// allocation per part instead of one per user.
		body := string(rest)
		for off := 0; off < len(rest); {
			l, n := binary.Uvarint(rest[off:])
			start := off + n
			off = start + int(l)
			each(body[start:off])
		}
	}
	return h, nil
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func readBytes(b []byte) (s, rest []byte, err error) {
	l, n := binary.Uvarint(b)
	if n <= 0 || l > uint64(len(b)-n) {
		return nil, nil, errShort
	}
	end := n + int(l)
	return b[n:end], b[end:], nil
}

func readString(b []byte) (s string, rest []byte, err error) {
	v, rest, err := readBytes(b)
	return string(v), rest, err
}

func uvarintLen(v uint64) int {
	n := 1
	for v >= 0x80 {
		v >>= 7
		n++
	}
	return n
}

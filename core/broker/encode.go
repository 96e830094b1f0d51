package broker

import (
	"strconv"

	"github.com/oklog/ulid/v2"

	"github.com/heraldhq/herald/core/rpc"
)

// Encode appends n as a client receives it, with its id, seq and timestamp
// (epoch milliseconds). Field order is fixed so that encoded bytes are stable.
//
// dst grows at most once, by EncodedLen: appending field by field to a
// buffer sized by guess copied every publication once or twice.
func Encode(dst []byte, n *Notification, id string, seq uint64, timestampMs int64) []byte {
	if need := EncodedLen(n, id, seq, timestampMs); cap(dst)-len(dst) < need {
		grown := make([]byte, len(dst), len(dst)+need)
		copy(grown, dst)
		dst = grown
	}
	return appendEncoded(dst, n, id, seq, timestampMs)
}

// appendEncoded is Encode into dst as it is.
func appendEncoded(dst []byte, n *Notification, id string, seq uint64, timestampMs int64) []byte {
	dst = append(dst, `{"id":`...)
	dst = rpc.AppendString(dst, id)
	return appendAfterID(dst, n, seq, timestampMs)
}

// ulidLen is the length of a ULID's text form.
const ulidLen = 26

// appendEncodedULID is appendEncoded with the id in its binary form: its
// text is written straight into dst (a ULID's alphabet needs no escaping).
// Into an empty dst it writes the id at idAt, and the channel name, when it
// needs no escaping, at chanAt (memory.go reads both from there).
func appendEncodedULID(dst []byte, n *Notification, id ulid.ULID, seq uint64, timestampMs int64) []byte {
	dst = append(dst, `{"id":"`...)
	at := len(dst)
	dst = append(dst, make([]byte, ulidLen)...) // no allocation: appended in place
	_ = id.MarshalTextTo(dst[at : at+ulidLen])  // cannot fail: the buffer is ulidLen long
	dst = append(dst, '"')
	return appendAfterID(dst, n, seq, timestampMs)
}

// appendAfterID appends the fields that follow the id.
func appendAfterID(dst []byte, n *Notification, seq uint64, timestampMs int64) []byte {
	dst = append(dst, `,"channel":`...)
	dst = rpc.AppendString(dst, n.Channel)
	dst = append(dst, `,"seq":`...)
	dst = strconv.AppendUint(dst, seq, 10)
	dst = append(dst, `,"timestamp":`...)
	dst = strconv.AppendInt(dst, timestampMs, 10)
	dst = append(dst, `,"event":`...)
	dst = rpc.AppendString(dst, n.Event)
	dst = append(dst, `,"object_type":`...)
	dst = rpc.AppendString(dst, n.ObjectType)
	if n.ObjectName != "" {
		dst = append(dst, `,"object_name":`...)
		dst = rpc.AppendString(dst, n.ObjectName)
	}
	dst = append(dst, `,"object":`...)
	if len(n.Object) == 0 {
		dst = append(dst, "null"...)
	} else {
		dst = append(dst, n.Object...)
	}
	return append(dst, '}')
}

// encodedFixed is what Encode writes whatever the notification: the keys,
// the punctuation and the quotes of the five strings always written.
const encodedFixed = len(`{"id":""`) + len(`,"channel":""`) + len(`,"seq":`) + len(`,"timestamp":`) +
	len(`,"event":""`) + len(`,"object_type":""`) + len(`,"object":`) + len(`}`)

// EncodedLen is the length of Encode's output for these arguments when no
// string needs escaping (names and ids never do; a string that does makes
// the output longer, and Encode grows again for it).
func EncodedLen(n *Notification, id string, seq uint64, timestampMs int64) int {
	l := encodedFixed + len(id) + len(n.Channel) + len(n.Event) + len(n.ObjectType) +
		uintLen(seq)
	if timestampMs < 0 {
		l += 1 + uintLen(uint64(-timestampMs))
	} else {
		l += uintLen(uint64(timestampMs))
	}
	if n.ObjectName != "" {
		l += len(`,"object_name":""`) + len(n.ObjectName)
	}
	if len(n.Object) == 0 {
		return l + len("null")
	}
	return l + len(n.Object)
}

// uintLen is the number of decimal digits of v.
func uintLen(v uint64) int {
	l := 1
	for v >= 10 {
		v /= 10
		l++
	}
	return l
}

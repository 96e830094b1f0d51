package main

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
)

// The plugin's State keys. Every key is "/"-joined segments of printable
// ASCII without spaces, each at most 255 bytes, at most 1024 bytes in all
// (sdk.State's rules); names that come from clients go through seg.
//
//	doc/<index>/<collection>/<_id>   a document (Doc JSON)
//	room/<roomId>                    a room and its channels (roomRecord JSON)
//	member/<roomId>/<connId>         a connection in a room (memberRecord JSON)
//	node/<nodeId>                    a live plugin process (written with a TTL)
//	<prefix>=probe-<nodeId>          a process's start-up probe under room/, member/
//	                                 and node/ (rooms.go's watch; deleted, or expires)
//
// Every byte of every key is in [A-Za-z0-9_=/-], which any key-value store
// takes (NATS's included).
//
// roomId and nodeId are hex made by the plugin; index, collection, _id and
// connection ids are escaped by seg. The longest key, a document's, is
// 4 + 3*255 + 3 = 772 bytes.
const (
	docPrefix    = "doc/"
	roomPrefix   = "room/"
	memberPrefix = "member/"
	nodePrefix   = "node/"

	maxSegment = 255
)

// seg turns a name into one key segment, one to one: the bytes
// [A-Za-z0-9_-] stay as they are and every other byte becomes "=XX" (its
// value in upper-case hex), so that the segment is safe in any key-value
// store (NATS subjects included: no ".", "*", ">" or spaces). A segment
// that would be longer than 255 bytes is "==" and the hex SHA-256 of the
// name instead: an escaped segment never holds "==" (an "=" is always
// followed by two hex digits), so the two forms cannot meet.
func seg(name string) string {
	n := 0
	for i := 0; i < len(name); i++ {
		if plainByte(name[i]) {
			n++
		} else {
			n += 3
		}
	}
	if n == len(name) && n > 0 && n <= maxSegment {
		return name
	}
	if n == 0 || n > maxSegment {
		h := sha256.Sum256([]byte(name))
		return "==" + hex.EncodeToString(h[:])
	}
	const digits = "0123456789ABCDEF"
	var b strings.Builder
	b.Grow(n)
	for i := 0; i < len(name); i++ {
		c := name[i]
		if plainByte(c) {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('=')
		b.WriteByte(digits[c>>4])
		b.WriteByte(digits[c&15])
	}
	return b.String()
}

func plainByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-'
}

func collPrefix(index, collection string) string {
	return docPrefix + seg(index) + "/" + seg(collection) + "/"
}

func docKey(index, collection, id string) string { return collPrefix(index, collection) + seg(id) }

func roomKey(roomID string) string { return roomPrefix + roomID }

func membersPrefix(roomID string) string { return memberPrefix + roomID + "/" }

func memberKey(roomID, conn string) string { return membersPrefix(roomID) + seg(conn) }

func nodeKey(node string) string { return nodePrefix + node }

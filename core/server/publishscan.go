package server

import (
	"bytes"
	"encoding/json"
	"sync"
	"unicode/utf8"
	"unsafe"

	"github.com/heraldhq/herald/core/broker"
)

// scanPublish is parsePublish for the bodies backends send: a publish
// body read in one pass, without the maps and raw copies of decoding it
// generically. It answers ok only for a body that parsePublish accepts,
// with the same notifications; anything else (a field that is wrong or
// missing, a duplicate key, an escape in a key or a name, a string that
// is not valid UTF-8, nesting deeper than scanMaxDepth) is left to
// parsePublish, which decides and words the error. FuzzScanPublish holds
// it to that.
//
// An object that is already compact (what backends' encoders write) is
// its bytes in the body, a full slice of it; the others are compacted, as
// compactJSON does, into one buffer for the rest of the body, allocated
// at the first of them: no allocation for the objects of most requests,
// one at most. The string fields (channel, event, ...) are parts of one
// array of names (keep), not a string each.
func scanPublish(body []byte) ([]broker.Notification, bool) {
	s := publishScanner{b: body}
	s.ws()
	if !s.eat('{') {
		return nil, false
	}
	var ns []broker.Notification
	start := s.i
	s.ws()
	if key, ok := s.name(); ok && string(key) == "notifications" {
		s.ws()
		if !s.eat(':') {
			return nil, false
		}
		s.ws()
		if !s.eat('[') {
			return nil, false
		}
		count := max(1, bytes.Count(body, []byte(`"channel"`)))
		ns = takeNotifications(count)
		s.namesCap = min(len(body), count*namesPerNotification)
		for {
			s.ws()
			if !s.eat('{') {
				return nil, false
			}
			var prev *broker.Notification
			if len(ns) > 0 {
				prev = &ns[len(ns)-1]
			}
			n, ok := s.notification(prev)
			if !ok {
				return nil, false
			}
			ns = append(ns, n)
			s.ws()
			if s.eat(']') {
				break
			}
			if !s.eat(',') {
				return nil, false
			}
		}
		s.ws()
		if !s.eat('}') {
			return nil, false // other keys beside notifications: parsePublish's
		}
	} else {
		s.i = start
		s.namesCap = min(len(body), 2*namesPerNotification)
		n, ok := s.notification(nil)
		if !ok {
			return nil, false
		}
		ns = []broker.Notification{n}
	}
	s.ws()
	if s.i != len(s.b) {
		return nil, false
	}
	return ns, true
}

// notificationsPool keeps the notification slices of publishes that are
// done (releaseNotifications): a request of ten allocated 1.4 KB for its
// slice, a tenth of what herald allocated for the whole request.
var notificationsPool sync.Pool // of *[]broker.Notification

// maxPooledNotifications bounds the slices kept: a rare large publish does
// not pin its slice in the pool.
const maxPooledNotifications = 128

// takeNotifications returns an empty slice with room for n.
func takeNotifications(n int) []broker.Notification {
	if p, _ := notificationsPool.Get().(*[]broker.Notification); p != nil {
		if cap(*p) >= n {
			return (*p)[:0]
		}
		notificationsPool.Put(p)
	}
	return make([]broker.Notification, 0, n)
}

// releaseNotifications gives ns back for another publish: the caller is
// done with it and nothing kept a pointer into it (the brokers copy what
// they keep: names, objects). Its strings and objects are cleared first,
// so the pool holds no request's bytes.
func releaseNotifications(ns []broker.Notification) {
	if cap(ns) == 0 || cap(ns) > maxPooledNotifications {
		return
	}
	ns = ns[:cap(ns)]
	clear(ns)
	ns = ns[:0]
	notificationsPool.Put(&ns)
}

// scanMaxDepth bounds the nesting of an object that scanPublish reads
// itself; deeper ones go to encoding/json, which has its own bound.
const scanMaxDepth = 64

type publishScanner struct {
	b   []byte
	i   int
	out []byte // the compacted objects that were not compact
	// copy says that value appends what it reads to out; spaced that
	// whitespace was skipped since it was last cleared.
	copy, spaced bool
	// names holds the string fields of the request (channels mostly:
	// event and object_type are lent by the notification before), one
	// allocation for all of them; see name.
	names    []byte
	namesCap int // the size of names' arrays
}

// namesPerNotification is the room names has per notification of the
// body: scenario c's channel names ("bench-1234") fit in one array, longer
// names take another array of the same size when it is full.
const namesPerNotification = 16

// keep returns v as a string that is a part of names. Bytes written to
// names are never written again (append only adds after them; a grown
// names is a new array, the old one stays as it was), so the strings
// stay what they were: unsafe.String's condition.
func (s *publishScanner) keep(v []byte) string {
	if len(v) == 0 {
		return ""
	}
	if cap(s.names)-len(s.names) < len(v) {
		s.names = make([]byte, 0, max(len(v), s.namesCap))
	}
	at := len(s.names)
	s.names = append(s.names, v...)
	return unsafe.String(&s.names[at], len(v))
}

func (s *publishScanner) ws() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
			s.spaced = true
		default:
			return
		}
	}
}

// put and putByte append to out when value copies.
func (s *publishScanner) put(b []byte) {
	if s.copy {
		s.out = append(s.out, b...)
	}
}

func (s *publishScanner) putByte(c byte) {
	if s.copy {
		s.out = append(s.out, c)
	}
}

// object reads the value of an object field: the value's bytes in the
// body if it has no whitespace to remove, else its compacted copy in out
// (a second read of the same bytes, which cannot fail).
func (s *publishScanner) object() (json.RawMessage, bool) {
	start := s.i
	s.spaced = false
	if !s.value(0) {
		return nil, false
	}
	if !s.spaced {
		return s.b[start:s.i:s.i], true
	}
	if s.out == nil {
		// Compaction only shrinks: what is left of the body fits.
		s.out = make([]byte, 0, len(s.b)-start)
	}
	from := len(s.out)
	s.i, s.copy = start, true
	ok := s.value(0)
	s.copy = false
	return s.out[from:len(s.out):len(s.out)], ok
}

func (s *publishScanner) eat(c byte) bool {
	if s.i < len(s.b) && s.b[s.i] == c {
		s.i++
		return true
	}
	return false
}

// name reads a string without escapes or control bytes, valid UTF-8, and
// returns its bytes (without the quotes): a key or a string field.
func (s *publishScanner) name() ([]byte, bool) {
	if !s.eat('"') {
		return nil, false
	}
	start := s.i
	ascii := true
	for s.i < len(s.b) {
		c := s.b[s.i]
		switch {
		case c == '"':
			v := s.b[start:s.i]
			s.i++
			if !ascii && !utf8.Valid(v) {
				return nil, false
			}
			return v, true
		case c < 0x20 || c == '\\':
			return nil, false
		case c >= utf8.RuneSelf:
			ascii = false
		}
		s.i++
	}
	return nil, false
}

// Field bits of a notification, to refuse duplicates (encoding/json keeps
// the last; parsePublish decides those).
const (
	fieldChannel = 1 << iota
	fieldEvent
	fieldObjectType
	fieldObjectName
	fieldObject
)

// notification reads a notification's fields after its '{'. prev, the
// notification before it in the body, lends its strings when they are
// the same (event and object_type mostly are), to spare allocations.
func (s *publishScanner) notification(prev *broker.Notification) (broker.Notification, bool) {
	var n broker.Notification
	var seen int
	s.ws()
	if s.eat('}') {
		return n, false // parsePublish: channel is required
	}
	for {
		s.ws()
		key, ok := s.name()
		if !ok {
			return n, false
		}
		s.ws()
		if !s.eat(':') {
			return n, false
		}
		s.ws()
		var bit int
		var dst *string
		var same string
		switch string(key) {
		case "channel":
			bit, dst = fieldChannel, &n.Channel
		case "event":
			bit, dst = fieldEvent, &n.Event
			if prev != nil {
				same = prev.Event
			}
		case "object_type":
			bit, dst = fieldObjectType, &n.ObjectType
			if prev != nil {
				same = prev.ObjectType
			}
		case "object_name":
			bit, dst = fieldObjectName, &n.ObjectName
			if prev != nil {
				same = prev.ObjectName
			}
		case "object":
			bit = fieldObject
		default:
			return n, false // parsePublish: not a notification field
		}
		if seen&bit != 0 {
			return n, false
		}
		seen |= bit
		if dst == nil {
			if n.Object, ok = s.object(); !ok {
				return n, false
			}
		} else {
			if s.literal("null") {
				if bit != fieldObjectName {
					return n, false // parsePublish: is required
				}
				seen &^= bit // null is as absent
			} else {
				v, ok := s.name()
				if !ok {
					return n, false
				}
				if string(v) == same {
					*dst = same
				} else {
					*dst = s.keep(v)
				}
			}
		}
		s.ws()
		if s.eat('}') {
			break
		}
		if !s.eat(',') {
			return n, false
		}
	}
	const required = fieldChannel | fieldEvent | fieldObjectType | fieldObject
	if seen&required != required || n.Event == "" || n.ObjectType == "" ||
		validChannel(n.Channel) != nil || n.Channel == ServerChannel {
		return n, false
	}
	return n, true
}

// literal consumes word if it is next.
func (s *publishScanner) literal(word string) bool {
	if len(s.b)-s.i >= len(word) && string(s.b[s.i:s.i+len(word)]) == word {
		s.i += len(word)
		return true
	}
	return false
}

// value reads one JSON value and appends it to out without the
// whitespace between its tokens, as json.Compact writes it.
func (s *publishScanner) value(depth int) bool {
	if depth > scanMaxDepth || s.i >= len(s.b) {
		return false
	}
	switch c := s.b[s.i]; c {
	case '{', '[':
		end := byte('}')
		if c == '[' {
			end = ']'
		}
		s.i++
		s.putByte(c)
		s.ws()
		if s.eat(end) {
			s.putByte(end)
			return true
		}
		for {
			s.ws()
			if c == '{' {
				if s.i >= len(s.b) || s.b[s.i] != '"' || !s.str() {
					return false
				}
				s.ws()
				if !s.eat(':') {
					return false
				}
				s.putByte(':')
				s.ws()
			}
			if !s.value(depth + 1) {
				return false
			}
			s.ws()
			switch {
			case s.eat(','):
				s.putByte(',')
			case s.eat(end):
				s.putByte(end)
				return true
			default:
				return false
			}
		}
	case '"':
		return s.str()
	case 't':
		return s.copyLiteral("true")
	case 'f':
		return s.copyLiteral("false")
	case 'n':
		return s.copyLiteral("null")
	default:
		return s.number()
	}
}

func (s *publishScanner) copyLiteral(word string) bool {
	if !s.literal(word) {
		return false
	}
	s.put([]byte(word))
	return true
}

// str copies a JSON string as it is, escapes and all, after checking
// them; like encoding/json's scanner, it does not check UTF-8: the
// publish body was checked whole before it was scanned (publishBody), and
// an emitted object after it (Server.Emit).
func (s *publishScanner) str() bool {
	start := s.i
	s.i++ // the opening quote
	for s.i < len(s.b) {
		c := s.b[s.i]
		switch {
		case c == '"':
			s.i++
			s.put(s.b[start:s.i])
			return true
		case c < 0x20:
			return false
		case c == '\\':
			if s.i+1 >= len(s.b) {
				return false
			}
			switch s.b[s.i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				s.i += 2
			case 'u':
				if s.i+6 > len(s.b) {
					return false
				}
				for _, h := range s.b[s.i+2 : s.i+6] {
					if !isHex(h) {
						return false
					}
				}
				s.i += 6
			default:
				return false
			}
		default:
			s.i++
		}
	}
	return false
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

// number copies a JSON number: -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?
func (s *publishScanner) number() bool {
	start := s.i
	s.eat('-')
	switch {
	case s.eat('0'):
	case s.i < len(s.b) && '1' <= s.b[s.i] && s.b[s.i] <= '9':
		s.digits()
	default:
		return false
	}
	if s.eat('.') {
		if s.digits() == 0 {
			return false
		}
	}
	if s.eat('e') || s.eat('E') {
		if !s.eat('+') {
			s.eat('-')
		}
		if s.digits() == 0 {
			return false
		}
	}
	s.put(s.b[start:s.i])
	return true
}

func (s *publishScanner) digits() int {
	start := s.i
	for s.i < len(s.b) && '0' <= s.b[s.i] && s.b[s.i] <= '9' {
		s.i++
	}
	return s.i - start
}

// validJSON answers as encoding/json.Valid does, in one pass of the
// scanner above where it can (json.Valid runs a state machine through a
// function call per byte). What the scanner does not accept (invalid JSON,
// nesting deeper than scanMaxDepth) is left to json.Valid, so the answer
// is json.Valid's for every input; FuzzValidJSON holds it to that.
func validJSON(b []byte) bool {
	s := publishScanner{b: b}
	s.ws()
	if s.value(0) {
		s.ws()
		if s.i == len(b) {
			return true
		}
	}
	return json.Valid(b)
}

package rpc

import (
	"bytes"
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Kind says what a decoded message is.
type Kind int

const (
	KindInvalid      Kind = iota // not a valid JSON-RPC message; Err says why
	KindRequest                  // method and id: a reply is due
	KindNotification             // method, no id: no reply
	KindResponse                 // result or error with an id: answers a call we made
)

// Message is one JSON-RPC message of a frame.
type Message struct {
	Kind   Kind
	ID     json.RawMessage // as sent: a string, a number or null; nil when absent
	Method string
	Params json.RawMessage
	Result json.RawMessage
	Error  *Error
	// Err is set on KindInvalid messages: the error to answer with (ID may be nil).
	Err *Error
	// Answers is set on a KindInvalid message that tried to answer one of
	// the server's calls (no method, a result or an error): the id it
	// named, so that the call fails at once rather than at its timeout.
	// ID is then nil: the reply carries id null, as that id is the
	// server's own.
	Answers json.RawMessage
}

type wireMessage struct {
	JSONRPC *string         `json:"jsonrpc"`
	ID      json.RawMessage `json:"id"`
	Method  *string         `json:"method"`
	Params  json.RawMessage `json:"params"`
	Result  json.RawMessage `json:"result"`
	Error   *Error          `json:"error"`
}

// Decode splits a frame into its messages. batch reports whether the frame
// was a JSON array. A frame that is not JSON at all, or an empty batch, gives
// a single KindInvalid message with the matching error (-32700 or -32600).
// A batch may have any number of entries; see DecodeMax.
func Decode(frame []byte) (msgs []Message, batch bool) { return DecodeMax(frame, 0) }

// DecodeMax is Decode with a bound on a batch's entries: a batch of more
// than maxBatch (when maxBatch > 0) gives a single KindInvalid message with
// -32005 (limit exceeded), and none of its entries is decoded, so that the
// work and memory a frame costs do not grow with its entry count. Entries
// are counted as they are read: a longer batch that is also not valid JSON
// past its maxBatch-th entry is answered -32005 too.
func DecodeMax(frame []byte, maxBatch int) (msgs []Message, batch bool) {
	trimmed := bytes.TrimLeft(frame, " \t\r\n")
	if len(trimmed) > 0 && trimmed[0] == '[' {
		raws, err := splitBatch(trimmed, maxBatch)
		if err != nil {
			return []Message{{Kind: KindInvalid, Err: err}}, false
		}
		if len(raws) == 0 {
			return []Message{{Kind: KindInvalid, Err: Errorf(CodeInvalidRequest, "invalid request: empty batch")}}, false
		}
		msgs = make([]Message, len(raws))
		for i, raw := range raws {
			msgs[i] = decodeOne(raw)
		}
		return msgs, true
	}
	if !json.Valid(trimmed) {
		return []Message{{Kind: KindInvalid, Err: Errorf(CodeParseError, "parse error: the frame is not valid JSON")}}, false
	}
	return []Message{decodeOne(trimmed)}, false
}

// splitBatch reads the entries of a JSON array one at a time, stopping at
// the (maxBatch+1)-th.
func splitBatch(array []byte, maxBatch int) ([]json.RawMessage, *Error) {
	parseErr := func(err error) *Error { return Errorf(CodeParseError, "parse error: %s", jsonErrText(err)) }
	r := bytes.NewReader(array)
	dec := json.NewDecoder(r)
	if _, err := dec.Token(); err != nil { // the '['
		return nil, parseErr(err)
	}
	var raws []json.RawMessage
	for dec.More() {
		if maxBatch > 0 && len(raws) == maxBatch {
			return nil, Errorf(CodeLimitExceeded, "limit exceeded: a batch may hold at most %d calls (limits.max_batch_calls); split it", maxBatch)
		}
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return nil, parseErr(err)
		}
		raws = append(raws, raw)
	}
	if _, err := dec.Token(); err != nil { // the ']'
		return nil, parseErr(err)
	}
	// Nothing but white space may follow the array.
	rest := array[dec.InputOffset():]
	if len(bytes.TrimLeft(rest, " \t\r\n")) > 0 {
		return nil, Errorf(CodeParseError, "parse error: data after the batch's closing bracket")
	}
	return raws, nil
}

func decodeOne(raw json.RawMessage) Message {
	var w wireMessage
	decode := json.Unmarshal
	if !exactMembers(raw) {
		decode = decodeExact
	}
	if err := decode(raw, &w); err != nil {
		return memberError(raw, err)
	}
	id := w.ID
	if id != nil && !validID(id) {
		return Message{Kind: KindInvalid, Err: Errorf(CodeInvalidRequest, "invalid request: id must be a string, a number or null")}
	}
	answer := w.Method == nil && (w.Result != nil || w.Error != nil)
	if w.JSONRPC == nil || *w.JSONRPC != "2.0" {
		err := Errorf(CodeInvalidRequest, `invalid request: "jsonrpc" must be "2.0"`)
		if answer {
			return Message{Kind: KindInvalid, Answers: id, Err: err}
		}
		return Message{Kind: KindInvalid, ID: id, Err: err}
	}
	if w.Method != nil {
		if *w.Method == "" {
			return Message{Kind: KindInvalid, ID: id, Err: Errorf(CodeInvalidRequest, "invalid request: method must not be empty")}
		}
		if len(w.Params) > 0 && w.Params[0] != '{' && w.Params[0] != '[' && !bytes.Equal(w.Params, []byte("null")) {
			return Message{Kind: KindInvalid, ID: id, Err: Errorf(CodeInvalidParams, "invalid params: params must be an object or an array")}
		}
		params := w.Params
		if bytes.Equal(params, []byte("null")) {
			params = nil // null params are absent params, for every method alike
		}
		m := Message{Method: *w.Method, Params: params, ID: id, Kind: KindRequest}
		if id == nil {
			m.Kind = KindNotification
		}
		return m
	}
	if answer {
		if id == nil {
			return Message{Kind: KindInvalid, Err: Errorf(CodeInvalidRequest, "invalid request: a response needs an id")}
		}
		if w.Result != nil && w.Error != nil {
			return Message{Kind: KindInvalid, Answers: id, Err: Errorf(CodeInvalidRequest, "invalid response: it has both result and error; send one of them")}
		}
		return Message{Kind: KindResponse, ID: id, Result: w.Result, Error: w.Error}
	}
	return Message{Kind: KindInvalid, ID: id, Err: Errorf(CodeInvalidRequest, "invalid request: a message needs a method, or a result or error")}
}

// memberError builds the error for a message that did not decode: the
// fast path above decodes the whole message at once, and only when that
// fails are its members read again, one by one, to say which one is wrong.
// The id is echoed when it can be read and the message is a request (it has
// a method); a response the server cannot read is answered with id null, as
// its id names one of the server's own calls.
func memberError(raw json.RawMessage, err error) Message {
	var members map[string]json.RawMessage
	if json.Unmarshal(raw, &members) != nil || members == nil {
		return Message{Kind: KindInvalid, Err: Errorf(CodeInvalidRequest, "invalid request: a message must be a JSON object")}
	}
	var answers json.RawMessage // set once the message is known to be an answer
	invalid := func(id json.RawMessage, code int, msg string) Message {
		return Message{Kind: KindInvalid, ID: id, Answers: answers, Err: Errorf(code, "%s", msg)}
	}
	id := member(members, "id")
	if id != nil && !validID(id) {
		return invalid(nil, CodeInvalidRequest, "invalid request: id must be a string, a number or null")
	}
	method := member(members, "method")
	if method == nil {
		if member(members, "result") != nil || member(members, "error") != nil {
			answers = id
		}
		id = nil
	}
	var version string
	if json.Unmarshal(member(members, "jsonrpc"), &version) != nil || version != "2.0" {
		return invalid(id, CodeInvalidRequest, `invalid request: "jsonrpc" must be "2.0"`)
	}
	if method != nil {
		var name string
		if json.Unmarshal(method, &name) != nil {
			return invalid(id, CodeInvalidRequest, "invalid request: method must be a string")
		}
		if p := member(members, "params"); len(p) > 0 && p[0] != '{' && p[0] != '[' && string(p) != "null" {
			return invalid(id, CodeInvalidParams, "invalid params: params must be an object or an array")
		}
	}
	if e := member(members, "error"); e != nil {
		var re Error
		if json.Unmarshal(e, &re) != nil {
			return invalid(id, CodeInvalidRequest, "invalid request: error must be an object with an integer code and a string message")
		}
	}
	// Not reached for the members above; a type error elsewhere still gets
	// its member's JSON name, never a Go type.
	field := "a member"
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) && te.Field != "" {
		field = strconv.Quote(te.Field)
	}
	return invalid(id, CodeInvalidRequest, "invalid request: "+field+" has the wrong type")
}

// member finds a member by its exact name: JSON-RPC's member names are
// case-sensitive ("ID" is not "id").
func member(members map[string]json.RawMessage, name string) json.RawMessage {
	return members[name]
}

var memberNames = [...]string{"jsonrpc", "id", "method", "params", "result", "error"}

// exactMembers reports whether raw, a valid JSON value, can be decoded into
// a wireMessage by encoding/json without it taking a member for one it is
// not: encoding/json matches names case-insensitively, so "ID" would be
// taken for "id" and "Method" for "method". It is false for an object with
// a member whose name differs from one of JSON-RPC's only in case, or whose
// name has an escape (which could spell one); decodeExact reads those. One
// pass over the bytes, no allocation: the common case stays on
// json.Unmarshal. Other members are ignored, as JSON-RPC's envelope allows;
// a method's params are held to their names' case by MiscasedMember.
func exactMembers(raw []byte) bool {
	exact := true
	eachMember(raw, func(quoted []byte, escaped bool) bool {
		if escaped {
			exact = false
			return false
		}
		name := quoted[1 : len(quoted)-1]
		for _, m := range memberNames {
			if len(name) == len(m) && string(name) != m && strings.EqualFold(string(name), m) {
				exact = false
				return false
			}
		}
		return true
	})
	return exact
}

// MiscasedMember returns the name of the first member of obj, a valid JSON
// object, that differs only in case from one of names (meant), and true;
// "", "" and false when there is none. encoding/json, which decodes obj
// afterwards, would take such a member for the one it resembles ("Channels"
// for "channels"), while a method's params, like the envelope
// (exactMembers), are case-sensitive. Names are compared as JSON spells
// them (escapes decoded); a member unlike every name is none of its
// business, as JSON-RPC leaves unknown members to the method, and the core
// methods ignore them. One pass over the bytes, no allocation unless a name
// has an escape.
func MiscasedMember(obj []byte, names ...string) (name, meant string, found bool) {
	eachMember(obj, func(quoted []byte, escaped bool) bool {
		member := quoted[1 : len(quoted)-1]
		if escaped {
			var decoded string
			if json.Unmarshal(quoted, &decoded) != nil {
				return true // not valid JSON: not an obj as documented
			}
			member = []byte(decoded)
		}
		for _, n := range names {
			if string(member) == n {
				return true
			}
		}
		for _, n := range names {
			if strings.EqualFold(string(member), n) {
				name, meant, found = string(member), n, true
				return false
			}
		}
		return true
	})
	return name, meant, found
}

// eachMember calls visit with the name of each member of raw's top-level
// object (raw a valid JSON value), quotes included and escapes not decoded
// (escaped says whether it has any), in order, until visit returns false.
// One pass over the bytes, no allocation.
func eachMember(raw []byte, visit func(quoted []byte, escaped bool) bool) {
	depth, key := 0, false
	for i := 0; i < len(raw); i++ {
		switch raw[i] {
		case '{':
			depth++
			key = depth == 1
		case '[':
			depth++
		case '}', ']':
			depth--
		case ',':
			key = depth == 1
		case '"':
			j, escaped := i+1, false
			for ; j < len(raw) && raw[j] != '"'; j++ {
				if raw[j] == '\\' {
					escaped = true
					j++
				}
			}
			if key {
				if j == len(raw) || !visit(raw[i:j+1], escaped) {
					return
				}
				key = false
			}
			i = j
		}
	}
}

// decodeExact decodes a message into w taking members by their exact
// names only (see exactMembers).
func decodeExact(raw []byte, v any) error {
	w := v.(*wireMessage)
	var members map[string]json.RawMessage
	if err := json.Unmarshal(raw, &members); err != nil {
		return err
	}
	for name, dst := range map[string]any{"jsonrpc": &w.JSONRPC, "id": &w.ID, "method": &w.Method,
		"params": &w.Params, "result": &w.Result, "error": &w.Error} {
		if m, ok := members[name]; ok {
			if err := json.Unmarshal(m, dst); err != nil {
				return err
			}
		}
	}
	return nil
}

func validID(id json.RawMessage) bool {
	switch id[0] {
	case '"':
		return true
	case 'n':
		return string(id) == "null"
	case '-', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9':
		return true
	}
	return false
}

func jsonErrText(err error) string {
	if se, ok := err.(*json.SyntaxError); ok {
		return "syntax error at byte " + strconv.FormatInt(se.Offset, 10)
	}
	return err.Error()
}

var nullID = json.RawMessage("null")

// AppendResult appends a success response.
func AppendResult(dst []byte, id json.RawMessage, result []byte) []byte {
	if id == nil {
		id = nullID
	}
	dst = append(dst, `{"jsonrpc":"2.0","id":`...)
	dst = append(dst, id...)
	dst = append(dst, `,"result":`...)
	if len(result) == 0 {
		result = nullID
	}
	dst = append(dst, result...)
	return append(dst, '}')
}

// AppendError appends an error response.
func AppendError(dst []byte, id json.RawMessage, e *Error) []byte {
	if id == nil {
		id = nullID
	}
	dst = append(dst, `{"jsonrpc":"2.0","id":`...)
	dst = append(dst, id...)
	dst = append(dst, `,"error":{"code":`...)
	dst = strconv.AppendInt(dst, int64(e.Code), 10)
	dst = append(dst, `,"message":`...)
	dst = AppendString(dst, e.Message)
	if len(e.Data) > 0 {
		dst = append(dst, `,"data":`...)
		dst = append(dst, e.Data...)
	}
	return append(dst, "}}"...)
}

// AppendRequest appends a request (id != "") or a notification (id == "")
// from the server to the client. params must be valid JSON or empty.
func AppendRequest(dst []byte, id, method string, params []byte) []byte {
	dst = append(dst, `{"jsonrpc":"2.0",`...)
	if id != "" {
		dst = append(dst, `"id":`...)
		dst = AppendString(dst, id)
		dst = append(dst, ',')
	}
	dst = append(dst, `"method":`...)
	dst = AppendString(dst, method)
	if len(params) > 0 {
		dst = append(dst, `,"params":`...)
		dst = append(dst, params...)
	}
	return append(dst, '}')
}

const hexDigits = "0123456789abcdef"

// AppendString appends s as a JSON string, escaping what JSON requires and
// replacing invalid UTF-8, so that any Go string yields valid JSON.
func AppendString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch c {
			case '"', '\\':
				dst = append(dst, '\\', c)
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[r&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

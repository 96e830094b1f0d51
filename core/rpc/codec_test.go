package rpc

import (
	"bytes"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/require"
)

func TestDecode(t *testing.T) {
	cases := []struct {
		name   string
		frame  string
		batch  bool
		kinds  []Kind
		errors []int
	}{
		{"request", `{"jsonrpc":"2.0","id":1,"method":"ping"}`, false, []Kind{KindRequest}, []int{0}},
		{"string id", `{"jsonrpc":"2.0","id":"x","method":"ping","params":{}}`, false, []Kind{KindRequest}, []int{0}},
		{"notification", `{"jsonrpc":"2.0","method":"ping"}`, false, []Kind{KindNotification}, []int{0}},
		{"response", `{"jsonrpc":"2.0","id":"s1","result":{"ok":true}}`, false, []Kind{KindResponse}, []int{0}},
		{"error response", `{"jsonrpc":"2.0","id":"s1","error":{"code":1,"message":"no"}}`, false, []Kind{KindResponse}, []int{0}},
		{"not json", `{`, false, []Kind{KindInvalid}, []int{CodeParseError}},
		{"bad batch json", `[{]`, false, []Kind{KindInvalid}, []int{CodeParseError}},
		{"empty batch", `[]`, false, []Kind{KindInvalid}, []int{CodeInvalidRequest}},
		{"scalar", `42`, false, []Kind{KindInvalid}, []int{CodeInvalidRequest}},
		{"wrong version", `{"jsonrpc":"1","id":1,"method":"a"}`, false, []Kind{KindInvalid}, []int{CodeInvalidRequest}},
		{"object id", `{"jsonrpc":"2.0","id":{},"method":"a"}`, false, []Kind{KindInvalid}, []int{CodeInvalidRequest}},
		{"empty method", `{"jsonrpc":"2.0","id":1,"method":""}`, false, []Kind{KindInvalid}, []int{CodeInvalidRequest}},
		{"scalar params", `{"jsonrpc":"2.0","id":1,"method":"a","params":3}`, false, []Kind{KindInvalid}, []int{CodeInvalidParams}},
		{"nothing", `{"jsonrpc":"2.0","id":1}`, false, []Kind{KindInvalid}, []int{CodeInvalidRequest}},
		{"response without id", `{"jsonrpc":"2.0","result":1}`, false, []Kind{KindInvalid}, []int{CodeInvalidRequest}},
		{"batch", `[{"jsonrpc":"2.0","id":1,"method":"a"},1,{"jsonrpc":"2.0","method":"b"}]`, true,
			[]Kind{KindRequest, KindInvalid, KindNotification}, []int{0, CodeInvalidRequest, 0}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			msgs, batch := Decode([]byte(tc.frame))
			require.Equal(t, tc.batch, batch)
			require.Len(t, msgs, len(tc.kinds))
			for i, m := range msgs {
				require.Equal(t, tc.kinds[i], m.Kind, "message %d", i)
				if tc.errors[i] != 0 {
					require.Equal(t, tc.errors[i], m.Err.Code)
					require.NotEmpty(t, m.Err.Message)
				}
			}
		})
	}
}

// A message whose members have the wrong types is answered with its id
// when it can be read, and a message that names the member to fix in JSON
// terms, never Go's.
func TestDecodeMemberTypeErrors(t *testing.T) {
	cases := []struct {
		frame, id string // id "" is no id (the reply says null)
		code      int
		message   string
	}{
		{`{"jsonrpc":"2.0","id":3,"method":5}`, `3`, CodeInvalidRequest, "method must be a string"},
		{`{"jsonrpc":"2.0","id":"a","method":["x"],"params":{}}`, `"a"`, CodeInvalidRequest, "method must be a string"},
		{`{"jsonrpc":"2.0","id":{"x":1},"method":5}`, ``, CodeInvalidRequest, "id must be a string, a number or null"},
		{`{"jsonrpc":"2.0","id":true,"method":"ping"}`, ``, CodeInvalidRequest, "id must be a string, a number or null"},
		{`{"jsonrpc":2,"id":4,"method":"ping"}`, `4`, CodeInvalidRequest, `"jsonrpc" must be "2.0"`},
		{`{"jsonrpc":"2.0","id":5,"method":5,"params":"x"}`, `5`, CodeInvalidRequest, "method must be a string"},
		{`{"jsonrpc":"2.0","id":6,"method":"ping","params":"x"}`, `6`, CodeInvalidParams, "params must be an object or an array"},
		{`{"jsonrpc":"2.0","id":7,"METHOD":5}`, `7`, CodeInvalidRequest, "a message needs a method"}, // names are exact
		{`{"jsonrpc":"2.0","id":"s1","error":"boom"}`, ``, CodeInvalidRequest, "error must be an object"},
		{`{"jsonrpc":"2.0","id":"s1","error":{"code":"x","message":"m"}}`, ``, CodeInvalidRequest, "error must be an object"},
		{`{"jsonrpc":"2.0","id":8,"method":"ping","error":7}`, `8`, CodeInvalidRequest, "error must be an object"},
		{`"text"`, ``, CodeInvalidRequest, "a message must be a JSON object"},
	}
	for _, tc := range cases {
		t.Run(tc.frame, func(t *testing.T) {
			msgs, _ := Decode([]byte(tc.frame))
			require.Len(t, msgs, 1)
			m := msgs[0]
			require.Equal(t, KindInvalid, m.Kind)
			require.Equal(t, tc.code, m.Err.Code)
			require.Contains(t, m.Err.Message, tc.message)
			for _, goName := range []string{"Go ", "wireMessage", "struct", "unmarshal", "of type", "float64"} {
				require.NotContains(t, m.Err.Message, goName)
			}
			if tc.id == "" {
				require.Nil(t, m.ID)
			} else {
				require.Equal(t, tc.id, string(m.ID))
			}
		})
	}
}

func TestAppendersProduceValidJSON(t *testing.T) {
	e := Errorf(CodeForbidden, "no \"way\"\n\x01 ok").WithData(map[string]any{"channels": []string{"a"}})
	for _, b := range [][]byte{
		AppendResult(nil, json.RawMessage(`7`), []byte(`{"a":1}`)),
		AppendResult(nil, nil, nil),
		AppendError(nil, json.RawMessage(`"x"`), e),
		AppendRequest(nil, "s1", "onFoo", []byte(`{"k":[1]}`)),
		AppendRequest(nil, "", "onNotificationReceived", nil),
	} {
		require.True(t, json.Valid(b), "%s", b)
	}
	var back struct {
		Error Error `json:"error"`
	}
	require.NoError(t, json.Unmarshal(AppendError(nil, nil, e), &back))
	require.Equal(t, e.Message, back.Error.Message)
	require.JSONEq(t, `{"channels":["a"]}`, string(back.Error.Data))
}

func TestAppendStringMatchesEncodingJSON(t *testing.T) {
	for _, s := range []string{"", "plain", "quote\" back\\slash", "ctl\x00\x1f\t\r\n", "ünïcödé ✓", "bad \xff utf8", "sep \u2028 \u2029", "<html>&"} {
		var got string
		require.NoError(t, json.Unmarshal(AppendString(nil, s), &got), "%q", s)
		want := s
		if !utf8.ValidString(s) {
			// invalid UTF-8 is replaced, as encoding/json does
			b, _ := json.Marshal(s)
			require.NoError(t, json.Unmarshal(b, &want))
		}
		require.Equal(t, want, got)
	}
}

// FuzzDecode: no frame may panic the decoder, and every invalid message
// carries an error to answer with.
func FuzzDecode(f *testing.F) {
	for _, s := range []string{
		`{"jsonrpc":"2.0","id":1,"method":"subscribe","params":{"channel":"a b"}}`,
		`[{"jsonrpc":"2.0","id":1,"method":"a"},{"jsonrpc":"2.0","id":"s1","result":null}]`,
		`[]`, `{`, `null`, `{"jsonrpc":"2.0","id":[1],"method":"x"}`, "\xff\xfe",
		`{"jsonrpc":"2.0","id":3,"method":5}`, `{"jsonrpc":2,"id":3,"method":"a"}`,
		`{"jsonrpc":"2.0","id":true,"method":5}`, `{"jsonrpc":"2.0","id":3,"method":5,"params":"x"}`,
		`{"jsonrpc":"2.0","id":"s1","error":"boom"}`, `{"jsonrpc":"2.0","id":3,"Method":{}}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, frame []byte) {
		msgs, _ := Decode(frame)
		if len(msgs) == 0 {
			t.Fatal("no message")
		}
		for _, m := range msgs {
			if m.Kind == KindInvalid {
				if m.Err == nil {
					t.Fatal("invalid message without an error")
				}
				if !json.Valid(AppendError(nil, m.ID, m.Err)) {
					t.Fatalf("error reply is not JSON for %q", frame)
				}
			}
		}
	})
}

func FuzzAppendString(f *testing.F) {
	f.Add("hello")
	f.Add("\x00\"\\\xff")
	f.Fuzz(func(t *testing.T, s string) {
		if !json.Valid(AppendString(nil, s)) {
			t.Fatalf("invalid JSON for %q", s)
		}
	})
}

// A batch longer than the bound is one -32005 error, whatever its entries.
func TestDecodeMaxBoundsTheBatch(t *testing.T) {
	frame := []byte("[" + strings.TrimSuffix(strings.Repeat("1,", 32_000), ",") + "]")
	msgs, batch := DecodeMax(frame, 100)
	require.False(t, batch)
	require.Len(t, msgs, 1)
	require.Equal(t, KindInvalid, msgs[0].Kind)
	require.Equal(t, CodeLimitExceeded, msgs[0].Err.Code)

	msgs, batch = DecodeMax([]byte(`[1,{"jsonrpc":"2.0","method":"ping","id":1}]`), 2)
	require.True(t, batch)
	require.Len(t, msgs, 2)
	require.Equal(t, KindInvalid, msgs[0].Kind)
	require.Equal(t, KindRequest, msgs[1].Kind)

	for _, bad := range []string{`[1,]`, `[1 2]`, `[1]x`, `[`, `[1`, `[1]]`} {
		msgs, batch = DecodeMax([]byte(bad), 10)
		require.False(t, batch, bad)
		require.Equal(t, CodeParseError, msgs[0].Err.Code, bad)
	}
}

// FuzzDecodeBatch: the bounded batch decoder reads entries one at a time;
// it must agree with encoding/json about what a valid batch is and what
// its entries are, never return more than the bound, and never panic.
func FuzzDecodeBatch(f *testing.F) {
	for _, s := range []string{
		`[{"jsonrpc":"2.0","id":1,"method":"a"},{"jsonrpc":"2.0","id":"s1","result":null}]`,
		`[1,1,1,1,1,1]`, `[]`, `[ ]`, `[1,]`, `[1 2]`, `[1]x`, `[1] `, `[[1],[2]]`, `["\xff"]`,
		`[{"jsonrpc":"2.0","method":"ping"}` + "\n" + `]`,
	} {
		f.Add([]byte(s), uint8(3))
	}
	f.Fuzz(func(t *testing.T, frame []byte, max uint8) {
		msgs, batch := DecodeMax(frame, int(max))
		if len(msgs) == 0 {
			t.Fatal("no message")
		}
		if max > 0 && len(msgs) > int(max) {
			t.Fatalf("%d messages, bound %d", len(msgs), max)
		}
		trimmed := bytes.TrimLeft(frame, " \t\r\n")
		if len(trimmed) == 0 || trimmed[0] != '[' {
			return
		}
		var raws []json.RawMessage
		valid := json.Unmarshal(trimmed, &raws) == nil
		switch {
		case batch && !valid:
			t.Fatalf("%q: decoded as a batch, but encoding/json refuses it", frame)
		case valid && len(raws) > 0 && (max == 0 || len(raws) <= int(max)):
			if !batch || len(msgs) != len(raws) {
				t.Fatalf("%q: %d entries, decoded %d (batch %v)", frame, len(raws), len(msgs), batch)
			}
			for i := range raws {
				want := decodeOne(raws[i])
				if msgs[i].Kind != want.Kind || msgs[i].Method != want.Method || !bytes.Equal(msgs[i].ID, want.ID) {
					t.Fatalf("%q: entry %d differs", frame, i)
				}
			}
		case valid && max > 0 && len(raws) > int(max):
			if batch || msgs[0].Err == nil || msgs[0].Err.Code != CodeLimitExceeded {
				t.Fatalf("%q: %d entries over the bound %d not refused", frame, len(raws), max)
			}
		}
		for _, m := range msgs {
			if m.Kind == KindInvalid && !json.Valid(AppendError(nil, m.ID, m.Err)) {
				t.Fatalf("error reply is not JSON for %q", frame)
			}
		}
	})
}

// A message that tries to answer one of the server's calls but is not a
// valid response names that call (Answers), so that it fails at once, and
// is answered with id null: the id is the server's own.
func TestMalformedAnswersNameTheCall(t *testing.T) {
	for _, frame := range []string{
		`{"jsonrpc":"2.0","id":"s1","result":1,"error":{"code":1,"message":"x"}}`,
		`{"id":"s1","result":1}`,
		`{"jsonrpc":"2.0","id":"s1","error":{"code":"bad","message":"m"}}`,
		`{"jsonrpc":"2.0","id":"s1","error":5}`,
	} {
		msgs, _ := Decode([]byte(frame))
		require.Len(t, msgs, 1)
		m := msgs[0]
		require.Equal(t, KindInvalid, m.Kind, frame)
		require.Equal(t, `"s1"`, string(m.Answers), frame)
		require.Nil(t, m.ID, frame)
		require.Equal(t, CodeInvalidRequest, m.Err.Code, frame)
	}
	msgs, _ := Decode([]byte(`{"jsonrpc":"1.0","id":7,"method":"ping"}`))
	require.Nil(t, msgs[0].Answers, "a request is not an answer")
	require.Equal(t, "7", string(msgs[0].ID))
}

// "params": null is absent params.
func TestNullParamsAreAbsent(t *testing.T) {
	msgs, _ := Decode([]byte(`{"jsonrpc":"2.0","id":1,"method":"x","params":null}`))
	require.Equal(t, KindRequest, msgs[0].Kind)
	require.Nil(t, msgs[0].Params)
}

// Member names are exact, as JSON-RPC writes them: a member that differs
// only in case is another member (ignored), never taken for id or method.
func TestMemberNamesAreExact(t *testing.T) {
	cases := []struct {
		frame string
		kind  Kind
		id    string
		check func(t *testing.T, m Message)
	}{
		{`{"JSONRPC":"2.0","ID":1,"METHOD":"ping"}`, KindInvalid, "", nil},
		{`{"jsonrpc":"2.0","Id":2,"method":"ping"}`, KindNotification, "", nil},
		{`{"jsonrpc":"2.0","id":3,"Method":"ping","method":"nosuch"}`, KindRequest, "3", func(t *testing.T, m Message) {
			require.Equal(t, "nosuch", m.Method)
		}},
		{`{"jsonrpc":"2.0","id":4,"method":"x","Params":{"a":1}}`, KindRequest, "4", func(t *testing.T, m Message) {
			require.Nil(t, m.Params)
		}},
		{`{"jsonrpc":"2.0","\u0069d":5,"method":"ping"}`, KindRequest, "5", nil}, // an escape spelling "id" is "id"
		{`{"jsonrpc":"2.0","id":6,"method":"ping","params":{"ID":1,"Method":2}}`, KindRequest, "6", func(t *testing.T, m Message) {
			require.JSONEq(t, `{"ID":1,"Method":2}`, string(m.Params), "members inside params are the method's")
		}},
	}
	for _, tc := range cases {
		t.Run(tc.frame, func(t *testing.T) {
			msgs, _ := Decode([]byte(tc.frame))
			require.Len(t, msgs, 1)
			m := msgs[0]
			require.Equal(t, tc.kind, m.Kind, "%+v", m)
			if tc.id == "" {
				require.Nil(t, m.ID)
			} else {
				require.Equal(t, tc.id, string(m.ID))
			}
			if tc.check != nil {
				tc.check(t, m)
			}
		})
	}
}

func FuzzExactMembersAgreesWithAMap(f *testing.F) {
	for _, s := range []string{`{"jsonrpc":"2.0","id":1,"method":"a"}`, `{"ID":1}`, `{"a":{"Id":1},"b":["Method"]}`, `{"x\"Id":1}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		var members map[string]json.RawMessage
		if json.Unmarshal(raw, &members) != nil {
			return
		}
		folded := false
		for k := range members {
			for _, n := range memberNames {
				if k != n && strings.EqualFold(k, n) {
					folded = true
				}
			}
		}
		if folded && exactMembers(raw) {
			t.Fatalf("exactMembers(%q) missed a member differing only in case", raw)
		}
	})
}

// MiscasedMember names the first member, in order, that differs only in
// case from one of the names (an escape spelling one is decoded first);
// members unlike every name, and members of nested values, are not its
// business.
func TestMiscasedMember(t *testing.T) {
	names := []string{"channel", "channels", "accessToken"}
	for obj, want := range map[string][2]string{
		`{}`:                                {},
		`{"channel":"a","accessToken":"t"}`: {},
		`{"chann\u0065l":"a"}`:              {},
		`{"channels":[{"Channel":1}],"x":{"Channel":1}}`: {},
		`{"history":true,"since":{}}`:                    {},
		`{"Channels":["a"]}`:                             {"Channels", "channels"},
		`{"x":1,"channel":"a","CHANNEL":"b"}`:            {"CHANNEL", "channel"},
		`{"accesstoken":"t"}`:                            {"accesstoken", "accessToken"},
		`{"a\"b":1,"Channel":2}`:                         {"Channel", "channel"},
		`{"\u0043hannel":"a"}`:                           {"Channel", "channel"},
		` { "channel" : "a" , "CHANNELS" : [] } `:        {"CHANNELS", "channels"},
	} {
		name, meant, found := MiscasedMember([]byte(obj), names...)
		require.Equal(t, want[0] != "", found, obj)
		require.Equal(t, want, [2]string{name, meant}, obj)
	}
}

func FuzzMiscasedMemberAgreesWithAMap(f *testing.F) {
	for _, s := range []string{`{"channel":"a"}`, `{"Channel":1}`, `{"a":{"b":1},"c":["d"]}`, `{"x\"channel":1}`, `{"\u0063hannel":1}`, `{"\u0043hannel":1,"y":2}`} {
		f.Add([]byte(s))
	}
	names := []string{"channel", "channels", "since"}
	f.Fuzz(func(t *testing.T, raw []byte) {
		var members map[string]json.RawMessage
		// Frames are UTF-8 (a text frame that is not is closed with 1007);
		// encoding/json would replace a bad byte of a name.
		if !utf8.Valid(raw) || json.Unmarshal(raw, &members) != nil || members == nil {
			return
		}
		miscased := 0
		for k := range members {
			if !slices.Contains(names, k) && slices.ContainsFunc(names, func(n string) bool { return strings.EqualFold(n, k) }) {
				miscased++
			}
		}
		name, meant, found := MiscasedMember(raw, names...)
		if found != (miscased > 0) {
			t.Fatalf("MiscasedMember(%q) = %q, %v; the map has %d miscased members", raw, name, found, miscased)
		}
		if found {
			if _, ok := members[name]; !ok || slices.Contains(names, name) || !strings.EqualFold(name, meant) || !slices.Contains(names, meant) {
				t.Fatalf("MiscasedMember(%q) = %q, %q: not a miscased member of it", raw, name, meant)
			}
		}
	})
}

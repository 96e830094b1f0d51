package server

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/heraldhq/herald/core/broker"
)

func TestParseSubscribe(t *testing.T) {
	cases := []struct {
		params string
		names  []string
		msg    string // the -32602 error's message; "" when accepted
	}{
		{`{"channel":"a b  c"}`, []string{"a", "b", "c"}, ""},
		{`{"channels":["a","b","a"]}`, []string{"a", "b"}, ""},
		{`{"channels":"a b"}`, []string{"a", "b"}, ""},
		{`{"channel":"a","channels":["b"]}`, []string{"a", "b"}, ""},
		{`{"channel":"a","since":{"a":{"seq":3,"epoch":"e"}}}`, []string{"a"}, ""},
		{`{"channel":"a","since":{"a":{"seq":0,"epoch":"e"}}}`, []string{"a"}, ""},
		{`{"channel":"a","since":{}}`, []string{"a"}, ""},
		{`{"channel":"a","since": { "a" : { "seq" : 3 , "epoch" : "e" } } }`, []string{"a"}, ""},
		{`{"channel":"a","since": { "a" :  7 }}`, nil,
			`invalid params: since.a must be an object {seq, epoch} (the position a subscribe result gave), not number`},
		{`{"channel":"a","since":null}`, []string{"a"}, ""},
		{`{"channel":"a","since":{"b":{"seq":3,"epoch":"e"}}}`, nil,
			`invalid params: since names "b", which is not among the channels to subscribe`},
		{`{"channel":"a","since":5}`, nil,
			`invalid params: since must be an object {"<channel>": {seq, epoch}}, not number`},
		{`{"channel":"a","since":{"a":5}}`, nil,
			`invalid params: since.a must be an object {seq, epoch} (the position a subscribe result gave), not number`},
		{`{"channel":"a","since":{"a":null}}`, nil,
			`invalid params: since.a must be an object {seq, epoch} (the position a subscribe result gave), not null`},
		// Left out or empty: no error; the resume answers recovered: false.
		{`{"channel":"a","since":{"a":{}}}`, []string{"a"}, ""},
		{`{"channel":"a","since":{"a":{"seq":3}}}`, []string{"a"}, ""},
		{`{"channel":"a","since":{"a":{"epoch":"e"}}}`, []string{"a"}, ""},
		{`{"channel":"a","since":{"a":{"seq":3,"epoch":""}}}`, []string{"a"}, ""},
		{`{"channel":"a","since":{"a":{"seq":3,"epoch":null}}}`, nil,
			`invalid params: since.a.epoch must be a string, not null`},
		{`{"channel":"r1","since":{"r1":{"seq":-1,"epoch":"e"}}}`, nil,
			"invalid params: since.r1.seq must be a non-negative integer, not number -1"},
		{`{"channel":"r1","since":{"r1":{"seq":1.5,"epoch":"e"}}}`, nil,
			"invalid params: since.r1.seq must be a non-negative integer, not number 1.5"},
		{`{"channel":"r1","since":{"r1":{"seq":1,"epoch":7}}}`, nil,
			"invalid params: since.r1.epoch must be a string, not number"},
		{`{"channels":["a","b"],"since":{"b":{"seq":1,"epoch":7},"a":{"seq":-1,"epoch":"e"}}}`, nil,
			"invalid params: since.a.seq must be a non-negative integer, not number -1"},
		// A name that is not printable is quoted, never echoed raw.
		{`{"channels":["a\nb"],"since":{"a\nb":{"seq":true}}}`, nil,
			`invalid params: since["a\nb"].seq must be a non-negative integer, not bool`},
		{`{}`, nil, `invalid params: give "channel" (a space-separated string) or "channels" (an array)`},
		{`{"channel":null}`, nil, `invalid params: give "channel" (a space-separated string) or "channels" (an array)`},
		{`{"channels":[]}`, nil, `invalid params: "channels" is empty: name at least one channel`},
		{`{"channel":""}`, nil, `invalid params: "channel" is empty: name at least one channel`},
		{`{"channel":"  "}`, nil, `invalid params: "channel" is empty: name at least one channel`},
		{`{"channel":"","channels":[]}`, nil, `invalid params: "channel" and "channels" are both empty: name at least one channel`},
		{`{"channel":7}`, nil, `invalid params: "channel"/"channels" must be a space-separated string or an array of strings`},
		{`{"channels":[1]}`, nil, `invalid params: "channel"/"channels" must be a space-separated string or an array of strings`},
		{`[]`, nil, "invalid params: params must be an object"},
	}
	for _, tc := range cases {
		p, names, err := parseSubscribe(json.RawMessage(tc.params))
		if tc.msg != "" {
			require.NotNil(t, err, tc.params)
			require.Equal(t, -32602, err.Code, tc.params)
			require.Equal(t, tc.msg, err.Message, tc.params)
			continue
		}
		require.Nil(t, err, tc.params)
		require.Equal(t, tc.names, names, tc.params)
		if strings.Contains(tc.params, `"seq":3,"epoch":"e"`) || strings.Contains(tc.params, `"seq" : 3 , "epoch" : "e"`) {
			require.Equal(t, map[string]broker.Position{"a": {Seq: 3, Epoch: "e"}}, p.Since, tc.params)
		}
	}
}

func TestParsePublish(t *testing.T) {
	ns, err := parsePublish([]byte(`{"notifications":[{"channel":"a","event":"e","object_type":"t","object":{ "x" : 1 }}]}`))
	require.NoError(t, err)
	require.Len(t, ns, 1)
	require.Equal(t, `{"x":1}`, string(ns[0].Object), "objects are compacted")
	ns, err = parsePublish([]byte(`{"channel":"a","event":"entering","object_type":"t","object_name":"no matter","object":null}`))
	require.NoError(t, err)
	require.Equal(t, "no matter", ns[0].ObjectName)
}

func FuzzParseSubscribe(f *testing.F) {
	for _, s := range []string{`{"channel":"a b"}`, `{"channels":["a"],"since":{"a":{"seq":1,"epoch":"x"}}}`, `{"channel":null}`, `{"channels":{}}`,
		`{"channels":["a"],"since":{"a":null}}`, `{"channels":["a"],"since":{"a":{"seq":1}}}`, `{"channels":["a","b"],"since":{"b":{"seq":1,"epoch":""},"a":[]}}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, params []byte) {
		p, names, err := parseSubscribe(params)
		if err != nil {
			if err.Code != -32602 {
				t.Fatalf("code %d for %q", err.Code, params)
			}
			return
		}
		if p == nil || len(names) == 0 {
			t.Fatalf("accepted %q without channels", params)
		}
		for ch := range p.Since {
			if !contains(names, ch) {
				t.Fatalf("since %q not among %v", ch, names)
			}
		}
	})
}

func FuzzParsePublish(f *testing.F) {
	for _, s := range []string{`{"channel":"a","event":"e","object_type":"t","object":{}}`, `{"notifications":[{}]}`, `[]`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		ns, err := parsePublish(body)
		if err != nil {
			return
		}
		for _, n := range ns {
			if validChannel(n.Channel) != nil || n.Event == "" || n.ObjectType == "" || !json.Valid(n.Object) {
				t.Fatalf("accepted a bad notification %+v from %q", n, body)
			}
		}
	})
}

// scanPublish accepts the bodies backends send, pretty-printed or not,
// and gives what encoding/json does; the rest it leaves to encoding/json.
func TestScanPublish(t *testing.T) {
	for _, tc := range []struct {
		body string
		fast bool
	}{
		{`{"notifications":[{"channel":"bench-1","event":"tick","object_type":"bench","object":{"sent_ns":1763920000000000000,"n":1}},{"channel":"bench-2","event":"tick","object_type":"bench","object":{"sent_ns":1763920000000000000,"n":2}}]}`, true},
		{" {\n \"notifications\" : [ {\"channel\" : \"chat:group:2\", \"event\":\"new\",\t\"object_type\":\"message\",\r\n\"object_name\":null, \"object\": { \"text\" : \"a \\\" \\u00e9 \\n b\", \"x\": [ 1, -2.5e+3, true, false, null, {} , [ ] ] } } ] }\n", true},
		{`{"channel":"a","event":"entering","object_type":"t","object_name":"no matter","object":null}`, true},
		{`{"object":"x","object_type":"typé","event":"ünïcode","channel":"a"}`, true},
		{`{"channel":"a","event":"e","object_type":"t","object_name":"","object":"<b>&</b>"}`, true},
		{`{"channel":"a","event":"e","object_type":"t","object":1,"object":2}`, false},                // duplicate: the last wins
		{`{"channel":"a","event":"e\u0041","object_type":"t","object":1}`, false},                     // an escape in a name
		{`{"channel":"a","event":"e","object_type":"t","object":1,"extra":1}`, false},                 // not a field
		{`{"notifications":[{"channel":"a","event":"e","object_type":"t","object":1}],"x":1}`, false}, // a key beside notifications
		{`{"channel":"a","event":"e","object_type":"t","object":01}`, false},
		{`{"channel":"a","event":"e","object_type":"t","object":"\x"}`, false},
		{`{"channel":"$server","event":"e","object_type":"t","object":1}`, false},
		{`{"channel":"a","event":"","object_type":"t","object":1}`, false},
		{`{"notifications":[]}`, false},
		{`{"channel":"a","event":"e","object_type":"t","object":1} x`, false},
		{"{\"channel\":\"a\",\"event\":\"\xff\",\"object_type\":\"t\",\"object\":1}", false}, // json replaces bad UTF-8
	} {
		fast, ok := scanPublish([]byte(tc.body))
		require.Equal(t, tc.fast, ok, tc.body)
		ref, err := parsePublishJSON([]byte(tc.body))
		if ok {
			require.NoError(t, err, tc.body)
			require.Equal(t, ref, fast, tc.body)
		}
		got, gerr := parsePublish([]byte(tc.body))
		require.Equal(t, ref, got, tc.body)
		require.Equal(t, err, gerr, tc.body)
	}
}

// Whatever scanPublish accepts, encoding/json accepts the same way.
func FuzzScanPublish(f *testing.F) {
	for _, s := range []string{
		`{"notifications":[{"channel":"bench-1","event":"tick","object_type":"bench","object":{"sent_ns":1,"n":1}},{"channel":"b","event":"tick","object_type":"bench","object":[1,"x"]}]}`,
		`{"channel":"a","event":"e","object_type":"t","object_name":null,"object":{"a":{"b":[1.5e3,-0,true,null,"\u00e9\n"]}}}`,
		` { "channel" : "a" , "event" : "é" , "object_type" : "t" , "object" : [ ] } `,
		`{"channel":"a","event":"e","object_type":"t","object":1,"object":2}`,
		`{"notifications":[{"channel":"a","event":"e","object_type":"t","object":{"x":1}},{"channel":"b","event":"e","object_type":"t","object":{ "y" : [1, 2] }},{"channel":"c","event":"e","object_type":"t","object":"z"}]}`,
		// Names longer than the room kept for them, and events that change.
		`{"notifications":[{"channel":"a-channel-name-of-forty-bytes-0123456789","event":"an-event-name-as-long","object_type":"t","object":1},{"channel":"b","event":"other","object_type":"t2","object":2},{"channel":"c-again-a-long-channel-name","event":"other","object_type":"t2","object_name":"a-name","object":3}]}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		fast, ok := scanPublish(body)
		if !ok {
			return
		}
		ref, err := parsePublishJSON(body)
		if err != nil {
			t.Fatalf("scanPublish accepted %q, which encoding/json refuses: %v", body, err)
		}
		require.Equal(t, ref, fast, "%q", body)
	})
}

// An object already compact is not copied: a request whose objects are
// allocates one buffer less than one whose objects need compacting, and a
// body mixing both reads as encoding/json reads it.
func TestScanPublishCopiesOnlyObjectsToCompact(t *testing.T) {
	compact := scenarioCBody(10, 1)
	spaced := bytes.ReplaceAll(compact, []byte(`"n":`), []byte(`"n": `))
	mixed := bytes.Replace(compact, []byte(`"n":`), []byte(`"n" :`), 3)
	for _, body := range [][]byte{compact, spaced, mixed} {
		ref, err := parsePublishJSON(body)
		require.NoError(t, err)
		got, ok := scanPublish(body)
		require.True(t, ok, "%s", body)
		require.Equal(t, ref, got, "%s", body)
	}
	copies := testing.AllocsPerRun(100, func() { scanPublish(spaced) })
	none := testing.AllocsPerRun(100, func() { scanPublish(compact) })
	require.Equal(t, copies-1, none)
}

// The string fields of a request are one allocation: scenario c's body of
// ten notifications costs its slice of notifications and one array of
// names.
func TestScanPublishNamesAreOneAllocation(t *testing.T) {
	body := scenarioCBody(10, 1)
	ns, ok := scanPublish(body)
	require.True(t, ok)
	ref, err := parsePublishJSON(body)
	require.NoError(t, err)
	require.Equal(t, ref, ns)
	require.Equal(t, 2.0, testing.AllocsPerRun(100, func() { scanPublish(body) }))
}

// A publish's reply is byte for byte what encoding/json made of it.
func TestPublishReplyBytes(t *testing.T) {
	for _, results := range [][]publishResult{
		nil,
		{},
		{{Channel: "bench-1", Seq: 1, ID: "01JABCDEFGHJKMNPQRSTVWXYZ0"}},
		{{Channel: `a"b\c`, Seq: 18446744073709551615, ID: "x"}, {Channel: "<b>&amp;</b>:~", Seq: 0, ID: ""}},
		{{Channel: "a", Seq: 2, ID: "x"}, {Channel: "b>", Seq: 3, ID: "y"}},
		{{Channel: "a", Seq: 2, ID: "\u2028\xff\x01"}},
	} {
		_, want := encodeReply(200, map[string]any{"results": results})
		_, got := encodeReply(200, publishReply(results))
		require.Equal(t, string(want), string(got))
		_, got = encodePublishReply(200, publishReply(results))
		require.Equal(t, string(want), string(got))
	}
}

// readBody reads what io.ReadAll does, whatever Content-Length says, and
// stops at the limit.
func TestReadBody(t *testing.T) {
	body := strings.Repeat("x", 1500)
	for _, cl := range []int64{-1, 0, 10, 1499, 1500, 1501, 5000} {
		got, err := readBody(strings.NewReader(body), cl, 4096)
		require.NoError(t, err, cl)
		require.Equal(t, body, string(got), cl)
		_, err = readBody(http.MaxBytesReader(httptest.NewRecorder(), io.NopCloser(strings.NewReader(body)), 1000), cl, 1000)
		require.Error(t, err, cl)
	}
}

// validJSON is encoding/json.Valid.
func FuzzValidJSON(f *testing.F) {
	for _, s := range []string{
		`{"sent_ns":1763920000000000000,"n":1}`, ` [1, -2.5e+3, true, false, null, {} , [ ] ] `, `"\u00e9\n"`, "\"\xff\"",
		`0`, `-0.5E-7`, `01`, `1.`, `{"a":1,}`, `[1 2]`, `"\x"`, "\"\x01\"", `nul`, ``, ` `, `{} {}`, `{"a" 1}`,
		strings.Repeat("[", scanMaxDepth+2) + strings.Repeat("]", scanMaxDepth+2),
		strings.Repeat(`{"a":`, 10001) + "1" + strings.Repeat("}", 10001),
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if got, want := validJSON(b), json.Valid(b); got != want {
			t.Fatalf("validJSON(%q) = %v, json.Valid: %v", b, got, want)
		}
	})
}

// BenchmarkValidJSON is the check of an emitted object: validJSON against
// encoding/json.Valid.
func BenchmarkValidJSON(b *testing.B) {
	obj := []byte(`{"id":8,"user_id":72,"group_id":2,"serial":8,"text":"hello world ;)","deleted_at":null,"edited_at":null,"created_at":"2018-10-15T17:54:41Z"}`)
	for _, tc := range []struct {
		name  string
		valid func([]byte) bool
	}{{"validJSON", validJSON}, {"json.Valid", json.Valid}} {
		b.Run(tc.name, func(b *testing.B) {
			b.SetBytes(int64(len(obj)))
			b.ReportAllocs()
			for b.Loop() {
				if !tc.valid(obj) {
					b.Fatal("invalid")
				}
			}
		})
	}
}

// A released slice of notifications comes back empty and cleared: the pool
// holds no request's strings or objects.
func TestReleasedNotificationsAreCleared(t *testing.T) {
	ns, ok := scanPublish(scenarioCBody(10, 1))
	require.True(t, ok)
	releaseNotifications(ns)
	again := takeNotifications(10)
	require.Empty(t, again)
	for _, n := range again[:cap(again)] {
		require.Zero(t, n.Channel+n.Event+n.ObjectType+n.ObjectName)
		require.Nil(t, n.Object)
	}
}

// Publishes that reuse each other's slices of notifications, in parallel,
// each get the replies and publications of their own bodies.
func TestPublishesReusingNotificationsKeepTheirOwn(t *testing.T) {
	srv, err := New(Options{Config: testConfig()})
	require.NoError(t, err)
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 200 {
				first := int64(g*2500 + i*10) // each goroutine its own channels
				status, reply := srv.publishBody(t.Context(), time.Now(), "test-key", "", scenarioCBody(10, first))
				if !assert.Equal(t, http.StatusOK, status, "%s", reply) {
					return
				}
				var got struct{ Results []publishResult }
				if !assert.NoError(t, json.Unmarshal(reply, &got)) || !assert.Len(t, got.Results, 10) {
					return
				}
				for k, r := range got.Results {
					assert.Equal(t, "bench-"+strconv.FormatInt((first+int64(k))%10000, 10), r.Channel)
				}
			}
		})
	}
	wg.Wait()
}

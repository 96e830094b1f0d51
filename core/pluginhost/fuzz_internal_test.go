package pluginhost

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/heraldhq/herald/core/rpc"
	pluginpb "github.com/heraldhq/herald/sdk/proto"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// FuzzEmitFrame: the host's hand decoder of plugin emit batches never
// panics, and it reads every batch the generated code reads, field for
// field (it may refuse less, never more).
func FuzzEmitFrame(f *testing.F) {
	for _, b := range []*pluginpb.EmitBatch{
		{Id: 1, ColumnarAck: true, Notifications: []*pluginpb.Notification{
			{Channel: "chat:room", Event: "message", ObjectType: "msg", ObjectName: "entering", Object: []byte(`{"t":"héllo"}`)},
			{Channel: "chat:room", Event: "message", ObjectType: "msg"},
		}},
		{Id: 1 << 40},
		{Notifications: []*pluginpb.Notification{{Channel: "x:y", Object: []byte{}}}},
	} {
		wire, err := proto.Marshal(b)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(wire)
	}
	f.Add(protowire.AppendTag(nil, 2, protowire.BytesType))                             // truncated
	f.Add([]byte{0x12, 0x03, 0x0a, 0x01, 0xff})                                         // invalid UTF-8 channel
	f.Add(protowire.AppendVarint(protowire.AppendTag(nil, 2, protowire.VarintType), 7)) // wrong wire type
	f.Fuzz(func(t *testing.T, wire []byte) {
		var fr emitFrame
		err := fr.decode(wire)
		var want pluginpb.EmitBatch
		werr := proto.Unmarshal(wire, &want)
		if werr != nil {
			return // the generated code refuses it; refusing or reading it are both fine
		}
		if err != nil {
			t.Fatalf("the generated code reads %x but the emit decoder refuses it: %v", wire, err)
		}
		if fr.id != want.GetId() || fr.columnar != want.GetColumnarAck() || len(fr.ns) != len(want.GetNotifications()) {
			t.Fatalf("batch header differs: id %d/%d columnar %v/%v notifications %d/%d",
				fr.id, want.GetId(), fr.columnar, want.GetColumnarAck(), len(fr.ns), len(want.GetNotifications()))
		}
		for i, n := range want.GetNotifications() {
			got := fr.ns[i]
			if got.Channel != n.GetChannel() || got.Event != n.GetEvent() || got.ObjectType != n.GetObjectType() ||
				got.ObjectName != n.GetObjectName() || !bytes.Equal(got.Object, n.GetObject()) {
				t.Fatalf("notification %d differs: %+v vs %v", i, got, n)
			}
		}
	})
}

// FuzzPluginHTTPResponse: whatever stream of response chunks a plugin
// sends, relaying it never panics, answers a status HTTP allows (a bad one
// is a 502), and writes no header that could split the response.
func FuzzPluginHTTPResponse(f *testing.F) {
	seq := func(chunks ...*pluginpb.HTTPResponseChunk) []byte {
		var out []byte
		for _, c := range chunks {
			b, err := proto.Marshal(c)
			if err != nil {
				f.Fatal(err)
			}
			out = protowire.AppendBytes(out, b)
		}
		return out
	}
	f.Add(seq(&pluginpb.HTTPResponseChunk{Status: 200, Headers: []*pluginpb.Header{{Name: "Content-Type", Values: []string{"text/plain"}}}, Body: []byte("a")},
		&pluginpb.HTTPResponseChunk{Body: []byte("b")}))
	f.Add(seq(&pluginpb.HTTPResponseChunk{Status: 1000}))
	f.Add(seq(&pluginpb.HTTPResponseChunk{Status: 101}))
	f.Add(seq(&pluginpb.HTTPResponseChunk{Status: -5}))
	f.Add(seq(&pluginpb.HTTPResponseChunk{Headers: []*pluginpb.Header{{Name: "X-A\r\nSet-Cookie", Values: []string{"v\r\nInjected: 1"}}}}))
	f.Add([]byte{0x05, 0x08})
	f.Fuzz(func(t *testing.T, data []byte) {
		recv := func() (*pluginpb.HTTPResponseChunk, error) {
			if len(data) == 0 {
				return nil, io.EOF
			}
			b, n := protowire.ConsumeBytes(data)
			if n < 0 {
				return nil, errors.New("transport broke")
			}
			data = data[n:]
			var c pluginpb.HTTPResponseChunk
			if err := proto.Unmarshal(b, &c); err != nil {
				return nil, err
			}
			return &c, nil
		}
		w := httptest.NewRecorder()
		func() {
			// A transport that breaks after the first chunk cuts the
			// response: net/http's abort, and nothing else, may escape.
			defer func() {
				if p := recover(); p != nil && p != http.ErrAbortHandler {
					panic(p)
				}
			}()
			relayResponse(w, recv, func(err error) *rpc.Error { return rpc.Errorf(rpc.CodeInternal, "%v", err) }, 0, nil)
		}()
		if w.Code < 200 || w.Code > 599 {
			t.Fatalf("status %d written", w.Code)
		}
		for name, vs := range w.Result().Header {
			if !validHeaderName(name) {
				t.Fatalf("header name %q written", name)
			}
			for _, v := range vs {
				if !validHeaderValue(v) {
					t.Fatalf("header %s value %q written", name, v)
				}
			}
		}
	})
}

package pluginhost

import (
	"encoding/json"
	"fmt"
	"testing"

	pluginpb "github.com/heraldhq/herald/sdk/proto"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// The hand decoder must read what the generated code writes, field for field.
func TestEmitFrameDecodesWhatProtoEncodes(t *testing.T) {
	var f emitFrame
	for round, batch := range []*pluginpb.EmitBatch{
		{Id: 7, ColumnarAck: true, Notifications: []*pluginpb.Notification{
			{Channel: "chat:room", Event: "message", ObjectType: "msg", ObjectName: "entering", Object: []byte(`{"t":"héllo"}`)},
			{Channel: "chat:room", Event: "message", ObjectType: "msg", Object: []byte(`1`)},
			{Channel: "chat:other", Event: "e", ObjectType: "o"}, // no object
			{Channel: "chat:empty", Event: "e", ObjectType: "o", Object: []byte{}},
		}},
		{Id: 8}, // no notifications, columnar off
		{Id: 1 << 40, Notifications: []*pluginpb.Notification{{Channel: "x:" + string(make([]byte, 300)), Event: "e", ObjectType: "o", Object: []byte(`{}`)}}},
	} {
		wire, err := proto.Marshal(batch)
		require.NoError(t, err)
		// An unknown field (a later protocol's) is skipped.
		wire = protowire.AppendTag(wire, 99, protowire.BytesType)
		wire = protowire.AppendBytes(wire, []byte("future"))
		require.NoError(t, f.decode(wire), "round %d", round)
		require.Equal(t, batch.GetId(), f.id)
		require.Equal(t, batch.GetColumnarAck(), f.columnar)
		require.Len(t, f.ns, len(batch.GetNotifications()))
		for i, n := range batch.GetNotifications() {
			want := Notification{Channel: n.GetChannel(), Event: n.GetEvent(), ObjectType: n.GetObjectType(),
				ObjectName: n.GetObjectName()}
			if len(n.GetObject()) > 0 {
				want.Object = json.RawMessage(n.GetObject())
			}
			require.Equal(t, want, f.ns[i], "round %d notification %d", round, i)
		}
		// The objects are windows on the message, capped, so that a
		// Core appending to one cannot write over what follows it.
		for i := range f.ns {
			require.Equal(t, len(f.ns[i].Object), cap(f.ns[i].Object), "round %d notification %d", round, i)
		}
	}
}

func TestEmitFrameRefusesBadInput(t *testing.T) {
	var f emitFrame
	bad, err := proto.Marshal(&pluginpb.EmitBatch{Notifications: []*pluginpb.Notification{{Channel: "ok", Event: "e"}}})
	require.NoError(t, err)
	require.Error(t, f.decode(bad[:len(bad)-1]), "truncated")

	// Invalid UTF-8 in a string field, as the generated code refuses it.
	var n []byte
	n = protowire.AppendTag(n, 1, protowire.BytesType)
	n = protowire.AppendBytes(n, []byte{0xff, 'a'})
	var b []byte
	b = protowire.AppendTag(b, 2, protowire.BytesType)
	b = protowire.AppendBytes(b, n)
	require.ErrorIs(t, f.decode(b), errUTF8)
	require.Error(t, proto.Unmarshal(b, &pluginpb.EmitBatch{}))
}

func TestEmitFrameInternsWithinBounds(t *testing.T) {
	var f emitFrame
	a, err := f.str([]byte("chat:room"))
	require.NoError(t, err)
	b, err := f.str([]byte("chat:room"))
	require.NoError(t, err)
	require.Equal(t, a, b)
	require.Equal(t, 1, len(f.strs))
	for i := 0; i < 3*internMaxEntries; i++ {
		_, err := f.str([]byte(fmt.Sprintf("chat:%d", i)))
		require.NoError(t, err)
		require.LessOrEqual(t, len(f.strs), internMaxEntries)
	}
	long := string(make([]byte, internMaxLen+1))
	_, err = f.str([]byte(long))
	require.NoError(t, err)
	_, kept := f.strs[long]
	require.False(t, kept, "long strings are not interned")
}

// BenchmarkEmitFrameDecode decodes an emit batch of 100 small notifications
// to 100 channels, as plugin-bench's batched scenario sends them.
func BenchmarkEmitFrameDecode(b *testing.B) {
	batch := &pluginpb.EmitBatch{Id: 1, ColumnarAck: true}
	for i := range 100 {
		batch.Notifications = append(batch.Notifications, &pluginpb.Notification{
			Channel: fmt.Sprintf("emitter:%d", i), Event: "tick", ObjectType: "emit",
			Object: []byte(`{"emit_ns":1795843200000000000}`)})
	}
	wire, err := proto.Marshal(batch)
	require.NoError(b, err)
	var f emitFrame
	b.ReportAllocs()
	for b.Loop() {
		if err := f.decode(wire); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(batch.Notifications)), "ns/n")
}

package pluginhost

import (
	"errors"
	"unicode/utf8"

	"google.golang.org/grpc/encoding"
	protoenc "google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
)

// The event path's incoming batches are the host's hottest decoding: the
// generated code makes one message, three or four strings and one byte
// slice per notification, and the strings repeat (a batch mostly goes to a
// few channels, with a few event and object types). hostService.Emit
// receives each EmitBatch as an *emitFrame instead, which decodes the wire
// format (herald_plugin.proto: EmitBatch, Notification) straight into the
// Core's Notifications: repeated strings are interned per stream, and the
// objects are windows on the received message, which the frame holds until
// the Core's Emit has returned (release), rather than copies: the Core
// copies what it keeps anyway (the broker encodes each object into its
// publication). Everything else on the Host server goes through the standard
// proto codec.

// emitCodec is the Host server's codec: the standard proto codec, except for
// *emitFrame.
type emitCodec struct{ std encoding.CodecV2 }

func newEmitCodec() emitCodec { return emitCodec{std: encoding.GetCodecV2(protoenc.Name)} }

func (c emitCodec) Name() string { return protoenc.Name }

func (c emitCodec) Marshal(v any) (mem.BufferSlice, error) { return c.std.Marshal(v) }

func (c emitCodec) Unmarshal(data mem.BufferSlice, v any) error {
	f, ok := v.(*emitFrame)
	if !ok {
		return c.std.Unmarshal(data, v)
	}
	f.release()
	buf := data.MaterializeToBuffer(mem.DefaultBufferPool())
	if err := f.decode(buf.ReadOnlyData()); err != nil {
		buf.Free()
		return err
	}
	// The objects are windows on buf: it is held until the batch is done.
	f.buf = buf
	return nil
}

// Interning bounds: a string longer than internMaxLen is not interned, and
// the table starts afresh when it holds internMaxEntries (a plugin emitting
// to ever new channels then pays what it paid without the table).
const (
	internMaxLen     = 128
	internMaxEntries = 4096
)

// emitFrame is one decoded EmitBatch; one per stream, reused. ns is valid
// until the next decode; its strings are the Core's to keep, its objects
// only until release.
type emitFrame struct {
	id       uint64
	columnar bool
	ns       []Notification
	strs     map[string]string
	// last is the string each field (1..4: channel, event, object type,
	// object name) had in the previous notification: a batch's event and
	// object types mostly repeat from one to the next, and comparing is
	// cheaper than hashing.
	last [5]string
	buf  mem.Buffer // what the objects point into; nil when released
}

// release gives back the received message the objects point into; the
// objects must not be used afterwards.
func (f *emitFrame) release() {
	if f.buf != nil {
		f.buf.Free()
		f.buf = nil
	}
}

var errUTF8 = errors.New("emit batch: string field contains invalid UTF-8")

// field is str for field num, trying the previous notification's value
// first.
func (f *emitFrame) field(num protowire.Number, b []byte) (string, error) {
	if string(b) == f.last[num] {
		return f.last[num], nil
	}
	s, err := f.str(b)
	if err == nil {
		f.last[num] = s
	}
	return s, err
}

func (f *emitFrame) str(b []byte) (string, error) {
	if len(b) == 0 {
		return "", nil
	}
	if s, ok := f.strs[string(b)]; ok {
		return s, nil
	}
	if !utf8.Valid(b) {
		return "", errUTF8
	}
	s := string(b)
	if len(b) <= internMaxLen {
		if f.strs == nil || len(f.strs) >= internMaxEntries {
			f.strs = make(map[string]string, 64)
		}
		f.strs[s] = s
	}
	return s, nil
}

func (f *emitFrame) decode(b []byte) error {
	clear(f.ns)
	f.ns, f.id, f.columnar = f.ns[:0], 0, false
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return protowire.ParseError(n)
		}
		b = b[n:]
		switch {
		case num == 1 && typ == protowire.VarintType:
			f.id, n = protowire.ConsumeVarint(b)
		case num == 2 && typ == protowire.BytesType:
			var v []byte
			if v, n = protowire.ConsumeBytes(b); n >= 0 {
				var nt Notification
				if err := f.notification(v, &nt); err != nil {
					return err
				}
				f.ns = append(f.ns, nt)
			}
		case num == 3 && typ == protowire.VarintType:
			var v uint64
			v, n = protowire.ConsumeVarint(b)
			f.columnar = v != 0
		default: // unknown, or a known number with another wire type: skipped, as proto does
			n = protowire.ConsumeFieldValue(num, typ, b)
		}
		if n < 0 {
			return protowire.ParseError(n)
		}
		b = b[n:]
	}
	for i := range f.ns {
		if len(f.ns[i].Object) == 0 {
			f.ns[i].Object = nil
		}
	}
	return nil
}

func (f *emitFrame) notification(b []byte, nt *Notification) error {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return protowire.ParseError(n)
		}
		b = b[n:]
		if num >= 1 && num <= 5 && typ == protowire.BytesType {
			var v []byte
			if v, n = protowire.ConsumeBytes(b); n < 0 {
				return protowire.ParseError(n)
			}
			var err error
			switch num {
			case 1:
				nt.Channel, err = f.field(num, v)
			case 2:
				nt.Event, err = f.field(num, v)
			case 3:
				nt.ObjectType, err = f.field(num, v)
			case 4:
				nt.ObjectName, err = f.field(num, v)
			case 5:
				// Capped: a Core that appends to it cannot write
				// over the rest of the message.
				nt.Object = v[:len(v):len(v)]
			}
			if err != nil {
				return err
			}
		} else if n = protowire.ConsumeFieldValue(num, typ, b); n < 0 {
			return protowire.ParseError(n)
		}
		b = b[n:]
	}
	return nil
}

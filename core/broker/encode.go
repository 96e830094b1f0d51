package broker

import (
	"strconv"

	"github.com/heraldhq/herald/core/rpc"
)

// Encode appends n as a client receives it, with its id, seq and timestamp
// (epoch milliseconds). Field order is fixed so that encoded bytes are stable.
func Encode(dst []byte, n *Notification, id string, seq uint64, timestampMs int64) []byte {
	dst = append(dst, `{"id":`...)
	dst = rpc.AppendString(dst, id)
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

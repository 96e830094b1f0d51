package broker

import (
	"context"
	"encoding/json"
	"errors"
	"time"
)

// Notification is what a publisher hands to herald: the domain's payload
// and its labels. Herald adds id, channel seq and timestamp.
type Notification struct {
	Channel    string          `json:"channel"`
	Event      string          `json:"event"`
	ObjectType string          `json:"object_type"`
	ObjectName string          `json:"object_name,omitempty"`
	Object     json.RawMessage `json:"object"`
	// Accepted is when herald accepted the notification (the HTTP publish
	// or the plugin's emit arrived); zero: when the broker places it. It
	// is carried into Publication.Accepted for the latency metrics.
	Accepted time.Time `json:"-"`
	// MsgID, when set, makes the publish idempotent across nodes: a broker
	// that is shared by several nodes (NATS) places a notification whose
	// MsgID it has seen within the de-duplication window only once, and
	// answers the retry with the original publication. It is unique per
	// notification (the server derives it from the API key's scope, the
	// Idempotency-Key and the notification's index). A one-node broker may
	// ignore it: the server remembers answers itself.
	MsgID string `json:"-"`
}

// Publication is a notification that has its place in its channel.
// Data is the notification as clients receive it, encoded once and shared
// by every subscriber: never modify it.
type Publication struct {
	Channel string
	Seq     uint64
	ID      string
	Data    []byte
	// More says that more publications of the same Publish call follow
	// this one, so a connection may hold its frame a moment for them: the
	// notifications of one publish then arrive in one batch. It is a hint;
	// a broker that cannot carry it leaves it false.
	More bool
	// Accepted is when the notification was accepted (Notification.Accepted,
	// else when it was placed): the writer measures delivery latency from
	// it (herald_delivery_latency_seconds). Zero for herald's own $server
	// notifications, which are not measured.
	Accepted time.Time
}

// Position is a point in a channel's stream. Epoch changes whenever the
// stream is reset (history lost), so that a seq from an older epoch is never
// taken for one of the current stream.
type Position struct {
	Seq   uint64 `json:"seq"`
	Epoch string `json:"epoch"`
}

// ErrUnrecoverable means the history cannot bridge a client's gap: the epoch
// changed, or the publications after its seq are no longer kept.
var ErrUnrecoverable = errors.New("history cannot recover from that position")

// ErrUnavailable means the broker cannot reach what it stands on (NATS is
// down or has no quorum): nothing was published. HTTP publishes answer
// 503, plugin emits -32050; the caller may retry.
var ErrUnavailable = errors.New("broker unavailable")

// Interest is implemented by a broker that feeds a node only the channels
// it has subscribers on (NATS). The hub calls Watch when a channel gets
// its first subscriber here, before reading its history, and Unwatch when
// it loses its last. Both must return quickly (no network round trip):
// they are called under the hub's locks. After Watch, the broker hands
// the Handler every publication of the channel placed after the history
// read that follows, with no gap (it fills gaps from its store itself).
type Interest interface {
	Watch(channel string)
	Unwatch(channel string)
}

// Checker is implemented by a broker that can be unreachable: Ready
// returns nil when it can publish, else why not (for /readyz).
type Checker interface {
	Ready() error
}

// Handler receives every publication of every channel, in seq order per
// channel and in acceptance order across channels.
type Handler interface {
	HandlePublication(p *Publication)
}

// RunHandler is implemented by a Handler that must be told when a channel
// it is fed starts a new run: its history was lost (with NATS, every
// message of a channel that still has subscribers aged out, see
// history.ttl), and its seq starts again from 1 in a new epoch. The
// subscribers of the channel hold positions of the previous run, which the
// publications that follow do not continue. RunChanged comes before the
// first publication of the new run is handed over, once per run change;
// pos is where the new run's publications continue from ({0, new epoch},
// or a later seq if its first ones are no longer kept). A broker that
// continues a channel's seq instead (the memory broker) never calls it.
type RunHandler interface {
	RunChanged(channel string, pos Position)
}

// Broker assigns positions, keeps history and feeds the node's Handler.
type Broker interface {
	// Publish places each notification in its channel, in order, and returns
	// once all of them are in history. Each is handed to the Handler.
	//
	// Publish is all or nothing, and every broker must keep it so: when it
	// returns an error, none of ns was placed (no seq taken, nothing handed
	// to the Handler, nothing in history), so the caller may retry the whole
	// publish without duplicating any part of it; when it returns nil, all
	// were. A broker checks what can fail (the context, its connection)
	// before placing the first notification, and does not give up half way.
	Publish(ctx context.Context, ns []Notification) ([]*Publication, error)
	// History returns the publications after since, oldest first, and the
	// channel's current position. It fails with ErrUnrecoverable (still with
	// the current position) when the gap cannot be bridged.
	History(ctx context.Context, channel string, since Position) ([]*Publication, Position, error)
	// Position returns the channel's current position. Asking must not make
	// the broker keep anything for a channel that has had no publication:
	// clients subscribe to any number of names that never see one.
	Position(ctx context.Context, channel string) (Position, error)
	// SetHandler sets where publications go; call it before publishing.
	SetHandler(h Handler)
	// Close releases the broker's resources.
	Close() error
}

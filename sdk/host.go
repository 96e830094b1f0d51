package sdk

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/hashicorp/go-hclog"
	pluginpb "github.com/heraldhq/herald/sdk/proto"
)

// Host is the plugin's handle on Herald. It is safe for concurrent use.
type Host interface {
	// Emit publishes notifications and returns once the host has them in
	// channel history (so a call that caused them can answer truthfully),
	// with one Published per notification. Concurrent Emits share batches on
	// one stream; call it from as many goroutines as you like. If ctx ends
	// first, the notifications may or may not have been published.
	// A plugin emits to channels of its own prefixes and to those its
	// plugin block lists in emit_channels (in a namespace some plugin owns);
	// a call holding any other channel is refused whole with CodeForbidden,
	// naming the channel. A notification with a bad field (a channel that
	// is no channel name, an empty Event or ObjectType, a string that is
	// not UTF-8) fails its call alone with CodeInvalidParams, and one over
	// 1 MiB with CodeLimitExceeded, before anything is sent.
	Emit(ctx context.Context, ns ...Notification) ([]Published, error)
	// Subscribe adds a connection to a channel the plugin owns, without
	// asking Authorize (dynamic channels, e.g. a filter room). Only a
	// connection subscribed to one of the plugin's channels, or one whose
	// call to the plugin is running, may be subscribed (CodeForbidden
	// otherwise): a connection id from a Connected event is not enough.
	Subscribe(ctx context.Context, connID, channel string) error
	// Unsubscribe removes a connection from a channel the plugin owns.
	// The client is told with a $server unsubscribed notification whose
	// reason names the plugin (docs/protocol.md), unless that connection
	// is calling the plugin right now: it asked to leave, and the call's
	// reply says so.
	Unsubscribe(ctx context.Context, connID, channel string) error
	// Presence counts the subscribed connections and users of a channel the
	// plugin owns (CodeForbidden for any other).
	Presence(ctx context.Context, channel string) (PresenceInfo, error)
	// CallClient calls a method of a connection's local interface (one the
	// client presented in `hello`) and returns its answer. params is
	// marshalled to JSON unless it is json.RawMessage; it must be a JSON
	// object or array, or nil for none (CodeInvalidParams otherwise). Only
	// a connection subscribed to one of the plugin's channels, or one whose
	// call to the plugin is running, may be called (CodeForbidden
	// otherwise).
	CallClient(ctx context.Context, connID, method string, params any) (json.RawMessage, error)
	// Logger logs through the host's log, with the plugin's name.
	Logger() hclog.Logger
}

// ErrHostGone is returned when the host connection is closed.
var ErrHostGone = errors.New("herald host connection closed")

type host struct {
	client pluginpb.HostClient
	emit   *emitter
	log    hclog.Logger
}

func (h *host) Logger() hclog.Logger { return h.log }

func (h *host) Emit(ctx context.Context, ns ...Notification) ([]Published, error) {
	if len(ns) == 0 {
		return nil, nil
	}
	return h.emit.emit(ctx, ns)
}

func (h *host) Subscribe(ctx context.Context, connID, channel string) error {
	r, err := h.client.Subscribe(ctx, &pluginpb.SubscriptionRequest{ConnId: connID, Channel: channel})
	if err != nil {
		return fmt.Errorf("subscribe %q to %q: %w", connID, channel, err)
	}
	return fromPBError(r.GetError())
}

func (h *host) Unsubscribe(ctx context.Context, connID, channel string) error {
	r, err := h.client.Unsubscribe(ctx, &pluginpb.SubscriptionRequest{ConnId: connID, Channel: channel})
	if err != nil {
		return fmt.Errorf("unsubscribe %q from %q: %w", connID, channel, err)
	}
	return fromPBError(r.GetError())
}

func (h *host) Presence(ctx context.Context, channel string) (PresenceInfo, error) {
	r, err := h.client.Presence(ctx, &pluginpb.PresenceRequest{Channel: channel})
	if err != nil {
		return PresenceInfo{}, fmt.Errorf("presence of %q: %w", channel, err)
	}
	if e := fromPBError(r.GetError()); e != nil {
		return PresenceInfo{}, e
	}
	return PresenceInfo{Count: int(r.GetCount()), Users: r.GetUsers()}, nil
}

func (h *host) CallClient(ctx context.Context, connID, method string, params any) (json.RawMessage, error) {
	p, err := marshalObject(params)
	if err != nil {
		return nil, fmt.Errorf("call %s on %q: params: %w", method, connID, err)
	}
	r, err := h.client.CallClient(ctx, &pluginpb.CallClientRequest{ConnId: connID, Method: method, Params: p})
	if err != nil {
		return nil, fmt.Errorf("call %s on %q: %w", method, connID, err)
	}
	if e := fromPBError(r.GetError()); e != nil {
		return nil, e
	}
	return r.GetResult(), nil
}

func marshalObject(v any) ([]byte, error) {
	switch o := v.(type) {
	case nil:
		return []byte("null"), nil
	case json.RawMessage:
		return o, nil
	case []byte:
		return o, nil
	default:
		return json.Marshal(v)
	}
}

func fromPBError(e *pluginpb.Error) error {
	if e == nil {
		return nil
	}
	return &Error{Code: int(e.GetCode()), Message: e.GetMessage(), Data: e.GetData()}
}

func toPBError(err error) *pluginpb.Error {
	if err == nil {
		return nil
	}
	e := AsError(err)
	return &pluginpb.Error{Code: int32(e.Code), Message: validUTF8(e.Message), Data: e.Data}
}

// validUTF8 makes s fit a protobuf string, which must be UTF-8: a reason
// or message built from bytes that are not would fail the whole reply
// ("grpc: error while marshaling") instead of reaching the client.
func validUTF8(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	return strings.ToValidUTF8(s, "\uFFFD")
}

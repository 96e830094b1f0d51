package client

import (
	"encoding/json"
	"fmt"

	"github.com/heraldhq/herald/sdk/codes"
)

// ServerChannel carries herald's own notifications (token_expired,
// shutdown, resync, unsubscribed); it needs no subscription.
const ServerChannel = "$server"

// Unsubscribed is a channel the client no longer holds although it did not
// unsubscribe: herald ended it (a $server unsubscribed: the token expired
// past auth.expiry_grace, a plugin ended it, or a reload removed its
// plugin), or herald refused it when
// the client re-subscribed after a reconnect. Reason says which, in words.
type Unsubscribed struct {
	Channel string `json:"channel"`
	Reason  string `json:"reason"`
}

// Notification is one notification as herald delivers it.
type Notification struct {
	ID         string          `json:"id"`
	Channel    string          `json:"channel"`
	Seq        uint64          `json:"seq"`
	Timestamp  int64           `json:"timestamp"` // epoch ms
	Event      string          `json:"event"`
	ObjectType string          `json:"object_type"`
	ObjectName string          `json:"object_name,omitempty"`
	Object     json.RawMessage `json:"object"` // the publisher's payload, verbatim
}

// Batch is the params of onNotificationReceived: notifications oldest first.
type Batch struct {
	Notifications []Notification `json:"notifications"`
}

// Position is where a channel stands: the seq of its last notification and
// the epoch of its history. A changed epoch means history was lost.
type Position struct {
	Seq   uint64 `json:"seq"`
	Epoch string `json:"epoch"`
}

// Subscription is one entry of subscribe's result.
type Subscription struct {
	Channel   string `json:"channel"`
	Seq       uint64 `json:"seq"`
	Epoch     string `json:"epoch"`
	Recovered *bool  `json:"recovered,omitempty"` // set when the subscribe resumed
}

// Presence answers Client.Presence.
type Presence struct {
	Count int      `json:"count"` // subscribed connections
	Users []string `json:"users"` // the distinct user ids among them
}

// HelloResult is what herald answered to the connection's hello.
type HelloResult struct {
	SessionID string  `json:"session_id"`
	UserID    *string `json:"user_id"`
	Server    struct {
		Name    string `json:"name"`
		Version string `json:"version"`
	} `json:"server"`
	Limits struct {
		MaxBatch      int `json:"max_batch"`
		MaxFrameBytes int `json:"max_frame_bytes"`
	} `json:"limits"`
}

// JSON-RPC error codes herald uses (docs/protocol.md).
const (
	CodeParseError        = codes.ParseError
	CodeInvalidRequest    = codes.InvalidRequest
	CodeMethodNotFound    = codes.MethodNotFound
	CodeInvalidParams     = codes.InvalidParams
	CodeInternal          = codes.Internal
	CodeApplication       = -32000 // an error a local-interface method returned
	CodeUnauthenticated   = codes.Unauthenticated
	CodeForbidden         = codes.Forbidden
	CodeUnknownNamespace  = codes.UnknownNamespace
	CodeLimitExceeded     = codes.LimitExceeded
	CodeRateLimited       = codes.RateLimited
	CodePluginUnavailable = codes.PluginUnavailable
)

// Error is a JSON-RPC error: herald's answer to a call, or what a
// local-interface method returns to make herald's caller see a given code.
type Error struct {
	Code    int             `json:"code"`
	Message string          `json:"message"`
	Data    json.RawMessage `json:"data,omitempty"`
}

func (e *Error) Error() string {
	if len(e.Data) > 0 {
		return fmt.Sprintf("herald error %d: %s (%s)", e.Code, e.Message, e.Data)
	}
	return fmt.Sprintf("herald error %d: %s", e.Code, e.Message)
}

// Refused lists the channels of a refused subscribe (the error's
// data.channels), with why each was refused.
func (e *Error) Refused() []Refusal {
	var d struct {
		Channels []Refusal `json:"channels"`
	}
	if len(e.Data) == 0 || json.Unmarshal(e.Data, &d) != nil {
		return nil
	}
	return d.Channels
}

// Refusal is one channel herald refused to subscribe.
type Refusal struct {
	Channel string `json:"channel"`
	Code    int    `json:"code"`
	Reason  string `json:"reason"`
}

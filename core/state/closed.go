package state

import (
	"errors"
	"time"
)

// ErrClosed: the Store was closed (the plugin stopped or herald is shutting
// down); a Watch on it ends with this error.
var ErrClosed = errors.New("state: store closed")

// MinTTL is the shortest TTL a write may ask for: JetStream counts message
// TTLs in whole seconds, and both backends keep the same rule.
const MinTTL = time.Second

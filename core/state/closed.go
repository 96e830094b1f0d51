package state

import "errors"

// ErrClosed: the Store was closed (the plugin stopped or herald is shutting
// down); a Watch on it ends with this error.
var ErrClosed = errors.New("state: store closed")

// Package harness is the seam between package sdk and package sdktest: sdk
// fills ServeInProcess at init so that sdktest can run a plugin in go-plugin's
// in-process test mode without sdk exporting anything for it.
package harness

import (
	"context"

	"github.com/hashicorp/go-hclog"
	plugin "github.com/hashicorp/go-plugin"
)

// ServeInProcess serves p (an sdk.Plugin) until ctx ends, sending the
// address to attach to on reattach and closing closed when it has stopped.
// onPanic, when not nil, is told of each panic a plugin hook recovers from
// (the value and the stack), besides the internal error and the log line
// that the SDK always makes of it.
var ServeInProcess func(ctx context.Context, p any, log hclog.Logger, onPanic func(v, stack string), reattach chan<- *plugin.ReattachConfig, closed chan<- struct{}) error

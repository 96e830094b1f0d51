package pluginhost

import (
	"context"
	"testing"
	"time"

	"github.com/heraldhq/herald/core/rpc"
	"github.com/heraldhq/herald/core/state"
	pluginpb "github.com/heraldhq/herald/sdk/proto"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
)

// lateClient answers every call with an error only once the call's context
// ended: a plugin whose copy of the deadline fired before the host's timer
// and whose handler returned ctx.Err(), the answer reaching the host first.
type lateClient struct {
	pluginpb.PluginClient
	code int32
}

func (c lateClient) Call(ctx context.Context, _ *pluginpb.CallRequest, _ ...grpc.CallOption) (*pluginpb.CallReply, error) {
	<-ctx.Done()
	return &pluginpb.CallReply{Error: &pluginpb.Error{Code: c.code, Message: "context deadline exceeded"}}, nil
}

func (c lateClient) Authorize(ctx context.Context, _ *pluginpb.AuthorizeRequest, _ ...grpc.CallOption) (*pluginpb.AuthorizeReply, error) {
	<-ctx.Done()
	return &pluginpb.AuthorizeReply{Error: &pluginpb.Error{Code: c.code, Message: "context deadline exceeded"}}, nil
}

func lateManager(t *testing.T, code int32) *Manager {
	m := New(Options{CallTimeout: 50 * time.Millisecond})
	inst := &instance{name: "late", m: m, rpc: lateClient{code: code}, methods: map[string]bool{"block": false},
		manifest: &pluginpb.Manifest{Name: "late", Authorizes: true}}
	m.plugins["late"] = &supervisor{m: m, state: StateRunning, inst: inst, manifest: inst.manifest}
	return m
}

// An error answer that arrives once the call's deadline passed is the
// timeout, -32050 with the host's own message, whatever the plugin's SDK
// made of its handler's ctx.Err() (-32603 from an SDK before the fix).
func TestErrorAnswerPastTheDeadlineIsTheTimeout(t *testing.T) {
	for _, code := range []int32{rpc.CodeInternal, rpc.CodePluginUnavailable} {
		m := lateManager(t, code)
		_, err := m.Call(context.Background(), "late", "block", Caller{Backend: true}, nil)
		var re *rpc.Error
		require.ErrorAs(t, err, &re)
		require.Equal(t, rpc.CodePluginUnavailable, re.Code)
		require.Equal(t, `plugin "late" did not answer block within limits.call_timeout (50ms): it is unavailable to this call, `+
			"which may or may not have taken effect, so retry later only what is safe to repeat", re.Message)

		_, err = m.Authorize(context.Background(), "late", Caller{}, []string{"late:a"})
		require.ErrorAs(t, err, &re)
		require.Equal(t, rpc.CodePluginUnavailable, re.Code)
		require.Equal(t, `plugin "late" did not answer authorize within limits.call_timeout (50ms): `+
			"it is unavailable to this subscription check; retry later", re.Message)
	}
}

// A write refused because the plugin's State is full tells the plugin which
// key to raise; an internal error that carries that message is -32005, and
// no other error changes.
func TestFullStateNamesItsKeyAndIsALimit(t *testing.T) {
	st, msg := stateStatus(&state.FullError{Max: 65536, Need: 71132})
	require.Equal(t, pluginpb.StateStatus_STATE_TOO_LARGE, st)
	require.Equal(t, "the plugin's State is full (state.max_bytes): store would hold 71132 bytes, over its bound of 65536: "+
		"state: over its size bound; raise state.max_bytes in herald's config (it bounds each plugin's State), "+
		"or have the plugin delete entries", msg)

	full := &rpc.Error{Code: rpc.CodeInternal, Message: `documents create: state create "d/1": ` + msg}
	require.Equal(t, rpc.CodeLimitExceeded, limitOfState(full).Code)
	require.Equal(t, full.Message, limitOfState(full).Message)
	require.Equal(t, rpc.CodeInternal, full.Code, "the plugin's error is not changed in place")
	for _, e := range []*rpc.Error{
		{Code: rpc.CodeInternal, Message: "disk on fire"},
		{Code: rpc.CodeInvalidParams, Message: msg},
	} {
		require.Equal(t, e, limitOfState(e))
	}
}

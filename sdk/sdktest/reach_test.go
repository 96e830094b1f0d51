package sdktest_test

import (
	"context"
	"encoding/json"
	"errors"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/heraldhq/herald/sdk"
	"github.com/heraldhq/herald/sdk/sdktest"
)

// reacher subscribes or calls the connection its params name.
type reacher struct{}

type reachParams struct {
	Conn   string
	Params json.RawMessage
}

func (reacher) Manifest() sdk.Manifest {
	return sdk.Manifest{Name: "reach", Version: "1", Prefixes: []string{"reach"}, AllowAllSubscriptions: true,
		Methods: []sdk.Method{
			{Name: "sub", Handler: func(ctx context.Context, c *sdk.Call) (any, error) {
				var p reachParams
				if err := c.Bind(&p); err != nil {
					return nil, err
				}
				return "ok", c.Host.Subscribe(ctx, p.Conn, "reach:room")
			}},
			{Name: "ask", Handler: func(ctx context.Context, c *sdk.Call) (any, error) {
				var p reachParams
				if err := c.Bind(&p); err != nil {
					return nil, err
				}
				return c.Host.CallClient(ctx, p.Conn, "where", p.Params)
			}},
		}}
}

// The harness holds a plugin to the host's rules: it reaches a connection
// that calls it right now or is subscribed to one of its channels, not one
// whose id it merely learned; CallClient params are one JSON object or
// array.
func TestHarnessHoldsThePluginToTheHostsReach(t *testing.T) {
	h := sdktest.Start(t, reacher{}, nil)
	h.Connect("c1", "alice")
	h.Connect("c2", "bob")
	h.OnCallClient(func(connID, method string, params json.RawMessage) (json.RawMessage, error) {
		return json.RawMessage(`"here"`), nil
	})
	code := func(err error) int {
		var e *sdk.Error
		require.True(t, errors.As(err, &e), "%v", err)
		return e.Code
	}

	_, err := h.Call("sub", h.Client("c1"), map[string]any{"conn": "c2"})
	require.Equal(t, sdk.CodeForbidden, code(err), "c2 neither calls nor is subscribed")
	_, err = h.Call("ask", h.Client("c1"), map[string]any{"conn": "c2"})
	require.Equal(t, sdk.CodeForbidden, code(err))

	_, err = h.Call("sub", h.Client("c1"), map[string]any{"conn": "c1"})
	require.NoError(t, err, "the caller itself")
	res, err := h.Call("ask", h.Client("c2"), map[string]any{"conn": "c1"})
	require.NoError(t, err, "c1 is subscribed to reach:room now")
	require.JSONEq(t, `"here"`, string(res))

	_, err = h.Call("ask", h.Client("c1"), map[string]any{"conn": "c1", "params": 5})
	require.Equal(t, sdk.CodeInvalidParams, code(err), "params must be an object or an array")
}

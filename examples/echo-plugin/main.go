// Command echo-plugin is the smallest useful Herald plugin: it owns the
// channel prefix "echo", lets each user subscribe to their own echo:<user>
// channel only, and answers two methods:
//
//	echo.say {text}                          emit text to the caller's echo:<user>
//	echo.ask {connection?, method, params?}  call a method of a client's local interface
//
// It is the tutorial of docs/plugins.md.
package main

import (
	"context"
	"encoding/json"
	"strings"

	"github.com/heraldhq/herald/sdk"
)

// Echo is the plugin. It keeps no state, so it implements only the hooks it
// needs: Authorizer (and Plugin's Manifest, which every plugin has).
type Echo struct{}

func (Echo) Manifest() sdk.Manifest {
	return sdk.Manifest{
		Name:     "echo",
		Version:  "1.0.0",
		Prefixes: []string{"echo"},
		Methods: []sdk.Method{
			{Name: "say", Handler: say},
			{Name: "ask", Handler: ask},
		},
	}
}

// Authorize lets a user subscribe only to echo:<their own user id>.
func (Echo) Authorize(_ context.Context, c sdk.Caller, channels []string) ([]sdk.Refusal, error) {
	var refused []sdk.Refusal
	for _, ch := range channels {
		if c.UserID == "" || ch != "echo:"+c.UserID {
			refused = append(refused, sdk.Refuse(ch, "echo channels are private: subscribe to echo:<your user id>"))
		}
	}
	return refused, nil
}

type sayParams struct {
	Text string `json:"text"`
	// User is for backends, which have no user of their own.
	User string `json:"user,omitempty"`
}

func say(ctx context.Context, c *sdk.Call) (any, error) {
	var p sayParams
	if err := c.Bind(&p); err != nil {
		return nil, err
	}
	user := c.Caller.UserID
	if c.Caller.Backend {
		user = p.User
	}
	if user == "" {
		return nil, sdk.InvalidParams("echo.say needs an authenticated user (or, from a backend, params.user)", map[string]string{"field": "user"})
	}
	if strings.TrimSpace(p.Text) == "" {
		return nil, sdk.InvalidParams("params.text is required", map[string]string{"field": "text"})
	}
	pub, err := c.Host.Emit(ctx, sdk.Notification{
		Channel:    "echo:" + user,
		Event:      "echo",
		ObjectType: "echo",
		Object:     map[string]string{"text": p.Text, "user_id": user},
	})
	if err != nil {
		return nil, err
	}
	// Emit returned: the notification is in history, so the answer is true.
	return map[string]any{"channel": pub[0].Channel, "seq": pub[0].Seq, "id": pub[0].ID}, nil
}

type askParams struct {
	Connection string          `json:"connection,omitempty"` // default: the caller's own connection
	Method     string          `json:"method"`
	Params     json.RawMessage `json:"params,omitempty"`
}

func ask(ctx context.Context, c *sdk.Call) (any, error) {
	var p askParams
	if err := c.Bind(&p); err != nil {
		return nil, err
	}
	conn := p.Connection
	if conn == "" {
		conn = c.Caller.ConnID
	}
	if conn == "" {
		return nil, sdk.InvalidParams("params.connection is required when the caller is not a connection", map[string]string{"field": "connection"})
	}
	if p.Method == "" {
		return nil, sdk.InvalidParams("params.method is required", map[string]string{"field": "method"})
	}
	var params any = p.Params
	if len(p.Params) == 0 {
		params = json.RawMessage("{}")
	}
	res, err := c.Host.CallClient(ctx, conn, p.Method, params)
	if err != nil {
		return nil, err
	}
	return map[string]any{"connection": conn, "result": res}, nil
}

func main() { sdk.Serve(Echo{}) }

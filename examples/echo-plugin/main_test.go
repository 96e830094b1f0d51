package main

import (
	"encoding/json"
	"testing"

	"github.com/heraldhq/herald/sdk"
	"github.com/heraldhq/herald/sdk/sdktest"
	"github.com/stretchr/testify/require"
)

func TestEchoSayEmitsToOwnChannel(t *testing.T) {
	h := sdktest.Start(t, Echo{}, nil)
	h.Connect("c1", "alice")

	res, err := h.Call("say", h.Client("c1"), map[string]string{"text": "hello"})
	require.NoError(t, err)
	require.JSONEq(t, `{"channel":"echo:alice","seq":1,"id":"echo:alice#1"}`, string(res))

	ns := h.Emitted() // Emit was acknowledged, so it is already recorded
	require.Len(t, ns, 1)
	require.Equal(t, "echo:alice", ns[0].Channel)
	require.JSONEq(t, `{"text":"hello","user_id":"alice"}`, string(ns[0].Object))
}

func TestEchoAuthorizeOwnChannelOnly(t *testing.T) {
	h := sdktest.Start(t, Echo{}, nil)
	h.Connect("c1", "alice")

	refused, err := h.Authorize(h.Client("c1"), "echo:alice", "echo:bob")
	require.NoError(t, err)
	require.Equal(t, []sdk.Refusal{{Channel: "echo:bob", Code: sdk.CodeForbidden,
		Reason: "echo channels are private: subscribe to echo:<your user id>"}}, refused)
}

func TestEchoSayValidates(t *testing.T) {
	h := sdktest.Start(t, Echo{}, nil)
	_, err := h.Call("say", sdk.Caller{ConnID: "c9", UserID: "bob"}, map[string]any{"text": 5})
	var e *sdk.Error
	require.ErrorAs(t, err, &e)
	require.Equal(t, sdk.CodeInvalidParams, e.Code)
	require.Contains(t, e.Message, "text")
}

func TestEchoAskCallsTheClient(t *testing.T) {
	h := sdktest.Start(t, Echo{}, nil)
	h.Connect("c1", "alice")
	h.OnCallClient(func(conn, method string, params json.RawMessage) (json.RawMessage, error) {
		require.Equal(t, "c1", conn)
		require.Equal(t, "getLocation", method)
		return json.RawMessage(`{"lat":1}`), nil
	})
	res, err := h.Call("ask", h.Client("c1"), map[string]any{"method": "getLocation"})
	require.NoError(t, err)
	require.JSONEq(t, `{"connection":"c1","result":{"lat":1}}`, string(res))
}

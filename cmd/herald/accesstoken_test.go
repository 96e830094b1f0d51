package main_test

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/heraldhq/herald/internal/heraldtest"
)

// Speakap's clients connect without a token and subscribe with
// {channel: "a b", accessToken}: the subscribe authenticates the connection
// (within auth.auth_timeout) and the connection stays open.
func TestSubscribeWithAccessTokenOnAConnectionWithoutToken(t *testing.T) {
	h := heraldtest.Start(t, heraldtest.Options{Auth: fmt.Sprintf("token_secret = %q\n api_keys = [%q]\n auth_timeout = \"1s\"", heraldtest.Secret, heraldtest.APIKey)})
	c := h.Dial(t, "")
	require.Equal(t, -32001, c.CallErr(t, "subscribe", map[string]any{"channel": "news", "accessToken": "bad"}).Code)
	require.Equal(t, -32001, c.CallErr(t, "subscribe", map[string]any{"channel": "news"}).Code)
	subs := c.SubscribeParams(t, map[string]any{"channel": "news sports", "accessToken": h.Token(t, "alice")})
	require.Len(t, subs, 2)
	require.Equal(t, "news", subs[0].Channel)
	require.Equal(t, "sports", subs[1].Channel)

	// Past auth_timeout the connection is still open and receives.
	time.Sleep(1200 * time.Millisecond)
	h.Publish(t, heraldtest.N("sports", "e", "t", `{}`))
	require.Equal(t, "sports", c.Notifications(t, 1)[0].Channel)

	var res struct{ Unsubscribed []string }
	require.NoError(t, json.Unmarshal(c.MustCall(t, "unsubscribe", map[string]any{"channel": "news sports"}), &res))
	require.ElementsMatch(t, []string{"news", "sports"}, res.Unsubscribed)
	h.Publish(t, heraldtest.N("sports", "e", "t", `{}`))
	c.NoNotification(t, 300*time.Millisecond)
}

// After its token expired a connection may still unsubscribe; subscribing
// again needs a token, which subscribe itself may bring.
func TestExpiredConnectionUnsubscribesAndResubscribesWithAccessToken(t *testing.T) {
	h := heraldtest.Start(t, heraldtest.Options{Auth: fmt.Sprintf("token_secret = %q\n api_keys = [%q]\n expiry_grace = \"1h\"", heraldtest.Secret, heraldtest.APIKey)})
	c := h.Dial(t, heraldtest.MintToken(t, "alice", 2*time.Second, nil))
	c.Subscribe(t, "news")
	require.Equal(t, "token_expired", c.Notifications(t, 1)[0].Event)
	require.Equal(t, -32001, c.CallErr(t, "subscribe", map[string]any{"channel": "more"}).Code)
	require.JSONEq(t, `{"unsubscribed":["news"]}`, string(c.MustCall(t, "unsubscribe", map[string]any{"channel": "news"})))
	c.SubscribeParams(t, map[string]any{"channel": "more", "accessToken": h.Token(t, "alice")})
	h.Publish(t, heraldtest.N("more", "e", "t", `{}`))
	require.Equal(t, "more", c.Notifications(t, 1)[0].Channel)
}

// auth.auth_timeout closes connections that never sent a token, not one
// whose token (sent by subscribe) expired since.
func TestAuthTimeoutSparesAConnectionWhoseTokenExpired(t *testing.T) {
	h := heraldtest.Start(t, heraldtest.Options{Auth: fmt.Sprintf("token_secret = %q\n api_keys = [%q]\n auth_timeout = \"2s\"\n expiry_grace = \"1h\"", heraldtest.Secret, heraldtest.APIKey)})
	c := h.Dial(t, "")
	c.SubscribeParams(t, map[string]any{"channel": "news", "accessToken": heraldtest.MintToken(t, "alice", 2*time.Second, nil)})
	silent := h.Dial(t, "") // dialled later: its timeout fires later
	require.Equal(t, "token_expired", c.Notifications(t, 1)[0].Event)
	require.Equal(t, 4001, silent.WaitClosed(t))
	c.MustCall(t, "ping", nil)
	h.Publish(t, heraldtest.N("news", "e", "t", `{}`))
	require.Equal(t, "news", c.Notifications(t, 1)[0].Channel)
}

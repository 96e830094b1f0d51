package main

import (
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/require"

	"github.com/heraldhq/herald/internal/heraldtest"
)

// A connection that answers pings stays however long its application is
// silent; one that does not is pinged, then closed with 4009 at the next
// check.
func TestSilentConnectionsArePingedThenClosed(t *testing.T) {
	path := filepath.Join(t.TempDir(), "config.hcl")
	cfg := fmt.Sprintf("server {\n  listen = \"127.0.0.1:0\"\n  ping_interval = \"100ms\"\n}\nauth {\n  token_secret = %q\n  api_keys = [%q]\n}\n",
		heraldtest.Secret, heraldtest.APIKey)
	require.NoError(t, os.WriteFile(path, []byte(cfg), 0o600))
	h := heraldtest.StartWithConfig(t, path, nil)

	// gorilla answers pings while it reads, as browsers do on their own.
	alive := h.Dial(t, h.Token(t, "alice"))
	alive.Subscribe(t, "x")

	mute, _, err := websocket.DefaultDialer.Dial(h.WSURL+"?token="+url.QueryEscape(h.Token(t, "bob")), nil)
	require.NoError(t, err)
	defer mute.Close()
	pings := 0
	mute.SetPingHandler(func(string) error { pings++; return nil }) // heard, never answered
	require.NoError(t, mute.SetReadDeadline(time.Now().Add(heraldtest.Timeout)))
	for err == nil {
		_, _, err = mute.ReadMessage()
	}
	var ce *websocket.CloseError
	require.ErrorAs(t, err, &ce, "closed by herald, not by the read deadline")
	require.Equal(t, 4009, ce.Code)
	require.GreaterOrEqual(t, pings, 1, "pinged before being closed")
	h.WaitLog(t, "closed silent connections", heraldtest.Timeout)

	// Give herald several more intervals in which it could wrongly close
	// the one that answers.
	time.Sleep(500 * time.Millisecond)
	select {
	case <-alive.Closed():
		t.Fatal("a connection answering pings was closed")
	default:
	}
	alive.MustCall(t, "ping", nil)
	h.Publish(t, heraldtest.N("x", "e", "t", `{}`))
	require.Len(t, alive.Notifications(t, 1), 1)
}

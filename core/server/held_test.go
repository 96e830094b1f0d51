package server

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/heraldhq/herald/core/config"
	"github.com/heraldhq/herald/core/pluginhost"
	"github.com/stretchr/testify/require"
)

// heldPlugins is a plugin host whose one plugin, "p", owns "p:" and answers
// every call by subscribing the caller to p:room with a hold and emitting
// to that channel before it answers, as documents.subscribe does.
type heldPlugins struct {
	noPlugins
	srv     *Server
	release bool // list the hold in the reply (false: a plugin that died)
}

func (h *heldPlugins) Loaded(plugin string) bool { return plugin == "p" }

func (h *heldPlugins) Owner(ch string) (string, bool) {
	if strings.HasPrefix(ch, "p:") {
		return "p", true
	}
	return "", false
}

func (h *heldPlugins) CallHeld(ctx context.Context, _, _ string, c pluginhost.Caller, _ json.RawMessage) (json.RawMessage, []string, error) {
	res, err := h.srv.SubscribeWith(ctx, c.ConnID, "p:room", pluginhost.SubscribeOptions{Hold: true})
	if err != nil {
		return nil, nil, err
	}
	if _, err := h.srv.Emit(ctx, "p", []pluginhost.Notification{{Channel: "p:room", Event: "e", ObjectType: "t", Object: json.RawMessage(`{}`)}}); err != nil {
		return nil, nil, err
	}
	out, _ := json.Marshal(map[string]any{"seq": res.Position.Seq})
	if !h.release {
		return out, nil, nil
	}
	return out, []string{res.Hold}, nil
}

func startHeld(t *testing.T, release bool, callTimeout time.Duration) string {
	t.Helper()
	cfg := config.Defaults()
	cfg.Auth.Anonymous = true
	cfg.Limits.CallTimeout = callTimeout
	srv, err := New(Options{Config: &cfg})
	require.NoError(t, err)
	srv.SetPlugins(&heldPlugins{srv: srv, release: release})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(ctx, ln) }()
	t.Cleanup(func() {
		sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer scancel()
		_ = srv.Shutdown(sctx)
		cancel()
		<-done
	})
	return "ws://" + ln.Addr().String() + "/ws"
}

type rawMsg struct {
	ID     *int            `json:"id"`
	Method string          `json:"method"`
	Result json.RawMessage `json:"result"`
	Error  json.RawMessage `json:"error"`
	Params struct {
		Notifications []struct {
			Channel string `json:"channel"`
			Seq     uint64 `json:"seq"`
		} `json:"notifications"`
	} `json:"params"`
}

// frames reads messages in wire order until want says stop.
func frames(t *testing.T, ws *websocket.Conn, want func(rawMsg) bool) {
	t.Helper()
	require.NoError(t, ws.SetReadDeadline(time.Now().Add(15*time.Second)))
	for {
		_, b, err := ws.ReadMessage()
		require.NoError(t, err)
		var ms []rawMsg
		if b[0] == '[' {
			require.NoError(t, json.Unmarshal(b, &ms))
		} else {
			var m rawMsg
			require.NoError(t, json.Unmarshal(b, &m))
			ms = []rawMsg{m}
		}
		for _, m := range ms {
			if !want(m) {
				return
			}
		}
	}
}

func TestHeldSubscriptionGoesLiveAfterTheReply(t *testing.T) {
	url := startHeld(t, true, 10*time.Second)
	ws, _, err := websocket.DefaultDialer.Dial(url, http.Header{})
	require.NoError(t, err)
	defer ws.Close()
	require.NoError(t, ws.WriteMessage(websocket.TextMessage, []byte(`{"jsonrpc":"2.0","id":1,"method":"p.sub","params":{}}`)))
	var replySeq uint64
	replied := false
	frames(t, ws, func(m rawMsg) bool {
		if m.Method == "onNotificationReceived" {
			require.True(t, replied, "the channel's notification came before the reply")
			require.Len(t, m.Params.Notifications, 1)
			require.Equal(t, "p:room", m.Params.Notifications[0].Channel)
			require.Equal(t, replySeq+1, m.Params.Notifications[0].Seq, "delivered from the reply's position")
			return false
		}
		require.Empty(t, m.Error)
		var r struct{ Seq uint64 }
		require.NoError(t, json.Unmarshal(m.Result, &r))
		replySeq, replied = r.Seq, true
		return true
	})
}

func TestHeldSubscriptionNeverReleasedGoesLiveAfterTheCallTimeout(t *testing.T) {
	url := startHeld(t, false, 300*time.Millisecond)
	ws, _, err := websocket.DefaultDialer.Dial(url, http.Header{})
	require.NoError(t, err)
	defer ws.Close()
	require.NoError(t, ws.WriteMessage(websocket.TextMessage, []byte(`{"jsonrpc":"2.0","id":1,"method":"p.sub","params":{}}`)))
	got := false
	frames(t, ws, func(m rawMsg) bool {
		if m.Method == "onNotificationReceived" {
			got = true
			return false
		}
		return true
	})
	require.True(t, got, "the unreleased hold was released by its timeout")
}

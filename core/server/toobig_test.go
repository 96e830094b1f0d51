package server

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/require"

	"github.com/heraldhq/herald/core/pluginhost"
	"github.com/heraldhq/herald/core/transport"
)

// releaseOnceReadOrEnded lets a handler held by the test finish once the
// connection ended (the 1009 closed it without waiting: the handler's
// answer can no longer be sent) or, at the latest, after a moment in which
// the reader reaches the frame over the limit: then the answer must still
// come before the close. Either way the client must read the answer first.
func releaseOnceReadOrEnded(conn *transport.Conn, release func()) {
	select {
	case <-conn.Done():
	case <-time.After(500 * time.Millisecond):
	}
	release()
}

// requireAnswerThen1009 reads the answer to id 1, then the 1009 close.
func requireAnswerThen1009(t *testing.T, ws *websocket.Conn, setting string) []byte {
	t.Helper()
	require.NoError(t, ws.SetReadDeadline(time.Now().Add(20*time.Second)))
	_, frame, err := ws.ReadMessage()
	require.NoError(t, err, "the frame read before the one over %s is answered before the close", setting)
	_, _, err = ws.ReadMessage()
	var ce *websocket.CloseError
	require.ErrorAs(t, err, &ce)
	require.Equal(t, websocket.CloseMessageTooBig, ce.Code)
	require.Contains(t, ce.Text, setting)
	return frame
}

// A frame over limits.max_publish_bytes closes the publishing connection
// with 1009 only once the publishes read before it are answered: they
// happened, and the backend must learn so.
func TestPublishWSAnswersRunningPublishesBefore1009(t *testing.T) {
	t.Parallel()
	cfg := testConfig()
	cfg.Limits.MaxPublishBytes = 2048
	b := newBlockingBroker(cfg)
	p := startPubTest(t, cfg, b)
	ws := p.dialPublisher(t)
	send(t, ws, `{"jsonrpc":"2.0","id":1,"method":"publish","params":{"channel":"c","event":"e","object_type":"t","object":1}}`)
	<-b.entered
	send(t, ws, `{"jsonrpc":"2.0","id":2,"method":"publish","params":{"channel":"c","event":"e","object_type":"t","object":"`+strings.Repeat("x", 3000)+`"}}`)
	releaseOnceReadOrEnded(p.srv.pubConns.list()[0].conn, func() { b.release <- struct{}{} })

	var r rpcReply
	require.NoError(t, json.Unmarshal(requireAnswerThen1009(t, ws, "limits.max_publish_bytes"), &r))
	require.JSONEq(t, "1", string(r.ID))
	require.Nil(t, r.Error)
}

// slowPlugins owns plugin "slow", whose calls wait until release.
type slowPlugins struct {
	noPlugins
	entered chan struct{}
	release chan struct{}
}

func (p *slowPlugins) Loaded(plugin string) bool { return plugin == "slow" }

func (p *slowPlugins) Call(context.Context, string, string, pluginhost.Caller, json.RawMessage) (json.RawMessage, error) {
	p.entered <- struct{}{}
	<-p.release
	return json.RawMessage(`"done"`), nil
}

// On /ws too, a frame over limits.max_frame_bytes closes with 1009 only
// once the plugin calls under way are answered.
func TestClientCallsUnderWayAreAnsweredBefore1009(t *testing.T) {
	t.Parallel()
	cfg := testConfig()
	cfg.Limits.MaxFrameBytes = 2048
	plugins := &slowPlugins{entered: make(chan struct{}, 1), release: make(chan struct{})}
	p := startPubTestWith(t, cfg, nil, plugins)
	ws, _, err := websocket.DefaultDialer.Dial(p.wsURL("/ws"), nil)
	require.NoError(t, err)
	t.Cleanup(func() { ws.Close() })
	send(t, ws, `{"jsonrpc":"2.0","id":1,"method":"slow.wait"}`)
	<-plugins.entered
	send(t, ws, `{"jsonrpc":"2.0","id":2,"method":"ping","params":{"pad":"`+strings.Repeat("x", 3000)+`"}}`)
	p.srv.sessionsMu.RLock()
	require.Len(t, p.srv.sessions, 1)
	var conn *transport.Conn
	for _, ss := range p.srv.sessions {
		conn = ss.conn
	}
	p.srv.sessionsMu.RUnlock()
	releaseOnceReadOrEnded(conn, func() { close(plugins.release) })

	frame := requireAnswerThen1009(t, ws, "limits.max_frame_bytes")
	require.JSONEq(t, fmt.Sprintf(`{"jsonrpc":"2.0","id":1,"result":%q}`, "done"), string(frame))
}

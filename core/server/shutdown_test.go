package server

import (
	"context"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/require"

	"github.com/heraldhq/herald/core/config"
)

func testConfig() *config.Config {
	cfg := config.Defaults()
	cfg.Auth.TokenSecret = "test-secret"
	cfg.Auth.APIKeys = []string{"test-key"}
	cfg.Auth.Anonymous = true
	return &cfg
}

// A connection upgraded while Shutdown is closing the others (after it
// listed them) gets the $server shutdown notification and 1001 like them,
// instead of staying open until Shutdown gives up waiting for it.
func TestConnectionAcceptedWhileDrainingGets1001(t *testing.T) {
	srv, err := New(Options{Config: testConfig()})
	require.NoError(t, err)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	closedAll := make(chan struct{})
	srv.testClosedAll = func() { close(closedAll) }
	shutdownErr := make(chan error, 1)
	srv.testUpgraded = func() {
		// Shutdown starts and lists the connections before this one is
		// registered: the race, made certain.
		go func() {
			sctx, scancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer scancel()
			shutdownErr <- srv.Shutdown(sctx)
		}()
		<-closedAll
	}
	srv.httpSrv = &http.Server{Handler: srv.Handler()}
	go func() { _ = srv.httpSrv.Serve(ln) }()

	ws, _, err := websocket.DefaultDialer.Dial("ws://"+ln.Addr().String()+"/ws", nil)
	require.NoError(t, err)
	defer ws.Close()
	_ = ws.SetReadDeadline(time.Now().Add(20 * time.Second))
	_, frame, err := ws.ReadMessage()
	require.NoError(t, err)
	require.Contains(t, string(frame), `"event":"shutdown"`)
	_, _, err = ws.ReadMessage()
	var ce *websocket.CloseError
	require.ErrorAs(t, err, &ce)
	require.Equal(t, websocket.CloseGoingAway, ce.Code)
	require.NoError(t, <-shutdownErr, "Shutdown waited for a connection it never closed")
}

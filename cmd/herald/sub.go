package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/gorilla/websocket"
)

func runSub(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("sub", "-channel C [-url URL] [-token T]", stderr)
	url := fs.String("url", "ws://127.0.0.1:7512/ws", "herald's WebSocket URL")
	token := fs.String("token", "", "client token (see herald token)")
	channel := fs.String("channel", "", "channel(s) to subscribe, space-separated; required")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if strings.TrimSpace(*channel) == "" {
		fmt.Fprintln(stderr, "herald sub: -channel is required")
		fs.Usage()
		return errUsage
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	header := http.Header{}
	if *token != "" {
		header.Set("Authorization", "Bearer "+*token)
	}
	ws, resp, err := websocket.DefaultDialer.DialContext(ctx, *url, header)
	if err != nil {
		if resp != nil {
			return fmt.Errorf("connect %s: %w (HTTP %s)", *url, err, resp.Status)
		}
		return fmt.Errorf("connect %s: %w", *url, err)
	}
	defer ws.Close()
	go func() {
		<-ctx.Done()
		_ = ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, "bye"), deadlineSoon())
		_ = ws.Close()
	}()

	send := func(id int, method string, params any) error {
		return ws.WriteJSON(map[string]any{"jsonrpc": "2.0", "id": id, "method": method, "params": params})
	}
	hello := map[string]any{"methods": []string{"onNotificationReceived"}, "client": map[string]string{"name": "herald sub", "version": version}}
	if *token != "" {
		hello["token"] = *token
	}
	if err := send(1, "hello", hello); err != nil {
		return fmt.Errorf("hello: %w", err)
	}
	if err := send(2, "subscribe", map[string]any{"channel": *channel}); err != nil {
		return fmt.Errorf("subscribe: %w", err)
	}
	enc := json.NewEncoder(stdout)
	for {
		_, frame, err := ws.ReadMessage()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			var ce *websocket.CloseError
			if errors.As(err, &ce) {
				return fmt.Errorf("connection closed by the server: %d %s", ce.Code, ce.Text)
			}
			return fmt.Errorf("read: %w", err)
		}
		if err := printFrame(frame, enc, stderr); err != nil {
			return err
		}
	}
}

type wireMsg struct {
	ID     json.RawMessage `json:"id"`
	Method string          `json:"method"`
	Params struct {
		Notifications []json.RawMessage `json:"notifications"`
	} `json:"params"`
	Result json.RawMessage `json:"result"`
	Error  *struct {
		Code    int             `json:"code"`
		Message string          `json:"message"`
		Data    json.RawMessage `json:"data"`
	} `json:"error"`
}

// printFrame prints notifications to out and reports replies on errw; a
// failed hello or subscribe ends the command.
func printFrame(frame []byte, out *json.Encoder, errw io.Writer) error {
	var msgs []wireMsg
	if len(frame) > 0 && frame[0] == '[' {
		if err := json.Unmarshal(frame, &msgs); err != nil {
			return fmt.Errorf("bad frame from server: %w", err)
		}
	} else {
		var m wireMsg
		if err := json.Unmarshal(frame, &m); err != nil {
			return fmt.Errorf("bad frame from server: %w", err)
		}
		msgs = []wireMsg{m}
	}
	for _, m := range msgs {
		switch {
		case m.Method == "onNotificationReceived":
			for _, n := range m.Params.Notifications {
				if err := out.Encode(n); err != nil {
					return err
				}
			}
		case m.Error != nil:
			return fmt.Errorf("server refused call %s: %d %s %s", m.ID, m.Error.Code, m.Error.Message, m.Error.Data)
		case string(m.ID) == "2":
			fmt.Fprintf(errw, "subscribed: %s\n", m.Result)
		}
	}
	return nil
}

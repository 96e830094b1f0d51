package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/gorilla/websocket"
)

// ErrConnectionLost fails a call whose connection ended before its answer
// came. The call may or may not have run on the server.
var ErrConnectionLost = errors.New("herald: connection lost before the answer")

// wire is one JSON-RPC message in either direction.
type wire struct {
	JSONRPC string          `json:"jsonrpc"`
	ID      json.RawMessage `json:"id,omitempty"`
	Method  string          `json:"method,omitempty"`
	Params  json.RawMessage `json:"params,omitempty"`
	Result  json.RawMessage `json:"result,omitempty"`
	Error   *Error          `json:"error,omitempty"`
}

type outcome struct {
	result json.RawMessage
	err    error
}

type pending struct {
	done chan outcome
	// onReply runs on the reader goroutine before anything that follows
	// the reply in the stream is handled: subscribe uses it to record
	// positions before the notifications they bound.
	onReply func(json.RawMessage, *Error)
}

// conn is one WebSocket to herald: it writes calls, reads frames, matches
// replies, and hands everything else to its handler.
type conn struct {
	ws      *websocket.Conn
	handle  func(*conn, *wire) // on the reader goroutine, in stream order
	wmu     sync.Mutex
	mu      sync.Mutex
	nextID  uint64
	pending map[string]*pending
	done    chan struct{} // closed when the reader ends
	err     error         // why it ended; read after done
}

const writeTimeout = 10 * time.Second

func dialConn(ctx context.Context, url string, opts *Options, handle func(*conn, *wire)) (*conn, error) {
	d := websocket.Dialer{HandshakeTimeout: 10 * time.Second, Proxy: websocket.DefaultDialer.Proxy}
	if opts.Dialer != nil {
		d = *opts.Dialer
	}
	ws, resp, err := d.DialContext(ctx, url, opts.Header)
	if err != nil {
		if resp != nil {
			return nil, fmt.Errorf("connect %s: %w (HTTP %s)", url, err, resp.Status)
		}
		return nil, fmt.Errorf("connect %s: %w", url, err)
	}
	c := &conn{ws: ws, handle: handle, pending: map[string]*pending{}, done: make(chan struct{})}
	go c.read()
	return c, nil
}

func (c *conn) read() {
	var err error
	defer func() {
		c.mu.Lock()
		c.err = err
		ps := c.pending
		c.pending = nil
		c.mu.Unlock()
		for _, p := range ps {
			p.done <- outcome{err: ErrConnectionLost}
		}
		_ = c.ws.Close()
		close(c.done)
	}()
	for {
		var frame []byte
		_, frame, err = c.ws.ReadMessage()
		if err != nil {
			return
		}
		frame = bytes.TrimSpace(frame)
		var msgs []wire
		if len(frame) > 0 && frame[0] == '[' {
			err = json.Unmarshal(frame, &msgs)
		} else {
			msgs = make([]wire, 1)
			err = json.Unmarshal(frame, &msgs[0])
		}
		if err != nil {
			err = fmt.Errorf("herald sent a frame that is not JSON-RPC: %w", err)
			return
		}
		for i := range msgs {
			m := &msgs[i]
			if m.Method == "" && len(m.ID) > 0 && string(m.ID) != "null" {
				c.resolve(m)
				continue
			}
			c.handle(c, m)
		}
	}
}

func (c *conn) resolve(m *wire) {
	c.mu.Lock()
	p := c.pending[string(m.ID)]
	delete(c.pending, string(m.ID))
	c.mu.Unlock()
	if p == nil {
		return // its caller gave up
	}
	if p.onReply != nil {
		p.onReply(m.Result, m.Error)
	}
	if m.Error != nil {
		p.done <- outcome{err: m.Error}
		return
	}
	p.done <- outcome{result: m.Result}
}

// call sends a request and waits for its reply, ctx, or the connection's end.
func (c *conn) call(ctx context.Context, method string, params any, onReply func(json.RawMessage, *Error)) (json.RawMessage, error) {
	c.mu.Lock()
	if c.pending == nil {
		c.mu.Unlock()
		return nil, ErrConnectionLost
	}
	c.nextID++
	id := strconv.FormatUint(c.nextID, 10)
	p := &pending{done: make(chan outcome, 1), onReply: onReply}
	c.pending[id] = p
	c.mu.Unlock()

	msg := map[string]any{"jsonrpc": "2.0", "id": json.RawMessage(id), "method": method}
	if params != nil {
		msg["params"] = params
	}
	if err := c.send(msg); err != nil {
		c.forget(id)
		return nil, fmt.Errorf("%s: %w", method, err)
	}
	select {
	case o := <-p.done:
		return o.result, o.err
	case <-ctx.Done():
		c.forget(id)
		return nil, fmt.Errorf("%s: %w", method, ctx.Err())
	}
}

func (c *conn) forget(id string) {
	c.mu.Lock()
	delete(c.pending, id)
	c.mu.Unlock()
}

func (c *conn) send(v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_ = c.ws.SetWriteDeadline(time.Now().Add(writeTimeout))
	if err := c.ws.WriteMessage(websocket.TextMessage, b); err != nil {
		_ = c.ws.Close() // the reader ends and fails what waits
		return err
	}
	return nil
}

// reply answers a server call.
func (c *conn) reply(id json.RawMessage, result any, rerr *Error) {
	msg := map[string]any{"jsonrpc": "2.0", "id": id}
	if rerr != nil {
		msg["error"] = rerr
	} else {
		if result == nil {
			result = json.RawMessage("null")
		}
		msg["result"] = result
	}
	if err := c.send(msg); err != nil {
		if _, ok := err.(*json.UnsupportedTypeError); ok {
			c.reply(id, nil, &Error{Code: CodeInternal, Message: "the local interface returned a result that cannot be encoded as JSON: " + err.Error()})
		}
	}
}

// close says goodbye and ends the connection.
func (c *conn) close(code int, text string) {
	c.wmu.Lock()
	_ = c.ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, text), time.Now().Add(time.Second))
	c.wmu.Unlock()
	_ = c.ws.Close()
}

// closeCode is the close code the connection ended with (1006 when it
// ended without a close frame, 0 while it is open).
func (c *conn) closeCode() int {
	select {
	case <-c.done:
	default:
		return 0
	}
	var ce *websocket.CloseError
	if errors.As(c.err, &ce) {
		return ce.Code
	}
	return websocket.CloseAbnormalClosure
}

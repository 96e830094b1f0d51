package heraldtest

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// Timeout bounds every wait of the helpers.
var Timeout = 15 * time.Second

// Notification is one notification as clients receive it.
type Notification struct {
	ID         string          `json:"id"`
	Channel    string          `json:"channel"`
	Seq        uint64          `json:"seq"`
	Timestamp  int64           `json:"timestamp"`
	Event      string          `json:"event"`
	ObjectType string          `json:"object_type"`
	ObjectName string          `json:"object_name,omitempty"`
	Object     json.RawMessage `json:"object"`
}

// RPCError is a JSON-RPC error object.
type RPCError struct {
	Code    int             `json:"code"`
	Message string          `json:"message"`
	Data    json.RawMessage `json:"data,omitempty"`
}

func (e *RPCError) Error() string { return fmt.Sprintf("%d %s %s", e.Code, e.Message, e.Data) }

// Msg is one JSON-RPC message received by a client.
type Msg struct {
	ID     json.RawMessage `json:"id,omitempty"`
	Method string          `json:"method,omitempty"`
	Params json.RawMessage `json:"params,omitempty"`
	Result json.RawMessage `json:"result,omitempty"`
	Error  *RPCError       `json:"error,omitempty"`
}

// Client is a WebSocket JSON-RPC client of a test server.
type Client struct {
	WS *websocket.Conn

	mu      sync.Mutex
	nextID  int
	replies map[string]chan Msg

	// Batches receives the notifications of each onNotificationReceived call.
	Batches chan []Notification
	// Calls receives the server's requests (calls with an id) other than
	// onNotificationReceived.
	Calls chan Msg
	// Unmatched receives replies to no call of this Client: the replies to
	// frames sent raw with Send.
	Unmatched chan Msg
	pending   []Notification
	closed    chan struct{}
	readErr   error
}

// Dial connects with token in the query ("" for none) and starts reading.
func (h *Herald) Dial(t testing.TB, token string) *Client {
	t.Helper()
	u := h.WSURL
	if token != "" {
		u += "?token=" + url.QueryEscape(token)
	}
	c, resp, err := DialURL(u, nil)
	if err != nil {
		status := ""
		if resp != nil {
			status = resp.Status
		}
		t.Fatalf("heraldtest: dial %s: %v %s", u, err, status)
	}
	t.Cleanup(c.Close)
	return c
}

// DialURL connects to a WebSocket URL and starts reading.
func DialURL(u string, header http.Header) (*Client, *http.Response, error) {
	d := websocket.Dialer{HandshakeTimeout: Timeout}
	ws, resp, err := d.Dial(u, header)
	if err != nil {
		return nil, resp, err
	}
	c := &Client{
		WS:        ws,
		replies:   make(map[string]chan Msg),
		Batches:   make(chan []Notification, 100_000),
		Calls:     make(chan Msg, 1000),
		Unmatched: make(chan Msg, 1000),
		closed:    make(chan struct{}),
	}
	go c.read()
	return c, resp, nil
}

func (c *Client) read() {
	defer close(c.closed)
	for {
		_, frame, err := c.WS.ReadMessage()
		if err != nil {
			c.readErr = err
			return
		}
		var msgs []Msg
		if len(frame) > 0 && frame[0] == '[' {
			if err := json.Unmarshal(frame, &msgs); err != nil {
				c.readErr = fmt.Errorf("bad batch frame %s: %w", frame, err)
				return
			}
		} else {
			var m Msg
			if err := json.Unmarshal(frame, &m); err != nil {
				c.readErr = fmt.Errorf("bad frame %s: %w", frame, err)
				return
			}
			msgs = []Msg{m}
		}
		for _, m := range msgs {
			c.dispatch(m)
		}
	}
}

func (c *Client) dispatch(m Msg) {
	switch {
	case m.Method == "onNotificationReceived":
		var p struct{ Notifications []Notification }
		if err := json.Unmarshal(m.Params, &p); err == nil {
			c.Batches <- p.Notifications
		}
	case m.Method != "":
		c.Calls <- m
	default:
		c.mu.Lock()
		ch := c.replies[string(m.ID)]
		delete(c.replies, string(m.ID))
		c.mu.Unlock()
		if ch != nil {
			ch <- m
		} else {
			c.Unmatched <- m
		}
	}
}

// Close closes the connection.
func (c *Client) Close() {
	_ = c.WS.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
	_ = c.WS.Close()
}

// Send writes one raw frame.
func (c *Client) Send(frame []byte) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.WS.WriteMessage(websocket.TextMessage, frame)
}

// Call sends a request and waits for its reply.
func (c *Client) Call(method string, params any) (json.RawMessage, *RPCError, error) {
	c.mu.Lock()
	c.nextID++
	id := strconv.Itoa(c.nextID)
	ch := make(chan Msg, 1)
	c.replies[id] = ch
	req := map[string]any{"jsonrpc": "2.0", "id": c.nextID, "method": method}
	if params != nil {
		req["params"] = params
	}
	b, _ := json.Marshal(req)
	err := c.WS.WriteMessage(websocket.TextMessage, b)
	c.mu.Unlock()
	if err != nil {
		return nil, nil, err
	}
	select {
	case m := <-ch:
		return m.Result, m.Error, nil
	case <-c.closed:
		return nil, nil, fmt.Errorf("connection closed before the reply to %s: %v", method, c.readErr)
	case <-time.After(Timeout):
		return nil, nil, fmt.Errorf("no reply to %s within %v", method, Timeout)
	}
}

// MustCall calls and fails the test on any error.
func (c *Client) MustCall(t testing.TB, method string, params any) json.RawMessage {
	t.Helper()
	res, rerr, err := c.Call(method, params)
	if err != nil {
		t.Fatalf("%s: %v", method, err)
	}
	if rerr != nil {
		t.Fatalf("%s: error %v", method, rerr)
	}
	return res
}

// CallErr calls and returns the JSON-RPC error, failing the test when the
// call succeeds or the connection fails.
func (c *Client) CallErr(t testing.TB, method string, params any) *RPCError {
	t.Helper()
	res, rerr, err := c.Call(method, params)
	if err != nil {
		t.Fatalf("%s: %v", method, err)
	}
	if rerr == nil {
		t.Fatalf("%s: expected an error, got result %s", method, res)
	}
	return rerr
}

// Subscription is one entry of subscribe's result.
type Subscription struct {
	Channel   string `json:"channel"`
	Seq       uint64 `json:"seq"`
	Epoch     string `json:"epoch"`
	Recovered *bool  `json:"recovered"`
}

// Subscribe subscribes to channels and returns the result's entries.
func (c *Client) Subscribe(t testing.TB, channels ...string) []Subscription {
	t.Helper()
	return c.SubscribeParams(t, map[string]any{"channels": channels})
}

// SubscribeParams subscribes with explicit params.
func (c *Client) SubscribeParams(t testing.TB, params map[string]any) []Subscription {
	t.Helper()
	res := c.MustCall(t, "subscribe", params)
	var out struct{ Subscriptions []Subscription }
	if err := json.Unmarshal(res, &out); err != nil {
		t.Fatalf("subscribe result %s: %v", res, err)
	}
	return out.Subscriptions
}

// Notifications waits for n notifications (across batches) and returns them.
func (c *Client) Notifications(t testing.TB, n int) []Notification {
	t.Helper()
	deadline := time.After(Timeout)
	for len(c.pending) < n {
		select {
		case b := <-c.Batches:
			c.pending = append(c.pending, b...)
		case <-deadline:
			t.Fatalf("heraldtest: got %d notifications, want %d within %v: %+v", len(c.pending), n, Timeout, c.pending)
		case <-c.closed:
			// Drain what arrived before the close.
			for {
				select {
				case b := <-c.Batches:
					c.pending = append(c.pending, b...)
					continue
				default:
				}
				break
			}
			if len(c.pending) < n {
				t.Fatalf("heraldtest: connection closed (%v) after %d notifications, want %d", c.readErr, len(c.pending), n)
			}
		}
	}
	out := c.pending[:n:n]
	c.pending = c.pending[n:]
	return out
}

// NoNotification fails the test if a notification arrives within d.
func (c *Client) NoNotification(t testing.TB, d time.Duration) {
	t.Helper()
	if len(c.pending) > 0 {
		t.Fatalf("heraldtest: unexpected notifications %+v", c.pending)
	}
	select {
	case b := <-c.Batches:
		t.Fatalf("heraldtest: unexpected notifications %+v", b)
	case <-time.After(d):
	}
}

// WaitClosed waits for the server to close the connection and returns the
// close code (1006 when it ended without a close frame).
func (c *Client) WaitClosed(t testing.TB) int {
	t.Helper()
	select {
	case <-c.closed:
	case <-time.After(Timeout):
		t.Fatalf("heraldtest: connection still open after %v", Timeout)
	}
	var ce *websocket.CloseError
	if errors.As(c.readErr, &ce) {
		return ce.Code
	}
	return websocket.CloseAbnormalClosure
}

// Closed is closed when the connection ends.
func (c *Client) Closed() <-chan struct{} { return c.closed }

// NextUnmatched waits for the next reply to a raw frame.
func (c *Client) NextUnmatched(t testing.TB) Msg {
	t.Helper()
	select {
	case m := <-c.Unmatched:
		return m
	case <-time.After(Timeout):
		t.Fatalf("heraldtest: no reply within %v", Timeout)
	case <-c.closed:
		t.Fatalf("heraldtest: connection closed (%v) while waiting for a reply", c.readErr)
	}
	return Msg{}
}

package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/gorilla/websocket"
)

// PublishPath is the path of herald's publishing WebSocket.
const PublishPath = "/v1/publish/ws"

// StreamPublisher publishes over one persistent WebSocket to herald's
// publishing endpoint (GET /v1/publish/ws), as a backend: the API key is
// checked once, when the connection opens, and each publish is one
// JSON-RPC request on it, without the per-request cost of HTTP.
//
// It is safe for concurrent use: publishes from many goroutines are
// pipelined over the one connection, each answered as soon as herald has
// published it. Publishes in flight together may be published in any
// order; to order notifications, put them in one call or wait for the
// first call to return.
//
// It does not reconnect: when the connection ends (Done), every call fails
// with ErrConnectionLost and the caller dials again. A call that failed
// that way may or may not have published; PublishOnce with the same key on
// the new connection (or through Publisher) publishes nothing twice.
type StreamPublisher struct {
	c *conn
}

// DialPublisher opens a publishing connection with apiKey (one of
// auth.api_keys). url is the endpoint's WebSocket URL,
// ws://127.0.0.1:7512/v1/publish/ws, or herald's base URL as Publisher
// takes it (http://127.0.0.1:7512), which is taken to mean that endpoint.
// A refused key is an *APIError with status 401.
func DialPublisher(ctx context.Context, url, apiKey string) (*StreamPublisher, error) {
	u, err := publishWSURL(url)
	if err != nil {
		return nil, err
	}
	d := websocket.Dialer{HandshakeTimeout: 10 * time.Second, Proxy: websocket.DefaultDialer.Proxy}
	ws, resp, err := d.DialContext(ctx, u, http.Header{"Authorization": {"Bearer " + apiKey}})
	if err != nil {
		if resp != nil && resp.StatusCode != http.StatusSwitchingProtocols {
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
			resp.Body.Close()
			return nil, fmt.Errorf("connect %s: %w", u, &APIError{Status: resp.StatusCode, Body: strings.TrimSpace(string(body))})
		}
		return nil, fmt.Errorf("connect %s: %w", u, err)
	}
	// herald sends a publisher nothing but answers: anything else is
	// ignored.
	c := &conn{ws: ws, handle: func(*conn, *wire) {}, pending: map[string]*pending{}, done: make(chan struct{})}
	go c.read()
	return &StreamPublisher{c: c}, nil
}

// publishWSURL turns a base URL into the endpoint's WebSocket URL.
func publishWSURL(raw string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", fmt.Errorf("publisher URL %q: %w", raw, err)
	}
	switch u.Scheme {
	case "http":
		u.Scheme = "ws"
	case "https":
		u.Scheme = "wss"
	case "ws", "wss":
	default:
		return "", fmt.Errorf("publisher URL %q: the scheme must be ws, wss, http or https", raw)
	}
	if u.Path == "" || u.Path == "/" {
		u.Path = PublishPath
	}
	return u.String(), nil
}

// Publish publishes notifications in one request. It returns once they are
// in their channels' history. A refusal is an *Error with the HTTP API's
// code and message (-32602 for a wrong field, -32050 when herald cannot
// publish now: retry).
func (p *StreamPublisher) Publish(ctx context.Context, ns ...Publication) ([]Published, error) {
	return p.PublishOnce(ctx, "", ns...)
}

// PublishOnce publishes with an idempotency key: a retry with the same key
// (within history.ttl, over this connection, another one or the HTTP API
// with the same API key) gets the first request's results and publishes
// nothing again. An empty key is a plain Publish.
func (p *StreamPublisher) PublishOnce(ctx context.Context, key string, ns ...Publication) ([]Published, error) {
	if len(ns) == 0 {
		return nil, errors.New("publish: no notification given")
	}
	params := struct {
		Notifications  []Publication `json:"notifications"`
		IdempotencyKey string        `json:"idempotency_key,omitempty"`
	}{ns, key}
	res, err := p.c.call(ctx, "publish", params, nil)
	if err != nil {
		return nil, err
	}
	var r struct {
		Results []Published `json:"results"`
	}
	if err := json.Unmarshal(res, &r); err != nil {
		return nil, fmt.Errorf("publish: bad reply %s: %w", res, err)
	}
	return r.Results, nil
}

// Done is closed when the connection has ended, by Close or otherwise.
func (p *StreamPublisher) Done() <-chan struct{} { return p.c.done }

// Err says why the connection ended, once Done is closed.
func (p *StreamPublisher) Err() error {
	select {
	case <-p.c.done:
		return p.c.err
	default:
		return nil
	}
}

// Close ends the connection: calls still waiting fail with
// ErrConnectionLost. It waits for the reader to end.
func (p *StreamPublisher) Close() error {
	p.c.close(websocket.CloseNormalClosure, "")
	<-p.c.done
	return nil
}

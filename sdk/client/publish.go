package client

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"
)

// Publication is a notification for the HTTP publish API: herald adds id,
// seq and timestamp.
type Publication struct {
	Channel    string `json:"channel"`
	Event      string `json:"event"`
	ObjectType string `json:"object_type"`
	ObjectName string `json:"object_name,omitempty"`
	Object     any    `json:"object"` // any JSON value; json.RawMessage is sent verbatim
}

// Published is where a publication landed.
type Published struct {
	Channel string `json:"channel"`
	Seq     uint64 `json:"seq"`
	ID      string `json:"id"`
}

// APIError is an HTTP API answer other than 2xx.
type APIError struct {
	Status int    // HTTP status code
	Body   string // herald's JSON error body
}

func (e *APIError) Error() string {
	return fmt.Sprintf("herald API: %d %s: %s", e.Status, http.StatusText(e.Status), e.Body)
}

// Publisher publishes through herald's HTTP API, as a backend: with an API
// key, to any channel.
type Publisher struct {
	URL    string       // herald's base URL, e.g. http://127.0.0.1:7512
	APIKey string       // one of auth.api_keys
	HTTP   *http.Client // default: a client with a 30s timeout
	// H2C, when HTTP is nil, sends the requests over HTTP/2 without TLS
	// (prior knowledge), multiplexed on one connection per host shared by
	// every such Publisher, instead of a connection per concurrent
	// request. It needs an http:// URL (herald over TLS speaks HTTP/1.1).
	// StreamPublisher is the other persistent form.
	H2C bool
}

// h2cClient is the client of every Publisher with H2C: one transport, so
// that they share its connections.
var h2cClient = sync.OnceValue(func() *http.Client {
	tr := &http.Transport{Protocols: new(http.Protocols)}
	tr.Protocols.SetUnencryptedHTTP2(true)
	return &http.Client{Timeout: 30 * time.Second, Transport: tr}
})

// Publish publishes notifications in one request. It returns once they are
// in their channels' history: every subscriber gets them, and a resuming
// one within the history window.
func (p *Publisher) Publish(ctx context.Context, ns ...Publication) ([]Published, error) {
	return p.PublishOnce(ctx, "", ns...)
}

// PublishOnce publishes with an Idempotency-Key: a retry with the same key
// (within history.ttl) gets the first request's results and publishes
// nothing again, so a timed-out publish can be retried safely. An empty key
// is a plain Publish.
func (p *Publisher) PublishOnce(ctx context.Context, key string, ns ...Publication) ([]Published, error) {
	if len(ns) == 0 {
		return nil, fmt.Errorf("publish: no notification given")
	}
	body, err := json.Marshal(map[string]any{"notifications": ns})
	if err != nil {
		return nil, fmt.Errorf("publish: %w", err)
	}
	header := http.Header{}
	if key != "" {
		header.Set("Idempotency-Key", key)
	}
	out, err := p.Do(ctx, http.MethodPost, "/v1/publish", body, header)
	if err != nil {
		return nil, err
	}
	var r struct {
		Results []Published `json:"results"`
	}
	if err := json.Unmarshal(out, &r); err != nil {
		return nil, fmt.Errorf("publish: bad reply %s: %w", out, err)
	}
	return r.Results, nil
}

// Do sends one request to the HTTP API with the API key and returns the
// body of a 2xx answer; any other status is an *APIError.
func (p *Publisher) Do(ctx context.Context, method, path string, body []byte, header http.Header) ([]byte, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	u := strings.TrimRight(p.URL, "/") + path
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return nil, err
	}
	for k, v := range header {
		req.Header[k] = v
	}
	if p.APIKey != "" {
		req.Header.Set("Authorization", "Bearer "+p.APIKey)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	hc := p.HTTP
	switch {
	case hc != nil:
	case p.H2C:
		if req.URL.Scheme != "http" {
			return nil, fmt.Errorf("%s %s: H2C needs an http:// URL", method, u)
		}
		hc = h2cClient()
	default:
		hc = &http.Client{Timeout: 30 * time.Second}
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, u, err)
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return nil, fmt.Errorf("%s %s: read reply: %w", method, u, err)
	}
	if resp.StatusCode/100 != 2 {
		return nil, &APIError{Status: resp.StatusCode, Body: strings.TrimSpace(string(out))}
	}
	return out, nil
}

package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	heraldclient "github.com/heraldhq/herald/sdk/client"
)

// The publishing forms other than one HTTP/1.1 request per publish on a
// pool of keep-alive connections (-publish http): -publish h2c sends the
// same requests multiplexed on HTTP/2 without TLS (the SDK's Publisher
// with H2C), -publish ws pipelines them over one publishing WebSocket (the
// SDK's StreamPublisher), so that the server's CPU per publication can be
// compared form by form.

// publishForms are the values of -publish.
var publishForms = []string{"http", "h2c", "ws"}

// connectVia sets p.sendForm for the form -publish names, and returns what
// ends it. For http it does nothing: send makes the requests itself.
func (p *publisher) connectVia(ctx context.Context) (func(), error) {
	switch p.o.Publish {
	case "h2c":
		hp := &heraldclient.Publisher{URL: p.o.URLs[0], APIKey: p.o.APIKey, H2C: true}
		p.sendForm = func(ctx context.Context, body []byte) error {
			_, err := hp.Do(ctx, http.MethodPost, "/v1/publish", body, nil)
			return err
		}
		return func() {}, nil
	case "ws":
		dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		sp, err := heraldclient.DialPublisher(dctx, p.o.URLs[0], p.o.APIKey)
		if err != nil {
			return nil, err
		}
		p.sendForm = func(ctx context.Context, body []byte) error {
			ns, err := publications(body)
			if err != nil {
				return err
			}
			_, err = sp.Publish(ctx, ns...)
			return err
		}
		return func() { _ = sp.Close() }, nil
	}
	return func() {}, nil
}

// publications are the notifications of a request body, their objects
// kept as they are.
func publications(body []byte) ([]heraldclient.Publication, error) {
	var req struct {
		Notifications []struct {
			Channel    string          `json:"channel"`
			Event      string          `json:"event"`
			ObjectType string          `json:"object_type"`
			Object     json.RawMessage `json:"object"`
		} `json:"notifications"`
	}
	if err := json.Unmarshal(body, &req); err != nil {
		return nil, fmt.Errorf("publish body: %w", err)
	}
	ns := make([]heraldclient.Publication, len(req.Notifications))
	for i, n := range req.Notifications {
		ns[i] = heraldclient.Publication{Channel: n.Channel, Event: n.Event, ObjectType: n.ObjectType, Object: n.Object}
	}
	return ns, nil
}

// finishVia accounts for a request sent through p.sendForm, as send does for
// its own.
func (p *publisher) finishVia(err error, sent time.Time) {
	p.httpLat.record(int64(time.Since(sent)))
	if err != nil {
		p.failed.Add(int64(p.o.Batch))
		p.noteErr(err)
		return
	}
	p.published.Add(int64(p.o.Batch))
	p.expected.Add(int64(p.o.Batch) * p.perChan)
}

func (p *publisher) noteErr(err error) {
	p.errMu.Lock()
	if p.firstErr == "" {
		p.firstErr = err.Error()
	}
	p.errMu.Unlock()
}

package client

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/require"
)

type publishRequest struct {
	ID     json.RawMessage `json:"id"`
	Method string          `json:"method"`
	Params struct {
		Notifications  []json.RawMessage `json:"notifications"`
		IdempotencyKey string            `json:"idempotency_key"`
	} `json:"params"`
}

// fakePublishEndpoint checks the key, collects n requests, then answers
// them in reverse order: a client that matched answers by order would mix
// them up. A request whose first notification's channel is "bad" gets an
// error.
func fakePublishEndpoint(t *testing.T, n int, got chan<- publishRequest) *httptest.Server {
	up := websocket.Upgrader{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != PublishPath {
			http.NotFound(w, r)
			return
		}
		if r.Header.Get("Authorization") != "Bearer k" {
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = w.Write([]byte(`{"error":{"code":-32001,"message":"invalid API key"}}`))
			return
		}
		ws, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer ws.Close()
		var reqs []publishRequest
		for len(reqs) < n {
			var m publishRequest
			if ws.ReadJSON(&m) != nil {
				return
			}
			got <- m
			reqs = append(reqs, m)
		}
		for i := len(reqs) - 1; i >= 0; i-- {
			m := reqs[i]
			var ch struct{ Channel string }
			_ = json.Unmarshal(m.Params.Notifications[0], &ch)
			if ch.Channel == "bad" {
				_ = ws.WriteJSON(map[string]any{"jsonrpc": "2.0", "id": m.ID, "error": map[string]any{"code": -32602, "message": "channel: bad"}})
				continue
			}
			_ = ws.WriteJSON(map[string]any{"jsonrpc": "2.0", "id": m.ID, "result": map[string]any{"results": []map[string]any{{"channel": ch.Channel, "seq": 1, "id": "id-" + ch.Channel}}}})
		}
		_, _, _ = ws.ReadMessage() // until the client closes
	}))
	t.Cleanup(srv.Close)
	return srv
}

func TestStreamPublisherPipelinesConcurrentCalls(t *testing.T) {
	const n = 20
	got := make(chan publishRequest, n)
	srv := fakePublishEndpoint(t, n, got)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	p, err := DialPublisher(ctx, srv.URL, "k") // a base URL means the endpoint
	require.NoError(t, err)
	defer p.Close()

	var wg sync.WaitGroup
	errs := make([]error, n)
	res := make([][]Published, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ch := fmt.Sprintf("c%d", i)
			if i == 3 {
				ch = "bad"
			}
			res[i], errs[i] = p.PublishOnce(ctx, fmt.Sprintf("key-%d", i), Publication{Channel: ch, Event: "e", ObjectType: "t", Object: i})
		}()
	}
	wg.Wait() // all n were in flight at once: the fake answers none before the n-th
	for i := range n {
		if i == 3 {
			var e *Error
			require.ErrorAs(t, errs[i], &e)
			require.Equal(t, -32602, e.Code)
			continue
		}
		require.NoError(t, errs[i])
		require.Equal(t, []Published{{Channel: fmt.Sprintf("c%d", i), Seq: 1, ID: fmt.Sprintf("id-c%d", i)}}, res[i])
	}
	keys := map[string]bool{}
	for range n {
		m := <-got
		require.Equal(t, "publish", m.Method)
		keys[m.Params.IdempotencyKey] = true
	}
	require.Len(t, keys, n, "each call's idempotency_key was sent with it")
}

func TestStreamPublisherRefusedKeyIsAnAPIError(t *testing.T) {
	srv := fakePublishEndpoint(t, 1, make(chan publishRequest, 1))
	_, err := DialPublisher(context.Background(), "ws"+strings.TrimPrefix(srv.URL, "http")+PublishPath, "wrong")
	var ae *APIError
	require.ErrorAs(t, err, &ae)
	require.Equal(t, http.StatusUnauthorized, ae.Status)
	require.Contains(t, ae.Body, "invalid API key")

	_, err = DialPublisher(context.Background(), "ftp://x", "k")
	require.ErrorContains(t, err, "scheme")
}

func TestStreamPublisherCallsFailWhenTheConnectionEnds(t *testing.T) {
	got := make(chan publishRequest, 2)
	srv := fakePublishEndpoint(t, 2, got) // answers only after a second request
	p, err := DialPublisher(context.Background(), srv.URL, "k")
	require.NoError(t, err)
	errc := make(chan error, 1)
	go func() {
		_, err := p.Publish(context.Background(), Publication{Channel: "c", Event: "e", ObjectType: "t"})
		errc <- err
	}()
	<-got
	require.NoError(t, p.Close())
	require.ErrorIs(t, <-errc, ErrConnectionLost)
	<-p.Done()
	_, err = p.Publish(context.Background(), Publication{Channel: "c", Event: "e", ObjectType: "t"})
	require.ErrorIs(t, err, ErrConnectionLost)
	_, err = p.Publish(context.Background())
	require.ErrorContains(t, err, "no notification")
}

func TestPublisherH2C(t *testing.T) {
	var protos sync.Map
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		protos.Store(r.Proto, true)
		_, _ = w.Write([]byte(`{"results":[{"channel":"c","seq":1,"id":"x"}]}`))
	}))
	srv.Config.Protocols = new(http.Protocols)
	srv.Config.Protocols.SetHTTP1(true)
	srv.Config.Protocols.SetUnencryptedHTTP2(true)
	srv.Start()
	defer srv.Close()

	p := &Publisher{URL: srv.URL, APIKey: "k", H2C: true}
	res, err := p.Publish(context.Background(), Publication{Channel: "c", Event: "e", ObjectType: "t"})
	require.NoError(t, err)
	require.Equal(t, uint64(1), res[0].Seq)
	_, h2 := protos.Load("HTTP/2.0")
	_, h1 := protos.Load("HTTP/1.1")
	require.True(t, h2)
	require.False(t, h1)

	_, err = (&Publisher{URL: "https://127.0.0.1:1", H2C: true}).Publish(context.Background(), Publication{Channel: "c"})
	require.ErrorContains(t, err, "http:// URL")
}

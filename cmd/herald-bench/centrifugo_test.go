package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/require"

	"github.com/heraldhq/herald/core/auth"
)

func TestCentrifugoReplyFindsItsIDAmongTheFrameMessages(t *testing.T) {
	for _, tc := range []struct {
		name  string
		frame string
		found bool
		err   string
	}{
		{"alone", `{"id":1,"connect":{"client":"c1","version":"6.9.1","ping":25,"pong":true}}`, true, ""},
		{"after a ping and a push", "{}\n" + `{"push":{"channel":"bench","pub":{"data":{"n":1}}}}` + "\n" + `{"id":1,"subscribe":{}}`, true, ""},
		{"another id", `{"id":2,"subscribe":{}}`, false, ""},
		{"an error", `{"id":1,"error":{"code":109,"message":"token expired"}}`, true, "centrifugo error 109: token expired"},
		{"trailing newline", `{"id":1,"subscribe":{}}` + "\n", true, ""},
		{"garbage", `{"id":1,`, true, "message"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			found, err := centrifugoReply([]byte(tc.frame), 1)
			require.Equal(t, tc.found, found)
			if tc.err == "" {
				require.NoError(t, err)
			} else {
				require.ErrorContains(t, err, tc.err)
			}
		})
	}
}

func TestCentrifugoPongAnswersOnlyPings(t *testing.T) {
	push := `{"push":{"channel":"bench","pub":{"data":{"sent_ns":1,"n":1,"o":{}}}}}`
	for _, tc := range []struct {
		frame string
		ping  bool
	}{
		{"{}", true},
		{push + "\n{}", true},
		{"{}\n" + push, true},
		{push, false},
		{push + "\n" + push, false},
		{"", false},
	} {
		got := centrifugoPong([]byte(tc.frame))
		if tc.ping {
			require.Equal(t, "{}", string(got), "%q", tc.frame)
		} else {
			require.Nil(t, got, "%q", tc.frame)
		}
	}
}

func TestCentrifugoPublishBodies(t *testing.T) {
	channels := []string{"bench-0", "bench-1", "bench-2"}
	var body bytes.Buffer
	writeCentrifugoPublish(&body, channels, 4, 1, "123")
	var one struct {
		Channel string `json:"channel"`
		Data    struct {
			SentNs int64 `json:"sent_ns"`
			N      int   `json:"n"`
		} `json:"data"`
	}
	require.NoError(t, json.Unmarshal(body.Bytes(), &one), body.String())
	require.Equal(t, "bench-1", one.Channel)
	require.Equal(t, int64(123), one.Data.SentNs)
	require.Equal(t, 4, one.Data.N)

	body.Reset()
	writeCentrifugoPublish(&body, channels, 2, 3, "456")
	var batch struct {
		Commands []struct {
			Publish *struct {
				Channel string         `json:"channel"`
				Data    map[string]int `json:"data"`
			} `json:"publish"`
		} `json:"commands"`
	}
	require.NoError(t, json.Unmarshal(body.Bytes(), &batch), body.String())
	require.Len(t, batch.Commands, 3)
	for i, c := range batch.Commands {
		require.NotNil(t, c.Publish)
		require.Equal(t, channels[(2+i)%3], c.Publish.Channel)
		require.Equal(t, map[string]int{"sent_ns": 456, "n": 2 + i}, c.Publish.Data)
	}
	require.Equal(t, "http://h:8000/api/publish", centrifugoAPIURL("http://h:8000", 1))
	require.Equal(t, "http://h:8000/api/batch", centrifugoAPIURL("http://h:8000", 10))
}

func TestCentrifugoAPIError(t *testing.T) {
	require.NoError(t, centrifugoAPIError([]byte(`{"result":{}}`)))
	require.NoError(t, centrifugoAPIError([]byte(`{"replies":[{"publish":{}},{"publish":{}}]}`)))
	require.EqualError(t, centrifugoAPIError([]byte(`{"error":{"code":102,"message":"unknown channel"}}`)), "centrifugo error 102: unknown channel")
	require.EqualError(t, centrifugoAPIError([]byte(`{"replies":[{"publish":{}},{"error":{"code":100,"message":"internal server error"}}]}`)),
		"centrifugo error 100: internal server error")
	require.Error(t, centrifugoAPIError([]byte(`Unauthorized`)))
}

func TestCentrifugoWSURL(t *testing.T) {
	require.Equal(t, "ws://127.0.0.1:18000/connection/websocket", centrifugoWSURL("http://127.0.0.1:18000"))
	require.Equal(t, "wss://h/connection/websocket", centrifugoWSURL("https://h"))
}

func TestCheckRefusesWhatCentrifugoCannotDo(t *testing.T) {
	base := options{URL: "http://127.0.0.1:18000", Server: serverCentrifugo, Mode: "broadcast", Clients: 1, Rate: 1, APIKey: "k",
		Secret: "s", Reader: "gorilla", ConnectRate: 1, Dialers: 1, Publishers: 1}
	ok := base
	require.NoError(t, ok.check())
	ws := base
	ws.Publish = "ws"
	require.ErrorIs(t, ws.check(), errNotCentrifugo)
	two := base
	two.URL = "http://127.0.0.1:18000,http://127.0.0.1:18001"
	require.ErrorIs(t, two.check(), errNotCentrifugo)
	other := base
	other.Server = "nats"
	require.ErrorContains(t, other.check(), "-server")
}

// fakeCentrifugo plays Centrifugo's side of one client connection: it
// checks the connect command's token as Centrifugo does with
// client.token.hmac_secret_key (HS256, sub and exp), answers connect and
// subscribe, then (once reading is closed: the epoll reader takes the
// socket from gorilla, whose buffer must hold nothing yet) sends a ping and
// a frame of two publications, and hands what the client sent back to got.
func fakeCentrifugo(t *testing.T, secret string, reading <-chan struct{}, got chan<- string) *httptest.Server {
	up := websocket.Upgrader{}
	return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/connection/websocket" {
			http.NotFound(w, r)
			return
		}
		ws, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer ws.Close()
		read := func() map[string]json.RawMessage {
			_, msg, err := ws.ReadMessage()
			if err != nil {
				return nil
			}
			var m map[string]json.RawMessage
			_ = json.Unmarshal(msg, &m)
			return m
		}
		connect := read()
		var cmd struct {
			Token string `json:"token"`
		}
		_ = json.Unmarshal(connect["connect"], &cmd)
		claims := jwt.MapClaims{}
		_, err = jwt.ParseWithClaims(cmd.Token, claims, func(*jwt.Token) (any, error) { return []byte(secret), nil },
			jwt.WithValidMethods([]string{"HS256"}), jwt.WithExpirationRequired())
		if err != nil || claims["sub"] != "bench" {
			got <- "bad token: " + cmd.Token
			_ = ws.WriteMessage(websocket.TextMessage, []byte(`{"id":1,"error":{"code":109,"message":"token invalid"}}`))
			return
		}
		_ = ws.WriteMessage(websocket.TextMessage, []byte(`{"id":1,"connect":{"client":"c1","version":"6.9.1","ping":25,"pong":true}}`))
		sub := read()
		var s struct {
			Channel string `json:"channel"`
		}
		_ = json.Unmarshal(sub["subscribe"], &s)
		_ = ws.WriteMessage(websocket.TextMessage, []byte(`{"id":2,"subscribe":{}}`))
		push := func(n int) string {
			return `{"push":{"channel":"` + s.Channel + `","pub":{"data":{"sent_ns":` + strings.Repeat("1", n) + `,"n":1}}}}`
		}
		<-reading
		_ = ws.WriteMessage(websocket.TextMessage, []byte("{}"))
		_ = ws.WriteMessage(websocket.TextMessage, []byte(push(1)+"\n"+push(2)))
		_ = ws.SetReadDeadline(time.Now().Add(10 * time.Second))
		_, pong, err := ws.ReadMessage()
		if err != nil {
			got <- "no answer: " + err.Error()
			return
		}
		got <- string(pong)
	}))
}

func TestCentrifugoClientConnectsSubscribesCountsAndAnswersPings(t *testing.T) {
	for _, reader := range []string{"gorilla", defaultReader} {
		t.Run(reader, func(t *testing.T) {
			const secret = "bench-secret"
			got, reading := make(chan string, 1), make(chan struct{})
			srv := fakeCentrifugo(t, secret, reading, got)
			defer srv.Close()
			// The token runScenario mints for every client.
			token, err := auth.NewTokens(secret).Mint("bench", time.Hour, nil)
			require.NoError(t, err)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			o := options{URL: srv.URL, Server: serverCentrifugo, Mode: "personal", Clients: 1, Rate: 0, Secret: secret, Reader: reader,
				ConnectRate: 100, Dialers: 1, Publishers: 1, Connect: 10 * time.Second}
			require.NoError(t, o.check())
			f, failures, errs := connect(ctx, o, token, []int{0})
			require.Zero(t, failures, errs)
			require.Len(t, f.clients, 1)
			require.Equal(t, "bench-0", f.clients[0].channel)
			require.NoError(t, f.start(reader))
			defer f.stop(5 * time.Second)
			close(reading)
			select {
			case answer := <-got:
				require.Equal(t, "{}", answer)
			case <-ctx.Done():
				t.Fatal("the fake server never heard back")
			}
			for f.deliveredTotal() < 2 && ctx.Err() == nil {
				time.Sleep(5 * time.Millisecond)
			}
			require.Equal(t, int64(2), f.deliveredTotal(), "both publications of the frame")
			require.Equal(t, int64(1), total(&f.frames))
		})
	}
}

func TestCentrifugoClientReportsARefusedToken(t *testing.T) {
	got := make(chan string, 1)
	srv := fakeCentrifugo(t, "the-server-secret", nil, got)
	defer srv.Close()
	token, err := auth.NewTokens("another-secret").Mint("bench", time.Hour, nil)
	require.NoError(t, err)
	d := websocket.Dialer{HandshakeTimeout: 10 * time.Second}
	_, err = centrifugoDialAndSubscribe(context.Background(), &d, centrifugoWSURL(srv.URL), token, 7, "bench")
	require.ErrorContains(t, err, "client 7: connect: centrifugo error 109")
}

func FuzzCentrifugoFrame(f *testing.F) {
	f.Add([]byte("{}\n{\"id\":1,\"connect\":{}}"))
	f.Add([]byte(`{"id":1,"error":{"code":1}}`))
	f.Add([]byte("\n\n{}"))
	f.Fuzz(func(t *testing.T, frame []byte) {
		_, _ = centrifugoReply(frame, 1)
		if pong := centrifugoPong(frame); pong != nil {
			require.Equal(t, "{}", string(pong))
		}
	})
}

func TestPairTableGivesHeraldAsARatioOfCentrifugo(t *testing.T) {
	lines := []string{
		"12:00:00.000  a herald: connecting 1000 clients", // a log line, skipped
		`{"name":"a herald","mode":"broadcast","clients":1000,"connected":1000,"rate":200,"published":600,"delivered":600000,"delivery_ratio":1,"notifications_per_frame":1.5,"p50_ms":2,"p99_ms":10,"max_ms":20,"rss_per_conn_kib":10,"server_cpu_s":1.5}`,
		`{"name":"a centrifugo","mode":"broadcast","clients":1000,"connected":1000,"rate":200,"published":600,"delivered":600000,"delivery_ratio":1,"notifications_per_frame":5,"p50_ms":4,"p99_ms":41,"max_ms":40,"rss_per_conn_kib":40,"server_cpu_s":3}`,
		`{"name":"d herald","mode":"broadcast","clients":15000,"connected":15000,"rate":0,"rss_per_conn_kib":8}`,
		`{"name":"d centrifugo","mode":"broadcast","clients":15000,"connected":15000,"rate":0,"rss_per_conn_kib":32}`,
		`{"name":"x","mode":"broadcast"}`, // not a pair run: left out
	}
	path := t.TempDir() + "/results.jsonl"
	require.NoError(t, os.WriteFile(path, []byte(strings.Join(lines, "\n")+"\n"), 0o600))
	var out bytes.Buffer
	require.NoError(t, printPairTable(path, &out))
	got := strings.Split(strings.TrimSpace(out.String()), "\n")
	require.Len(t, got, 2+3+3, out.String())
	require.True(t, strings.HasPrefix(got[2], "| a | herald | 1000/1000 | 600 | 600000 | 1.0000 | 2.00 | 10 | 20 | 10.0 | 1.50 | 2.50 | 1.5 | 3.75 |"), got[2])
	require.True(t, strings.HasPrefix(got[3], "| a | centrifugo | 1000/1000 | 600 | 600000 | 1.0000 | 4.00 | 40 | 40 |"), got[3], "a quantile (a bucket's upper bound) above the exact maximum is the maximum")
	require.Equal(t, "| a | herald ÷ centrifugo | | | | | 0.50× | 0.25× | | 0.25× | 0.50× | 0.50× | | 0.15× | | |", got[4],
		"herald's 3.75 µs a frame against Centrifugo's 25")
	require.Equal(t, "| d | herald ÷ centrifugo | | | | | – | – | | 0.25× | – | – | | – | | |", got[7])
	require.True(t, strings.HasPrefix(got[5], "| d | herald | 15000/15000 | 0 | 0 | – | – | – | – | 8.0 | 0.00 | – | – | – |"), got[5])
}

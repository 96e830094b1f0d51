package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/require"
)

func TestParseURLs(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []string
		err  string
	}{
		{in: "http://127.0.0.1:7512", want: []string{"http://127.0.0.1:7512"}},
		{in: " http://a:1/, http://b:2 ,,http://c:3", want: []string{"http://a:1", "http://b:2", "http://c:3"}},
		{in: "", err: "no URL"},
		{in: "127.0.0.1:7512", err: "not an http(s) base URL"},
		{in: "ws://a:1", err: "not an http(s) base URL"},
		{in: "http://a:1,http://a:1/", err: "listed twice"},
	} {
		got, err := parseURLs(tc.in)
		if tc.err != "" {
			require.ErrorContains(t, err, tc.err, tc.in)
			continue
		}
		require.NoError(t, err, tc.in)
		require.Equal(t, tc.want, got, tc.in)
	}
}

func TestParsePIDs(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []int
		err  bool
	}{
		{in: "", want: nil},
		{in: "0", want: nil},
		{in: "42", want: []int{42}},
		{in: "42, 43,44", want: []int{42, 43, 44}},
		{in: "42,,43", err: true},
		{in: "x", err: true},
		{in: "-3", err: true},
		{in: "42,0", err: true},
	} {
		got, err := parsePIDs(tc.in)
		if tc.err {
			require.Error(t, err, tc.in)
			continue
		}
		require.NoError(t, err, tc.in)
		require.Equal(t, tc.want, got, tc.in)
	}
}

// batchOf is herald's frame of notifications stamped with these send
// times.
func batchOf(stamps ...int64) string {
	var parts []string
	for _, s := range stamps {
		parts = append(parts, fmt.Sprintf(`{"channel":"bench","object":{%s%d,"n":1}}`, stampKey, s))
	}
	return `{"jsonrpc":"2.0","method":"onNotificationReceived","params":{"notifications":[` + strings.Join(parts, ",") + `]}}`
}

func validOptions() options {
	return options{URL: "http://127.0.0.1:7512", Secret: "s", APIKey: "k", Mode: "broadcast", Clients: 10, Rate: 10,
		Reader: "gorilla", ConnectRate: 10, Dialers: 1, Publishers: 1}
}

func TestCheckNodes(t *testing.T) {
	for _, tc := range []struct {
		name  string
		edit  func(*options)
		err   string
		nodes int
	}{
		{name: "one node as before", edit: func(o *options) { o.PID = "12" }, nodes: 1},
		{name: "three nodes, three PIDs and NATS", edit: func(o *options) {
			o.URL, o.PID, o.NATSPID = "http://a:1,http://b:2,http://c:3", "1,2,3", 4
		}, nodes: 3},
		{name: "PIDs do not match the nodes", edit: func(o *options) { o.URL, o.PID = "http://a:1,http://b:2", "1" }, err: "1 PIDs for 2 nodes"},
		{name: "split on one node", edit: func(o *options) { o.Split = true }, err: "-split needs two or more nodes"},
		{name: "negative NATS PID", edit: func(o *options) { o.NATSPID = -1 }, err: "-nats-pid"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := validOptions()
			tc.edit(&o)
			err := o.check()
			if tc.err != "" {
				require.ErrorContains(t, err, tc.err)
				return
			}
			require.NoError(t, err)
			require.Len(t, o.URLs, tc.nodes)
		})
	}
}

func TestRolesAndRoundRobin(t *testing.T) {
	o := validOptions()
	o.URL, o.Clients = "http://a:1,http://b:2,http://c:3", 7
	require.NoError(t, o.check())
	clients, publishes := o.roles()
	require.Equal(t, []int{0, 1, 2}, clients)
	require.Equal(t, []int{0, 1, 2}, publishes)
	require.Equal(t, []int{0, 1, 2, 0, 1, 2, 0}, newFleet(o, clients).nodeOf)

	o.Split = true
	clients, publishes = o.roles()
	require.Equal(t, []int{1, 2}, clients)
	require.Equal(t, []int{0}, publishes)
	require.Equal(t, []int{1, 2, 1, 2, 1, 2, 1}, newFleet(o, clients).nodeOf)
}

// A frame's notifications count towards the node of the client that read it.
func TestCountPerNode(t *testing.T) {
	o := validOptions()
	o.URL, o.Clients = "http://a:1,http://b:2", 4
	require.NoError(t, o.check())
	clientNodes, _ := o.roles()
	f := newFleet(o, clientNodes)
	now := time.Now().UnixNano()
	f.count(0, []byte(batchOf(now, now)), now) // node 0
	f.count(1, []byte(batchOf(now)), now)      // node 1
	f.count(2, []byte(batchOf(now)), now)      // node 0
	f.count(3, []byte(`{"jsonrpc":"2.0","id":1,"result":"pong"}`), now)
	_, delivered := f.nodeCounts()
	require.Equal(t, []int64{3, 1}, delivered)
	require.Equal(t, int64(4), f.deliveredTotal())
}

func TestSummarizeProcesses(t *testing.T) {
	o := validOptions()
	o.URL, o.PID, o.NATSPID = "http://a:1,http://b:2", "11,12", 13
	require.NoError(t, o.check())
	ps := newProcSet(o)
	require.Len(t, ps, 3)
	st := func(rssMiB int64, cpu time.Duration) procStat { return procStat{RSSBytes: rssMiB << 20, CPU: cpu} }
	ps[0].base, ps[0].start, ps[0].end = st(10, 0), st(20, time.Second), st(0, 3*time.Second) // 2 s
	ps[1].base, ps[1].start, ps[1].end = st(10, 0), st(30, time.Second), st(0, 2*time.Second) // 1 s
	ps[2].base, ps[2].start, ps[2].end = st(5, 0), st(6, 0), st(0, time.Second/2)             // NATS 0.5 s
	sum := &summary{Connected: 1024, Delivered: 1_000_000}
	ps.summarize(sum, o, nodeCounts{
		clients:   []int64{512, 512},
		published: []int64{1000, 3000},
		delivered: []int64{400_000, 600_000},
	})
	require.InDelta(t, 3.0, sum.ServerCPUSeconds, 1e-9, "herald nodes summed")
	require.InDelta(t, 0.5, sum.NATSCPUSeconds, 1e-9, "NATS apart")
	require.InDelta(t, 3.5, sum.CPUPerDeliveredUs, 1e-9, "3.5 s over a million deliveries")
	require.InDelta(t, 50.0, sum.ServerRSSMiB, 1e-9)
	require.InDelta(t, 20.0, sum.ServerRSSBaseMiB, 1e-9)
	require.InDelta(t, 30.0, sum.RSSPerConnKiB, 1e-9, "30 MiB over 1024 clients")
	require.Len(t, sum.Procs, 3)
	a, b, n := sum.Procs[0], sum.Procs[1], sum.Procs[2]
	require.Equal(t, procSummary{Role: "herald", PID: 11, URL: "http://a:1", Clients: 512, Published: 1000, Delivered: 400_000,
		CPUSeconds: 2, RSSBaseMiB: 10, RSSMiB: 20, CPUPerDeliveredUs: 5, CPUPerPublishedUs: 2000}, a)
	require.Equal(t, "http://b:2", b.URL)
	require.InDelta(t, 1e6/600_000, b.CPUPerDeliveredUs, 1e-9)
	require.Equal(t, "nats", n.Role)
	require.Equal(t, int64(4000), n.Published, "NATS carries every node's publishes")
	require.Equal(t, int64(1_000_000), n.Delivered)
	require.InDelta(t, 0.5, n.CPUPerDeliveredUs, 1e-9, "NATS over every delivery")
	require.InDelta(t, 125.0, n.CPUPerPublishedUs, 1e-9, "NATS over every publish")

	// One process: its figures are the summary's, no breakdown.
	one := validOptions()
	one.PID = "11"
	require.NoError(t, one.check())
	ps = newProcSet(one)
	ps[0].base, ps[0].start, ps[0].end = st(10, 0), st(20, time.Second), st(0, 3*time.Second)
	sum = &summary{Connected: 10, Delivered: 1000}
	ps.summarize(sum, one, nodeCounts{clients: []int64{10}, published: []int64{100}, delivered: []int64{1000}})
	require.Nil(t, sum.Procs)
	require.InDelta(t, 2.0, sum.ServerCPUSeconds, 1e-9)
	require.InDelta(t, 2000.0, sum.CPUPerDeliveredUs, 1e-9)
	require.Zero(t, sum.NATSCPUSeconds)
}

func TestTableColumns(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, rows ...summary) string {
		var b bytes.Buffer
		b.WriteString("a log line\n")
		for _, r := range rows {
			line, err := json.Marshal(r)
			require.NoError(t, err)
			b.Write(append(line, '\n'))
		}
		path := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(path, b.Bytes(), 0o600))
		return path
	}
	single := summary{Name: "a", Mode: "broadcast", Nodes: 1, Clients: 10, Connected: 10, Rate: 1, Published: 1, Delivered: 10}
	var out bytes.Buffer
	require.NoError(t, printTable(write("one.jsonl", single), &out))
	require.Contains(t, out.String(), "| scenario | clients | published |", "one node: the table as before")
	require.NotContains(t, out.String(), "NATS")

	cluster := single
	cluster.Name, cluster.Nodes, cluster.NATSCPUSeconds, cluster.CPUPerDeliveredUs = "a 3 nodes", 3, 1.5, 4.25
	cluster.Procs = []procSummary{{Role: "herald", PID: 1, URL: "http://a:1", Clients: 10, Delivered: 10, CPUSeconds: 1},
		{Role: "nats", PID: 2, CPUSeconds: 1.5}}
	out.Reset()
	require.NoError(t, printTable(write("both.jsonl", single, cluster), &out))
	lines := strings.Split(out.String(), "\n")
	require.Contains(t, lines[0], "| nodes |")
	require.Contains(t, lines[0], "| NATS CPU s | CPU µs/notif |")
	require.Contains(t, out.String(), "| a 3 nodes | 3 | 10/10 |")
	require.Contains(t, out.String(), "| 1.5 | 4.25 |")
	require.Contains(t, out.String(), "| a 3 nodes | herald http://a:1 | 10 |")
	require.Contains(t, out.String(), "| a 3 nodes | nats | – |")
}

// fakeCluster is herald's protocol reduced to what herald-bench uses, on
// several nodes that share one hub: a publish on any node reaches the
// subscribers of every node, like a cluster.
type fakeCluster struct {
	mu   sync.Mutex
	subs map[string][]*fakeConn // by channel
	// publishes counts the publish requests each node took; perChannel
	// the notifications published to each channel.
	publishes  map[string]int
	perChannel map[string]int
	// onPublish, if set, runs at each publish request.
	onPublish func()
}

type fakeConn struct {
	mu sync.Mutex
	ws *websocket.Conn
}

func newFakeCluster() *fakeCluster {
	return &fakeCluster{subs: map[string][]*fakeConn{}, publishes: map[string]int{}, perChannel: map[string]int{}}
}

func (fc *fakeCluster) node(t *testing.T) *httptest.Server {
	mux := http.NewServeMux()
	up := websocket.Upgrader{}
	var srv *httptest.Server
	mux.HandleFunc("/ws", func(w http.ResponseWriter, r *http.Request) {
		ws, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		var req struct {
			Params struct{ Channel string }
		}
		if err := ws.ReadJSON(&req); err != nil {
			ws.Close()
			return
		}
		c := &fakeConn{ws: ws}
		fc.mu.Lock()
		fc.subs[req.Params.Channel] = append(fc.subs[req.Params.Channel], c)
		fc.mu.Unlock()
		c.mu.Lock()
		_ = ws.WriteMessage(websocket.TextMessage, []byte(`{"jsonrpc":"2.0","id":1,"result":{}}`))
		c.mu.Unlock()
		for { // until the client closes
			if _, _, err := ws.ReadMessage(); err != nil {
				return
			}
		}
	})
	mux.HandleFunc("/v1/publish", func(w http.ResponseWriter, r *http.Request) {
		var body struct {
			Notifications []json.RawMessage
		}
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		fc.mu.Lock()
		fc.publishes[srv.URL]++
		onPublish := fc.onPublish
		fc.mu.Unlock()
		if onPublish != nil {
			onPublish()
		}
		for _, n := range body.Notifications {
			var target struct{ Channel string }
			_ = json.Unmarshal(n, &target)
			frame := []byte(`{"jsonrpc":"2.0","method":"onNotificationReceived","params":{"notifications":[` + string(n) + `]}}`)
			fc.mu.Lock()
			fc.perChannel[target.Channel]++
			conns := fc.subs[target.Channel]
			fc.mu.Unlock()
			for _, c := range conns {
				c.mu.Lock()
				_ = c.ws.WriteMessage(websocket.TextMessage, frame)
				c.mu.Unlock()
			}
		}
		_, _ = w.Write([]byte(`{}`))
	})
	srv = httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

// Clients and publishes spread over the nodes round-robin, and every
// delivery is counted once, towards the node its client is on.
func TestScenarioOverNodes(t *testing.T) {
	for _, split := range []bool{false, true} {
		t.Run(map[bool]string{false: "spread", true: "split"}[split], func(t *testing.T) {
			fc := newFakeCluster()
			a, b, c := fc.node(t), fc.node(t), fc.node(t)
			o := validOptions()
			self := os.Getpid() // a live process to read; its figures are not checked
			o.URL = strings.Join([]string{a.URL, b.URL, c.URL}, ",")
			o.PID = strings.Repeat(strconv.Itoa(self)+",", 2) + strconv.Itoa(self)
			o.NATSPID = self
			o.Split = split
			o.Clients, o.Rate, o.Duration, o.Batch, o.Publishers = 9, 60, 500*time.Millisecond, 1, 2
			o.ConnectRate, o.Dialers, o.Settle, o.Drain, o.Connect = 1000, 3, 0, 10*time.Second, 10*time.Second
			require.NoError(t, o.check())
			sum, err := runScenario(context.Background(), o, &bytes.Buffer{})
			require.NoError(t, err)
			require.Equal(t, 9, sum.Connected)
			require.Equal(t, int64(30), sum.Published, "60/s for 0.5 s")
			require.Equal(t, int64(30*9), sum.Delivered)
			require.Len(t, sum.Procs, 4)
			var delivered, published int64
			for i, p := range sum.Procs[:3] {
				delivered += p.Delivered
				published += p.Published
				switch {
				case !split:
					require.Equal(t, 3, p.Clients, "node %d", i)
					require.Equal(t, int64(10), p.Published, "node %d", i)
					require.Equal(t, int64(30*3), p.Delivered, "node %d", i)
				case i == 0:
					require.Zero(t, p.Clients)
					require.Equal(t, int64(30), p.Published)
					require.Zero(t, p.Delivered)
				default:
					require.Equal(t, []int{5, 4}[i-1], p.Clients, "node %d", i)
					require.Zero(t, p.Published, "node %d", i)
					require.Equal(t, int64(30*p.Clients), p.Delivered, "node %d", i)
				}
			}
			require.Equal(t, sum.Delivered, delivered)
			require.Equal(t, sum.Published, published)
			if split {
				require.Equal(t, map[string]int{a.URL: 30}, fc.publishes)
			} else {
				require.Equal(t, map[string]int{a.URL: 10, b.URL: 10, c.URL: 10}, fc.publishes)
			}
			require.Equal(t, "nats", sum.Procs[3].Role)
		})
	}
}

// A warm-up publishes once to every channel before the measured phase and
// leaves nothing of it in the figures.
func TestWarmup(t *testing.T) {
	fc := newFakeCluster()
	a, b := fc.node(t), fc.node(t)
	o := validOptions()
	o.URL, o.Mode, o.Warmup = a.URL+","+b.URL, "personal", true
	o.Clients, o.Rate, o.Duration, o.Batch, o.Publishers = 7, 60, 250*time.Millisecond, 2, 2
	o.ConnectRate, o.Dialers, o.Settle, o.Drain, o.Connect = 1000, 3, 0, 10*time.Second, 10*time.Second
	require.NoError(t, o.check())
	sum, err := runScenario(context.Background(), o, &bytes.Buffer{})
	require.NoError(t, err)
	require.True(t, sum.Warmup)
	require.Equal(t, int64(14), sum.Published, "60/s for 0.25 s, 2 a request: 7 requests")
	require.Equal(t, int64(14), sum.Delivered, "one subscriber a channel; the warm-up's are forgotten")
	fc.mu.Lock()
	defer fc.mu.Unlock()
	require.Len(t, fc.perChannel, 7)
	total := 0
	for ch, n := range fc.perChannel {
		require.GreaterOrEqual(t, n, 1, ch)
		total += n
	}
	require.Equal(t, 8+14, total, "the warm-up: 4 requests of 2 for 7 channels, wrapping to the first")
}

// A server process that ends during the run loses its CPU figures, not
// its memory ones, and the run says why.
func TestProcessEndsMidRun(t *testing.T) {
	server := exec.Command("sleep", "60")
	require.NoError(t, server.Start())
	var once sync.Once
	stop := func() { once.Do(func() { _ = server.Process.Kill(); _ = server.Wait() }) }
	t.Cleanup(stop)
	fc := newFakeCluster()
	fc.onPublish = stop
	node := fc.node(t)
	o := validOptions()
	o.URL, o.PID = node.URL, strconv.Itoa(server.Process.Pid)
	o.Clients, o.Rate, o.Duration, o.Batch, o.Publishers = 2, 20, 200*time.Millisecond, 1, 1
	o.ConnectRate, o.Dialers, o.Settle, o.Drain, o.Connect = 1000, 1, 0, 10*time.Second, 10*time.Second
	require.NoError(t, o.check())
	sum, err := runScenario(context.Background(), o, &bytes.Buffer{})
	require.NoError(t, err)
	require.Equal(t, int64(4), sum.Published)
	require.Positive(t, sum.ServerRSSMiB, "read before the process ended")
	require.Zero(t, sum.ServerCPUSeconds)
	require.Zero(t, sum.CPUPerDeliveredUs)
	require.NotEmpty(t, sum.Errors)
	require.Contains(t, sum.Errors[len(sum.Errors)-1], "herald pid "+o.PID)
}

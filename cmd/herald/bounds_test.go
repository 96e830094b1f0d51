package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/require"

	"github.com/heraldhq/herald/internal/heraldtest"
)

// A publish of more notifications than delivery.outbox_limit (a backend's
// batch of 300 with outbox_limit = 256) reaches every subscriber that
// reads, in order: none of them is a slow consumer.
func TestPublishBiggerThanTheOutboxReachesReaders(t *testing.T) {
	h := heraldtest.Start(t, heraldtest.Options{HCL: `delivery {
  outbox_limit = 256
}`})
	var clients []*heraldtest.Client
	for i := range 3 {
		c := h.Dial(t, h.Token(t, "u"+strconv.Itoa(i)))
		c.Subscribe(t, "news")
		clients = append(clients, c)
	}
	var ns []map[string]any
	for range 300 {
		ns = append(ns, heraldtest.N("news", "e", "t", `{"x":1}`))
	}
	h.Publish(t, ns...)
	for _, c := range clients {
		got := c.Notifications(t, 300)
		for i, n := range got {
			require.Equal(t, uint64(i+1), n.Seq)
		}
	}
	for _, c := range clients {
		select {
		case <-c.Closed():
			t.Fatal("a client that reads was closed")
		default:
		}
	}
}

// rssKiB reads VmRSS of pid from /proc.
func rssKiB(t *testing.T, pid int) int {
	t.Helper()
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/status")
	require.NoError(t, err)
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, err := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(rest), " kB"))
			require.NoError(t, err)
			return kb
		}
	}
	t.Fatal("no VmRSS")
	return 0
}

// An unauthenticated client that sends 64 KiB frames of batches of invalid
// entries ([1,1,1,...]) and never reads grew the server by hundreds of MB
// in seconds. Now its batch, its rate and its outbox are bounded: the
// server's RSS stays within a generous bound, the attacker is closed or
// throttled, and another client keeps receiving.
func TestUnauthenticatedBatchFloodIsBounded(t *testing.T) {
	if _, err := os.Stat("/proc/self/status"); err != nil {
		t.Skip("needs /proc")
	}
	h := heraldtest.Start(t, heraldtest.Options{Auth: `token_secret = "` + heraldtest.Secret + `"
  api_keys     = ["` + heraldtest.APIKey + `"]
  auth_timeout = "1m"`})
	fine := h.Dial(t, h.Token(t, "fine"))
	fine.Subscribe(t, "news")
	before := rssKiB(t, h.Pid())

	attacker, _, err := websocket.DefaultDialer.Dial(h.WSURL, nil)
	require.NoError(t, err)
	defer attacker.Close()
	frame := []byte("[" + strings.TrimSuffix(strings.Repeat("1,", 32<<10-1), ",") + "]") // just under 64 KiB
	require.Less(t, len(frame), 65536)
	// The attack runs for 5 seconds (the report's), in a goroutine of its
	// own; meanwhile RSS is sampled and the other client is served.
	stop := time.Now().Add(5 * time.Second)
	sent := make(chan int, 1)
	go func() {
		n := 0
		_ = attacker.SetWriteDeadline(stop)
		for time.Now().Before(stop) {
			if err := attacker.WriteMessage(websocket.TextMessage, frame); err != nil {
				break // closed by the server, or its socket full until the end: throttled
			}
			n++
		}
		sent <- n
	}()
	peak := before
	for time.Now().Before(stop.Add(time.Second)) {
		peak = max(peak, rssKiB(t, h.Pid()))
		h.Publish(t, heraldtest.N("news", "e", "t", `{}`))
		require.Len(t, fine.Notifications(t, 1), 1, "another client stopped receiving")
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("sent %d frames of %d bytes; herald RSS %d KiB, peak %d KiB", <-sent, len(frame), before, peak)
	require.Less(t, peak-before, 100<<10, "herald grew by more than 100 MB")

	// What the attacker got: each frame one error (its batch is over the
	// bound), and past its small budget, rate-limit errors only; or a
	// close for its outbox.
	codes := map[int]int{}
	_ = attacker.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		_, msg, err := attacker.ReadMessage()
		if err != nil {
			var ce *websocket.CloseError
			if errors.As(err, &ce) {
				require.Equal(t, 4008, ce.Code)
			}
			break
		}
		var reply struct{ Error struct{ Code int } }
		require.NoError(t, json.Unmarshal(msg, &reply), "one error object per frame, not an array")
		codes[reply.Error.Code]++
	}
	t.Logf("attacker's replies by code: %v", codes)
	require.Subset(t, []int{-32005, -32029}, keys(codes))
	require.LessOrEqual(t, codes[-32005], 10*7+10, "more calls went through than 10 per second before authentication")
	h.Publish(t, heraldtest.N("news", "e", "t", `{}`))
	require.Len(t, fine.Notifications(t, 1), 1)
}

func keys(m map[int]int) []int {
	var out []int
	for k := range m {
		out = append(out, k)
	}
	return out
}

// A client resuming across more missed notifications than its outbox
// holds (and than its socket takes at once) gets them all, in order, as it
// reads: it is not closed (and would not resume into the same close again).
func TestResumeAcrossMoreThanTheOutboxHolds(t *testing.T) {
	h := heraldtest.Start(t, heraldtest.Options{HCL: `delivery {
  outbox_limit = 16
}
history {
  size = 1000
}`})
	first := h.Dial(t, h.Token(t, "u"))
	subs := first.Subscribe(t, "news")
	first.Close()
	payload := `{"pad":"` + strings.Repeat("z", 16_000) + `"}`
	for range 30 {
		var ns []map[string]any
		for range 10 {
			ns = append(ns, heraldtest.N("news", "e", "t", payload))
		}
		h.Publish(t, ns...) // 300 notifications, ~5 MB
	}
	start := time.Now()
	c := h.Dial(t, h.Token(t, "u"))
	res := c.SubscribeParams(t, map[string]any{"channel": "news", "since": map[string]any{"news": map[string]any{"seq": subs[0].Seq, "epoch": subs[0].Epoch}}})
	require.True(t, *res[0].Recovered)
	got := c.Notifications(t, 300)
	t.Logf("resumed in %v", time.Since(start))
	for i, n := range got {
		require.Equal(t, uint64(i+1), n.Seq)
	}
	h.Publish(t, heraldtest.N("news", "e", "t", `{}`))
	require.Equal(t, uint64(301), c.Notifications(t, 1)[0].Seq, "live after the resume")
}

// A client too slow to read its resume while the channel moves on: when
// the history no longer covers what it still has to receive, it gets a
// $server resync naming the channel and the position it continues from,
// then the live stream after it; no gap goes unannounced.
func TestSlowResumePastTheHistoryGetsResync(t *testing.T) {
	h := heraldtest.Start(t, heraldtest.Options{HCL: `delivery {
  outbox_limit = 4
  outbox_bytes = 8388608 # room for 1 MB notifications and what follows them
}
history {
  size = 20
}`})
	first := h.Dial(t, h.Token(t, "u"))
	subs := first.Subscribe(t, "news")
	first.Close()
	big := `{"pad":"` + strings.Repeat("b", 1<<20) + `"}`
	for range 20 { // 20 MB of history: more than the sockets hold
		h.Publish(t, heraldtest.N("news", "e", "t", big))
	}
	// A small receive buffer that the kernel does not grow: what the
	// sockets hold stays well under the 20 MB.
	d := websocket.Dialer{NetDial: func(network, addr string) (net.Conn, error) {
		c, err := net.Dial(network, addr)
		if err == nil {
			err = c.(*net.TCPConn).SetReadBuffer(64 << 10)
		}
		return c, err
	}}
	ws, _, err := d.Dial(h.WSURL+"?token="+h.Token(t, "u"), nil)
	require.NoError(t, err)
	defer ws.Close()
	require.NoError(t, ws.WriteJSON(map[string]any{"jsonrpc": "2.0", "id": 1, "method": "subscribe", "params": map[string]any{
		"channel": "news", "since": map[string]any{"news": map[string]any{"seq": subs[0].Seq, "epoch": subs[0].Epoch}}}}))
	// It reads the reply (the first frame), then nothing: its resume
	// stalls, and the channel moves on past what the history keeps.
	_ = ws.SetReadDeadline(time.Now().Add(heraldtest.Timeout))
	var reply struct {
		Result struct{ Subscriptions []struct{ Recovered bool } }
	}
	require.NoError(t, ws.ReadJSON(&reply))
	require.True(t, reply.Result.Subscriptions[0].Recovered)
	var ns []map[string]any
	for range 30 {
		ns = append(ns, heraldtest.N("news", "e", "t", `{}`))
	}
	h.Publish(t, ns...) // seqs 21..50; the history now keeps 31..50

	var seqs []uint64
	var resync map[string]any
	ws.SetReadLimit(-1)
	for len(seqs) == 0 || seqs[len(seqs)-1] != 51 {
		_ = ws.SetReadDeadline(time.Now().Add(heraldtest.Timeout))
		_, frame, err := ws.ReadMessage()
		require.NoError(t, err, "received %v, resync %v", seqs, resync)
		var msg struct {
			Method string
			Params struct {
				Notifications []struct {
					Channel, Event string
					Seq            uint64
					Object         map[string]any
				}
			}
		}
		require.NoError(t, json.Unmarshal(frame, &msg))
		for _, n := range msg.Params.Notifications {
			switch {
			case n.Channel == "$server" && n.Event == "resync":
				resync = n.Object
				h.Publish(t, heraldtest.N("news", "e", "t", `{}`)) // 51: live
			case n.Channel == "news":
				seqs = append(seqs, n.Seq)
			}
		}
	}
	want := seqRange(1, 20)
	require.Equal(t, append(want, 51), seqs, "its history until the gap, then live after the resync position")
	require.Equal(t, map[string]any{"channels": []any{map[string]any{"channel": "news", "seq": float64(50), "epoch": subs[0].Epoch}}}, resync)
}

func seqRange(from, to uint64) []uint64 {
	var out []uint64
	for s := from; s <= to; s++ {
		out = append(out, s)
	}
	return out
}

package main

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/heraldhq/herald/internal/heraldtest"
	"github.com/stretchr/testify/require"
)

// These tests run the real herald binary with the real kb binary and talk
// to them as NucliaDB's users do: backends over HTTP, the notification
// stream with a streaming HTTP client, WebSocket clients on kb:<kbid>.

func TestMain(m *testing.M) { heraldtest.Main(m) }

type stack struct {
	*heraldtest.Stack
	t   *testing.T
	dir string
}

// startStack serves the kb plugin with its state (Herald's state block) in
// dir, so that a herald started again on dir finds it; extra is added to
// the config (blocks such as history {}).
func startStack(t *testing.T, dir, extra string) *stack {
	t.Helper()
	return startStackWith(t, dir, "", extra)
}

// startStackWith adds pluginCfg to the plugin's config block.
func startStackWith(t *testing.T, dir, pluginCfg, extra string) *stack {
	t.Helper()
	h := heraldtest.StartPlugin(t, heraldtest.PluginOptions{Name: "kb", StateDir: filepath.Join(dir, "state"), HCL: extra,
		Config: fmt.Sprintf("    data_dir = %q\n%s", dir, pluginCfg)})
	return &stack{Stack: h, t: t, dir: dir}
}

func (s *stack) waitReady() { s.t.Helper(); s.WaitReady(s.t) }

// eventually waits, up to heraldtest.Timeout, for cond.
func (s *stack) eventually(what string, cond func() bool) {
	s.t.Helper()
	deadline := time.Now().Add(heraldtest.Timeout)
	for time.Now().Before(deadline) {
		if cond() {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	s.t.Fatalf("never: %s\n%s", what, s.Logs())
}

func (s *stack) backend(method string, body any) (int, json.RawMessage) {
	s.t.Helper()
	return s.Backend(s.t, method, body)
}

func (s *stack) mustBackend(method string, body any) json.RawMessage {
	s.t.Helper()
	return s.MustBackend(s.t, method, body)
}

// written reports a write and returns its seqid.
func (s *stack) written(kbid, uuid, op string) uint64 {
	s.t.Helper()
	var r struct{ Seqid uint64 }
	require.NoError(s.t, json.Unmarshal(s.mustBackend("resource_written", map[string]any{"kbid": kbid, "resource_uuid": uuid, "operation": op}), &r))
	return r.Seqid
}

func (s *stack) processed(kbid, uuid string, written uint64) uint64 {
	s.t.Helper()
	var r struct{ Seqid uint64 }
	require.NoError(s.t, json.Unmarshal(s.mustBackend("resource_processed", map[string]any{"kbid": kbid, "resource_uuid": uuid, "written_seqid": written}), &r))
	return r.Seqid
}

func (s *stack) indexed(kbid, uuid string, seqid uint64) {
	s.t.Helper()
	s.mustBackend("resource_indexed", map[string]any{"kbid": kbid, "resource_uuid": uuid, "seqid": seqid})
}

func (s *stack) dial(user string, kbs ...string) *heraldtest.Client {
	s.t.Helper()
	return s.Dial(s.t, heraldtest.MintToken(s.t, user, time.Hour, map[string]any{"kbs": kbs}))
}

// stream is one open GET /v1/kb/{kbid}/notifications.
type stream struct {
	resp   *http.Response
	lines  chan string
	cancel context.CancelFunc
}

// open starts a stream with query q ("" for none) as key (an API key or a
// token); the caller checks the status.
func (s *stack) open(kbid, q, key string) *stream {
	s.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	u := s.URL + "/v1/kb/" + kbid + "/notifications"
	if q != "" {
		u += "?" + q
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	require.NoError(s.t, err)
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(s.t, err)
	st := &stream{resp: resp, lines: make(chan string, 1000), cancel: cancel}
	s.t.Cleanup(st.close)
	if resp.StatusCode == http.StatusOK {
		go func() { // ends when the body ends (close, or herald ends it)
			defer close(st.lines)
			rd := bufio.NewReader(resp.Body)
			for {
				l, err := rd.ReadString('\n')
				if err != nil {
					return
				}
				st.lines <- l
			}
		}()
	}
	return st
}

func (st *stream) close() {
	st.cancel()
	_ = st.resp.Body.Close()
}

// body reads a non-streaming answer.
func (st *stream) body(t *testing.T) []byte {
	t.Helper()
	b, err := io.ReadAll(st.resp.Body)
	require.NoError(t, err)
	return b
}

// next reads one line: exactly one standard-base64 notification ending in
// \n, returned decoded.
func (st *stream) next(t *testing.T) string {
	t.Helper()
	select {
	case l, ok := <-st.lines:
		require.True(t, ok, "the stream ended")
		require.True(t, strings.HasSuffix(l, "\n"))
		raw := strings.TrimSuffix(l, "\n")
		b, err := base64.StdEncoding.Strict().DecodeString(raw)
		require.NoError(t, err, "line %q is not standard base64", raw)
		return string(b)
	case <-time.After(heraldtest.Timeout):
		t.Fatal("no line on the stream")
		return ""
	}
}

// The payloads as the source and the decisions say: every field, defaults
// applied, resource_title "" when none was given; in seqid order.
func TestIntegrationEveryNotificationAsTheSourceShowsIt(t *testing.T) {
	s := startStack(t, t.TempDir(), "")
	ws := s.dial("alice", "kb1")
	ws.Subscribe(t, "kb:kb1")
	st := s.open("kb1", "", heraldtest.APIKey)
	require.Equal(t, http.StatusOK, st.resp.StatusCode)

	// The source's walk: a write, its two indexings, its processing (a new,
	// higher seqid), and the processing's two indexings.
	w := s.written("kb1", "ruuid", "created")
	s.indexed("kb1", "ruuid", w)
	s.indexed("kb1", "ruuid", w)
	p := s.processed("kb1", "ruuid", w)
	require.Greater(t, p, w, "resource_processed takes a new, higher seqid")
	s.indexed("kb1", "ruuid", p)
	s.indexed("kb1", "ruuid", p)
	// Every optional field given.
	s.mustBackend("resource_written", map[string]any{"kbid": "kb1", "resource_uuid": "r2", "resource_title": "My doc", "operation": "modified", "error": true})
	s.mustBackend("resource_processed", map[string]any{"kbid": "kb1", "resource_uuid": "r2", "resource_title": "My doc", "written_seqid": 3, "ingestion_succeeded": false, "processing_errors": true})
	s.mustBackend("resource_indexed", map[string]any{"kbid": "kb1", "resource_uuid": "r2", "resource_title": "My doc", "seqid": 4})
	s.written("kb1", "r2", "deleted")

	want := []string{
		`{"type":"resource_written","data":{"resource_uuid":"ruuid","resource_title":"","seqid":1,"operation":"created","error":false}}`,
		`{"type":"resource_indexed","data":{"resource_uuid":"ruuid","resource_title":"","seqid":1}}`,
		`{"type":"resource_indexed","data":{"resource_uuid":"ruuid","resource_title":"","seqid":1}}`,
		`{"type":"resource_processed","data":{"resource_uuid":"ruuid","resource_title":"","seqid":2,"ingestion_succeeded":true,"processing_errors":false}}`,
		`{"type":"resource_indexed","data":{"resource_uuid":"ruuid","resource_title":"","seqid":2}}`,
		`{"type":"resource_indexed","data":{"resource_uuid":"ruuid","resource_title":"","seqid":2}}`,
		`{"type":"resource_written","data":{"resource_uuid":"r2","resource_title":"My doc","seqid":3,"operation":"modified","error":true}}`,
		`{"type":"resource_processed","data":{"resource_uuid":"r2","resource_title":"My doc","seqid":4,"ingestion_succeeded":false,"processing_errors":true}}`,
		`{"type":"resource_indexed","data":{"resource_uuid":"r2","resource_title":"My doc","seqid":4}}`,
		`{"type":"resource_written","data":{"resource_uuid":"r2","resource_title":"","seqid":5,"operation":"deleted","error":false}}`,
	}
	ns := ws.Notifications(t, len(want))
	for i, w := range want {
		// The WebSocket channel carries the same objects, byte for byte.
		require.Equal(t, w, string(ns[i].Object))
		require.Equal(t, "kb:kb1", ns[i].Channel)
		require.Equal(t, "kb", ns[i].ObjectType)
		var typ struct{ Type string }
		require.NoError(t, json.Unmarshal([]byte(w), &typ))
		require.Equal(t, typ.Type, ns[i].Event)
		require.Equal(t, uint64(i+1), ns[i].Seq)
		// And the stream, line for line.
		require.Equal(t, w, st.next(t))
	}
}

// Lines are framed and flushed one by one: each is read before the next
// event is even reported.
func TestIntegrationStreamFramingAndFlush(t *testing.T) {
	s := startStack(t, t.TempDir(), "")
	st := s.open("kb1", "", heraldtest.APIKey)
	require.Equal(t, http.StatusOK, st.resp.StatusCode)
	require.Equal(t, "0", st.resp.Header.Get("Herald-Seq"))
	require.NotEmpty(t, st.resp.Header.Get("Herald-Epoch"))
	require.Equal(t, "text/plain; charset=utf-8", st.resp.Header.Get("Content-Type"))
	for i := 1; i <= 5; i++ {
		seqid := s.written("kb1", "r"+strconv.Itoa(i), "created")
		require.Equal(t, uint64(i), seqid)
		got := st.next(t)
		require.Contains(t, got, `"seqid":`+strconv.Itoa(i)+`,`)
	}
	// Another KB's events are not on this stream.
	s.written("kb2", "x", "created")
	s.written("kb1", "r6", "created")
	require.Contains(t, st.next(t), `"resource_uuid":"r6"`)
}

// ?since replays from the channel's history, then continues live, with no
// gap and no duplicate; a gap the history cannot bridge is a 409 with the
// current position.
func TestIntegrationStreamResume(t *testing.T) {
	s := startStack(t, t.TempDir(), "history {\n  size = 4\n}\n")
	for i := 1; i <= 3; i++ {
		s.written("kb1", "r"+strconv.Itoa(i), "created")
	}
	first := s.open("kb1", "since=0", heraldtest.APIKey)
	require.Equal(t, http.StatusOK, first.resp.StatusCode)
	epoch := first.resp.Header.Get("Herald-Epoch")
	require.NotEmpty(t, epoch)
	require.Equal(t, "0", first.resp.Header.Get("Herald-Seq"))
	for i := 1; i <= 3; i++ {
		require.Contains(t, first.next(t), `"resource_uuid":"r`+strconv.Itoa(i)+`"`)
	}

	st := s.open("kb1", "since=1&epoch="+epoch, heraldtest.APIKey)
	require.Equal(t, http.StatusOK, st.resp.StatusCode)
	require.Equal(t, "1", st.resp.Header.Get("Herald-Seq"))
	require.Equal(t, epoch, st.resp.Header.Get("Herald-Epoch"))
	require.Contains(t, st.next(t), `"resource_uuid":"r2"`)
	require.Contains(t, st.next(t), `"resource_uuid":"r3"`)
	s.written("kb1", "r4", "created")
	require.Contains(t, st.next(t), `"resource_uuid":"r4"`, "live after the replay, no gap, no duplicate")
	require.Contains(t, first.next(t), `"resource_uuid":"r4"`)

	for _, tc := range []struct{ name, q string }{
		{"another epoch", "since=1&epoch=00000000"},
		{"ahead of the channel", "since=99"},
		{"older than the history keeps", "since=0"}, // history size 4 after 5 events
	} {
		if tc.name == "older than the history keeps" {
			s.written("kb1", "r5", "created")
		}
		c := s.open("kb1", tc.q, heraldtest.APIKey)
		require.Equal(t, http.StatusConflict, c.resp.StatusCode, tc.name)
		var body struct {
			Seq       uint64 `json:"seq"`
			Epoch     string `json:"epoch"`
			Recovered *bool  `json:"recovered"`
			Error     struct {
				Message string `json:"message"`
			} `json:"error"`
		}
		require.NoError(t, json.Unmarshal(c.body(t), &body), tc.name)
		require.Equal(t, epoch, body.Epoch, tc.name)
		require.False(t, *body.Recovered, tc.name)
		require.Contains(t, body.Error.Message, "cannot bridge", tc.name)
		require.Equal(t, strconv.FormatUint(body.Seq, 10), c.resp.Header.Get("Herald-Seq"), tc.name)
	}
	bad := s.open("kb1", "since=x", heraldtest.APIKey)
	require.Equal(t, http.StatusBadRequest, bad.resp.StatusCode)
}

// metric reads one sample of herald's /metrics ("" when absent).
func (s *stack) metric(name string) string {
	s.t.Helper()
	st, b := s.Do(s.t, http.MethodGet, "/metrics", nil, "", nil)
	require.Equal(s.t, http.StatusOK, st)
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, name+" "); ok {
			return v
		}
	}
	return ""
}

func (s *stack) metricInt(name string) int {
	s.t.Helper()
	v := s.metric(name)
	if v == "" {
		return 0
	}
	f, err := strconv.ParseFloat(v, 64)
	require.NoError(s.t, err)
	return int(f)
}

type kbStats struct {
	Streams    int `json:"streams"`
	Waiters    int `json:"waiters"`
	Goroutines int `json:"goroutines"`
}

func (s *stack) stats() kbStats {
	s.t.Helper()
	var st kbStats
	require.NoError(s.t, json.Unmarshal(s.mustBackend("stats", map[string]any{}), &st))
	return st
}

// Many clients open streams and drop them: herald and the plugin come back
// to where they were, with no follower, goroutine or stream left.
func TestIntegrationDroppedStreamsLeaveNothing(t *testing.T) {
	s := startStack(t, t.TempDir(), "")
	const followers = `herald_plugin_followers{plugin="kb"}`
	s.written("kb1", "warm", "created") // the channel exists; the first stream warms the paths
	warm := s.open("kb1", "", heraldtest.APIKey)
	s.written("kb1", "warm2", "created")
	warm.next(t)
	warm.close()
	s.eventually("the warm-up stream is gone", func() bool { return s.metricInt(followers) == 0 && s.stats().Streams == 0 })
	baseHerald := s.metricInt("go_goroutines")
	basePlugin := s.stats().Goroutines

	const n = 40
	var open []*stream
	for i := 0; i < n; i++ {
		st := s.open("kb1", "since=0", heraldtest.APIKey)
		require.Equal(t, http.StatusOK, st.resp.StatusCode)
		open = append(open, st)
	}
	require.Equal(t, n, s.metricInt(followers))
	require.Equal(t, n, s.stats().Streams)
	s.written("kb1", "r", "created")
	for _, st := range open {
		st.next(t)
		st.next(t)
		st.next(t)
		st.close()
	}
	s.eventually("every follower removed", func() bool { return s.metricInt(followers) == 0 })
	s.eventually("every stream ended in the plugin", func() bool { return s.stats().Streams == 0 })
	// Goroutines: back to the baseline (a few of net/http's idle
	// keep-alive readers may come and go: a generous slack, far below n).
	s.eventually("herald's goroutines back", func() bool { return s.metricInt("go_goroutines") <= baseHerald+5 })
	s.eventually("the plugin's goroutines back", func() bool { return s.stats().Goroutines <= basePlugin+5 })
}

// Who may read: a token whose kbs claim lists the KB, or an API key.
func TestIntegrationAccess(t *testing.T) {
	s := startStack(t, t.TempDir(), "")
	tokenKB1 := heraldtest.MintToken(t, "alice", time.Hour, map[string]any{"kbs": []string{"kb1"}})
	tokenNone := heraldtest.MintToken(t, "bob", time.Hour, nil)

	require.Equal(t, http.StatusUnauthorized, s.open("kb1", "", "").resp.StatusCode)
	require.Equal(t, http.StatusUnauthorized, s.open("kb1", "", "not-a-key").resp.StatusCode)
	require.Equal(t, http.StatusForbidden, s.open("kb1", "", tokenNone).resp.StatusCode)
	require.Equal(t, http.StatusForbidden, s.open("kb2", "", tokenKB1).resp.StatusCode)
	ok := s.open("kb1", "", tokenKB1)
	require.Equal(t, http.StatusOK, ok.resp.StatusCode)
	s.written("kb1", "r", "created")
	require.Contains(t, ok.next(t), `"resource_uuid":"r"`)
	// An unknown KB is simply empty.
	require.Equal(t, http.StatusOK, s.open("never-written", "", heraldtest.APIKey).resp.StatusCode)

	// The channel: the same rule, -32003; a malformed kb channel, -32602.
	alice := s.dial("alice", "kb1")
	e := alice.CallErr(t, "subscribe", map[string]any{"channel": "kb:kb2"})
	require.Equal(t, -32003, e.Code)
	e = alice.CallErr(t, "subscribe", map[string]any{"channel": "kb:a/b"})
	require.Equal(t, -32602, e.Code, "%s", e.Data)
	bob := s.Dial(t, tokenNone)
	require.Equal(t, -32003, bob.CallErr(t, "subscribe", map[string]any{"channel": "kb:kb1"}).Code)
	// Clients may not report; waitFor needs the claim too.
	require.Equal(t, -32003, alice.CallErr(t, "kb.resource_written", map[string]any{"kbid": "kb1", "resource_uuid": "r", "operation": "created"}).Code)
	require.Equal(t, -32003, bob.CallErr(t, "kb.waitFor", map[string]any{"kbid": "kb1", "seqid": 1, "until": "written"}).Code)
	// Backends need their key.
	st, _ := s.Do(t, http.MethodPost, "/v1/plugins/kb/resource_written", map[string]any{"kbid": "kb1", "resource_uuid": "r", "operation": "created"}, "", nil)
	require.Equal(t, http.StatusUnauthorized, st)
}

func TestIntegrationWaitFor(t *testing.T) {
	s := startStack(t, t.TempDir(), "")
	alice := s.dial("alice", "kb1")
	wait := func(c *heraldtest.Client, params map[string]any) (json.RawMessage, *heraldtest.RPCError) {
		res, e, err := c.Call("kb.waitFor", params)
		require.NoError(t, err)
		return res, e
	}

	// Already reached: at once.
	w := s.written("kb1", "r1", "created")
	res, e := wait(alice, map[string]any{"kbid": "kb1", "seqid": w, "until": "written"})
	require.Nil(t, e)
	require.JSONEq(t, `{"kbid":"kb1","seqid":1,"until":"written","type":"resource_written","resource_uuid":"r1","operation":"created","indexed_replicas":0}`, string(res))

	// Later: the answer comes when the report that reaches the stage does.
	type answer struct {
		res json.RawMessage
		e   *heraldtest.RPCError
	}
	later := make(chan answer, 1)
	go func() {
		res, e, _ := alice.Call("kb.waitFor", map[string]any{"kbid": "kb1", "seqid": w, "until": "processed", "timeout": 60})
		later <- answer{res, e}
	}()
	s.eventually("the waiter waits", func() bool { return s.stats().Waiters == 1 })
	select {
	case a := <-later:
		t.Fatalf("answered before the processing: %s %v", a.res, a.e)
	default:
	}
	p := s.processed("kb1", "r1", w)
	a := <-later
	require.Nil(t, a.e)
	require.JSONEq(t, fmt.Sprintf(`{"kbid":"kb1","seqid":1,"until":"processed","type":"resource_written","resource_uuid":"r1","operation":"created","processed_seqid":%d,"indexed_replicas":0}`, p), string(a.res))

	// indexed: every replica (two by default); a seqid not yet written.
	go func() {
		res, e, _ := alice.Call("kb.waitFor", map[string]any{"kbid": "kb1", "seqid": p + 1, "until": "indexed"})
		later <- answer{res, e}
	}()
	s.eventually("the waiter waits", func() bool { return s.stats().Waiters == 1 })
	w2 := s.written("kb1", "r2", "modified")
	require.Equal(t, p+1, w2)
	s.indexed("kb1", "r2", w2)
	require.Equal(t, 1, s.stats().Waiters, "one replica is not every replica")
	s.indexed("kb1", "r2", w2)
	a = <-later
	require.Nil(t, a.e)
	require.Contains(t, string(a.res), `"indexed_replicas":2`)

	// Timeout: a clear error at the time asked.
	res, e = wait(alice, map[string]any{"kbid": "kb1", "seqid": w2, "until": "processed", "timeout": 0.2})
	require.Nil(t, res)
	require.Equal(t, -32005, e.Code)
	require.Contains(t, e.Message, "timeout")
	require.JSONEq(t, fmt.Sprintf(`{"reason":"timeout","kbid":"kb1","seqid":%d,"until":"processed"}`, w2), string(e.Data))

	// processed of a deletion fails at once, even with a long timeout.
	d := s.written("kb1", "r1", "deleted")
	_, e = wait(alice, map[string]any{"kbid": "kb1", "seqid": d, "until": "processed", "timeout": 300})
	require.Equal(t, -32602, e.Code)
	require.Contains(t, e.Message, "deletion is never processed")
	// And a backend may not report it processed.
	st, body := s.backend("resource_processed", map[string]any{"kbid": "kb1", "resource_uuid": "r1", "written_seqid": d})
	require.Equal(t, http.StatusBadRequest, st, "%s", body)
	// Nor a processing as if it were a write: the message says what it is.
	p9 := s.processed("kb1", "r9", s.written("kb1", "r9", "created"))
	st, body = s.backend("resource_processed", map[string]any{"kbid": "kb1", "resource_uuid": "r9", "written_seqid": p9})
	require.Equal(t, http.StatusBadRequest, st, "%s", body)
	require.Contains(t, string(body), "is a resource_processed, not a resource_written")

	// Backends wait too, through the backend route.
	st, body = s.backend("waitFor", map[string]any{"kbid": "kb1", "seqid": w, "until": "indexed", "timeout": 0.1})
	require.Equal(t, http.StatusTooManyRequests, st, "%s", body)
	require.Equal(t, 0, s.stats().Waiters)

	// Bad params name the field.
	_, e = wait(alice, map[string]any{"kbid": "kb1", "seqid": 1, "until": "searchable"})
	require.Equal(t, -32602, e.Code)
	require.Contains(t, e.Message, "until")
	_, e = wait(alice, map[string]any{"kbid": "kb1", "seqid": 1, "until": "written", "timeout": 301})
	require.Contains(t, e.Message, "timeout")
}

// pluginPid finds the kb plugin process among herald's children.
func (s *stack) pluginPid() int { return s.PluginProcess() }

// seqids are monotonic per KB and never reused: not after kill -9 of the
// plugin, not after a restart of herald.
func TestIntegrationSeqidsSurviveKill9AndRestart(t *testing.T) {
	dir := t.TempDir()
	s := startStack(t, dir, "")
	require.Equal(t, uint64(1), s.written("kb1", "a", "created"))
	require.Equal(t, uint64(2), s.written("kb1", "b", "created"))
	require.Equal(t, uint64(1), s.written("kb2", "a", "created"), "one counter per KB")
	require.Equal(t, uint64(3), s.processed("kb1", "a", 1))

	old := s.pluginPid()
	require.NotZero(t, old)
	require.NoError(t, syscall.Kill(old, syscall.SIGKILL))
	s.eventually("the plugin restarted", func() bool {
		p := s.pluginPid()
		return p != 0 && p != old
	})
	s.waitReady()
	require.Equal(t, uint64(4), s.written("kb1", "c", "created"))
	s.Stop(t)

	s2 := startStack(t, dir, "")
	require.Equal(t, uint64(5), s2.written("kb1", "d", "created"))
	require.Equal(t, uint64(2), s2.written("kb2", "b", "created"))
	// What was recorded before is known: waitFor answers at once, and the
	// processing rule still holds.
	c := s2.dial("alice", "kb1")
	res := c.MustCall(t, "kb.waitFor", map[string]any{"kbid": "kb1", "seqid": 1, "until": "processed"})
	require.Contains(t, string(res), `"processed_seqid":3`)
	st, body := s2.backend("resource_processed", map[string]any{"kbid": "kb1", "resource_uuid": "a", "written_seqid": 1})
	require.Equal(t, http.StatusBadRequest, st, "%s", body)
	require.Contains(t, string(body), "already processed")
	require.Equal(t, uint64(6), s2.processed("kb1", "b", 2))
}

func TestIntegrationBadBodiesAre400(t *testing.T) {
	s := startStack(t, t.TempDir(), "")
	w := s.written("kb1", "r", "created")
	for _, tc := range []struct {
		method, body, field string
	}{
		{"resource_written", `{"resource_uuid":"r","operation":"created"}`, "kbid"},
		{"resource_written", `{"kbid":"a b","resource_uuid":"r","operation":"created"}`, "kbid"},
		{"resource_written", `{"kbid":"kb1","operation":"created"}`, "resource_uuid"},
		{"resource_written", `{"kbid":"kb1","resource_uuid":"r","operation":"updated"}`, "operation"},
		{"resource_written", `{"kbid":"kb1","resource_uuid":"r","operation":"created","error":"no"}`, "error"},
		{"resource_written", `{"kbid":"kb1","resource_uuid":"r","operation":"created","seqid":3}`, "seqid"},
		{"resource_written", `{"kbid":"kb1","resource_uuid":"r","resource_title":7,"operation":"created"}`, "resource_title"},
		{"resource_processed", `{"kbid":"kb1","resource_uuid":"r"}`, "written_seqid"},
		{"resource_processed", `{"kbid":"kb1","resource_uuid":"r","written_seqid":99}`, "written_seqid"},
		{"resource_processed", fmt.Sprintf(`{"kbid":"kb1","resource_uuid":"other","written_seqid":%d}`, w), "resource_uuid"},
		{"resource_processed", fmt.Sprintf(`{"kbid":"kb1","resource_uuid":"r","written_seqid":%d,"ingestion_succeeded":1}`, w), "ingestion_succeeded"},
		{"resource_indexed", `{"kbid":"kb1","resource_uuid":"r","seqid":0}`, "seqid"},
		{"resource_indexed", `{"kbid":"kb1","resource_uuid":"r","seqid":1.5}`, "seqid"},
		{"resource_indexed", `{"kbid":"kb1","resource_uuid":"r","seqid":77}`, "seqid"},
	} {
		st, body := s.backend(tc.method, json.RawMessage(tc.body))
		require.Equal(t, http.StatusBadRequest, st, "%s %s: %s", tc.method, tc.body, body)
		var e struct {
			Error struct {
				Code    int             `json:"code"`
				Message string          `json:"message"`
				Data    json.RawMessage `json:"data"`
			} `json:"error"`
		}
		require.NoError(t, json.Unmarshal(body, &e), "%s", body)
		require.Equal(t, -32602, e.Error.Code)
		require.Contains(t, e.Error.Message, tc.field)
		require.JSONEq(t, `{"field":"`+tc.field+`"}`, string(e.Error.Data), "%s", tc.body)
	}
	// A third replica is one too many (index_replicas = 2).
	s.indexed("kb1", "r", w)
	s.indexed("kb1", "r", w)
	st, body := s.backend("resource_indexed", map[string]any{"kbid": "kb1", "resource_uuid": "r", "seqid": w})
	require.Equal(t, http.StatusBadRequest, st, "%s", body)
	require.Contains(t, string(body), "index_replicas")
}

// A kbid is a path segment of its stream's URL, so "." and ".." are not
// kbids: HTTP clients resolve them away (/v1/kb/../notifications is
// requested as /v1/notifications) and such a KB's stream could not be
// asked for. They are refused wherever a kbid is given; dots inside an id
// are fine.
func TestIntegrationDotSegmentKBIDsRefused(t *testing.T) {
	s := startStack(t, t.TempDir(), "")
	alice := s.dial("alice", ".", "..", "a.b")
	for _, kbid := range []string{".", ".."} {
		st, body := s.backend("resource_written", map[string]any{"kbid": kbid, "resource_uuid": "r", "operation": "created"})
		require.Equal(t, http.StatusBadRequest, st, "kbid %q: %s", kbid, body)
		require.Contains(t, string(body), `"field":"kbid"`)
		require.Contains(t, string(body), "dot")
		e := alice.CallErr(t, "subscribe", map[string]any{"channel": "kb:" + kbid})
		require.Equal(t, -32602, e.Code, "kb:%s: %s", kbid, e.Data)
		e = alice.CallErr(t, "kb.waitFor", map[string]any{"kbid": kbid, "seqid": 1, "until": "written", "timeout": 0.1})
		require.Equal(t, -32602, e.Code, "waitFor %q: %s %s", kbid, e.Message, e.Data)
	}
	// Dots inside an id: reported, streamed, subscribed.
	stream := s.open("a.b", "", heraldtest.APIKey)
	require.Equal(t, http.StatusOK, stream.resp.StatusCode)
	alice.Subscribe(t, "kb:a.b")
	s.written("a.b", "r", "created")
	require.Contains(t, stream.next(t), `"resource_uuid":"r"`)
	require.Equal(t, "resource_written", alice.Notifications(t, 1)[0].Event)
}

// A client that stops reading cannot make herald hold its notifications
// without bound: its follow is ended (at delivery.outbox_limit waiting in
// herald, or when delivery.write_timeout cuts the client, whichever comes
// first), and nothing is left.
func TestIntegrationStalledStreamIsEnded(t *testing.T) {
	s := startStack(t, t.TempDir(), "delivery {\n  outbox_limit = 4\n  write_timeout = \"1s\"\n}\n")
	const followers = `herald_plugin_followers{plugin="kb"}`
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.URL+"/v1/kb/kb1/notifications", nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+heraldtest.APIKey)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Equal(t, 1, s.metricInt(followers))

	// Big notifications fill the socket buffers and the plugin's stream
	// quickly; the body is not read meanwhile.
	title := strings.Repeat("t", 60_000)
	for i := 0; s.metricInt(followers) != 0; i++ {
		require.Less(t, i, 1000, "the stalled follow was never ended")
		s.mustBackend("resource_written", map[string]any{"kbid": "kb1", "resource_uuid": "r", "resource_title": title, "operation": "created"})
	}
	s.eventually("the stream ended in the plugin", func() bool { return s.stats().Streams == 0 })
	t.Logf("ended by the outbox bound: %d", s.metricInt(`herald_plugin_followers_dropped_total{plugin="kb"}`))
	// The client, reading at last, gets what was already on its way, then
	// the end; every line it gets is whole.
	rd := bufio.NewReader(resp.Body)
	for {
		l, err := rd.ReadString('\n')
		if err != nil {
			break
		}
		_, derr := base64.StdEncoding.Strict().DecodeString(strings.TrimSuffix(l, "\n"))
		require.NoError(t, derr)
	}
	// A new stream works.
	st := s.open("kb1", "", heraldtest.APIKey)
	require.Equal(t, http.StatusOK, st.resp.StatusCode)
	s.written("kb1", "after", "created")
	require.Contains(t, st.next(t), `"resource_uuid":"after"`)
}

// The host bounds every plugin call by limits.call_timeout: a longer wait
// is cut there, with an error that says so.
func TestIntegrationWaitForOutlivesCallTimeout(t *testing.T) {
	s := startStack(t, t.TempDir(), "limits {\n  call_timeout = \"1s\"\n}\n")
	c := s.dial("alice", "kb1")
	// kb.waitFor declares its own time bound (sdk.Method.Timeout), so a wait
	// longer than limits.call_timeout is not cut by the host: the write
	// arrives after the call timeout and still resolves it.
	type answer struct {
		res json.RawMessage
		err *heraldtest.RPCError
	}
	done := make(chan answer, 1)
	go func() {
		res, rerr, err := c.Call("kb.waitFor", map[string]any{"kbid": "kb1", "seqid": 1, "until": "written", "timeout": 60})
		if err != nil {
			rerr = &heraldtest.RPCError{Code: -1, Message: err.Error()}
		}
		done <- answer{res, rerr}
	}()
	require.Eventually(t, func() bool { return s.stats().Waiters == 1 }, heraldtest.Timeout, 10*time.Millisecond)
	time.Sleep(1500 * time.Millisecond) // past limits.call_timeout
	s.written("kb1", "r", "created")
	select {
	case a := <-done:
		require.Nil(t, a.err)
		require.Contains(t, string(a.res), `"seqid":1`)
	case <-time.After(heraldtest.Timeout):
		t.Fatal("kb.waitFor did not answer")
	}
	// Its own timeout still ends it, with its own message.
	e := c.CallErr(t, "kb.waitFor", map[string]any{"kbid": "kb1", "seqid": 9, "until": "written", "timeout": 1.5})
	require.Equal(t, -32005, e.Code)
	require.Contains(t, e.Message, "within 1.5s")
	require.Equal(t, 0, s.stats().Waiters)
}

// SIGTERM drains: open streams end (their clients resume later) instead of
// holding the HTTP shutdown until it gives up.
func TestIntegrationShutdownEndsStreams(t *testing.T) {
	s := startStack(t, t.TempDir(), "")
	st := s.open("kb1", "", heraldtest.APIKey)
	require.Equal(t, http.StatusOK, st.resp.StatusCode)
	s.written("kb1", "r", "created")
	st.next(t)
	s.Signal(t, syscall.SIGTERM)
	require.NoError(t, s.Wait(t, time.Minute), "herald drained cleanly\n%s", s.Logs())
	select {
	case _, ok := <-st.lines:
		require.False(t, ok, "the stream ended")
	case <-time.After(heraldtest.Timeout):
		t.Fatal("the stream is still open")
	}
	require.NotContains(t, s.Logs(), "connections still open")
}

// Concurrent reports to one KB: every seqid once, and the channel carries
// them in seqid order (its seq follows the seqids).
func TestIntegrationConcurrentWritesInSeqidOrder(t *testing.T) {
	s := startStack(t, t.TempDir(), "")
	st := s.open("kb1", "", heraldtest.APIKey)
	require.Equal(t, http.StatusOK, st.resp.StatusCode)
	const writers, each = 6, 10
	errs := make(chan error, writers)
	for w := 0; w < writers; w++ {
		go func() {
			for i := 0; i < each; i++ {
				// Plain net/http: the helpers fail the test, which only
				// the test's own goroutine may do.
				body := fmt.Sprintf(`{"kbid":"kb1","resource_uuid":"w%d-%d","operation":"created"}`, w, i)
				req, _ := http.NewRequest(http.MethodPost, s.URL+"/v1/plugins/kb/resource_written", strings.NewReader(body))
				req.Header.Set("Authorization", "Bearer "+heraldtest.APIKey)
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					errs <- err
					return
				}
				_ = resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					errs <- fmt.Errorf("resource_written: %s", resp.Status)
					return
				}
			}
			errs <- nil
		}()
	}
	for w := 0; w < writers; w++ {
		require.NoError(t, <-errs)
	}
	for want := 1; want <= writers*each; want++ {
		var n struct {
			Data struct {
				Seqid int `json:"seqid"`
			} `json:"data"`
		}
		require.NoError(t, json.Unmarshal([]byte(st.next(t)), &n))
		require.Equal(t, want, n.Data.Seqid)
	}
}

// Waiting calls are bounded per connection (max_waiters); another
// connection has its own budget.
func TestIntegrationWaitersBoundedPerConnection(t *testing.T) {
	s := startStackWith(t, t.TempDir(), "max_waiters = 1", "")
	alice := s.dial("alice", "kb1")
	done := make(chan *heraldtest.RPCError, 1)
	go func() {
		_, e, _ := alice.Call("kb.waitFor", map[string]any{"kbid": "kb1", "seqid": 1, "until": "written"})
		done <- e
	}()
	s.eventually("the first waiter waits", func() bool { return s.stats().Waiters == 1 })
	e := alice.CallErr(t, "kb.waitFor", map[string]any{"kbid": "kb1", "seqid": 1, "until": "written"})
	require.Equal(t, -32005, e.Code)
	require.Contains(t, e.Message, "max_waiters")
	other := s.dial("alice", "kb1")
	go func() {
		_, e, _ := other.Call("kb.waitFor", map[string]any{"kbid": "kb1", "seqid": 1, "until": "written"})
		done <- e
	}()
	s.eventually("the other connection's waiter waits", func() bool { return s.stats().Waiters == 2 })
	s.written("kb1", "r", "created") // wakes both
	require.Nil(t, <-done)
	require.Nil(t, <-done)
	require.Equal(t, 0, s.stats().Waiters)
}

// kill -9 in the middle of a burst of reports: no seqid is ever answered
// twice, and every seqid after the restart is above all answered before.
func TestIntegrationKill9MidBurstNeverReusesSeqids(t *testing.T) {
	s := startStack(t, t.TempDir(), "")
	type answer struct {
		seqid uint64
		err   error
	}
	answers := make(chan answer, 10_000)
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() { // ends at stop
		defer close(done)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			if len(answers) == cap(answers) {
				return // only this goroutine sends: the next send cannot block
			}
			body := fmt.Sprintf(`{"kbid":"kb1","resource_uuid":"r%d","operation":"created"}`, i)
			req, _ := http.NewRequest(http.MethodPost, s.URL+"/v1/plugins/kb/resource_written", strings.NewReader(body))
			req.Header.Set("Authorization", "Bearer "+heraldtest.APIKey)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				answers <- answer{err: err}
				continue
			}
			var r struct{ Seqid uint64 }
			if resp.StatusCode == http.StatusOK {
				err = json.NewDecoder(resp.Body).Decode(&r)
			} else {
				err = fmt.Errorf("%s", resp.Status) // 503 while the plugin is down
			}
			_ = resp.Body.Close()
			answers <- answer{r.Seqid, err}
		}
	}()
	// Some answers before the kill, then kill, then some after the restart.
	for n := 0; n < 20; n++ {
		<-answers
	}
	old := s.pluginPid()
	require.NotZero(t, old)
	require.NoError(t, syscall.Kill(old, syscall.SIGKILL))
	s.eventually("the plugin restarted", func() bool {
		p := s.pluginPid()
		return p != 0 && p != old
	})
	s.waitReady()
	close(stop)
	<-done
	close(answers)
	seen := map[uint64]bool{}
	var max uint64
	for a := range answers {
		if a.err != nil {
			continue
		}
		require.False(t, seen[a.seqid], "seqid %d answered twice", a.seqid)
		seen[a.seqid] = true
		max = maxU(max, a.seqid)
	}
	require.NotEmpty(t, seen)
	require.Greater(t, s.written("kb1", "after", "created"), max)
}

func maxU(a, b uint64) uint64 {
	if a > b {
		return a
	}
	return b
}

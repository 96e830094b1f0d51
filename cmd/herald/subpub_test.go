package main_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/heraldhq/herald/internal/heraldtest"
)

// herald sub prints what herald pub publishes, one JSON line each, and
// keeps doing so across a lost connection without a gap.
func TestSubPrintsWhatPubPublishesAcrossAReconnect(t *testing.T) {
	h := heraldtest.Start(t, heraldtest.Options{})
	proxy := heraldtest.StartProxy(t, h.Addr)
	bin := heraldtest.Binary(t, "cmd/herald")

	sub := exec.Command(bin, "sub", "-url", proxy.WSURL(), "-token", h.Token(t, "alice"), "-channel", "news")
	stdout, err := sub.StdoutPipe()
	require.NoError(t, err)
	stderr := &lockedBuffer{}
	sub.Stderr = stderr
	require.NoError(t, sub.Start())
	t.Cleanup(func() { _ = sub.Process.Kill(); _ = sub.Wait() })
	lines := make(chan string, 10)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()

	pub := func(text string) {
		out, err := exec.Command(bin, "pub", "-url", h.URL, "-key", heraldtest.APIKey,
			"-channel", "news", "-event", "new", "-object", `{"text":"`+text+`"}`).CombinedOutput()
		require.NoError(t, err, "%s", out)
		var r struct{ Results []struct{ Seq uint64 } }
		require.NoError(t, json.Unmarshal(out, &r), "%s", out)
		require.Len(t, r.Results, 1)
	}
	next := func() map[string]any {
		select {
		case l := <-lines:
			var m map[string]any
			require.NoError(t, json.Unmarshal([]byte(l), &m), l)
			return m
		case <-time.After(heraldtest.Timeout):
			t.Fatalf("herald sub printed nothing; stderr: %s", stderr.String())
		}
		return nil
	}

	// Publish until the subscription is in place (sub subscribes after
	// connecting), then check the stream from there.
	deadline := time.Now().Add(heraldtest.Timeout)
	for proxy.Conns() == 0 || !strings.Contains(stderr.String(), "subscribed") {
		require.True(t, time.Now().Before(deadline), "herald sub did not subscribe: %s", stderr.String())
		time.Sleep(20 * time.Millisecond)
	}
	pub("one")
	first := next()
	require.Equal(t, "news", first["channel"])
	require.Equal(t, map[string]any{"text": "one"}, first["object"])

	proxy.SetDown(true)
	proxy.Cut()
	pub("two")
	proxy.SetDown(false)
	second := next()
	require.Equal(t, first["seq"].(float64)+1, second["seq"])
	require.Equal(t, map[string]any{"text": "two"}, second["object"])
}

func TestPubReportsARefusedKey(t *testing.T) {
	h := heraldtest.Start(t, heraldtest.Options{})
	out, err := exec.Command(heraldtest.Binary(t, "cmd/herald"), "pub", "-url", h.URL, "-key", "wrong",
		"-channel", "news", "-event", "new").CombinedOutput()
	require.Error(t, err)
	require.Contains(t, string(out), "401")
}

// lockedBuffer is written by exec's copying goroutine and read by the test.
type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// herald sub says on stderr which subscriptions herald ended, and why: here
// a private one, after the token expired and the grace passed.
func TestSubReportsSubscriptionsHeraldEnded(t *testing.T) {
	h := heraldtest.Start(t, heraldtest.Options{
		Auth: fmt.Sprintf("token_secret = %q\n api_keys = [%q]\n expiry_grace = \"300ms\"", heraldtest.Secret, heraldtest.APIKey),
		HCL:  pluginBlock("echo", "examples/echo-plugin", "")(t),
	})
	sub := exec.Command(heraldtest.Binary(t, "cmd/herald"), "sub", "-url", h.WSURL,
		"-token", heraldtest.MintToken(t, "alice", 2*time.Second, nil), "-channel", "echo:alice")
	stderr := &lockedBuffer{}
	sub.Stderr = stderr
	require.NoError(t, sub.Start())
	t.Cleanup(func() { _ = sub.Process.Kill(); _ = sub.Wait() })
	const want = "no longer subscribed to echo:alice: the token expired and no new one came within auth.expiry_grace"
	deadline := time.Now().Add(heraldtest.Timeout)
	for !strings.Contains(stderr.String(), want) {
		require.True(t, time.Now().Before(deadline), "herald sub did not report the drop: %s", stderr.String())
		time.Sleep(20 * time.Millisecond)
	}
}

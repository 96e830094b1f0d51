package heraldtest

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Dev credentials of every test server.
const (
	Secret = "test-secret"
	APIKey = "test-api-key"
)

// Options shape the config of a test server.
type Options struct {
	// HCL is appended to the generated config (blocks such as delivery {},
	// limits {}, plugin "x" {}); blocks given here replace the defaults for
	// server and auth only when Replace names them.
	HCL string
	// Auth replaces the auth block's body (default: the test secret and key).
	Auth string
	// Env is added to herald's environment.
	Env []string
	// Args are added to `herald serve`.
	Args []string
}

// Herald is a running herald process.
type Herald struct {
	Addr       string // host:port
	URL        string // http://host:port
	WSURL      string // ws://host:port/ws
	ConfigPath string
	cmd        *exec.Cmd
	logs       *Buffer
	exited     chan struct{}
	exitErr    error
}

var listenRe = regexp.MustCompile(`listening: addr=(\S+)`)

// Start writes a config and starts `herald serve` on a free loopback port;
// the test's cleanup stops it.
func Start(t testing.TB, opts Options) *Herald {
	t.Helper()
	dir := t.TempDir()
	authBody := opts.Auth
	if authBody == "" {
		authBody = fmt.Sprintf("token_secret = %q\n  api_keys = [%q]", Secret, APIKey)
	}
	cfg := fmt.Sprintf("server {\n  listen = \"127.0.0.1:0\"\n  allowed_origins = [\"http://localhost:8080\"]\n}\nauth {\n  %s\n}\n%s\n", authBody, opts.HCL)
	path := filepath.Join(dir, "config.hcl")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatalf("heraldtest: write config: %v", err)
	}
	h := StartWithConfig(t, path, opts.Env, opts.Args...)
	return h
}

// StartWithConfig starts `herald serve -config path`; the config must listen
// on 127.0.0.1:0 or another free address.
func StartWithConfig(t testing.TB, path string, env []string, args ...string) *Herald {
	t.Helper()
	bin := Binary(t, "cmd/herald")
	h := &Herald{ConfigPath: path, logs: &Buffer{}, exited: make(chan struct{})}
	h.cmd = exec.Command(bin, append([]string{"serve", "-config", path}, args...)...)
	h.cmd.Dir = RepoRoot()
	h.cmd.Env = append(os.Environ(), env...)
	h.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	stderr, err := h.cmd.StderrPipe()
	if err != nil {
		t.Fatalf("heraldtest: %v", err)
	}
	h.cmd.Stdout = h.logs
	if err := h.cmd.Start(); err != nil {
		t.Fatalf("heraldtest: start herald: %v", err)
	}
	addrc := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		sent := false
		for sc.Scan() {
			line := sc.Text()
			h.logs.WriteString(line + "\n")
			if !sent {
				if m := listenRe.FindStringSubmatch(line); m != nil {
					addrc <- m[1]
					sent = true
				}
			}
		}
	}()
	go func() {
		h.exitErr = h.cmd.Wait()
		close(h.exited)
	}()
	t.Cleanup(func() {
		h.Stop(t)
		if t.Failed() {
			t.Logf("herald logs:\n%s", h.Logs())
		}
	})
	select {
	case h.Addr = <-addrc:
	case <-h.exited:
		t.Fatalf("heraldtest: herald exited before listening: %v\n%s", h.exitErr, h.Logs())
	case <-time.After(60 * time.Second):
		t.Fatalf("heraldtest: herald did not listen within 60s\n%s", h.Logs())
	}
	h.URL = "http://" + h.Addr
	h.WSURL = "ws://" + h.Addr + "/ws"
	return h
}

// Logs is what herald printed so far.
func (h *Herald) Logs() string { return h.logs.String() }

// WaitLog waits until herald's log contains s.
func (h *Herald) WaitLog(t testing.TB, s string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if strings.Contains(h.Logs(), s) {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("heraldtest: log never showed %q\n%s", s, h.Logs())
}

// Signal sends sig to herald.
func (h *Herald) Signal(t testing.TB, sig syscall.Signal) {
	t.Helper()
	if err := h.cmd.Process.Signal(sig); err != nil {
		t.Fatalf("heraldtest: signal %v: %v", sig, err)
	}
}

// Wait waits for herald to exit and returns its exit error.
func (h *Herald) Wait(t testing.TB, timeout time.Duration) error {
	t.Helper()
	select {
	case <-h.exited:
		return h.exitErr
	case <-time.After(timeout):
		t.Fatalf("heraldtest: herald did not exit within %v\n%s", timeout, h.Logs())
		return nil
	}
}

// Pid is herald's process id.
func (h *Herald) Pid() int { return h.cmd.Process.Pid }

// Stop ends herald with SIGTERM, then SIGKILL after 10s, and kills its
// process group so no plugin outlives the test.
func (h *Herald) Stop(t testing.TB) {
	select {
	case <-h.exited:
	default:
		_ = h.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-h.exited:
		case <-time.After(10 * time.Second):
			_ = syscall.Kill(-h.cmd.Process.Pid, syscall.SIGKILL)
			<-h.exited
		}
	}
	_ = syscall.Kill(-h.cmd.Process.Pid, syscall.SIGKILL)
}

// Token mints a client token for sub with the test secret.
func (h *Herald) Token(t testing.TB, sub string) string {
	return MintToken(t, sub, time.Hour, nil)
}

// MintToken signs a token with the test secret.
func MintToken(t testing.TB, sub string, ttl time.Duration, claims map[string]any) string {
	t.Helper()
	c := jwt.MapClaims{"sub": sub, "iat": time.Now().Unix(), "exp": time.Now().Add(ttl).Unix()}
	for k, v := range claims {
		c[k] = v
	}
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString([]byte(Secret))
	if err != nil {
		t.Fatalf("heraldtest: sign token: %v", err)
	}
	return s
}

// N builds a notification for Publish.
func N(channel, event, objectType, object string) map[string]any {
	return map[string]any{"channel": channel, "event": event, "object_type": objectType, "object": json.RawMessage(object)}
}

// PublishResult is one entry of the publish API's results.
type PublishResult struct {
	Channel string `json:"channel"`
	Seq     uint64 `json:"seq"`
	ID      string `json:"id"`
}

// Publish posts notifications to /v1/publish and fails the test unless it
// answers 200.
func (h *Herald) Publish(t testing.TB, ns ...map[string]any) []PublishResult {
	t.Helper()
	status, body := h.PublishRaw(t, map[string]any{"notifications": ns}, nil)
	if status != http.StatusOK {
		t.Fatalf("heraldtest: publish: %d %s", status, body)
	}
	var out struct{ Results []PublishResult }
	if err := json.Unmarshal(body, &out); err != nil {
		t.Fatalf("heraldtest: publish reply %s: %v", body, err)
	}
	return out.Results
}

// PublishRaw posts body (marshalled unless it is []byte) to /v1/publish
// with the test API key and extra headers.
func (h *Herald) PublishRaw(t testing.TB, body any, header http.Header) (int, []byte) {
	t.Helper()
	return h.Do(t, http.MethodPost, "/v1/publish", body, APIKey, header)
}

// Do sends an HTTP request to herald and returns the status and body.
func (h *Herald) Do(t testing.TB, method, path string, body any, key string, header http.Header) (int, []byte) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, ok := body.([]byte)
		if !ok {
			var err error
			if b, err = json.Marshal(body); err != nil {
				t.Fatalf("heraldtest: marshal: %v", err)
			}
		}
		rd = bytes.NewReader(b)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, h.URL+path, rd)
	if err != nil {
		t.Fatalf("heraldtest: %v", err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("heraldtest: %s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("heraldtest: read %s: %v", path, err)
	}
	return resp.StatusCode, b
}

// Buffer is a bytes.Buffer that a process may write while a test reads it.
type Buffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *Buffer) WriteString(s string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf.WriteString(s)
}

func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// Take returns what was written since the last Take and empties the buffer.
func (b *Buffer) Take() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	s := b.buf.String()
	b.buf.Reset()
	return s
}

// Package js_test runs the JavaScript client's tests (node --test) against
// the real herald binary, so that `go test ./...` covers them.
package js_test

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/heraldhq/herald/internal/heraldtest"
)

func TestMain(m *testing.M) { heraldtest.Main(m) }

// nodeArgs finds node and the flags it needs for a global WebSocket, or
// skips (fails under CI=true) when there is none.
func nodeArgs(t *testing.T) (string, []string) {
	node, err := exec.LookPath("node")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("node is not installed: the JavaScript client's tests need Node >= 20.10 (.ci/run installs nodejs)")
		}
		t.Skip("node is not installed: skipping the JavaScript client's tests")
	}
	out, err := exec.Command(node, "-e", "process.stdout.write(typeof WebSocket)").Output()
	if err != nil {
		t.Fatalf("node: %v", err)
	}
	if strings.TrimSpace(string(out)) == "function" {
		return node, nil
	}
	return node, []string{"--experimental-websocket"}
}

// The harness: a herald on a fixed address (so /restart can bring it back
// in place), a proxy in front of it that the tests cut through /cut and
// /down, and the environment the JavaScript tests read.
func TestJavaScriptClient(t *testing.T) {
	node, flags := nodeArgs(t)
	hcl := "history {\n  size = 200\n}\ndelivery {\n  max_delay = \"20ms\"\n}"
	echo := "0"
	if _, err := os.Stat(filepath.Join(heraldtest.RepoRoot(), "examples", "echo-plugin")); err == nil {
		hcl += fmt.Sprintf("\nplugin \"echo\" {\n  command = %q\n}", heraldtest.Binary(t, "examples/echo-plugin"))
		echo = "1"
	}
	addr := heraldtest.FreeAddr(t)
	cfg := heraldtest.WriteConfig(t, addr, heraldtest.Options{
		HCL:  hcl,
		Auth: fmt.Sprintf("token_secret = %q\n  api_keys = [%q]\n  expiry_grace = \"1s\"", heraldtest.Secret, heraldtest.APIKey),
	})
	var (
		mu       sync.Mutex
		finished bool // node is done: no restart may start any more
	)
	h := heraldtest.StartWithConfig(t, cfg, nil)
	proxy := heraldtest.StartProxy(t, addr)

	control := http.NewServeMux()
	control.HandleFunc("POST /cut", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, proxy.Cut())
	})
	control.HandleFunc("POST /down", func(w http.ResponseWriter, r *http.Request) {
		proxy.SetDown(r.URL.Query().Get("on") != "0")
	})
	control.HandleFunc("POST /restart", func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		if finished {
			http.Error(w, "the tests are over", http.StatusGone)
			return
		}
		h.Stop(t)
		h = heraldtest.StartWithConfig(t, cfg, nil)
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: control, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })

	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	tests, _ := filepath.Glob(filepath.Join("test", "*.test.mjs"))
	args := append(flags, "--test", "--test-concurrency=1", "--test-reporter=spec", "--test-timeout=60000")
	cmd := exec.CommandContext(ctx, node, append(args, tests...)...)
	cmd.Env = append(os.Environ(),
		"HERALD_WS_URL=ws://"+addr+"/ws",
		"HERALD_PROXY_WS_URL="+proxy.WSURL(),
		"HERALD_HTTP_URL=http://"+addr,
		"HERALD_API_KEY="+heraldtest.APIKey,
		"HERALD_TOKEN_SECRET="+heraldtest.Secret,
		"HERALD_CONTROL_URL=http://"+ln.Addr().String(),
		"HERALD_ECHO="+echo,
	)
	out, err := cmd.CombinedOutput()
	t.Logf("node --test:\n%s", out)
	if err != nil {
		t.Fatalf("the JavaScript client's tests failed: %v", err)
	}
	mu.Lock() // waits out a restart in flight; none starts after this
	finished = true
	mu.Unlock()
}

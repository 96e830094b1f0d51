package main_test

import (
	"bufio"
	"encoding/json"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/heraldhq/herald/internal/heraldtest"
)

// startOnFixedPort starts herald with a config whose server.listen is a
// real port, as a user's config is, so that commands given only -config
// find it.
func startOnFixedPort(t *testing.T, extra string) (*heraldtest.Herald, string) {
	t.Helper()
	path := heraldtest.WriteConfig(t, heraldtest.FreeAddr(t), heraldtest.Options{HCL: extra})
	return heraldtest.StartWithConfig(t, path, nil), path
}

// herald sub -config dials the config's server.listen, like pub and
// plugins do, rather than the default port.
func TestSubTakesItsAddressFromTheConfig(t *testing.T) {
	h, path := startOnFixedPort(t, "")
	sub := exec.Command(heraldtest.Binary(t, "cmd/herald"), "sub", "-config", path, "-token", h.Token(t, "alice"), "-channel", "news")
	stdout, err := sub.StdoutPipe()
	require.NoError(t, err)
	stderr := &lockedBuffer{}
	sub.Stderr = stderr
	require.NoError(t, sub.Start())
	t.Cleanup(func() { _ = sub.Process.Kill(); _ = sub.Wait() })
	deadline := time.Now().Add(heraldtest.Timeout)
	for !strings.Contains(stderr.String(), "subscribed") {
		require.True(t, time.Now().Before(deadline), "herald sub did not subscribe: %s", stderr.String())
		time.Sleep(20 * time.Millisecond)
	}
	h.Publish(t, heraldtest.N("news", "new", "message", `{"text":"hi"}`))
	line := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		if sc.Scan() {
			line <- sc.Text()
		}
	}()
	select {
	case l := <-line:
		var n map[string]any
		require.NoError(t, json.Unmarshal([]byte(l), &n), l)
		require.Equal(t, map[string]any{"text": "hi"}, n["object"])
	case <-time.After(heraldtest.Timeout):
		t.Fatalf("herald sub printed nothing; stderr: %s", stderr.String())
	}
}

// herald call runs a plugin method as a client (with -token) or as a
// backend (with the config's API key) and prints the JSON result; a
// backend-only method refuses the client, and a bad call says why.
func TestCallAsClientAndAsBackend(t *testing.T) {
	h, path := startOnFixedPort(t, pluginBlock("tester", "internal/testplugins/tester", "  config {\n    prefix = \"tester\"\n  }")(t))
	waitPlugin(t, h, "tester", func(p pluginStatus) bool { return p.State == "running" })

	stdout, stderr, code := herald(t, "call", "-config", path, "tester.admin")
	require.Equal(t, 0, code, stderr)
	require.Equal(t, `"ok"`, strings.TrimSpace(stdout))

	stdout, stderr, code = herald(t, "call", "-config", path, "-token", h.Token(t, "alice"), "tester.config", `{}`)
	require.Equal(t, 0, code, stderr)
	var cfg map[string]any
	require.NoError(t, json.Unmarshal([]byte(stdout), &cfg), stdout)
	require.Equal(t, "tester", cfg["Prefix"])

	_, stderr, code = herald(t, "call", "-config", path, "-token", h.Token(t, "alice"), "tester.admin")
	require.Equal(t, 1, code)
	require.Contains(t, stderr, "-32003")

	_, stderr, code = herald(t, "call", "-config", path, "tester.nosuch")
	require.Equal(t, 1, code)
	require.Contains(t, stderr, "404")

	_, stderr, code = herald(t, "call", "-config", path, "tester.config", "{not json")
	require.Equal(t, 1, code)
	require.Contains(t, stderr, "not valid JSON")

	_, stderr, code = herald(t, "call", "-config", path, "nodot")
	require.Equal(t, 1, code)
	require.Contains(t, stderr, "want plugin.method")
}

func TestVersionFlagAndBuildStamp(t *testing.T) {
	stdout, _, code := herald(t, "--version")
	require.Equal(t, 0, code)
	require.True(t, strings.HasPrefix(stdout, "herald "), stdout)
	require.Contains(t, stdout, "go1.")
}

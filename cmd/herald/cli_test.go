package main_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/stretchr/testify/require"

	"github.com/heraldhq/herald/internal/heraldtest"
)

func herald(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, heraldtest.Binary(t, "cmd/herald"), args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code = 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("run herald %v: %v", args, err)
	}
	return out.String(), errb.String(), code
}

func writeConfig(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "herald.hcl")
	require.NoError(t, os.WriteFile(p, []byte(body), 0o600))
	return p
}

// Help asked for with -h goes to stdout and exits 0, for herald and for
// each command alike; usage printed because of a mistake goes to stderr
// and exits 2.
func TestEveryCommandHasHelp(t *testing.T) {
	help := map[string]string{}
	for _, c := range []string{"serve", "validate", "token", "sub", "pub", "plugins", "call", "plugin", "version"} {
		stdout, stderr, code := herald(t, c, "-h")
		require.Equal(t, 0, code, c)
		require.Contains(t, stdout, "Usage: herald "+c, c)
		require.Empty(t, stderr, c)
		help[c] = stdout
	}
	stdout, stderr, code := herald(t, "-h")
	require.Equal(t, 0, code)
	require.Contains(t, stdout, "Commands:")
	require.Empty(t, stderr)

	require.Contains(t, help["plugin"], "[-tidy=false]\n")
	newHelp, _, code := herald(t, "plugin", "new", "-h")
	require.Equal(t, 0, code)
	require.Equal(t, help["plugin"], newHelp, "herald plugin -h is plugin new's help")
	require.Contains(t, newHelp, "\n  -tidy\n", "a bool flag shows no argument")
	require.True(t, strings.HasPrefix(help["version"], "Usage: herald version\n\n"), "%q", help["version"])
	require.NotContains(t, help["version"], "Flags:", "version has none")

	_, stderr, code = herald(t, "bogus")
	require.Equal(t, 2, code)
	require.Contains(t, stderr, `unknown command "bogus"`)
	stdout, stderr, code = herald(t)
	require.Equal(t, 2, code)
	require.Empty(t, stdout)
	require.Contains(t, stderr, "Commands:")
	stdout, stderr, code = herald(t, "token", "-bogus")
	require.Equal(t, 2, code)
	require.Empty(t, stdout)
	require.Contains(t, stderr, "flag provided but not defined: -bogus")
	require.Contains(t, stderr, "Usage: herald token")
}

func TestVersion(t *testing.T) {
	stdout, _, code := herald(t, "version")
	require.Equal(t, 0, code)
	require.True(t, strings.HasPrefix(stdout, "herald "), stdout)
}

func TestValidate(t *testing.T) {
	good := writeConfig(t, `auth {
  token_secret = "s"
  api_keys = ["k"]
}`)
	stdout, _, code := herald(t, "validate", "-config", good)
	require.Equal(t, 0, code)
	require.Contains(t, stdout, "valid")

	bad := writeConfig(t, `auth {
  token_secret = "s"
  api_keys = ["k"]
}
delivery {
  max_batchh = 3
}
`)
	_, stderr, code := herald(t, "validate", "-config", bad)
	require.Equal(t, 1, code)
	require.Contains(t, stderr, bad+":6:3")
	require.Contains(t, stderr, "max_batch")

	_, stderr, code = herald(t, "validate", "-config", filepath.Join(t.TempDir(), "missing.hcl"))
	require.Equal(t, 1, code)
	require.Contains(t, stderr, "missing.hcl")

	// The shipped config is valid (without starting its plugins, which
	// need `make build`: TestValidateStartsPluginsInADryRun starts them).
	_, _, code = herald(t, "validate", "-plugins=false", "-config", filepath.Join(heraldtest.RepoRoot(), "config.hcl"))
	require.Equal(t, 0, code)
}

func TestTokenIsSignedWithTheConfiguredSecret(t *testing.T) {
	cfg := writeConfig(t, `auth {
  token_secret = "cli-secret"
  api_keys = ["k"]
}`)
	stdout, stderr, code := herald(t, "token", "-config", cfg, "-sub", "alice", "-ttl", "2h", "-claim", "nick=ivan", "-claim", `networks=["n1","n2"]`, "-claim", "admin=true")
	require.Equal(t, 0, code, stderr)
	claims := jwt.MapClaims{}
	_, err := jwt.ParseWithClaims(strings.TrimSpace(stdout), claims, func(*jwt.Token) (any, error) { return []byte("cli-secret"), nil })
	require.NoError(t, err)
	require.Equal(t, "alice", claims["sub"])
	require.Equal(t, "ivan", claims["nick"])
	require.Equal(t, []any{"n1", "n2"}, claims["networks"])
	require.Equal(t, true, claims["admin"])
	exp, _ := claims.GetExpirationTime()
	require.WithinDuration(t, time.Now().Add(2*time.Hour), exp.Time, time.Minute)

	_, stderr, code = herald(t, "token", "-config", cfg)
	require.Equal(t, 2, code)
	require.Contains(t, stderr, "-sub is required")
}

// A negative -ttl once minted a token without exp, which never expired; a
// -claim of sub, exp or iat was silently lost or overwritten. Each is a
// usage error that says which flag to use, and prints no token.
func TestTokenRefusesNegativeTTLAndReservedClaims(t *testing.T) {
	cfg := writeConfig(t, `auth {
  token_secret = "cli-secret"
  api_keys = ["k"]
}`)
	for _, tc := range []struct {
		args []string
		say  string
	}{
		{[]string{"-ttl", "-1h"}, "-ttl -1h0m0s is negative"},
		{[]string{"-claim", "sub=bob"}, "use -sub"},
		{[]string{"-claim", "exp=1"}, "use -ttl"},
		{[]string{"-claim", "iat=1"}, "use -ttl"},
	} {
		stdout, stderr, code := herald(t, append([]string{"token", "-config", cfg, "-sub", "alice"}, tc.args...)...)
		require.Equal(t, 2, code, "%v: %s", tc.args, stderr)
		require.Contains(t, stderr, tc.say, tc.args)
		require.Empty(t, stdout, tc.args)
	}
}

func TestPubAndSubEndToEnd(t *testing.T) {
	h := heraldtest.Start(t, heraldtest.Options{})
	cfg := h.ConfigPath

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stdout, subErr := startSub(ctx, t, "-url", h.WSURL, "-token", h.Token(t, "alice"), "-channel", "news sports")
	require.Eventually(t, func() bool { return strings.Contains(subErr.String(), "subscribed") }, heraldtest.Timeout, 20*time.Millisecond)

	out, errOut, code := herald(t, "pub", "-config", cfg, "-url", h.URL, "-channel", "sports", "-event", "new", "-object", `{"score":3}`)
	require.Equal(t, 0, code, errOut)
	var res struct{ Results []heraldtest.PublishResult }
	require.NoError(t, json.Unmarshal([]byte(out), &res))
	require.Equal(t, "sports", res.Results[0].Channel)

	lines := make(chan string, 10)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	select {
	case line := <-lines:
		var n heraldtest.Notification
		require.NoError(t, json.Unmarshal([]byte(line), &n))
		require.Equal(t, "sports", n.Channel)
		require.Equal(t, "new", n.Event)
		require.Equal(t, "message", n.ObjectType)
		require.JSONEq(t, `{"score":3}`, string(n.Object))
		require.Equal(t, res.Results[0].ID, n.ID)
	case <-time.After(heraldtest.Timeout):
		t.Fatalf("herald sub printed nothing; stderr: %s", subErr.String())
	}

	_, errOut, code = herald(t, "pub", "-config", cfg, "-url", h.URL, "-key", "wrong", "-channel", "x", "-event", "e")
	require.Equal(t, 1, code)
	require.Contains(t, errOut, "401")
	_, errOut, code = herald(t, "pub", "-config", cfg, "-channel", "x", "-event", "e", "-object", "{bad")
	require.Equal(t, 1, code)
	require.Contains(t, errOut, "not valid JSON")
}

// startSub runs `herald sub` with args until ctx ends or the test does, and
// returns its stdout and what it wrote to stderr.
func startSub(ctx context.Context, t *testing.T, args ...string) (io.ReadCloser, *heraldtest.Buffer) {
	t.Helper()
	sub := exec.CommandContext(ctx, heraldtest.Binary(t, "cmd/herald"), append([]string{"sub"}, args...)...)
	stdout, err := sub.StdoutPipe()
	require.NoError(t, err)
	subErr := &heraldtest.Buffer{}
	sub.Stderr = subErr
	require.NoError(t, sub.Start())
	t.Cleanup(func() { _ = sub.Process.Kill(); _ = sub.Wait() })
	return stdout, subErr
}

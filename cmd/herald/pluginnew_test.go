package main_test

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/heraldhq/herald/internal/heraldtest"
)

// `herald plugin new` writes a plugin outside the repository that passes
// its own test as generated, builds, and works when herald loads it.
func TestPluginNewWritesAWorkingPlugin(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a module with go mod tidy (-short)")
	}
	dir := filepath.Join(t.TempDir(), "greeter")
	stdout, stderr, code := herald(t, "plugin", "new", "greeter", "-dir", dir, "-herald", heraldtest.RepoRoot())
	require.Equal(t, 0, code, "%s\n%s", stdout, stderr)
	require.Contains(t, stdout, "cd "+dir+" && go test ./...")
	for _, f := range []string{"go.mod", "main.go", "main_test.go", "README.md"} {
		require.FileExists(t, filepath.Join(dir, f))
	}

	run := func(args ...string) {
		cmd := exec.Command("go", args...)
		cmd.Dir = dir
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, "go %v:\n%s", args, out)
	}
	run("vet", "./...")
	run("test", "-count=1", "./...")
	bin := filepath.Join(dir, "greeter")
	run("build", "-o", bin, ".")

	h := heraldtest.Start(t, heraldtest.Options{HCL: fmt.Sprintf("plugin %q {\n  command = %q\n  config {\n    greeting = \"hey\"\n  }\n}\n", "greeter", bin)})
	c := h.Dial(t, h.Token(t, "alice"))
	c.Subscribe(t, "greeter:alice")
	res := c.MustCall(t, "greeter.hello", map[string]any{"name": "Bob"})
	var r struct{ Channel string }
	require.NoError(t, json.Unmarshal(res, &r))
	require.Equal(t, "greeter:alice", r.Channel)
	ns := c.Notifications(t, 1)
	require.Equal(t, "greeting", ns[0].Event)
	require.JSONEq(t, `{"text":"hey, Bob"}`, string(ns[0].Object))
	require.NotNil(t, c.CallErr(t, "subscribe", map[string]any{"channel": "greeter:bob"}))

	// Its Validate reports a bad value at its key.
	body := preamble + fmt.Sprintf("plugin \"greeter\" {\n  command = %q\n  config {\n    greeting = \" \"\n  }\n}\n", bin)
	path := writeConfig(t, body)
	stdout, stderr, code = herald(t, "validate", "-config", path)
	require.Equal(t, 1, code, stdout)
	require.Equal(t, fmt.Sprintf("%s:%d:5: plugin.greeter.config.greeting: must not be empty\n", path, lineOf(t, body, "greeting =")), stderr)
}

// Without -tidy the module has no go.sum yet: the next steps printed start
// with go mod tidy, or go test would stop on missing go.sum entries.
func TestPluginNewWithoutTidySaysToTidy(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "greeter")
	stdout, stderr, code := herald(t, "plugin", "new", "greeter", "-dir", dir, "-tidy=false", "-herald", heraldtest.RepoRoot())
	require.Equal(t, 0, code, "%s\n%s", stdout, stderr)
	require.NoFileExists(t, filepath.Join(dir, "go.sum"))
	require.Contains(t, stdout, "cd "+dir+" && go mod tidy && go test ./... && go build -o greeter .")
}

func TestPluginNewRefusesBadInput(t *testing.T) {
	_, stderr, code := herald(t, "plugin", "new", "Bad-Name", "-herald", heraldtest.RepoRoot())
	require.Equal(t, 1, code)
	require.Contains(t, stderr, "lower-case")

	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "x"), nil, 0o600))
	_, stderr, code = herald(t, "plugin", "new", "ok", "-dir", dir, "-herald", heraldtest.RepoRoot())
	require.Equal(t, 1, code)
	require.Contains(t, stderr, "not empty")

	_, stderr, code = herald(t, "plugin", "new", "ok", "-dir", filepath.Join(dir, "p"), "-herald", dir)
	require.Equal(t, 1, code)
	require.Contains(t, stderr, "not a checkout of Herald")

	_, stderr, code = herald(t, "plugin")
	require.Equal(t, 2, code)
	require.Contains(t, stderr, "plugin new NAME")

	// Names herald validate would refuse for the block, and a module path
	// go mod tidy would refuse, are refused before anything is written.
	for name, want := range map[string]string{"rpc": `"rpc" is reserved`, "config": `"config" is one of Herald's own channels`} {
		_, stderr, code = herald(t, "plugin", "new", name, "-dir", filepath.Join(dir, name), "-tidy=false", "-herald", heraldtest.RepoRoot())
		require.Equal(t, 1, code, name)
		require.Contains(t, stderr, want)
		require.NoDirExists(t, filepath.Join(dir, name))
	}
	_, stderr, code = herald(t, "plugin", "new", "ok", "-dir", filepath.Join(dir, "p"), "-module", "bad path", "-tidy=false", "-herald", heraldtest.RepoRoot())
	require.Equal(t, 1, code)
	require.Contains(t, stderr, `-module "bad path" is not a Go module path`)
	require.NoDirExists(t, filepath.Join(dir, "p"))
}

// Flags may come before NAME too.
func TestPluginNewTakesFlagsBeforeTheName(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "greeter")
	stdout, stderr, code := herald(t, "plugin", "new", "-dir", dir, "-tidy=false", "-herald", heraldtest.RepoRoot(), "greeter")
	require.Equal(t, 0, code, "%s\n%s", stdout, stderr)
	require.FileExists(t, filepath.Join(dir, "go.mod"))
}

// The plugin is written outside Herald's checkout, as the README says:
// inside it (the default ./NAME when run in the checkout, or a -dir in it)
// it is refused with the -dir to give, and nothing is written.
func TestPluginNewRefusesADirectoryInsideTheCheckout(t *testing.T) {
	checkout := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(checkout, "go.mod"), []byte("module github.com/heraldhq/herald\n\ngo 1.24\n"), 0o600))
	sub := filepath.Join(checkout, "cmd")
	require.NoError(t, os.MkdirAll(sub, 0o755))

	cmd := exec.Command(heraldtest.Binary(t, "cmd/herald"), "plugin", "new", "greeter", "-tidy=false")
	cmd.Dir = sub
	out, err := cmd.CombinedOutput()
	require.Error(t, err, "%s", out)
	require.Contains(t, string(out), "greeter is inside the Herald checkout "+checkout+": a plugin lives outside it; give -dir, for example -dir "+filepath.Join(filepath.Dir(checkout), "greeter"))
	require.NoDirExists(t, filepath.Join(sub, "greeter"))

	_, stderr, code := herald(t, "plugin", "new", "greeter", "-tidy=false", "-herald", checkout, "-dir", filepath.Join(checkout, "plugins", "greeter"))
	require.Equal(t, 1, code)
	require.Contains(t, stderr, "is inside the Herald checkout")
	require.NoDirExists(t, filepath.Join(checkout, "plugins"))

	outside := filepath.Join(t.TempDir(), "greeter")
	_, stderr, code = herald(t, "plugin", "new", "greeter", "-tidy=false", "-herald", checkout, "-dir", outside)
	require.Equal(t, 0, code, stderr)
	require.FileExists(t, filepath.Join(outside, "go.mod"))
}

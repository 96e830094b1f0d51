package main_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/heraldhq/herald/internal/heraldtest"
)

// copyBinary copies a built binary to dst (creating its directory), so that
// a config can name it by a path relative to itself.
func copyBinary(t *testing.T, pkg, dst string) {
	t.Helper()
	b, err := os.ReadFile(heraldtest.Binary(t, pkg))
	require.NoError(t, err)
	require.NoError(t, os.MkdirAll(filepath.Dir(dst), 0o755))
	require.NoError(t, os.WriteFile(dst, b, 0o755))
}

// lineOf is the 1-based line of the first line of text containing s.
func lineOf(t *testing.T, text, s string) int {
	t.Helper()
	for i, l := range strings.Split(text, "\n") {
		if strings.Contains(l, s) {
			return i + 1
		}
	}
	t.Fatalf("%q not in:\n%s", s, text)
	return 0
}

// preamble makes a config valid but for its plugin blocks.
const preamble = "server {\n  listen = \"127.0.0.1:0\"\n}\nauth {\n  token_secret = \"" + heraldtest.Secret + "\"\n  api_keys = [\"" + heraldtest.APIKey + "\"]\n}\n"

// herald validate starts each plugin in a dry run: a missing binary and a
// typo in a plugin's config block fail there, read like the core's config
// errors (position, key path, suggestion), and read the same at serve.
func TestValidateStartsPluginsInADryRun(t *testing.T) {
	t.Run("missing binary", func(t *testing.T) {
		dir := t.TempDir()
		body := preamble + "plugin \"ghost\" {\n  command = \"plugins/ghost\"\n}\n"
		path := filepath.Join(dir, "herald.hcl")
		require.NoError(t, os.WriteFile(path, []byte(body), 0o600))
		stdout, stderr, code := herald(t, "validate", "-config", path)
		require.Equal(t, 1, code, stdout)
		require.Equal(t, fmt.Sprintf("%s:%d:3: plugin.ghost.command: cannot run \"plugins/ghost\" (looked for %s): no such file or directory\n",
			path, lineOf(t, body, "command ="), filepath.Join(dir, "plugins/ghost")), stderr)
	})

	t.Run("typo in the config block", func(t *testing.T) {
		body := preamble + fmt.Sprintf("plugin \"chat\" {\n  command = %q\n  config {\n    data_dir = \"data\"\n    entering_windw = \"3s\"\n  }\n}\n",
			heraldtest.Binary(t, "plugins/chat"))
		path := writeConfig(t, body)
		want := fmt.Sprintf("%s:%d:5: plugin.chat.config.entering_windw: unknown key; did you mean \"entering_window\"?", path, lineOf(t, body, "entering_windw"))
		stdout, stderr, code := herald(t, "validate", "-config", path)
		require.Equal(t, 1, code, stdout)
		require.Equal(t, want+"\n", stderr)
		require.NoDirExists(t, filepath.Join(filepath.Dir(path), "data"), "a dry run opens no store")

		// serve reports the same error the same way.
		_, stderr, code = herald(t, "serve", "-config", path)
		require.Equal(t, 1, code)
		require.Contains(t, stderr, "herald serve: "+want+"\n")
	})

	// A value of the wrong kind is reported at its key like a typo, and
	// says what to give: a number for a duration, a word for a number.
	t.Run("wrong kind of value", func(t *testing.T) {
		body := preamble + fmt.Sprintf("plugin \"chat\" {\n  command = %q\n  config {\n    entering_window = 3\n  }\n}\n", heraldtest.Binary(t, "plugins/chat")) +
			fmt.Sprintf("plugin \"kb\" {\n  command = %q\n  config {\n    index_replicas = \"two\"\n  }\n}\n", heraldtest.Binary(t, "plugins/kb"))
		path := writeConfig(t, body)
		stdout, stderr, code := herald(t, "validate", "-config", path)
		require.Equal(t, 1, code, stdout)
		require.Equal(t, fmt.Sprintf("%s:%d:5: plugin.chat.config.entering_window: expected a duration such as \"3s\", got the number 3: give it as a string with a unit (units: ns, us, ms, s, m, h)\n", path, lineOf(t, body, "entering_window"))+
			fmt.Sprintf("%s:%d:5: plugin.kb.config.index_replicas: expected a whole number, got \"two\"\n", path, lineOf(t, body, "index_replicas")), stderr)
	})

	// Every bad key of a plugin block is reported, each at its own line
	// and key path, not the first one at the config block.
	t.Run("two bad keys of one block", func(t *testing.T) {
		body := preamble + fmt.Sprintf("plugin \"kb\" {\n  command = %q\n  config {\n    index_replicas = 65\n    max_streams = 0\n  }\n}\n", heraldtest.Binary(t, "plugins/kb"))
		path := writeConfig(t, body)
		stdout, stderr, code := herald(t, "validate", "-config", path)
		require.Equal(t, 1, code, stdout)
		require.Equal(t, fmt.Sprintf("%s:%d:5: plugin.kb.config.index_replicas: must be from 1 to 64, got 65\n", path, lineOf(t, body, "index_replicas"))+
			fmt.Sprintf("%s:%d:5: plugin.kb.config.max_streams: must be from 1 to 1000000, got 0\n", path, lineOf(t, body, "max_streams")), stderr)
	})

	// An earlier version's chat.db in data_dir (relative to the config
	// file) is refused by validate as by serve, at data_dir.
	t.Run("leftover chat.db", func(t *testing.T) {
		body := preamble + fmt.Sprintf("plugin \"chat\" {\n  command = %q\n  config {\n    data_dir = \"old\"\n  }\n}\n", heraldtest.Binary(t, "plugins/chat"))
		path := writeConfig(t, body)
		dir := filepath.Dir(path)
		require.NoError(t, os.MkdirAll(filepath.Join(dir, "old"), 0o755))
		require.NoError(t, os.WriteFile(filepath.Join(dir, "old", "chat.db"), []byte("old"), 0o600))
		want := fmt.Sprintf("%s:%d:5: plugin.chat.config.data_dir: old/chat.db holds the memberships of an earlier chat plugin, which this version does not read (it keeps them in Herald's plugin state): record them again with addMember (and user objects with objectChanged), then remove the file", path, lineOf(t, body, "data_dir"))
		stdout, stderr, code := herald(t, "validate", "-config", path)
		require.Equal(t, 1, code, stdout)
		require.Equal(t, want+"\n", stderr)

		_, stderr, code = herald(t, "serve", "-config", path)
		require.Equal(t, 1, code)
		require.Contains(t, stderr, "herald serve: "+want+"\n")
	})

	// Claims and handshakes are reported at their block too, one line
	// each, and validate prints its findings only (no host log lines).
	t.Run("two plugins claim one prefix", func(t *testing.T) {
		tester := heraldtest.Binary(t, "internal/testplugins/tester")
		body := preamble + fmt.Sprintf("plugin \"one\" {\n  command = %q\n}\nplugin \"two\" {\n  command = %q\n}\n", tester, tester)
		path := writeConfig(t, body)
		stdout, stderr, code := herald(t, "validate", "-config", path)
		require.Equal(t, 1, code, stdout)
		line := lineOf(t, body, `plugin "two"`) + 1
		require.Equal(t, fmt.Sprintf("%s:%d:3: plugin.two.command: claims channel prefix \"tester\", which plugin \"one\" claims too\n"+
			"%s:%d:3: plugin.two.command: claims HTTP route \"GET /v1/tester/{id}/stream\", which plugin \"one\" claims too\n", path, line, path, line), stderr)
	})

	t.Run("not a plugin", func(t *testing.T) {
		body := preamble + "plugin \"t\" {\n  command = \"/bin/true\"\n}\n"
		path := writeConfig(t, body)
		stdout, stderr, code := herald(t, "validate", "-config", path)
		require.Equal(t, 1, code, stdout)
		require.Equal(t, 1, strings.Count(stderr, "\n"), stderr)
		require.True(t, strings.HasPrefix(stderr, fmt.Sprintf("%s:%d:3: plugin.t.command: \"/bin/true\": ", path, lineOf(t, body, "command ="))), stderr)
		require.Contains(t, stderr, "is it a Herald plugin")
	})

	// A core error does not hide the plugins' errors: all are printed,
	// the core's first.
	t.Run("every problem", func(t *testing.T) {
		body := preamble + "delivery {\n  max_batch = 0\n}\n" + fmt.Sprintf("plugin \"chat\" {\n  command = %q\n  config {\n    entering_windw = \"3s\"\n  }\n}\n",
			heraldtest.Binary(t, "plugins/chat")) + "plugin \"ghost\" {\n  command = \"/nonexistent/ghost\"\n}\n"
		path := writeConfig(t, body)
		stdout, stderr, code := herald(t, "validate", "-config", path)
		require.Equal(t, 1, code, stdout)
		require.Equal(t, fmt.Sprintf("%s:%d:3: delivery.max_batch: must be at least 1 (got 0)\n", path, lineOf(t, body, "max_batch"))+
			fmt.Sprintf("%s:%d:5: plugin.chat.config.entering_windw: unknown key; did you mean \"entering_window\"?\n", path, lineOf(t, body, "entering_windw"))+
			fmt.Sprintf("%s:%d:3: plugin.ghost.command: cannot run \"/nonexistent/ghost\": no such file or directory\n", path, lineOf(t, body, "/nonexistent/ghost")), stderr)
	})

	t.Run("the shipped config", func(t *testing.T) {
		dir := t.TempDir()
		src, err := os.ReadFile(filepath.Join(heraldtest.RepoRoot(), "config.hcl"))
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(filepath.Join(dir, "config.hcl"), src, 0o600))
		for _, p := range []string{"chat", "timelines", "kb", "documents"} {
			copyBinary(t, "plugins/"+p, filepath.Join(dir, "bin", "plugins", p))
		}
		copyBinary(t, "examples/echo-plugin", filepath.Join(dir, "bin", "plugins", "echo"))
		// From another working directory: command and data_dir are relative
		// to the config file.
		stdout, stderr, code := herald(t, "validate", "-config", filepath.Join(dir, "config.hcl"))
		require.Equal(t, 0, code, stderr)
		require.Contains(t, stdout, "valid (5 plugin(s)")
		require.NoDirExists(t, filepath.Join(dir, "data"), "a dry run opens no store")
		require.NoDirExists(t, filepath.Join(heraldtest.RepoRoot(), "cmd", "herald", "data"))
	})
}

// A config in its own directory names its plugin and the state directory
// relative to itself; herald is started from elsewhere (the repository
// root). Herald's log names each plugin once per line and has one time.
func TestPluginPathsRelativeToConfigAndLogKeysOnce(t *testing.T) {
	dir := t.TempDir()
	copyBinary(t, "plugins/chat", filepath.Join(dir, "plugins", "x"))
	body := preamble + "state {\n  dir = \"kept\"\n}\nplugin \"chat\" {\n  command = \"plugins/x\"\n}\n"
	path := filepath.Join(dir, "herald.hcl")
	require.NoError(t, os.WriteFile(path, []byte(body), 0o600))

	h := heraldtest.StartWithConfig(t, path, nil)
	waitPlugin(t, h, "chat", func(p pluginStatus) bool { return p.State == "running" })
	h.WaitLog(t, "chat state loaded", heraldtest.Timeout)
	require.FileExists(t, filepath.Join(dir, "kept", "chat.db"), "the plugin's State, under state.dir, relative to the config")
	h.Stop(t) // the plugin's exit is logged too

	logs := h.Logs()
	require.Contains(t, logs, "plugin process exited")
	for _, line := range strings.Split(logs, "\n") {
		require.LessOrEqual(t, strings.Count(line, " plugin="), 1, "plugin= repeated: %s", line)
		require.NotContains(t, line, "timestamp=", "a second time: %s", line)
		require.NotContains(t, line, "@module=", "the plugin's name again: %s", line)
	}
	require.Regexp(t, `chat state loaded: plugin=chat `, logs)
}

// After a kill -9 and the restart, the plugin's status has no stale error,
// and says how the previous process ended: by SIGKILL.
func TestPluginStatusAfterKill(t *testing.T) {
	h := heraldtest.Start(t, heraldtest.Options{HCL: pluginBlock("tester", "internal/testplugins/tester", "")(t)})
	before := waitPlugin(t, h, "tester", func(p pluginStatus) bool { return p.State == "running" && p.PID > 0 })
	require.NoError(t, syscall.Kill(before.PID, syscall.SIGKILL))
	waitPlugin(t, h, "tester", func(p pluginStatus) bool {
		return p.State == "running" && p.Restarts == 1 && p.PID != before.PID
	})

	status, body := h.Do(t, http.MethodGet, "/v1/plugins", nil, heraldtest.APIKey, nil)
	require.Equal(t, 200, status, string(body))
	var list struct {
		Plugins []struct {
			Name      string
			LastError string `json:"last_error"`
			LastExit  string `json:"last_exit"`
		}
	}
	require.NoError(t, json.Unmarshal(body, &list))
	require.Len(t, list.Plugins, 1)
	require.Empty(t, list.Plugins[0].LastError, "recovered: no stale error")
	require.Equal(t, "killed by signal SIGKILL", list.Plugins[0].LastExit)
	require.Contains(t, h.Logs(), `exit="killed by signal SIGKILL"`)

	stdout, stderr, code := herald(t, "plugins", "-url", h.URL, "-key", heraldtest.APIKey)
	require.Equal(t, 0, code, stderr)
	require.Contains(t, stdout, "LAST EXIT")
	require.Contains(t, stdout, "killed by signal SIGKILL")
}

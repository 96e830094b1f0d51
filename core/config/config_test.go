package config_test

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/heraldhq/herald/core/config"
)

// auth is the smallest auth block that validates. Tests append it after
// their own source so that their line numbers start at 1.
const auth = `
auth {
  token_secret = "secret"
  api_keys     = ["key"]
}
`

func parse(t *testing.T, src string) *config.Config {
	t.Helper()
	c, err := config.Parse([]byte(src), "config.hcl")
	require.NoError(t, err)
	require.NotNil(t, c)
	return c
}

// problems parses src, which must fail, and returns one line per problem.
func problems(t *testing.T, src string) []string {
	t.Helper()
	c, err := config.Parse([]byte(src), "config.hcl")
	require.Error(t, err)
	require.Nil(t, c)
	var diags config.Diagnostics
	require.True(t, errors.As(err, &diags), "error is %T, want config.Diagnostics", err)
	lines := make([]string, len(diags))
	for i, d := range diags {
		lines[i] = d.String()
	}
	require.Equal(t, strings.Join(lines, "\n"), err.Error())
	return lines
}

func TestDefaults(t *testing.T) {
	c := parse(t, auth)

	want := config.Defaults()
	want.Auth.TokenSecret = "secret"
	want.Auth.APIKeys = []string{"key"}
	want.File = "config.hcl"
	require.Equal(t, &want, c)

	require.Equal(t, "127.0.0.1:7512", c.Server.Listen)
	require.Equal(t, []string{"http://localhost:8080"}, c.Server.AllowedOrigins)
	require.True(t, c.Auth.OpenChannels)
	require.Equal(t, 30*time.Second, c.Auth.ExpiryGrace)
	require.Equal(t, 128, c.Delivery.MaxBatch)
	require.Equal(t, 2*time.Millisecond, c.Delivery.MaxDelay)
	require.Equal(t, 4096, c.Delivery.OutboxLimit)
	require.Equal(t, 1<<20, c.Delivery.OutboxBytes)
	require.Equal(t, 100, c.Limits.MaxBatchCalls)
	require.Equal(t, int64(65536), c.Limits.MaxFrameBytes)
	require.Equal(t, 50.0, c.Limits.CallsPerSecond)
	require.Equal(t, 1000, c.Limits.MaxSubscriptions)
	require.Equal(t, 10*time.Second, c.Limits.CallTimeout)
	require.Equal(t, 32, c.Limits.MaxInflightCalls)
	require.Equal(t, int64(4<<20), c.Limits.MaxPublishBytes)
	require.Equal(t, 10*time.Second, c.Delivery.WriteTimeout)
	require.Equal(t, 0, c.Delivery.Writers, "0: half the processors")
	require.True(t, c.Delivery.IOUring, "io_uring where the kernel offers it")
	require.Equal(t, 25*time.Second, c.Server.PingInterval)
	require.Equal(t, 30*time.Second, c.Server.ReadTimeout)
	require.Equal(t, 2*time.Minute, c.Server.IdleTimeout)
	require.Equal(t, 10*time.Second, c.Auth.AuthTimeout)
	require.Equal(t, 1000, c.History.Size)
	require.Equal(t, 10*time.Minute, c.History.TTL)
	require.Equal(t, int64(256<<20), c.History.MaxBytes)
	require.Equal(t, int64(16<<20), c.Limits.IdempotencyBytes)
	require.Equal(t, 50000, c.Overload.BusyConnections)
	require.Equal(t, 0.5, c.Overload.BusyOutboxRatio)
	require.Equal(t, config.Broker{Kind: "memory", Replicas: 1}, c.Broker)
	require.Equal(t, config.State{Dir: "data/state", MaxBytes: 1 << 30}, c.State)
	require.Equal(t, config.Log{Level: "info", Format: "text", PluginLinesPerSecond: 1000}, c.Log)
	require.Empty(t, c.Plugins)
}

func TestDefaultsAreIndependent(t *testing.T) {
	a := config.Defaults()
	a.Server.AllowedOrigins[0] = "changed"
	require.Equal(t, "http://localhost:8080", config.Defaults().Server.AllowedOrigins[0])
}

func TestEveryBlock(t *testing.T) {
	c := parse(t, `
server {
  listen          = "0.0.0.0:9000"
  allowed_origins = ["https://a.example", "https://b.example"]
  ping_interval   = "40s"
  read_timeout    = "7s"
  idle_timeout    = "90s"
  admin_listen    = "127.0.0.1:9001"
  admin_token     = "0123456789abcdef"
}
auth {
  token_secret  = "s3cret"
  api_keys      = ["k1", "k2"]
  anonymous     = true
  open_channels = false
  expiry_grace  = "1m"
  auth_timeout  = "3s"
}
delivery {
  max_batch     = 16
  max_delay     = "5ms"
  outbox_limit  = 100
  outbox_bytes  = 65536
  write_timeout = "4s"
  writers       = 3
  io_uring      = false
}
limits {
  max_frame_bytes    = 1024
  calls_per_second   = 2.5
  max_subscriptions  = 3
  call_timeout       = "5s"
  max_inflight_calls = 6
  max_batch_calls    = 7
  max_publish_bytes  = 2048
  idempotency_bytes  = 70000
}
history {
  size      = 0
  ttl       = "0s"
  max_bytes = 1048576
}
overload {
  busy_connections  = 10
  busy_outbox_ratio = 1
}
broker "memory" {}
log {
  level  = "debug"
  format = "json"
  plugin_lines_per_second = 50
}
plugin "echo" {
  command = "bin/plugins/echo"
  args    = ["-v", "--mode", "fast"]
  env     = { LOG_LEVEL = "debug", EMPTY = "" }
  config {
    greeting = "hi"
  }
}
plugin "bare" {
  command = "/usr/local/bin/bare"
}
`)
	require.Equal(t, config.Server{Listen: "0.0.0.0:9000", AllowedOrigins: []string{"https://a.example", "https://b.example"}, PingInterval: 40 * time.Second,
		ReadTimeout: 7 * time.Second, IdleTimeout: 90 * time.Second,
		AdminListen: "127.0.0.1:9001", AdminToken: "0123456789abcdef"}, c.Server)
	require.Equal(t, config.Auth{TokenSecret: "s3cret", APIKeys: []string{"k1", "k2"}, Anonymous: true, OpenChannels: false, ExpiryGrace: time.Minute, AuthTimeout: 3 * time.Second}, c.Auth)
	require.Equal(t, config.Delivery{MaxBatch: 16, MaxDelay: 5 * time.Millisecond, OutboxLimit: 100, OutboxBytes: 65536, WriteTimeout: 4 * time.Second, Writers: 3, IOUring: false}, c.Delivery)
	require.Equal(t, config.Limits{MaxFrameBytes: 1024, CallsPerSecond: 2.5, MaxSubscriptions: 3,
		CallTimeout: 5 * time.Second, MaxInflightCalls: 6, MaxBatchCalls: 7, MaxPublishBytes: 2048, IdempotencyBytes: 70000}, c.Limits)
	require.Equal(t, config.History{Size: 0, TTL: 0, MaxBytes: 1 << 20}, c.History)
	require.Equal(t, config.Overload{BusyConnections: 10, BusyOutboxRatio: 1}, c.Overload)
	require.Equal(t, config.Broker{Kind: "memory", Replicas: 1}, c.Broker)
	require.Equal(t, config.Log{Level: "debug", Format: "json", PluginLinesPerSecond: 50}, c.Log)

	require.Len(t, c.Plugins, 2)
	echo := c.Plugins[0]
	require.Equal(t, "echo", echo.Name)
	require.Equal(t, "bin/plugins/echo", echo.Command)
	require.Equal(t, []string{"-v", "--mode", "fast"}, echo.Args)
	require.Equal(t, map[string]string{"LOG_LEVEL": "debug", "EMPTY": ""}, echo.Env)
	require.Equal(t, map[string]any{"greeting": "hi"}, echo.Config)
	require.Len(t, echo.Hash, 64)

	bare := c.Plugins[1]
	require.Equal(t, "bare", bare.Name)
	require.Nil(t, bare.Args)
	require.Nil(t, bare.Env)
	require.NotNil(t, bare.Config, "an absent config block is an empty map, not nil")
	require.Empty(t, bare.Config)
}

func TestAnonymousNeedsNoSecret(t *testing.T) {
	c := parse(t, `auth {
  anonymous = true
  api_keys  = ["k"]
}`)
	require.True(t, c.Auth.Anonymous)
	require.Empty(t, c.Auth.TokenSecret)
}

func TestNullMeansDefault(t *testing.T) {
	c := parse(t, "delivery {\n  max_batch = null\n}\n"+auth)
	require.Equal(t, 128, c.Delivery.MaxBatch)
}

// Numbers and booleans may come from env(), which yields strings.
func TestStringsConvertToNumbersAndBools(t *testing.T) {
	t.Setenv("HERALD_TEST_BATCH", "64")
	t.Setenv("HERALD_TEST_ANON", "true")
	c := parse(t, `
delivery {
  max_batch = env("HERALD_TEST_BATCH")
}
limits {
  calls_per_second = "12.5"
}
auth {
  anonymous = env("HERALD_TEST_ANON")
  api_keys  = ["k"]
}
`)
	require.Equal(t, 64, c.Delivery.MaxBatch)
	require.Equal(t, 12.5, c.Limits.CallsPerSecond)
	require.True(t, c.Auth.Anonymous)
}

func TestEnv(t *testing.T) {
	t.Setenv("HERALD_TEST_SET", "from-env")
	t.Setenv("HERALD_TEST_EMPTY", "")
	unsetEnv(t, "HERALD_TEST_UNSET")

	tests := []struct {
		name string
		expr string
		want string
	}{
		{"set", `env("HERALD_TEST_SET")`, "from-env"},
		{"set with default", `env("HERALD_TEST_SET", "dflt")`, "from-env"},
		{"unset with default", `env("HERALD_TEST_UNSET", "dflt")`, "dflt"},
		{"empty counts as unset", `env("HERALD_TEST_EMPTY", "dflt")`, "dflt"},
		{"in a template", `"x-${env("HERALD_TEST_SET")}-y"`, "x-from-env-y"},
		{"inside a list", `["a", env("HERALD_TEST_UNSET", "b")][1]`, "b"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := parse(t, "auth {\n  token_secret = "+tt.expr+"\n  api_keys = [\"k\"]\n}\n")
			require.Equal(t, tt.want, c.Auth.TokenSecret)
		})
	}
}

func TestEnvErrors(t *testing.T) {
	t.Setenv("HERALD_TEST_EMPTY", "")
	unsetEnv(t, "HERALD_TEST_UNSET")

	tests := []struct {
		name string
		src  string
		want []string
	}{
		{
			name: "unset without default",
			src:  "auth {\n  token_secret = env(\"HERALD_TEST_UNSET\")\n  api_keys = [\"k\"]\n}\n",
			want: []string{`config.hcl:2:18: auth.token_secret: env("HERALD_TEST_UNSET"): environment variable HERALD_TEST_UNSET is not set; set it or give a default: env("HERALD_TEST_UNSET", "...")`},
		},
		{
			name: "empty without default",
			src:  "auth {\n  token_secret = \"s\"\n  api_keys = [env(\"HERALD_TEST_EMPTY\")]\n}\n",
			want: []string{`config.hcl:3:15: auth.api_keys[0]: env("HERALD_TEST_EMPTY"): environment variable HERALD_TEST_EMPTY is not set; set it or give a default: env("HERALD_TEST_EMPTY", "...")`},
		},
		{
			name: "in a list, named by its index",
			src:  "auth {\n  token_secret = \"s\"\n  api_keys = [\"k\", env(\"HERALD_TEST_UNSET\")]\n}\nplugin \"p\" {\n  command = \"x\"\n  config {\n    dirs = [env(\"HERALD_TEST_UNSET\", \"d\"), env(\"HERALD_TEST_UNSET\")]\n  }\n}\n",
			want: []string{
				`config.hcl:3:20: auth.api_keys[1]: env("HERALD_TEST_UNSET"): environment variable HERALD_TEST_UNSET is not set; set it or give a default: env("HERALD_TEST_UNSET", "...")`,
				`config.hcl:8:44: plugin.p.config.dirs[1]: env("HERALD_TEST_UNSET"): environment variable HERALD_TEST_UNSET is not set; set it or give a default: env("HERALD_TEST_UNSET", "...")`,
			},
		},
		{
			name: "in an object, named by its key",
			src:  "plugin \"p\" {\n  command = \"x\"\n  env = { A = \"ok\", B = env(\"HERALD_TEST_UNSET\") }\n}\n" + auth,
			want: []string{`config.hcl:3:25: plugin.p.env.B: env("HERALD_TEST_UNSET"): environment variable HERALD_TEST_UNSET is not set; set it or give a default: env("HERALD_TEST_UNSET", "...")`},
		},
		{
			name: "too many arguments",
			src:  "auth {\n  token_secret = env(\"A\", \"b\", \"c\")\n  api_keys = [\"k\"]\n}\n",
			want: []string{`config.hcl:2:18: auth.token_secret: env("A", ...): takes a name and at most one default, got 3 arguments`},
		},
		{
			name: "no arguments",
			src:  "auth {\n  token_secret = env()\n  api_keys = [\"k\"]\n}\n",
			want: []string{`config.hcl:2:22: auth.token_secret: Not enough function arguments: Function "env" expects at least 1 argument(s). Missing value for "name"`},
		},
		{
			name: "empty name",
			src:  "auth {\n  token_secret = env(\"\", \"x\")\n  api_keys = [\"k\"]\n}\n",
			want: []string{`config.hcl:2:18: auth.token_secret: env(""): the variable name is empty`},
		},
		{
			name: "other functions do not exist",
			src:  "auth {\n  token_secret = file(\"secret.txt\")\n  api_keys = [\"k\"]\n}\n",
			want: []string{`config.hcl:2:18: auth.token_secret: Call to unknown function: There is no function named "file"`},
		},
		{
			name: "in a plugin's config block",
			src:  "plugin \"p\" {\n  command = \"x\"\n  config {\n    dir = env(\"HERALD_TEST_UNSET\")\n  }\n}\n" + auth,
			want: []string{`config.hcl:4:11: plugin.p.config.dir: env("HERALD_TEST_UNSET"): environment variable HERALD_TEST_UNSET is not set; set it or give a default: env("HERALD_TEST_UNSET", "...")`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			require.Equal(t, tt.want, problems(t, tt.src))
		})
	}
}

// unsetEnv removes a variable for the test and restores it afterwards.
func unsetEnv(t *testing.T, name string) {
	t.Helper()
	t.Setenv(name, "") // registers the restore
	require.NoError(t, os.Unsetenv(name))
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "herald.hcl")
	require.NoError(t, os.WriteFile(path, []byte(auth), 0o600))

	c, err := config.Load(path)
	require.NoError(t, err)
	require.Equal(t, path, c.File)

	_, err = config.Load(filepath.Join(dir, "missing.hcl"))
	require.ErrorIs(t, err, fs.ErrNotExist)

	require.NoError(t, os.WriteFile(path, []byte("delivery {\n  max_batch = 0\n}\n"+auth), 0o600))
	_, err = config.Load(path)
	require.EqualError(t, err, path+":2:3: delivery.max_batch: must be at least 1 (got 0)")
}

// The shipped config.hcl must run as is, with no environment set.
func TestShippedConfig(t *testing.T) {
	unsetEnv(t, "HERALD_TOKEN_SECRET")
	unsetEnv(t, "HERALD_API_KEY")

	c, err := config.Load("../../config.hcl")
	require.NoError(t, err)
	require.Equal(t, "127.0.0.1:7512", c.Server.Listen)
	require.Equal(t, "dev-secret-change-me", c.Auth.TokenSecret)
	require.Equal(t, []string{"dev-api-key-change-me"}, c.Auth.APIKeys)
	// The four domain plugins and the SDK tutorial's echo, each running the
	// binary `make build` puts under bin/plugins/.
	var names []string
	for _, p := range c.Plugins {
		names = append(names, p.Name)
		require.Equal(t, "bin/plugins/"+p.Name, p.Command)
	}
	require.Equal(t, []string{"echo", "chat", "timelines", "kb", "documents"}, names)

	// Everything but the dev credentials and the plugins is exactly the defaults.
	want := config.Defaults()
	want.Auth.TokenSecret = c.Auth.TokenSecret
	want.Auth.APIKeys = c.Auth.APIKeys
	want.Plugins = c.Plugins
	want.File = c.File
	require.Equal(t, &want, c)

	t.Setenv("HERALD_TOKEN_SECRET", "real")
	t.Setenv("HERALD_API_KEY", "real-key")
	c, err = config.Load("../../config.hcl")
	require.NoError(t, err)
	require.Equal(t, "real", c.Auth.TokenSecret)
	require.Equal(t, []string{"real-key"}, c.Auth.APIKeys)
}

// The four domain plugin blocks (and echo's), enabled or commented out,
// must be valid once every one is enabled.
func TestShippedConfigPlugins(t *testing.T) {
	src, err := os.ReadFile("../../config.hcl")
	require.NoError(t, err)
	var b strings.Builder
	for line := range strings.Lines(string(src)) {
		// Uncomment commented-out HCL (a plugin block's lines), not prose.
		if rest, ok := strings.CutPrefix(line, "# "); ok &&
			(strings.HasPrefix(rest, `plugin "`) || strings.HasPrefix(rest, "}") || strings.HasPrefix(rest, " ")) {
			line = rest
		}
		b.WriteString(line)
	}

	c := parse(t, b.String())
	require.Len(t, c.Plugins, 5)
	require.Equal(t, "echo", c.Plugins[0].Name)
	for i, name := range []string{"chat", "timelines", "kb", "documents"} {
		p := c.Plugins[i+1]
		require.Equal(t, name, p.Name)
		require.Equal(t, "bin/plugins/"+name, p.Command)
		require.NotContains(t, p.Config, "data_dir", "plugins keep their data in Herald's State (state.dir)")
	}
}

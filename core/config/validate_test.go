package config_test

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// Each case is a config whose problems are listed in full, in order. Sources
// that do not test auth end with the valid auth block so that it adds none.
func TestValidation(t *testing.T) {
	tests := []struct {
		name string
		src  string
		want []string
	}{
		// Names.
		{
			name: "unknown block",
			src:  "sever {\n  listen = \":1\"\n}\n" + auth,
			want: []string{`config.hcl:1:1: sever: unknown block; did you mean "server"?`},
		},
		{
			name: "unknown block, nothing close",
			src:  "database {}\n" + auth,
			want: []string{`config.hcl:1:1: database: unknown block`},
		},
		{
			name: "unknown key",
			src:  "delivery {\n  max_bach = 1\n}\n" + auth,
			want: []string{`config.hcl:2:3: delivery.max_bach: unknown key; did you mean "max_batch"?`},
		},
		{
			name: "unknown key, nothing close",
			src:  "history {\n  retention = \"1h\"\n}\n" + auth,
			want: []string{`config.hcl:2:3: history.retention: unknown key; valid keys are max_bytes, size, ttl`},
		},
		{
			name: "top-level key",
			src:  "listen = \"127.0.0.1:1\"\n" + auth,
			want: []string{`config.hcl:1:1: listen: unknown key at the top level; keys go inside a block such as server { ... }`},
		},
		{
			name: "block written as a key",
			src:  "server = {}\n" + auth,
			want: []string{`config.hcl:1:1: server: is a block, not a key: write server { ... } without "="`},
		},
		{
			name: "labelled block written as a key",
			src:  "broker = \"nats\"\n" + auth,
			want: []string{`config.hcl:1:1: broker: is a block, not a key: write broker "memory" {} without "="`},
		},
		{
			name: "key written as a block",
			src:  "server {\n  listen {}\n}\n" + auth,
			want: []string{`config.hcl:2:3: server.listen: is a key, not a block: write listen = ...`},
		},
		{
			name: "nested block",
			src:  "log {\n  file {}\n}\n" + auth,
			want: []string{`config.hcl:2:3: log.file: unknown block; log takes no nested blocks`},
		},
		{
			name: "label on a block without one",
			src:  "server \"main\" {}\n" + auth,
			want: []string{`config.hcl:1:8: server: takes no label: write server { ... }`},
		},
		{
			name: "duplicate block",
			src:  "log {}\nlog {\n  level = \"debug\"\n}\n" + auth,
			want: []string{`config.hcl:2:1: log: duplicate block; the first is at config.hcl:1:1 and there can be only one`},
		},

		// Types.
		{
			name: "string for a number",
			src:  "delivery {\n  max_batch = \"many\"\n}\n" + auth,
			want: []string{`config.hcl:2:3: delivery.max_batch: must be a number (got string "many")`},
		},
		{
			name: "bool for a number",
			src:  "limits {\n  calls_per_second = true\n}\n" + auth,
			want: []string{`config.hcl:2:3: limits.calls_per_second: must be a number (got bool true)`},
		},
		{
			name: "list for a string",
			src:  "server {\n  listen = [\"127.0.0.1:1\"]\n}\n" + auth,
			want: []string{`config.hcl:2:3: server.listen: must be a string (got a list)`},
		},
		{
			name: "string for a list",
			src:  "server {\n  allowed_origins = \"http://a\"\n}\n" + auth,
			want: []string{`config.hcl:2:3: server.allowed_origins: must be a list of strings (got string "http://a")`},
		},
		{
			name: "object for a bool",
			src:  "auth {\n  anonymous = {}\n  api_keys = [\"k\"]\n}\n",
			want: []string{`config.hcl:2:3: auth.anonymous: must be true or false (got an object)`},
		},
		{
			name: "fraction for a whole number",
			src:  "history {\n  size = 2.5\n}\n" + auth,
			want: []string{`config.hcl:2:3: history.size: must be a whole number (got 2.5)`},
		},
		{
			name: "whole number too large",
			src:  "limits {\n  max_frame_bytes = 1e30\n}\n" + auth,
			want: []string{`config.hcl:2:3: limits.max_frame_bytes: is too large (got 1e+30): a whole number here is at most 9223372036854775807`},
		},
		{
			name: "whole number too large says the largest",
			src:  "limits {\n  max_subscriptions = 99999999999999999999\n}\n" + auth,
			want: []string{`config.hcl:2:3: limits.max_subscriptions: is too large (got 1e+20): a whole number here is at most 9223372036854775807`},
		},
		{
			name: "whole number too small says the smallest",
			src:  "limits {\n  max_subscriptions = -99999999999999999999\n}\n" + auth,
			want: []string{`config.hcl:2:3: limits.max_subscriptions: is too small (got -1e+20): a whole number here is at least -9223372036854775808`},
		},
		{
			name: "duration without a unit",
			src:  "history {\n  ttl = 600\n}\n" + auth,
			want: []string{`config.hcl:2:3: history.ttl: must be a duration such as "30s", "2ms" or "10m" (got "600")`},
		},
		{
			name: "duration that does not parse",
			src:  "delivery {\n  max_delay = \"2 ms\"\n}\n" + auth,
			want: []string{`config.hcl:2:3: delivery.max_delay: must be a duration such as "30s", "2ms" or "10m" (got "2 ms")`},
		},
		{
			name: "duration of the wrong type",
			src:  "auth {\n  token_secret = \"s\"\n  api_keys = [\"k\"]\n  expiry_grace = [\"30s\"]\n}\n",
			want: []string{`config.hcl:4:3: auth.expiry_grace: must be a duration such as "30s", "2ms" or "10m" (got a list)`},
		},
		{
			name: "unknown variable",
			src:  "log {\n  level = debug\n}\n" + auth,
			want: []string{`config.hcl:2:11: log.level: Variables not allowed: Variables may not be used here`},
		},

		{
			name: "number literal out of range",
			src:  "delivery {\n  max_batch = 1e400777777\n}\n" + auth,
			want: []string{`config.hcl:2:3: delivery.max_batch: number out of range: keep numbers within ±1e1000`},
		},
		{
			name: "number literal out of range beside other problems",
			src:  "limits {\n  calls_per_second = 1e1001\n  max_batch_calls = 0\n}\nlog {\n  nonsense = 1e-2000\n}\n" + auth,
			want: []string{
				`config.hcl:2:3: limits.calls_per_second: number out of range: keep numbers within ±1e1000`,
				`config.hcl:3:3: limits.max_batch_calls: must be at least 1 (got 0)`,
				`config.hcl:6:3: log.nonsense: unknown key; valid keys are format, level, plugin_lines_per_second`,
				`config.hcl:6:14: number out of range: keep numbers within ±1e1000`,
			},
		},
		{
			name: "string that reads as a number out of range",
			src:  "delivery {\n  max_batch = \"-0.5e-99999\"\n}\n" + auth,
			want: []string{`config.hcl:2:3: delivery.max_batch: number out of range: keep numbers within ±1e1000`},
		},
		{
			name: "arithmetic out of range",
			src:  "limits {\n  calls_per_second = 1e1000 * 1e1000\n}\n" + auth,
			want: []string{`config.hcl:2:3: limits.calls_per_second: number out of range: keep numbers within ±1e1000`},
		},
		{
			name: "number beyond float64",
			src:  "limits {\n  calls_per_second = 1e1000\n}\n" + auth,
			want: []string{`config.hcl:2:3: limits.calls_per_second: is too large (got 1e+1000): a number here is within ±1.8e308`},
		},

		// auth.
		{
			name: "token secret required",
			src:  "auth {\n  api_keys = [\"k\"]\n}\n",
			want: []string{`config.hcl:1:1: auth.token_secret: is required unless anonymous = true; set it, for example token_secret = env("HERALD_TOKEN_SECRET")`},
		},
		{
			name: "token secret empty",
			src:  "auth {\n  token_secret = \"\"\n  api_keys = [\"k\"]\n}\n",
			want: []string{`config.hcl:2:3: auth.token_secret: is required unless anonymous = true; set it, for example token_secret = env("HERALD_TOKEN_SECRET")`},
		},
		{
			name: "no auth block at all",
			src:  "log {}\n",
			want: []string{
				`config.hcl:1:1: auth.token_secret: is required unless anonymous = true; set it, for example token_secret = env("HERALD_TOKEN_SECRET")`,
				`config.hcl:1:1: auth.api_keys: needs at least one key for the HTTP API, for example api_keys = [env("HERALD_API_KEY")]`,
			},
		},
		{
			name: "api keys empty list",
			src:  "auth {\n  anonymous = true\n  api_keys = []\n}\n",
			want: []string{`config.hcl:3:3: auth.api_keys: needs at least one key for the HTTP API, for example api_keys = [env("HERALD_API_KEY")]`},
		},
		{
			name: "api key empty string",
			src:  "auth {\n  token_secret = \"s\"\n  api_keys = [\"k\",\n    \"\"]\n}\n",
			want: []string{`config.hcl:4:5: auth.api_keys[1]: must not be empty`},
		},
		{
			name: "api key null",
			src:  "auth {\n  token_secret = \"s\"\n  api_keys = [null]\n}\n",
			want: []string{`config.hcl:3:15: auth.api_keys[0]: must be a string, not null`},
		},
		{
			name: "negative expiry grace",
			src:  "auth {\n  token_secret = \"s\"\n  api_keys = [\"k\"]\n  expiry_grace = \"-1s\"\n}\n",
			want: []string{`config.hcl:4:3: auth.expiry_grace: must be 0 or more (got -1s)`},
		},

		// Ranges.
		{
			name: "max batch",
			src:  "delivery {\n  max_batch = 0\n}\n" + auth,
			want: []string{`config.hcl:2:3: delivery.max_batch: must be at least 1 (got 0)`},
		},
		{
			name: "outbox limit",
			src:  "delivery {\n  outbox_limit = -5\n}\n" + auth,
			want: []string{`config.hcl:2:3: delivery.outbox_limit: must be at least 1 (got -5)`},
		},
		{
			name: "ping interval",
			src:  "server {\n  ping_interval = \"-1s\"\n}\n" + auth,
			want: []string{`config.hcl:2:3: server.ping_interval: must be 0 or more (got -1s)`},
		},
		{
			name: "read timeout",
			src:  "server {\n  read_timeout = \"0s\"\n}\n" + auth,
			want: []string{`config.hcl:2:3: server.read_timeout: must be greater than 0 (got 0s)`},
		},
		{
			name: "idle timeout",
			src:  "server {\n  idle_timeout = \"-1m\"\n}\n" + auth,
			want: []string{`config.hcl:2:3: server.idle_timeout: must be greater than 0 (got -1m0s)`},
		},
		{
			name: "writers",
			src:  "delivery {\n  writers = -1\n}\n" + auth,
			want: []string{`config.hcl:2:3: delivery.writers: must be 0 or more (got -1)`},
		},
		{
			name: "plugin log lines",
			src:  "log {\n  plugin_lines_per_second = -1\n}\n" + auth,
			want: []string{`config.hcl:2:3: log.plugin_lines_per_second: must be 0 or more (got -1)`},
		},
		{
			name: "max delay",
			src:  "delivery {\n  max_delay = \"-2ms\"\n}\n" + auth,
			want: []string{`config.hcl:2:3: delivery.max_delay: must be 0 or more (got -2ms)`},
		},
		{
			name: "max frame bytes",
			src:  "limits {\n  max_frame_bytes = 1023\n}\n" + auth,
			want: []string{`config.hcl:2:3: limits.max_frame_bytes: must be at least 1024 (got 1023)`},
		},
		{
			name: "calls per second",
			src:  "limits {\n  calls_per_second = 0\n}\n" + auth,
			want: []string{`config.hcl:2:3: limits.calls_per_second: must be greater than 0 (got 0)`},
		},
		{
			name: "max subscriptions",
			src:  "limits {\n  max_subscriptions = 0\n}\n" + auth,
			want: []string{`config.hcl:2:3: limits.max_subscriptions: must be at least 1 (got 0)`},
		},
		{
			name: "history size",
			src:  "history {\n  size = -1\n}\n" + auth,
			want: []string{`config.hcl:2:3: history.size: must be 0 or more (got -1)`},
		},
		{
			name: "history ttl",
			src:  "history {\n  ttl = \"-10m\"\n}\n" + auth,
			want: []string{`config.hcl:2:3: history.ttl: must be 0 or more (got -10m0s)`},
		},
		{
			name: "busy connections",
			src:  "overload {\n  busy_connections = 0\n}\n" + auth,
			want: []string{`config.hcl:2:3: overload.busy_connections: must be at least 1 (got 0)`},
		},
		{
			name: "busy outbox ratio zero",
			src:  "overload {\n  busy_outbox_ratio = 0\n}\n" + auth,
			want: []string{`config.hcl:2:3: overload.busy_outbox_ratio: must be greater than 0 and at most 1 (got 0)`},
		},
		{
			name: "busy outbox ratio above one",
			src:  "overload {\n  busy_outbox_ratio = 1.01\n}\n" + auth,
			want: []string{`config.hcl:2:3: overload.busy_outbox_ratio: must be greater than 0 and at most 1 (got 1.01)`},
		},

		// log.
		{
			name: "log level",
			src:  "log {\n  level = \"verbose\"\n}\n" + auth,
			want: []string{`config.hcl:2:3: log.level: must be one of "trace", "debug", "info", "warn", "error" (got "verbose")`},
		},
		{
			name: "log level close to a valid one",
			src:  "log {\n  level = \"warning\"\n}\n" + auth,
			want: []string{`config.hcl:2:3: log.level: must be one of "trace", "debug", "info", "warn", "error" (got "warning"); did you mean "warn"?`},
		},
		{
			name: "log format",
			src:  "log {\n  format = \"yaml\"\n}\n" + auth,
			want: []string{`config.hcl:2:3: log.format: must be "text" or "json" (got "yaml")`},
		},

		// server.
		{
			name: "listen without a port",
			src:  "server {\n  listen = \"127.0.0.1\"\n}\n" + auth,
			want: []string{`config.hcl:2:3: server.listen: must be host:port, such as "127.0.0.1:7512" or ":7512" (got "127.0.0.1")`},
		},
		{
			name: "listen with a named port",
			src:  "server {\n  listen = \"localhost:http\"\n}\n" + auth,
			want: []string{`config.hcl:2:3: server.listen: must be host:port, such as "127.0.0.1:7512" or ":7512", with a port number from 0 to 65535 (got "localhost:http")`},
		},
		{
			name: "listen port out of range",
			src:  "server {\n  listen = \"[::1]:70000\"\n}\n" + auth,
			want: []string{`config.hcl:2:3: server.listen: must be host:port, such as "127.0.0.1:7512" or ":7512", with a port from 0 to 65535 (got "[::1]:70000")`},
		},
		{
			name: "state dir empty",
			src:  "state {\n  dir = \"\"\n}\n" + auth,
			want: []string{`config.hcl:2:3: state.dir: must not be empty: the directory where Herald keeps every plugin's State, such as dir = "data/state" (relative to the config file); remove the key for that default`},
		},
		{
			name: "empty origin",
			src:  "server {\n  allowed_origins = [\"http://a\", \"\"]\n}\n" + auth,
			want: []string{`config.hcl:2:34: server.allowed_origins[1]: must not be empty`},
		},

		// The operator listener and the admin page (issue 17).
		{
			name: "admin listen not host:port",
			src:  "server {\n  admin_listen = \"7513\"\n}\n" + auth,
			want: []string{`config.hcl:2:3: server.admin_listen: must be host:port, such as "127.0.0.1:7513" (got "7513"); remove the key to serve /metrics and the admin page on server.listen`},
		},
		{
			name: "admin listen same as listen",
			src:  "server {\n  listen = \"127.0.0.1:7512\"\n  admin_listen = \"127.0.0.1:7512\"\n}\n" + auth,
			want: []string{`config.hcl:3:3: server.admin_listen: must differ from server.listen ("127.0.0.1:7512"): it is a second listener; remove the key to serve everything on server.listen`},
		},
		{
			name: "admin token written but empty",
			src:  "server {\n  admin_token = \"\"\n}\n" + auth,
			want: []string{`config.hcl:2:3: server.admin_token: is empty; set it (for example admin_token = env("HERALD_ADMIN_TOKEN")) or remove the key, which turns the admin page off`},
		},
		{
			name: "admin token too short",
			src:  "server {\n  admin_token = \"short\"\n}\n" + auth,
			want: []string{`config.hcl:2:3: server.admin_token: must be at least 16 characters (got 5): it guards the admin page, publish form included`},
		},

		// broker.
		{
			name: "unknown broker kind",
			src:  "broker \"redis\" {}\n" + auth,
			want: []string{`config.hcl:1:8: broker: unknown kind "redis"; use "memory" or "nats"`},
		},
		{
			name: "broker kind typo",
			src:  "broker \"nat\" {}\n" + auth,
			want: []string{`config.hcl:1:8: broker: unknown kind "nat"; did you mean "nats"?`},
		},
		{
			name: "broker without kind",
			src:  "broker {}\n" + auth,
			want: []string{`config.hcl:1:1: broker: needs exactly one kind label: write broker "memory" {} or broker "nats" { url = "nats://127.0.0.1:4222" }`},
		},
		{
			name: "nats needs a url",
			src:  "broker \"nats\" {}\n" + auth,
			want: []string{`config.hcl:1:1: broker.url: is required with broker "nats": one or more NATS servers, comma-separated, e.g. url = "nats://127.0.0.1:4222"`},
		},
		{
			name: "nats urls are checked one by one, replicas are 1 to 5, and state.dir is for one node",
			src:  "broker \"nats\" {\n  url = \"nats://a:4222, http://b\"\n  replicas = 7\n}\nstate {\n  dir = \"s\"\n}\n" + auth,
			want: []string{
				`config.hcl:2:3: broker.url: must be NATS server URLs with a host and the scheme nats://, tls://, ws:// or wss://, comma-separated, e.g. url = "nats://127.0.0.1:4222" (got "nats://a:4222, http://b")`,
				`config.hcl:3:3: broker.replicas: must be 1 to 5 NATS servers (JetStream's range; 3 survives one server's loss) (got 7)`,
				`config.hcl:6:3: state.dir: is for one node: with broker "nats" every plugin's State lives in JetStream, shared by all nodes; remove state.dir`,
			},
		},
		{
			name: "memory with url",
			src:  "broker \"memory\" {\n  url = \"nats://x\"\n}\n" + auth,
			want: []string{`config.hcl:2:3: broker.url: unknown key; broker "memory" takes no keys`},
		},
		{
			name: "two brokers",
			src:  "broker \"memory\" {}\nbroker \"nats\" {\n  url = \"nats://x\"\n}\n" + auth,
			want: []string{`config.hcl:2:1: broker: duplicate block; the first is at config.hcl:1:1 and there can be only one`},
		},

		// plugin.
		{
			name: "plugin without a name",
			src:  "plugin {\n  command = \"x\"\n}\n" + auth,
			want: []string{`config.hcl:1:1: plugin: needs exactly one name label: write plugin "chat" { command = "bin/plugins/chat" }`},
		},
		{
			name: "plugin name with a dot",
			src:  "plugin \"my.chat\" {\n  command = \"x\"\n}\n" + auth,
			want: []string{`config.hcl:1:8: plugin.my.chat: invalid name "my.chat": start with a letter, then up to 63 letters, digits, "_" or "-"`},
		},
		{
			name: "plugin named rpc",
			src:  "plugin \"rpc\" {\n  command = \"x\"\n}\n" + auth,
			want: []string{`config.hcl:1:8: plugin.rpc: the name "rpc" is reserved: JSON-RPC 2.0 keeps methods named rpc.* for itself; choose another name`},
		},
		{
			name: "plugin without a command",
			src:  "plugin \"chat\" {\n  args = [\"-v\"]\n}\n" + auth,
			want: []string{`config.hcl:1:1: plugin.chat.command: is required: the plugin's executable, for example command = "bin/plugins/chat"`},
		},
		{
			name: "duplicate plugin",
			src:  "plugin \"chat\" {\n  command = \"a\"\n}\nplugin \"chat\" {\n  command = \"b\"\n}\n" + auth,
			want: []string{`config.hcl:4:1: plugin.chat: duplicate plugin "chat"; the first is at config.hcl:1:1`},
		},
		{
			name: "plugin unknown key",
			src:  "plugin \"chat\" {\n  command = \"x\"\n  argz = []\n}\n" + auth,
			want: []string{`config.hcl:3:3: plugin.chat.argz: unknown key; did you mean "args"?`},
		},
		{
			name: "plugin unknown block",
			src:  "plugin \"chat\" {\n  command = \"x\"\n  settings {}\n}\n" + auth,
			want: []string{`config.hcl:3:3: plugin.chat.settings: unknown block; a plugin takes only a config { ... } block`},
		},
		{
			name: "plugin config as a key",
			src:  "plugin \"chat\" {\n  command = \"x\"\n  config = {}\n}\n" + auth,
			want: []string{`config.hcl:3:3: plugin.chat.config: is a block, not a key: write config { ... } without "="`},
		},
		{
			name: "plugin env as a block",
			src:  "plugin \"chat\" {\n  command = \"x\"\n  env {}\n}\n" + auth,
			want: []string{`config.hcl:3:3: plugin.chat.env: is a key, not a block: write env = ...`},
		},
		{
			name: "plugin two config blocks",
			src:  "plugin \"chat\" {\n  command = \"x\"\n  config {}\n  config {}\n}\n" + auth,
			want: []string{`config.hcl:4:3: plugin.chat.config: duplicate block; the first is at config.hcl:3:3 and there can be only one`},
		},
		{
			name: "plugin env of the wrong type",
			src:  "plugin \"chat\" {\n  command = \"x\"\n  env = [\"A=b\"]\n}\n" + auth,
			want: []string{`config.hcl:3:3: plugin.chat.env: must be an object of strings, such as { LOG_LEVEL = "debug" } (got a list)`},
		},
		{
			name: "plugin env with a bad name",
			src:  "plugin \"chat\" {\n  command = \"x\"\n  env = { \"A=B\" = \"c\" }\n}\n" + auth,
			want: []string{`config.hcl:3:3: plugin.chat.env: invalid variable name "A=B"`},
		},
		{
			name: "plugin args of the wrong type",
			src:  "plugin \"chat\" {\n  command = \"x\"\n  args = \"-v\"\n}\n" + auth,
			want: []string{`config.hcl:3:3: plugin.chat.args: must be a list of strings (got string "-v")`},
		},
		{
			name: "plugin config key and block of one name",
			src:  "plugin \"chat\" {\n  command = \"x\"\n  config {\n    store = \"a\"\n    store {}\n  }\n}\n" + auth,
			want: []string{`config.hcl:5:5: plugin.chat.config.store: is both a key and a block; use one or the other`},
		},
		{
			name: "plugin config duplicate labelled block",
			src:  "plugin \"chat\" {\n  command = \"x\"\n  config {\n    index \"a\" {}\n    index \"a\" {}\n  }\n}\n" + auth,
			want: []string{`config.hcl:5:5: plugin.chat.config.index: duplicate block index "a"`},
		},
		{
			name: "plugin config mixed label counts",
			src:  "plugin \"chat\" {\n  command = \"x\"\n  config {\n    index \"a\" {}\n    index {}\n  }\n}\n" + auth,
			want: []string{`config.hcl:5:5: plugin.chat.config.index: has 0 labels but the block at config.hcl:4:5 has 1; write every index block with the same number of labels`},
		},

		// A plugin's data_dir is not state.dir, however written.
		{
			name: "plugin data_dir is state.dir",
			src:  "state {\n  dir = \"data/state\"\n}\nplugin \"chat\" {\n  command = \"x\"\n  config {\n    data_dir = \"./data/state/\"\n  }\n}\n" + auth,
			want: []string{`config.hcl:7:5: plugin.chat.config.data_dir: is state.dir ("data/state"), where Herald keeps every plugin's State as <plugin>.db; give the plugin a directory of its own, such as "data/chat"`},
		},

		// Syntax.
		{
			name: "syntax error",
			src:  "server {\n  listen = \n}\n",
			want: []string{`config.hcl:2:12: Invalid expression: Expected the start of an expression, but found an invalid expression token`},
		},
		{
			name: "duplicate key",
			src:  "log {\n  level = \"info\"\n  level = \"debug\"\n}\n" + auth,
			want: []string{`config.hcl:3:3: log.level: is set twice (first at config.hcl:2:3): remove one`},
		},
		{
			name: "duplicate key beside other problems",
			src:  "log {\n  level = \"info\"\n  level = \"debug\"\n}\nplugin \"p\" {\n  command = \"/bin/true\"\n  config {\n    a = 1\n    a = 2\n  }\n}\ndelivery {\n  max_batch = 0\n}\n" + auth,
			want: []string{
				`config.hcl:3:3: log.level: is set twice (first at config.hcl:2:3): remove one`,
				`config.hcl:9:5: plugin.p.config.a: is set twice (first at config.hcl:8:5): remove one`,
				`config.hcl:13:3: delivery.max_batch: must be at least 1 (got 0)`,
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			require.Equal(t, tt.want, problems(t, tt.src))
		})
	}
}

// A file with many problems reports all of them, top to bottom.
func TestValidationReportsEverything(t *testing.T) {
	src := `server {
  listen = "nowhere"
}
auth {
  api_keys = ["", "k"]
}
delivery {
  max_batch    = 0
  outbox_limit = 0
  max_dealy    = "1ms"
}
limits {
  calls_per_second = -1
}
broker "nats" {}
log {
  level = "loud"
}
plugin "chat" {
  command = "a"
}
plugin "chat" {}
`
	require.Equal(t, []string{
		`config.hcl:2:3: server.listen: must be host:port, such as "127.0.0.1:7512" or ":7512" (got "nowhere")`,
		`config.hcl:4:1: auth.token_secret: is required unless anonymous = true; set it, for example token_secret = env("HERALD_TOKEN_SECRET")`,
		`config.hcl:5:15: auth.api_keys[0]: must not be empty`,
		`config.hcl:8:3: delivery.max_batch: must be at least 1 (got 0)`,
		`config.hcl:9:3: delivery.outbox_limit: must be at least 1 (got 0)`,
		`config.hcl:10:3: delivery.max_dealy: unknown key; did you mean "max_delay"?`,
		`config.hcl:13:3: limits.calls_per_second: must be greater than 0 (got -1)`,
		`config.hcl:15:1: broker.url: is required with broker "nats": one or more NATS servers, comma-separated, e.g. url = "nats://127.0.0.1:4222"`,
		`config.hcl:17:3: log.level: must be one of "trace", "debug", "info", "warn", "error" (got "loud")`,
		`config.hcl:22:1: plugin.chat: duplicate plugin "chat"; the first is at config.hcl:19:1`,
	}, problems(t, src))
}

// Valid edge values pass.
func TestValidationAccepts(t *testing.T) {
	for _, src := range []string{
		"server {\n  listen = \":7512\"\n}\n",
		"server {\n  listen = \"127.0.0.1:0\"\n}\n",
		"server {\n  listen = \"[::1]:7512\"\n}\n",
		"server {\n  allowed_origins = []\n}\n",
		"limits {\n  max_frame_bytes = 1024\n  calls_per_second = 0.1\n}\n",
		"overload {\n  busy_outbox_ratio = 1\n}\n",
		"history {\n  size = 0\n  ttl = \"0s\"\n}\n",
		"delivery {\n  max_delay = \"0s\"\n}\n",
		"log {\n  level = \"trace\"\n}\n",
		"broker \"memory\" {}\n",
	} {
		t.Run(src, func(t *testing.T) {
			parse(t, src+auth)
		})
	}
}

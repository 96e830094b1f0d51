package config

import (
	"fmt"
	"net"
	"net/url"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

var (
	logLevels  = []string{"trace", "debug", "info", "warn", "error"}
	logFormats = []string{"text", "json"}
)

// validate checks the decoded values, defaults included, for the rules that
// a type cannot express. A key that already failed to decode is skipped: its
// error says enough.
func (d *decoder) validate(c *Config) {
	check := func(path string, ok bool, format string, args ...any) {
		if !ok && !d.failed[path] {
			d.errorf(d.posOf(path), path, format, args...)
		}
	}
	atLeast := func(path string, got, min int64) {
		check(path, got >= min, "must be at least %d (got %d)", min, got)
	}
	notNegative := func(path string, got int64, shown string) {
		check(path, got >= 0, "must be 0 or more (got %s)", shown)
	}

	check("server.listen", validListen(c.Server.Listen),
		`must be host:port, such as "127.0.0.1:7512" or ":7512"%s (got %q)`, portRange(c.Server.Listen), c.Server.Listen)
	notNegative("server.ping_interval", int64(c.Server.PingInterval), c.Server.PingInterval.String())
	check("server.read_timeout", c.Server.ReadTimeout > 0, "must be greater than 0 (got %s)", c.Server.ReadTimeout)
	check("server.idle_timeout", c.Server.IdleTimeout > 0, "must be greater than 0 (got %s)", c.Server.IdleTimeout)
	d.validateTLS(c)
	d.validateAdmin(c)
	for i, o := range c.Server.AllowedOrigins {
		check(fmt.Sprintf("server.allowed_origins[%d]", i), o != "", "must not be empty")
	}

	// Whether the secret is needed depends on anonymous; if that did not
	// decode, its own error is the one to fix first.
	if !c.Auth.Anonymous && !d.failed["auth.anonymous"] {
		check("auth.token_secret", c.Auth.TokenSecret != "",
			`is required unless anonymous = true; set it, for example token_secret = env("HERALD_TOKEN_SECRET")`)
	}
	if !d.failed["auth.api_keys"] {
		check("auth.api_keys", len(c.Auth.APIKeys) > 0,
			`needs at least one key for the HTTP API, for example api_keys = [env("HERALD_API_KEY")]`)
		for i, k := range c.Auth.APIKeys {
			check(fmt.Sprintf("auth.api_keys[%d]", i), k != "", "must not be empty")
		}
	}
	notNegative("auth.expiry_grace", int64(c.Auth.ExpiryGrace), c.Auth.ExpiryGrace.String())
	check("auth.auth_timeout", c.Auth.AuthTimeout > 0, "must be greater than 0 (got %s)", c.Auth.AuthTimeout)

	atLeast("delivery.max_batch", int64(c.Delivery.MaxBatch), 1)
	notNegative("delivery.max_delay", int64(c.Delivery.MaxDelay), c.Delivery.MaxDelay.String())
	atLeast("delivery.outbox_limit", int64(c.Delivery.OutboxLimit), 1)
	atLeast("delivery.outbox_bytes", int64(c.Delivery.OutboxBytes), 16<<10)
	notNegative("delivery.writers", int64(c.Delivery.Writers), fmt.Sprint(c.Delivery.Writers))
	check("delivery.write_timeout", c.Delivery.WriteTimeout > 0, "must be greater than 0 (got %s)", c.Delivery.WriteTimeout)

	atLeast("limits.max_frame_bytes", c.Limits.MaxFrameBytes, 1024)
	check("limits.calls_per_second", c.Limits.CallsPerSecond > 0,
		"must be greater than 0 (got %s)", formatFloat(c.Limits.CallsPerSecond))
	atLeast("limits.max_subscriptions", int64(c.Limits.MaxSubscriptions), 1)
	check("limits.call_timeout", c.Limits.CallTimeout > 0, "must be greater than 0 (got %s)", c.Limits.CallTimeout)
	atLeast("limits.max_inflight_calls", int64(c.Limits.MaxInflightCalls), 1)
	atLeast("limits.max_batch_calls", int64(c.Limits.MaxBatchCalls), 1)
	atLeast("limits.max_publish_bytes", c.Limits.MaxPublishBytes, 1024)
	atLeast("limits.idempotency_bytes", c.Limits.IdempotencyBytes, 65536)

	notNegative("history.size", int64(c.History.Size), strconv.Itoa(c.History.Size))
	notNegative("history.ttl", int64(c.History.TTL), c.History.TTL.String())
	atLeast("history.max_bytes", c.History.MaxBytes, 65536)

	atLeast("overload.busy_connections", int64(c.Overload.BusyConnections), 1)
	check("overload.busy_outbox_ratio", c.Overload.BusyOutboxRatio > 0 && c.Overload.BusyOutboxRatio <= 1,
		"must be greater than 0 and at most 1 (got %s)", formatFloat(c.Overload.BusyOutboxRatio))

	if c.Broker.Kind == "nats" {
		if strings.TrimSpace(c.Broker.URL) == "" {
			check("broker.url", false,
				`is required with broker "nats": one or more NATS servers, comma-separated, e.g. url = "nats://127.0.0.1:4222"`)
		} else {
			check("broker.url", natsURLs(c.Broker.URL) != nil,
				`must be NATS server URLs with a host and the scheme nats://, tls://, ws:// or wss://, comma-separated, e.g. url = "nats://127.0.0.1:4222" (got %q)`, c.Broker.URL)
		}
		check("broker.replicas", c.Broker.Replicas >= 1 && c.Broker.Replicas <= 5,
			"must be 1 to 5 NATS servers (JetStream's range; 3 survives one server's loss) (got %d)", c.Broker.Replicas)
		check("state.dir", !c.State.DirSet,
			`is for one node: with broker "nats" every plugin's State lives in JetStream, shared by all nodes; remove state.dir`)
	}
	if c.Broker.Kind != "nats" {
		// An empty dir would be resolved to nothing at all: every plugin's
		// State would then fail to open, again and again, at run time.
		check("state.dir", strings.TrimSpace(c.State.Dir) != "",
			`must not be empty: the directory where Herald keeps every plugin's State, such as dir = "data/state" (relative to the config file); remove the key for that default`)
	}
	atLeast("state.max_bytes", c.State.MaxBytes, 65536)

	check("log.level", slices.Contains(logLevels, c.Log.Level),
		"must be one of %s (got %q)%s", quoteList(logLevels), c.Log.Level, suggest(c.Log.Level, logLevels, ""))
	check("log.format", slices.Contains(logFormats, c.Log.Format),
		`must be "text" or "json" (got %q)`, c.Log.Format)
	notNegative("log.plugin_lines_per_second", int64(c.Log.PluginLinesPerSecond), fmt.Sprint(c.Log.PluginLinesPerSecond))

	for _, p := range c.Plugins {
		path := "plugin." + p.Name + ".command"
		check(path, strings.TrimSpace(p.Command) != "",
			`is required: the plugin's executable, for example command = "bin/plugins/%s"`, p.Name)
		// A plugin's data_dir is its own: where the core keeps every
		// plugin's State (<state.dir>/<plugin>.db) a plugin's files would
		// meet it, and a plugin that checks for files of its earlier
		// versions there (chat, timelines) would take the State for one.
		if dir, ok := p.Config["data_dir"].(string); ok && dir != "" && c.Broker.Kind != "nats" {
			check("plugin."+p.Name+".config.data_dir", filepath.Clean(c.Resolve(dir)) != filepath.Clean(c.Resolve(c.State.Dir)),
				"is state.dir (%q), where Herald keeps every plugin's State as <plugin>.db; give the plugin a directory of its own, such as %q",
				c.State.Dir, filepath.Join(filepath.Dir(filepath.Clean(c.State.Dir)), p.Name))
		}
	}
}

// portRange says what is wrong with a listen address's port when it is a
// number out of range, and nothing otherwise.
func portRange(s string) string {
	_, port, err := net.SplitHostPort(s)
	if err != nil {
		return ""
	}
	if _, err := strconv.Atoi(port); err == nil {
		return ", with a port from 0 to 65535"
	}
	if port != "" {
		return ", with a port number from 0 to 65535"
	}
	return ""
}

// validListen accepts what net.Listen("tcp", ...) would: an optional host
// and a numeric port (0 picks a free one, which tests use).
func validListen(s string) bool {
	_, port, err := net.SplitHostPort(s)
	if err != nil {
		return false
	}
	n, err := strconv.Atoi(port)
	return err == nil && n >= 0 && n <= 65535
}

func formatFloat(f float64) string {
	return strconv.FormatFloat(f, 'g', -1, 64)
}

func quoteList(ss []string) string {
	q := make([]string, len(ss))
	for i, s := range ss {
		q[i] = strconv.Quote(s)
	}
	return strings.Join(q, ", ")
}

// natsURLs splits broker.url into its servers, or returns nil if one is
// not a nats://, tls:// (or ws[s]://) URL with a host.
func natsURLs(list string) []string {
	var out []string
	for _, u := range strings.Split(list, ",") {
		u = strings.TrimSpace(u)
		parsed, err := url.Parse(u)
		if u == "" || err != nil || parsed.Host == "" ||
			!slices.Contains([]string{"nats", "tls", "ws", "wss"}, parsed.Scheme) {
			return nil
		}
		out = append(out, u)
	}
	return out
}

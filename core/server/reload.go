package server

import (
	"reflect"
	"strings"
	"unicode"

	"github.com/hashicorp/go-hclog"

	"github.com/heraldhq/herald/core/auth"
	"github.com/heraldhq/herald/core/config"
	"github.com/heraldhq/herald/core/transport"
)

// Reload applies what can change while connections stay open (reloadable):
// the auth secret, API keys and timing, the allowed origins, the limits
// and the delivery bounds (those a connection takes when it opens, such as
// calls_per_second, max_frame_bytes and the outbox and batching bounds,
// apply to the connections opened after), the overload
// thresholds, the log level, the admin token, and the TLS certificate (read
// again from its files even when their names did not change, so a renewed
// certificate is picked up). Every other key that differs from the running
// config is named in a warning, since it takes effect only on restart:
// addresses, the broker, history (the broker sizes it), delivery.writers
// and delivery.io_uring (the writers are shared by every connection), auth.anonymous (it decides what every open connection may do), and
// limits.call_timeout and idempotency_bytes (the plugin host and the
// idempotency table are built with them). Plugins are reloaded by the
// plugin host. It returns the keys applied (those that
// changed since the previous reload) and the keys that need a restart.
// SIGHUP calls it from one goroutine at a time.
func (s *Server) Reload(cfg *config.Config) (applied, restart []string) {
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	prev := s.reloaded
	if prev == nil {
		prev = s.cfg
	}
	s.origins.Store(auth.NewOrigins(cfg.Server.AllowedOrigins))
	s.log.SetLevel(hclog.LevelFromString(cfg.Log.Level))
	tok := cfg.Server.AdminToken
	s.admin.token.Store(&tok)
	s.tokens.Store(auth.NewTokens(cfg.Auth.TokenSecret))
	s.apiKeys.Store(auth.NewAPIKeys(cfg.Auth.APIKeys))
	live := liveConfig(s.cfg, cfg)
	s.conf.Store(live)
	d := live.Delivery
	s.connOpts.Store(s.topts.Derive(&transport.Options{MaxBatch: d.MaxBatch, MaxDelay: d.MaxDelay,
		OutboxLimit: d.OutboxLimit, OutboxBytes: d.OutboxBytes, WriteTimeout: d.WriteTimeout}))
	for _, key := range changedKeys(prev, cfg) {
		if reloadable[key] {
			applied = append(applied, key)
		}
	}
	for _, key := range changedKeys(s.cfg, cfg) {
		if !reloadable[key] && !(key == "server.tls" && s.cert != nil && cfg.Server.TLS != nil) {
			restart = append(restart, key) // TLS turned on or off needs a new listener
		}
	}
	if s.cert != nil && cfg.Server.TLS != nil {
		s.cert.certFile, s.cert.keyFile = cfg.Resolve(cfg.Server.TLS.CertFile), cfg.Resolve(cfg.Server.TLS.KeyFile)
		if err := s.cert.load(); err != nil {
			s.log.Error("reload: TLS certificate not reloaded; serving the previous one", "error", err)
		} else {
			applied = append(applied, "server.tls (certificate read again)")
		}
	}
	s.reloaded = cfg
	if len(applied) > 0 {
		s.log.Info("reload: applied", "keys", strings.Join(applied, ", "))
	}
	if len(restart) > 0 {
		s.log.Warn("reload: these keys changed but take effect only after a restart; the running values stay", "keys", strings.Join(restart, ", "))
	}
	return applied, restart
}

// reloadable are the keys Reload applies at once.
var reloadable = map[string]bool{
	"server.allowed_origins": true, "server.admin_token": true, "log.level": true,
	"auth.token_secret": true, "auth.api_keys": true, "auth.open_channels": true,
	"auth.expiry_grace": true, "auth.auth_timeout": true,
	"limits.max_frame_bytes": true, "limits.calls_per_second": true, "limits.max_subscriptions": true,
	"limits.max_inflight_calls": true, "limits.max_batch_calls": true, "limits.max_publish_bytes": true,
	"overload.busy_connections": true, "overload.busy_outbox_ratio": true,
	"delivery.max_batch": true, "delivery.max_delay": true, "delivery.outbox_limit": true,
	"delivery.outbox_bytes": true, "delivery.write_timeout": true,
}

// live is the config that reads of reloadable keys see: the one the server
// started with, with what the last reload applied.
func (s *Server) live() *config.Config { return s.conf.Load() }

// liveConfig is running with the reloadable keys of next.
func liveConfig(running, next *config.Config) *config.Config {
	c := *running
	c.Auth.TokenSecret, c.Auth.APIKeys = next.Auth.TokenSecret, next.Auth.APIKeys
	c.Auth.OpenChannels, c.Auth.ExpiryGrace, c.Auth.AuthTimeout = next.Auth.OpenChannels, next.Auth.ExpiryGrace, next.Auth.AuthTimeout
	callTimeout, idem := c.Limits.CallTimeout, c.Limits.IdempotencyBytes
	c.Limits = next.Limits
	c.Limits.CallTimeout, c.Limits.IdempotencyBytes = callTimeout, idem
	c.Overload = next.Overload
	writers, uring := c.Delivery.Writers, c.Delivery.IOUring // the writers are shared by every connection
	c.Delivery = next.Delivery
	c.Delivery.Writers, c.Delivery.IOUring = writers, uring
	c.Server.AllowedOrigins, c.Server.AdminToken = next.Server.AllowedOrigins, next.Server.AdminToken
	c.Log.Level = next.Log.Level
	return &c
}

// changedKeys lists, as config key paths (server.allowed_origins), the
// keys whose values differ between two configs; plugin blocks and the file
// name are not compared (the plugin host reloads plugins), nor fields that
// are no config key (config.IsKey: State.DirSet only records whether dir
// was written, so writing the default changes nothing).
func changedKeys(a, b *config.Config) []string {
	var out []string
	av, bv := reflect.ValueOf(*a), reflect.ValueOf(*b)
	t := av.Type()
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if f.Name == "Plugins" || f.Name == "File" {
			continue
		}
		block := snake(f.Name)
		if f.Type.Kind() != reflect.Struct {
			if !reflect.DeepEqual(av.Field(i).Interface(), bv.Field(i).Interface()) {
				out = append(out, block)
			}
			continue
		}
		for j := 0; j < f.Type.NumField(); j++ {
			key := block + "." + snake(f.Type.Field(j).Name)
			if config.IsKey(key) && !reflect.DeepEqual(av.Field(i).Field(j).Interface(), bv.Field(i).Field(j).Interface()) {
				out = append(out, key)
			}
		}
	}
	return out
}

// snake turns a Go field name into its config key: AllowedOrigins →
// allowed_origins, APIKeys → api_keys, TLS → tls.
func snake(name string) string {
	var b strings.Builder
	r := []rune(name)
	for i, c := range r {
		if unicode.IsUpper(c) && i > 0 && (unicode.IsLower(r[i-1]) || (i+1 < len(r) && unicode.IsLower(r[i+1]))) {
			b.WriteByte('_')
		}
		b.WriteRune(unicode.ToLower(c))
	}
	return b.String()
}

package server

import (
	"reflect"
	"strings"
	"unicode"

	"github.com/hashicorp/go-hclog"

	"github.com/heraldhq/herald/core/auth"
	"github.com/heraldhq/herald/core/config"
)

// Reload applies what can change while connections stay open: the allowed
// origins, the log level, and the TLS certificate (read again from its
// files even when their names did not change, so a renewed certificate is
// picked up). Every other key that differs from the running config is
// named in a warning, since it takes effect only on restart; plugins are
// reloaded by the plugin host. It returns the keys applied (those that
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
var reloadable = map[string]bool{"server.allowed_origins": true, "log.level": true, "server.admin_token": true}

// changedKeys lists, as config key paths (server.allowed_origins), the
// keys whose values differ between two configs; plugin blocks and the file
// name are not compared (the plugin host reloads plugins).
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
			if !reflect.DeepEqual(av.Field(i).Field(j).Interface(), bv.Field(i).Field(j).Interface()) {
				out = append(out, block+"."+snake(f.Type.Field(j).Name))
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

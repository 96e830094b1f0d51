package hostcheck

import (
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/heraldhq/herald/sdk/confine"
	pluginpb "github.com/heraldhq/herald/sdk/proto"
)

// What a plugin's manifest may not claim because the core has it: channel
// prefixes of the core's own channels, and HTTP paths the core serves
// before the plugins' routes (which are its fallback), where a plugin's
// route would never be reached. Herald refuses such a manifest when it
// starts the plugin (and `herald validate` reports it); what one plugin
// claims against another's is the host's to check, not this package's.

// Prefix says what is wrong with a manifest's channel prefix, or "". A
// channel is 1 to 255 bytes of printable ASCII without spaces, and its
// prefix is what precedes its first ":".
func Prefix(pre string) string {
	switch {
	case pre == "":
		return "invalid channel prefix \"\": a prefix names the part of a channel before its \":\""
	case confine.CoreChannel(pre): // "config" (servers_busy), "$server" (server notifications)
		return fmt.Sprintf("claims channel prefix %q, which is Herald's own", pre)
	case len(pre) > 254:
		return fmt.Sprintf("invalid channel prefix %q: longer than a channel name may be", pre)
	}
	for i := 0; i < len(pre); i++ {
		if c := pre[i]; c <= ' ' || c > '~' || c == ':' {
			return fmt.Sprintf("invalid channel prefix %q: printable ASCII only, without spaces or \":\"", pre)
		}
	}
	return ""
}

// ExpiryKept refuses a manifest that keeps on expiry (sdk.ExpiryKeeper) a
// prefix it does not own.
func ExpiryKept(name string, man *pluginpb.Manifest) error {
	for _, p := range man.GetExpiryKeptPrefixes() {
		if !slices.Contains(man.GetPrefixes(), p) {
			return fmt.Errorf("plugin %q: expiry_kept_prefixes names %q, which is not one of its prefixes %v", name, p, man.GetPrefixes())
		}
	}
	return nil
}

// corePaths are requests the core answers itself (core/server's mux), one
// per path it serves; a plugin route that matches one of them, or whose
// requests one of corePatterns catches, collides with the core.
var corePaths = []string{
	"/ws", "/v1/publish", "/v1/publish/ws", "/v1/plugins", "/v1/plugins/p/m",
	"/healthz", "/readyz", "/metrics", "/admin", "/admin/", "/admin/api/overview",
}

// corePatterns are the core's patterns, without methods: the core answers
// every method on them (405 for the wrong one).
var corePatterns = []string{
	"/ws", "/v1/publish", "/v1/publish/ws", "/v1/plugins", "/v1/plugins/{plugin}/{method}",
	"/healthz", "/readyz", "/metrics", "/admin", "/admin/",
}

var coreMux = func() *http.ServeMux {
	mux := http.NewServeMux()
	for _, p := range corePatterns {
		mux.Handle(p, http.NotFoundHandler())
	}
	return mux
}()

// CoreCollision reports the core path that a plugin route (method and
// pattern, a valid http.ServeMux pattern) collides with, or "".
func CoreCollision(method, pattern string) string {
	if method == "" {
		method = http.MethodGet
	}
	// The route's own requests, a wildcard standing for any segment.
	host, path := "", pattern
	if !strings.HasPrefix(path, "/") {
		if i := strings.IndexByte(path, '/'); i >= 0 {
			host, path = path[:i], path[i:]
		}
	}
	if r := sampleRequest(method, host, samplePath(path)); r != nil {
		if _, p := coreMux.Handler(r); p != "" {
			return p
		}
	}
	// The core's requests, as the route would see them.
	mine := http.NewServeMux()
	mine.Handle(method+" "+pattern, http.NotFoundHandler())
	for _, cp := range corePaths {
		if r := sampleRequest(method, host, cp); r != nil {
			if _, p := mine.Handler(r); p != "" {
				return cp
			}
		}
	}
	return ""
}

func sampleRequest(method, host, path string) *http.Request {
	if host == "" {
		host = "herald.invalid"
	}
	r, err := http.NewRequest(method, "http://"+host+path, nil)
	if err != nil {
		return nil // a path that is no URL: no sample
	}
	return r
}

// samplePath is a path that pattern path matches: each wildcard replaced
// by one segment ("{$}" by nothing).
func samplePath(path string) string {
	var b strings.Builder
	for {
		i := strings.IndexByte(path, '{')
		if i < 0 {
			b.WriteString(path)
			return b.String()
		}
		j := strings.IndexByte(path[i:], '}')
		if j < 0 {
			b.WriteString(path)
			return b.String()
		}
		b.WriteString(path[:i])
		if path[i:i+j+1] != "{$}" {
			b.WriteString("x")
		}
		path = path[i+j+1:]
	}
}

// Register adds a route's pattern ("METHOD /path") to mux as Herald mounts
// it, and returns why it cannot be mounted ("" when it can): a malformed
// pattern, or one that matches the same requests as a pattern mux has
// (net/http refuses both by panicking).
func Register(mux *http.ServeMux, pattern string) (problem string) {
	defer func() {
		if r := recover(); r != nil {
			problem = fmt.Sprint(r)
		}
	}()
	mux.Handle(pattern, http.NotFoundHandler())
	return ""
}

// Manifest lists what Herald refuses in one plugin's manifest on its own,
// in the words `herald validate` reports it with (after the plugin's
// `command` key): a prefix that is invalid or Herald's own, an
// ExpiryKeeper prefix it does not own, a route pattern that is malformed,
// claimed twice, or collides with Herald's own paths. What it shares with
// other plugins is the host's to check.
func Manifest(name string, man *pluginpb.Manifest) []string {
	var out []string
	if err := ExpiryKept(name, man); err != nil {
		out = append(out, strings.TrimPrefix(err.Error(), fmt.Sprintf("plugin %q: ", name)))
	}
	for _, pre := range man.GetPrefixes() {
		if msg := Prefix(pre); msg != "" {
			out = append(out, msg)
		}
	}
	mux := http.NewServeMux()
	seen := map[string]bool{}
	for _, r := range man.GetRoutes() {
		pattern := r.GetMethod() + " " + r.GetPattern()
		if seen[pattern] {
			out = append(out, fmt.Sprintf("claims HTTP route %q, which plugin %q claims too", pattern, name))
			continue
		}
		seen[pattern] = true
		if p := Register(mux, pattern); p != "" {
			out = append(out, fmt.Sprintf("HTTP route %q: %s", pattern, p))
			continue
		}
		if cp := CoreCollision(r.GetMethod(), r.GetPattern()); cp != "" {
			out = append(out, fmt.Sprintf("claims HTTP route %q, which collides with Herald's own %s", pattern, cp))
		}
	}
	return out
}

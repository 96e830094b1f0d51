package pluginhost

import (
	"fmt"
	"net/http"
	"strings"

	"github.com/heraldhq/herald/sdk/confine"
)

// What a plugin's manifest may not claim because the core has it: channel
// prefixes of the core's own channels, and HTTP paths the core serves
// before the plugins' routes (which are its fallback), where a plugin's
// route would never be reached.

// checkPrefix says what is wrong with a manifest's channel prefix, or "".
// A channel is 1 to 255 bytes of printable ASCII without spaces, and its
// prefix is what precedes its first ":".
func checkPrefix(pre string) string {
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

// coreCollision reports the core path that a plugin route (method and
// pattern, a valid http.ServeMux pattern) collides with, or "".
func coreCollision(method, pattern string) string {
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

package pluginhost

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestCheckPrefix(t *testing.T) {
	for pre, want := range map[string]string{
		"chat": "", "network_timeline": "", "a.b-c": "",
		"":                       "invalid channel prefix",
		"config":                 "Herald's own",
		"$server":                "Herald's own",
		"a b":                    "printable ASCII",
		"a:b":                    "printable ASCII",
		"caf\xc3\xa9":            "printable ASCII",
		strings.Repeat("x", 255): "longer than a channel name",
	} {
		got := checkPrefix(pre)
		if want == "" {
			require.Empty(t, got, pre)
		} else {
			require.Contains(t, got, want, pre)
		}
	}
}

// A plugin route that the core's own paths would shadow (they are served
// first) collides; one beside them does not.
func TestCoreCollision(t *testing.T) {
	for _, tc := range []struct{ method, pattern, want string }{
		{"GET", "/v1/kb/{kbid}/notifications", ""},
		{"GET", "/v1/tester/{id}/stream", ""},
		{"POST", "/hooks/{name}", ""},
		{"GET", "/ws", "/ws"},
		{"POST", "/ws", "/ws"},
		{"GET", "/v1/publish", "/v1/publish"},
		{"GET", "/v1/publish/ws", "/v1/publish/ws"},
		{"GET", "/v1/plugins", "/v1/plugins"},
		{"POST", "/v1/plugins/{p}/{m}", "/v1/plugins/{plugin}/{method}"},
		{"GET", "/v1/plugins/kb/{m}", "/v1/plugins/{plugin}/{method}"},
		{"GET", "/healthz", "/healthz"},
		{"GET", "/readyz", "/readyz"},
		{"GET", "/metrics", "/metrics"},
		{"GET", "/admin", "/admin"},
		{"GET", "/admin/{x...}", "/admin/"},
		{"GET", "/admin/api/plugins", "/admin/"},
		{"GET", "/{page}", "/ws"},
		{"GET", "/", "/ws"},
		{"GET", "/{$}", ""},
	} {
		require.Equal(t, tc.want, coreCollision(tc.method, tc.pattern), "%s %s", tc.method, tc.pattern)
	}
}

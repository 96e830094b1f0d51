package pluginhost

import (
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/require"

	pluginpb "github.com/heraldhq/herald/sdk/proto"
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

// A refusal's reason is cut to maxRefusalReason bytes, at a rune start, so
// that a plugin cannot make one refusal a frame of megabytes.
func TestRefusalReasonIsBounded(t *testing.T) {
	asked := []string{"p:a"}
	long := strings.Repeat("é", maxRefusalReason) // 2 bytes a rune
	rs, err := refusals("p", asked, []*pluginpb.Refusal{{Channel: "p:a", Reason: long}})
	require.Nil(t, err)
	require.Len(t, rs, 1)
	require.LessOrEqual(t, len(rs[0].Reason), maxRefusalReason+len("... (cut)"))
	require.True(t, strings.HasSuffix(rs[0].Reason, "... (cut)"))
	require.True(t, utf8.ValidString(rs[0].Reason))
	rs, _ = refusals("p", asked, []*pluginpb.Refusal{{Channel: "p:a", Reason: "short"}})
	require.Equal(t, "short", rs[0].Reason)
}

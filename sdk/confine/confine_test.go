package confine_test

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/heraldhq/herald/sdk/confine"
)

func TestOwns(t *testing.T) {
	r := confine.New([]string{"chat", "p"}, []string{"news", "alerts:*"})
	for ch, want := range map[string]bool{
		"chat:group:1": true, "p:x": true, "p:": true,
		"chat": false, "chatx:1": false, "news": false, "alerts:a": false, "config": false,
	} {
		require.Equal(t, want, r.Owns(ch), ch)
	}
	require.True(t, r.OwnsPrefix("chat"))
	require.False(t, r.OwnsPrefix("alerts"), "an emit_channels pattern owns nothing")
}

func TestMayEmit(t *testing.T) {
	r := confine.New([]string{"p"}, []string{"news", "alerts:*", "config", "co*"})
	for _, tc := range []struct {
		channel string
		want    bool
		why     string
	}{
		{"p:x", true, "own prefix"},
		{"p:", true, "own prefix, empty rest"},
		{"p", false, "a prefix alone is an open channel, not the plugin's"},
		{"px:1", false, "not the prefix p"},
		{"news", true, "exact name"},
		{"news:1", false, "exact names are exact"},
		{"newsroom", false, "exact names are exact"},
		{"alerts:a", true, "pattern"},
		{"alerts:", true, "pattern, nothing after it"},
		{"alerts", false, `"alerts:*" needs the colon`},
		{"colour", true, `"co*"`},
		{"config", true, "listed by its exact name"},
		{"$server", false, "the core's, never"},
		{"chat:1", false, "another plugin's namespace, not listed"},
	} {
		require.Equal(t, tc.want, r.MayEmit(tc.channel), "%s: %s", tc.channel, tc.why)
	}

	// No pattern reaches the core's channels; only an exact "config" does.
	q := confine.New(nil, []string{"co*", "$*"})
	require.False(t, q.MayEmit("config"))
	require.False(t, q.MayEmit("$server"))
	require.True(t, q.MayEmit("$other"))

	var none confine.Rule
	require.False(t, none.MayEmit("x"), "the zero Rule allows nothing")
	require.False(t, none.Owns("x:1"))
}

func TestCoreChannel(t *testing.T) {
	require.True(t, confine.CoreChannel("config"))
	require.True(t, confine.CoreChannel("$server"))
	require.False(t, confine.CoreChannel("configs"))
	require.False(t, confine.CoreChannel("news"))
}

func TestEmitRefusal(t *testing.T) {
	require.Equal(t,
		`plugin "digest" may not emit to channel "sport": a plugin emits to the channels of its own prefixes and to those its plugin block lists in emit_channels; nothing of this batch was published`,
		confine.EmitRefusal("digest", "sport"))
}

func TestCheckEntry(t *testing.T) {
	for _, ok := range []string{"news", "alerts:*", "alerts*", "config", "a:b:c", strings.Repeat("x", 255)} {
		require.NoError(t, confine.CheckEntry(ok), ok)
	}
	for entry, want := range map[string]string{
		"":                       "empty",
		"*":                      `"*" alone is not allowed`,
		"a*b":                    "only at the end",
		"a**":                    "only at the end",
		"$server":                "herald's own channel",
		"has space":              "printable ASCII",
		"tab\t":                  "printable ASCII",
		"é":                      "printable ASCII",
		strings.Repeat("x", 256): "the limit is 255",
	} {
		err := confine.CheckEntry(entry)
		require.Error(t, err, entry)
		require.Contains(t, err.Error(), want, entry)
	}
}

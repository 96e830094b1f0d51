package sdk_test

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/heraldhq/herald/sdk"
	pluginpb "github.com/heraldhq/herald/sdk/proto"
)

func TestKeySegment(t *testing.T) {
	for _, tc := range []struct{ id, want string }{
		{"kb1", "kb1"},
		{"6a1b-_Z", "6a1b-_Z"},
		{"a.b~c", "a%2Eb%7Ec"},
		{"%", "%25"},
		{"..", "%2E%2E"},
		{"a/b c", "a%2Fb%20c"},
		{"é", "%C3%A9"},
	} {
		require.Equal(t, tc.want, sdk.KeySegment(tc.id), tc.id)
		back, ok := sdk.ParseKeySegment(tc.want)
		require.True(t, ok, tc.want)
		require.Equal(t, tc.id, back)
	}
	long := strings.Repeat(".", 128) // 384 bytes escaped
	h := sdk.KeySegment(long)
	require.True(t, strings.HasPrefix(h, "~"))
	require.Len(t, h, 65)
	require.NotEqual(t, h, sdk.KeySegment(strings.Repeat(".", 127)+"~"))
	_, ok := sdk.ParseKeySegment(h)
	require.False(t, ok, "a hashed segment cannot be read back")
	for _, bad := range []string{"", "%", "%4", "%zz", "a%G1"} {
		_, ok := sdk.ParseKeySegment(bad)
		require.False(t, ok, bad)
	}
}

// Every id gives a valid State key segment, and every one that is not
// hashed reads back as itself.
func FuzzKeySegment(f *testing.F) {
	for _, s := range []string{"", "a", "a.b", "%", strings.Repeat("~", 85), strings.Repeat("~", 86), "\x00\xff/ "} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, id string) {
		seg := sdk.KeySegment(id)
		require.NoError(t, pluginpb.ValidStateKey(seg), "id %q", id)
		require.NotContains(t, seg, ".")
		if back, ok := sdk.ParseKeySegment(seg); ok {
			require.Equal(t, id, back)
		} else {
			require.True(t, strings.HasPrefix(seg, "~"), "only a hashed segment is unreadable: %q", seg)
		}
	})
}

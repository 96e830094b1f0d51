package pluginhost

import (
	"testing"

	pluginpb "github.com/heraldhq/herald/sdk/proto"
	"github.com/stretchr/testify/require"
)

func TestCheckExpiryKeptRefusesPrefixesThePluginDoesNotOwn(t *testing.T) {
	own := &pluginpb.Manifest{Prefixes: []string{"a", "b"}, ExpiryKeptPrefixes: []string{"b"}}
	require.NoError(t, checkExpiryKept("p", own))
	require.NoError(t, checkExpiryKept("p", &pluginpb.Manifest{Prefixes: []string{"a"}}))
	err := checkExpiryKept("p", &pluginpb.Manifest{Prefixes: []string{"a"}, ExpiryKeptPrefixes: []string{"chat"}})
	require.ErrorContains(t, err, `expiry_kept_prefixes names "chat"`)
}

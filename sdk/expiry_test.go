package sdk_test

import (
	"testing"

	"github.com/heraldhq/herald/sdk"
	"github.com/heraldhq/herald/sdk/sdktest"
	"github.com/stretchr/testify/require"
)

// keeper owns two prefixes and keeps one of them across token expiry.
type keeper struct{}

func (keeper) Manifest() sdk.Manifest {
	return sdk.Manifest{Name: "k", Prefixes: []string{"kept", "strict"}}
}

func (keeper) ExpiryKeptPrefixes() []string { return []string{"kept"} }

var _ sdk.ExpiryKeeper = keeper{}

func TestExpiryKeptPrefixesReachTheManifest(t *testing.T) {
	require.Equal(t, []string{"kept"}, sdktest.Start(t, keeper{}, nil).Manifest().ExpiryKeptPrefixes)
	require.Empty(t, sdktest.Start(t, &testPlugin{}, nil).Manifest().ExpiryKeptPrefixes,
		"without the hook every subscription needs a live token")
}

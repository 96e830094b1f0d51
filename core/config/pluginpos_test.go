package config_test

import (
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/heraldhq/herald/core/config"
)

// A plugin block keeps where each of its keys was written, so that the
// plugin host can report a plugin's config error at its position, and the
// directory of its file, against which relative paths resolve.
func TestPluginKeepsKeyPositionsAndDir(t *testing.T) {
	p := pluginConfig(t, `    max_choice = 3
    store {
      path = "x"
    }
    index "by_user" {
      fields = ["a"]
    }`)
	at := func(key string) string {
		pos, ok := p.PosOf(key)
		require.True(t, ok, key)
		return pos.String()
	}
	require.Equal(t, "config.hcl:2:3", at("command"))
	require.Equal(t, "config.hcl:4:5", at("config.max_choice"))
	require.Equal(t, "config.hcl:6:7", at("config.store.path"))
	require.Equal(t, "config.hcl:6:7", at("config.store[0].path"), "an index has no position of its own")
	require.Equal(t, "config.hcl:9:7", at("config.index.by_user.fields"), "labels sit between a block and its keys")
	require.Equal(t, "config.hcl:5:5", at("config.store.absent"), "the nearest enclosing key")
	require.Equal(t, "config.hcl:1:1", at("nothing"), "the block itself")

	abs, err := filepath.Abs(".")
	require.NoError(t, err)
	require.Equal(t, abs, p.Dir)

	_, ok := config.Plugin{Name: "code"}.PosOf("command")
	require.False(t, ok, "a block built in code has no positions")
}

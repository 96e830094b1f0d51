package config_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/heraldhq/herald/core/config"
)

// LoadPartial hands back the plugin blocks without a problem of their own
// alongside the file's other problems, so that validate can report the
// plugins' errors in the same run.
func TestLoadPartialKeepsTheGoodPluginBlocks(t *testing.T) {
	path := filepath.Join(t.TempDir(), "herald.hcl")
	require.NoError(t, os.WriteFile(path, []byte(`auth {
  token_secret = "s"
  api_keys = ["k"]
}
delivery {
  max_batch = 0
}
plugin "good" {
  command = "bin/good"
}
plugin "bad" {
  command = 3
  args = "x"
}
`), 0o600))
	cfg, err := config.LoadPartial(path)
	var diags config.Diagnostics
	require.ErrorAs(t, err, &diags)
	require.Contains(t, err.Error(), "delivery.max_batch")
	require.Contains(t, err.Error(), "plugin.bad.args")
	require.NotNil(t, cfg)
	require.Len(t, cfg.Plugins, 1)
	require.Equal(t, "good", cfg.Plugins[0].Name)
	require.Equal(t, "bin/good", cfg.Plugins[0].Command)

	_, err = config.Load(path)
	require.Equal(t, diags, err, "Load reports the same problems")

	require.NoError(t, os.WriteFile(path, []byte("auth {"), 0o600))
	cfg, err = config.LoadPartial(path)
	require.Error(t, err)
	require.Nil(t, cfg, "nothing to check when the file does not parse")
}

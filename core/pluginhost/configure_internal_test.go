package pluginhost

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/heraldhq/herald/core/config"
)

// A Configure error of several problems, one per line as the SDK joins
// them, is reported at each key; one that is not entirely of that form is
// left to be reported at command, whole.
func TestConfigureErrorPlacesEachProblemAtItsKey(t *testing.T) {
	cfg := config.Plugin{Name: "kb", Pos: map[string]config.Position{
		"":                      {File: "t.hcl", Line: 5, Column: 1},
		"config":                {File: "t.hcl", Line: 7, Column: 3},
		"config.index_replicas": {File: "t.hcl", Line: 8, Column: 5},
		"config.max_streams":    {File: "t.hcl", Line: 9, Column: 5},
	}}
	err := configureError(cfg, "config.index_replicas: must be from 1 to 64, got 65\nconfig.max_streams: must be from 1 to 1000000, got 0\nconfig: something else")
	require.EqualError(t, err, "t.hcl:8:5: plugin.kb.config.index_replicas: must be from 1 to 64, got 65\n"+
		"t.hcl:9:5: plugin.kb.config.max_streams: must be from 1 to 1000000, got 0\n"+
		"t.hcl:7:3: plugin.kb.config: something else")

	require.EqualError(t, configureError(cfg, "config.index_replicas: must be from 1 to 64, got 65"),
		"t.hcl:8:5: plugin.kb.config.index_replicas: must be from 1 to 64, got 65")
	require.NoError(t, configureError(cfg, "config.index_replicas: bad\nopen store: disk full"))
	require.NoError(t, configureError(cfg, "open store: disk full"))
}

package sdk_test

import (
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/heraldhq/herald/sdk"
)

type storeCfg struct {
	Path string `mapstructure:"path"`
}

type decodeCfg struct {
	MaxChoice int            `mapstructure:"max_choice"`
	Window    time.Duration  `mapstructure:"window"`
	Store     storeCfg       `mapstructure:"store"`
	Indexes   []storeCfg     `mapstructure:"index"`
	Named     map[string]int `mapstructure:"named"`
}

func decodeErr(t *testing.T, m map[string]any) *sdk.ConfigError {
	t.Helper()
	var c decodeCfg
	err := sdk.NewConfig(m).Decode(&c)
	var ce *sdk.ConfigError
	require.True(t, errors.As(err, &ce), "%v", err)
	return ce
}

func TestDecodeErrorsNameTheKeyPath(t *testing.T) {
	ce := decodeErr(t, map[string]any{"max_choise": 3})
	require.Equal(t, "config.max_choise: unknown key; did you mean \"max_choice\"?", ce.Error())
	require.Equal(t, "max_choise", ce.Key)

	ce = decodeErr(t, map[string]any{"store": map[string]any{"pth": "x"}})
	require.Equal(t, "config.store.pth: unknown key; did you mean \"path\"?", ce.Error())

	ce = decodeErr(t, map[string]any{"index": []any{map[string]any{"path": "a"}, map[string]any{"zzzzzz": "b"}}})
	require.Equal(t, "config.index[1].zzzzzz: unknown key; valid keys are path", ce.Error())

	ce = decodeErr(t, map[string]any{"window": "soon"})
	require.Equal(t, "window", ce.Key)
	require.Equal(t, `config.window: expected a duration such as "30s", got "soon" (units: ns, us, ms, s, m, h)`, ce.Error())
	require.NotContains(t, ce.Error(), "time.Duration")

	ce = decodeErr(t, map[string]any{"max_choice": "many"})
	require.Equal(t, "max_choice", ce.Key)
	require.NotContains(t, ce.Error(), "decodeCfg")
}

func TestDecodeAcceptsValidKeysAndDryRunIsSaid(t *testing.T) {
	var c decodeCfg
	cfg := sdk.NewDryRunConfig(map[string]any{"MAX_CHOICE": 2, "window": "3s", "named": map[string]any{"a": 1}})
	require.NoError(t, cfg.Decode(&c))
	require.Equal(t, 2, c.MaxChoice)
	require.Equal(t, 3*time.Second, c.Window)
	require.True(t, cfg.DryRun())
	require.False(t, sdk.NewConfig(nil).DryRun())
}

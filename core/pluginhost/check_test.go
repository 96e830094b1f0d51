package pluginhost_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/heraldhq/herald/core/config"
)

// Check starts a plugin in a dry run and reports its config errors by key
// path: with the key's position when the block came from a file, with the
// plugin's name when it was built in code.
func TestCheckReportsConfigErrorsByKey(t *testing.T) {
	checkGoroutines(t)
	m := newManager(t, newRecorder(), nil)

	good := block(t, "tester", "tester", nil)
	good.Config = map[string]any{"version": "9"}
	require.NoError(t, m.Check(bg, good))
	require.Empty(t, m.Status(), "a check registers nothing")

	bad := block(t, "tester", "tester", nil)
	bad.Config = map[string]any{"versoin": "9"}
	require.EqualError(t, m.Check(bg, bad), `plugin "tester": config.versoin: unknown key; did you mean "version"?`)

	bad.Pos = map[string]config.Position{"": {File: "h.hcl", Line: 1, Column: 1}, "config.versoin": {File: "h.hcl", Line: 4, Column: 5}}
	require.EqualError(t, m.Check(bg, bad), `h.hcl:4:5: plugin.tester.config.versoin: unknown key; did you mean "version"?`)

	// A plugin that reads no config (echo has no Configure hook) refuses a
	// key rather than accept and ignore it.
	echo := block(t, "echo", "echo", nil)
	require.NoError(t, m.Check(bg, echo))
	echo.Config = map[string]any{"foo": 1}
	require.ErrorContains(t, m.Check(bg, echo), `config.foo: unknown key`)
}

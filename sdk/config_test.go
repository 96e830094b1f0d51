package sdk_test

import (
	"encoding/json"
	"errors"
	"strings"
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

type kindsCfg struct {
	Window  time.Duration    `mapstructure:"window"`
	Replica int              `mapstructure:"replicas"`
	Limit   uint             `mapstructure:"limit"`
	Ratio   float64          `mapstructure:"ratio"`
	On      bool             `mapstructure:"on"`
	Name    string           `mapstructure:"name"`
	Tags    []string         `mapstructure:"tags"`
	Waits   []time.Duration  `mapstructure:"waits"`
	Opt     *time.Duration   `mapstructure:"opt"`
	Named   map[string]int   `mapstructure:"named"`
	Store   *storeCfg        `mapstructure:"store"`
	Per     map[string]int64 `mapstructure:"per"`
}

// Values arrive from the host as a JSON decoder with UseNumber makes them:
// a number is a json.Number. Each wrong value is a ConfigError at its key
// saying what to give, never a panic or a Go parser's message.
func TestDecodeWrongValuesSayWhatTheKeyTakes(t *testing.T) {
	for _, tc := range []struct {
		in   map[string]any
		want string
	}{
		{map[string]any{"window": json.Number("3")}, `config.window: expected a duration such as "3s", got the number 3: give it as a string with a unit (units: ns, us, ms, s, m, h)`},
		{map[string]any{"window": 3}, `config.window: expected a duration such as "3s", got the number 3: give it as a string with a unit (units: ns, us, ms, s, m, h)`},
		{map[string]any{"window": true}, `config.window: expected a duration such as "30s", got true`},
		{map[string]any{"window": []any{"1s"}}, `config.window: expected a duration such as "30s", got a list`},
		{map[string]any{"opt": json.Number("2")}, `config.opt: expected a duration such as "2s", got the number 2: give it as a string with a unit (units: ns, us, ms, s, m, h)`},
		{map[string]any{"waits": []any{"1s", json.Number("5")}}, `config.waits[1]: expected a duration such as "5s", got the number 5: give it as a string with a unit (units: ns, us, ms, s, m, h)`},
		{map[string]any{"replicas": "two"}, `config.replicas: expected a whole number, got "two"`},
		{map[string]any{"replicas": json.Number("2.5")}, `config.replicas: expected a whole number, got 2.5`},
		{map[string]any{"replicas": json.Number("99999999999999999999")}, `config.replicas: expected a whole number, got 99999999999999999999 (out of range)`},
		{map[string]any{"limit": json.Number("-1")}, `config.limit: expected a whole number, 0 or more, got -1`},
		{map[string]any{"ratio": "half"}, `config.ratio: expected a number, got "half"`},
		{map[string]any{"on": "yes please"}, `config.on: expected true or false, got "yes please"`},
		{map[string]any{"name": map[string]any{"a": "b"}}, `config.name: expected a string, got a block`},
		{map[string]any{"named": map[string]any{"a": "x"}}, `config.named[a]: expected a whole number, got "x"`},
		{map[string]any{"per": map[string]any{"a": json.Number("1.5")}}, `config.per[a]: expected a whole number, got 1.5`},
		{map[string]any{"store": "x"}, `config.store: expected a block, got "x"`},
		{map[string]any{"store": json.Number("3")}, `config.store: expected a block, got 3`},
		{map[string]any{"store": []any{map[string]any{"path": "a"}, map[string]any{"path": "b"}}}, `config.store: expected one block, got 2: write it once`},
		{map[string]any{"named": "x"}, `config.named: expected a block, got "x"`},
	} {
		var c kindsCfg
		var err error
		require.NotPanics(t, func() { err = sdk.NewConfig(tc.in).Decode(&c) }, "%v", tc.in)
		var ce *sdk.ConfigError
		require.True(t, errors.As(err, &ce), "%v: %v", tc.in, err)
		require.Equal(t, tc.want, ce.Error(), "%v", tc.in)
		require.NotContains(t, ce.Error(), "strconv")
	}
}

func TestDecodeRightValuesOfEachKind(t *testing.T) {
	var c kindsCfg
	require.NoError(t, sdk.NewConfig(map[string]any{
		"window": "3s", "replicas": json.Number("2"), "limit": "4", "ratio": json.Number("0.5"), "on": true,
		"name": "n", "tags": "a,b", "waits": []any{"1s", "2ms"}, "opt": "1m",
		"store": map[string]any{"path": "p"}, "named": []any{map[string]any{"a": 1}, map[string]any{"b": 2}},
	}).Decode(&c))
	require.Equal(t, "p", c.Store.Path)
	require.Equal(t, map[string]int{"a": 1, "b": 2}, c.Named)
	require.Equal(t, 3*time.Second, c.Window)
	require.Equal(t, 2, c.Replica)
	require.Equal(t, uint(4), c.Limit)
	require.Equal(t, 0.5, c.Ratio)
	require.Equal(t, []string{"a", "b"}, c.Tags)
	require.Equal(t, []time.Duration{time.Second, 2 * time.Millisecond}, c.Waits)
	require.Equal(t, time.Minute, *c.Opt)
}

type validatedCfg struct {
	Replicas int           `mapstructure:"replicas"`
	Window   time.Duration `mapstructure:"window"`
	Name     string        `mapstructure:"name"`
}

// Validate reports every bad key, each as a ConfigError at its key, and
// one problem that is not a ConfigError.
func (c *validatedCfg) Validate() error {
	var errs []error
	if c.Replicas < 1 || c.Replicas > 64 {
		errs = append(errs, &sdk.ConfigError{Key: "replicas", Message: "must be from 1 to 64"})
	}
	if c.Window > time.Hour {
		errs = append(errs, &sdk.ConfigError{Key: "window", Message: "must be at most 1h"})
	}
	if c.Name == "bad" {
		errs = append(errs, errors.New("name must not be bad"))
	}
	return errors.Join(errs...)
}

// problems is each problem of a Decode error, one per line.
func problems(err error) []string {
	if err == nil {
		return nil
	}
	return strings.Split(err.Error(), "\n")
}

// Decode reports every problem, not the first: unknown keys, values that
// do not decode and what Validate refuses, each a ConfigError at its key,
// one per line.
func TestDecodeReportsEveryProblem(t *testing.T) {
	var c decodeCfg
	err := sdk.NewConfig(map[string]any{"max_choise": 3, "store": map[string]any{"pth": "x"}, "window": "soon", "max_choice": "many"}).Decode(&c)
	require.Equal(t, []string{
		`config.max_choise: unknown key; did you mean "max_choice"?`,
		`config.store.pth: unknown key; did you mean "path"?`,
		`config.max_choice: expected a whole number, got "many"`,
		`config.window: expected a duration such as "30s", got "soon" (units: ns, us, ms, s, m, h)`,
	}, problems(err))
	var ce *sdk.ConfigError
	require.ErrorAs(t, err, &ce)
	// One problem is the ConfigError itself.
	var one decodeCfg
	_, isCE := sdk.NewConfig(map[string]any{"window": "soon"}).Decode(&one).(*sdk.ConfigError)
	require.True(t, isCE)

	v := validatedCfg{Replicas: 2}
	err = sdk.NewConfig(map[string]any{"replicas": 65, "window": "2h", "name": "bad", "colour": "red"}).Decode(&v)
	require.Equal(t, []string{
		`config.colour: unknown key; valid keys are name, replicas, window`,
		`config.replicas: must be from 1 to 64`,
		`config.window: must be at most 1h`,
		`config: name must not be bad`,
	}, problems(err))

	// A key that did not decode is reported once, for what it was given,
	// not again for the value its field kept.
	v = validatedCfg{Replicas: 0}
	err = sdk.NewConfig(map[string]any{"replicas": "two", "window": "2h"}).Decode(&v)
	require.Equal(t, []string{
		`config.replicas: expected a whole number, got "two"`,
		`config.window: must be at most 1h`,
	}, problems(err))

	v = validatedCfg{Replicas: 2}
	require.NoError(t, sdk.NewConfig(map[string]any{"replicas": 64, "window": "1h"}).Decode(&v))
}

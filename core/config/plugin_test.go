package config_test

import (
	"testing"

	"github.com/go-viper/mapstructure/v2"
	"github.com/stretchr/testify/require"

	"github.com/heraldhq/herald/core/config"
)

// pluginConfig parses a single plugin "p" whose config block holds body.
func pluginConfig(t *testing.T, body string) config.Plugin {
	t.Helper()
	c := parse(t, "plugin \"p\" {\n  command = \"bin/p\"\n  config {\n"+body+"\n  }\n}\n"+auth)
	require.Len(t, c.Plugins, 1)
	return c.Plugins[0]
}

func TestPluginConfigConversion(t *testing.T) {
	t.Setenv("HERALD_TEST_DIR", "/var/lib/x")
	tests := []struct {
		name string
		body string
		want map[string]any
	}{
		{"empty", ``, map[string]any{}},
		{"string", `dir = "data/p"`, map[string]any{"dir": "data/p"}},
		{"env", `dir = env("HERALD_TEST_DIR")`, map[string]any{"dir": "/var/lib/x"}},
		{"bool", `on = true`, map[string]any{"on": true}},
		{"whole number", `n = 42`, map[string]any{"n": int64(42)}},
		{"negative whole number", `n = -7`, map[string]any{"n": int64(-7)}},
		{"whole number written as a float", `n = 3.0`, map[string]any{"n": int64(3)}},
		{"fraction", `f = 0.25`, map[string]any{"f": 0.25}},
		{"too large for int64", `f = 1e20`, map[string]any{"f": 1e20}},
		{"null", `x = null`, map[string]any{"x": nil}},
		{"list", `l = [1, "two", false, null, 2.5]`, map[string]any{"l": []any{int64(1), "two", false, nil, 2.5}}},
		{"empty list", `l = []`, map[string]any{"l": []any{}}},
		{
			"object",
			`o = { a = 1, "b-c" = ["x"], d = { e = true } }`,
			map[string]any{"o": map[string]any{"a": int64(1), "b-c": []any{"x"}, "d": map[string]any{"e": true}}},
		},
		{
			"nested block",
			"store {\n path = \"x\"\n sync = true\n}",
			map[string]any{"store": map[string]any{"path": "x", "sync": true}},
		},
		{
			"deeply nested blocks",
			"a {\n b {\n c {\n n = 1\n }\n }\n}",
			map[string]any{"a": map[string]any{"b": map[string]any{"c": map[string]any{"n": int64(1)}}}},
		},
		{
			"repeated block",
			"peer {\n addr = \"a\"\n}\npeer {\n addr = \"b\"\n}\npeer {\n addr = \"c\"\n}",
			map[string]any{"peer": []any{
				map[string]any{"addr": "a"},
				map[string]any{"addr": "b"},
				map[string]any{"addr": "c"},
			}},
		},
		{
			"labelled blocks",
			"index \"by_user\" {\n fields = [\"user_id\"]\n}\nindex \"by_time\" {\n fields = [\"ts\"]\n}",
			map[string]any{"index": map[string]any{
				"by_user": map[string]any{"fields": []any{"user_id"}},
				"by_time": map[string]any{"fields": []any{"ts"}},
			}},
		},
		{
			"two labels",
			"route \"GET\" \"/a\" {}\nroute \"GET\" \"/b\" {}\nroute \"POST\" \"/a\" {}",
			map[string]any{"route": map[string]any{
				"GET":  map[string]any{"/a": map[string]any{}, "/b": map[string]any{}},
				"POST": map[string]any{"/a": map[string]any{}},
			}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			require.Equal(t, tt.want, pluginConfig(t, tt.body).Config)
		})
	}
}

// The point of the conversion: a plugin decodes its block into its own struct.
func TestPluginConfigDecodesWithMapstructure(t *testing.T) {
	p := pluginConfig(t, `
    data_dir  = "data/kb"
    max_items = 500
    ratio     = 0.75
    verbose   = true
    tags      = ["a", "b"]
    store {
      engine = "bolt"
      sync   = false
    }
    index "by_user" {
      fields = ["user_id"]
    }`)

	var got struct {
		DataDir  string   `mapstructure:"data_dir"`
		MaxItems int      `mapstructure:"max_items"`
		Ratio    float64  `mapstructure:"ratio"`
		Verbose  bool     `mapstructure:"verbose"`
		Tags     []string `mapstructure:"tags"`
		Store    struct {
			Engine string `mapstructure:"engine"`
			Sync   bool   `mapstructure:"sync"`
		} `mapstructure:"store"`
		Index map[string]struct {
			Fields []string `mapstructure:"fields"`
		} `mapstructure:"index"`
	}
	dec, err := mapstructure.NewDecoder(&mapstructure.DecoderConfig{Result: &got, ErrorUnused: true})
	require.NoError(t, err)
	require.NoError(t, dec.Decode(p.Config))

	require.Equal(t, "data/kb", got.DataDir)
	require.Equal(t, 500, got.MaxItems)
	require.Equal(t, 0.75, got.Ratio)
	require.True(t, got.Verbose)
	require.Equal(t, []string{"a", "b"}, got.Tags)
	require.Equal(t, "bolt", got.Store.Engine)
	require.False(t, got.Store.Sync)
	require.Equal(t, []string{"user_id"}, got.Index["by_user"].Fields)
}

func TestPluginHash(t *testing.T) {
	t.Setenv("HERALD_TEST_HASH", "v1")
	hash := func(t *testing.T, block string) string {
		t.Helper()
		c := parse(t, block+auth)
		require.Len(t, c.Plugins, 1)
		require.Len(t, c.Plugins[0].Hash, 64, "hex sha-256")
		return c.Plugins[0].Hash
	}
	base := hash(t, `plugin "p" {
  command = "bin/p"
  args    = ["-v"]
  env     = { A = "1", B = "2" }
  config {
    dir = "data/p"
    n   = 1
    store {
      sync = true
    }
  }
}
`)

	t.Run("stable across parses", func(t *testing.T) {
		for range 3 {
			require.Equal(t, base, hash(t, `plugin "p" {
  command = "bin/p"
  args    = ["-v"]
  env     = { A = "1", B = "2" }
  config {
    dir = "data/p"
    n   = 1
    store {
      sync = true
    }
  }
}
`))
		}
	})

	same := []struct {
		name  string
		block string
	}{
		{"layout, comments and order", `
# a comment
plugin "p" {
  config {
    store { sync = true }
    n = 1.0
    dir = "data/${"p"}"
  }
  env = { B = "2", A = "1" } # reordered
  args = ["-v"]
  command = "bin/p"
}
`},
		{"renamed (the name is how a reload pairs blocks, not content)", `plugin "q" {
  command = "bin/p"
  args    = ["-v"]
  env     = { A = "1", B = "2" }
  config {
    dir = "data/p"
    n   = 1
    store {
      sync = true
    }
  }
}
`},
	}
	for _, tt := range same {
		t.Run("same: "+tt.name, func(t *testing.T) {
			require.Equal(t, base, hash(t, tt.block))
		})
	}

	changed := []struct {
		name  string
		block string
	}{
		{"command", `plugin "p" {
  command = "bin/p2"
  args    = ["-v"]
  env     = { A = "1", B = "2" }
  config {
    dir = "data/p"
    n   = 1
    store { sync = true }
  }
}
`},
		{"args", `plugin "p" {
  command = "bin/p"
  args    = ["-v", "-v"]
  env     = { A = "1", B = "2" }
  config {
    dir = "data/p"
    n   = 1
    store { sync = true }
  }
}
`},
		{"env value", `plugin "p" {
  command = "bin/p"
  args    = ["-v"]
  env     = { A = "1", B = "3" }
  config {
    dir = "data/p"
    n   = 1
    store { sync = true }
  }
}
`},
		{"config value", `plugin "p" {
  command = "bin/p"
  args    = ["-v"]
  env     = { A = "1", B = "2" }
  config {
    dir = "data/p"
    n   = 2
    store { sync = true }
  }
}
`},
		{"config number type", `plugin "p" {
  command = "bin/p"
  args    = ["-v"]
  env     = { A = "1", B = "2" }
  config {
    dir = "data/p"
    n   = "1"
    store { sync = true }
  }
}
`},
		{"nested block", `plugin "p" {
  command = "bin/p"
  args    = ["-v"]
  env     = { A = "1", B = "2" }
  config {
    dir = "data/p"
    n   = 1
    store { sync = false }
  }
}
`},
		{"env() result", `plugin "p" {
  command = "bin/p"
  args    = ["-v"]
  env     = { A = "1", B = "2" }
  config {
    dir = "data/p"
    n   = 1
    store { sync = true }
    v   = env("HERALD_TEST_HASH")
  }
}
`},
	}
	seen := map[string]string{base: "base"}
	for _, tt := range changed {
		t.Run("changed: "+tt.name, func(t *testing.T) {
			h := hash(t, tt.block)
			prev, dup := seen[h]
			require.False(t, dup, "same hash as %s", prev)
			seen[h] = tt.name
		})
	}

	t.Run("changed: the environment behind env()", func(t *testing.T) {
		block := "plugin \"p\" {\n  command = \"bin/p\"\n  config {\n    v = env(\"HERALD_TEST_HASH\")\n  }\n}\n"
		before := hash(t, block)
		t.Setenv("HERALD_TEST_HASH", "v2")
		require.NotEqual(t, before, hash(t, block))
	})

	t.Run("same: absent and empty args, env and config", func(t *testing.T) {
		require.Equal(t,
			hash(t, "plugin \"p\" {\n  command = \"bin/p\"\n}\n"),
			hash(t, "plugin \"p\" {\n  command = \"bin/p\"\n  args = []\n  env = {}\n  config {}\n}\n"))
	})

	// Values that print alike must not hash alike.
	t.Run("changed: values that print alike", func(t *testing.T) {
		pairs := [][2]string{
			{`a = ["x", "y"]`, `a = ["x,y"]`},
			{`a = ""`, `a = null`},
			{`a = 1`, `a = true`},
			{`a = { b = "c" }`, `a = ["b", "c"]`},
			{`a = "ab"`, `a = "a"` + "\n    b = \"\""},
		}
		for _, p := range pairs {
			require.NotEqual(t, pluginConfig(t, p[0]).Hash, pluginConfig(t, p[1]).Hash, "%s vs %s", p[0], p[1])
		}
	})
}

func TestPluginConfinementKeys(t *testing.T) {
	c := parse(t, `plugin "p" {
  command       = "bin/p"
  emit_channels = ["news", "alerts:*", "config"]
  inherit_env   = true
}
plugin "q" {
  command = "bin/q"
}
`+auth)
	require.Equal(t, []string{"news", "alerts:*", "config"}, c.Plugins[0].EmitChannels)
	require.True(t, c.Plugins[0].InheritEnv)
	require.Empty(t, c.Plugins[1].EmitChannels)
	require.False(t, c.Plugins[1].InheritEnv, "a plugin gets a minimal environment by default")

	// Each is part of the hash: changing it restarts the plugin.
	hash := func(extra string) string {
		return parse(t, "plugin \"p\" {\n  command = \"bin/p\"\n"+extra+"\n}\n"+auth).Plugins[0].Hash
	}
	base := hash("")
	require.Equal(t, base, hash("emit_channels = []\ninherit_env = false"), "unset and empty hash the same")
	require.NotEqual(t, base, hash(`emit_channels = ["news"]`))
	require.NotEqual(t, hash(`emit_channels = ["news"]`), hash(`emit_channels = ["sport"]`))
	require.NotEqual(t, base, hash("inherit_env = true"))

	for _, tc := range []struct{ entry, want string }{
		{`"*"`, `"*" alone is not allowed`},
		{`"a*b"`, `only at the end`},
		{`"$server"`, `herald's own channel`},
		{`"has space"`, `printable ASCII`},
		{`""`, `empty`},
	} {
		lines := problems(t, "plugin \"p\" {\n  command = \"bin/p\"\n  emit_channels = ["+tc.entry+"]\n}\n"+auth)
		require.Len(t, lines, 1, tc.entry)
		require.Contains(t, lines[0], "plugin.p.emit_channels[0]", tc.entry)
		require.Contains(t, lines[0], tc.want, tc.entry)
	}
	lines := problems(t, "plugin \"p\" {\n  command = \"bin/p\"\n  inherit_env = \"maybe\"\n}\n"+auth)
	require.Contains(t, lines[0], "plugin.p.inherit_env")
}

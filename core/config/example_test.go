package config_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/heraldhq/herald/core/config"
)

// docs/configuration.md's complete example is what it says: the defaults
// written out, and the shipped config.hcl without its plugin blocks.
func TestTheDocsCompleteExampleIsTheShippedConfig(t *testing.T) {
	t.Setenv("HERALD_TOKEN_SECRET", "")
	t.Setenv("HERALD_API_KEY", "")
	root := filepath.Join("..", "..")
	doc, err := os.ReadFile(filepath.Join(root, "docs", "configuration.md"))
	require.NoError(t, err)
	_, section, ok := strings.Cut(string(doc), "\n## A complete example\n")
	require.True(t, ok, "docs/configuration.md has no complete example")
	_, example, ok := strings.Cut(section, "```hcl\n")
	require.True(t, ok)
	example, _, ok = strings.Cut(example, "```")
	require.True(t, ok)

	fromDoc, err := config.Parse([]byte(example), "config.hcl")
	require.NoError(t, err)
	want := config.Defaults()
	want.File = "config.hcl"
	want.Auth.TokenSecret = "dev-secret-change-me"
	want.Auth.APIKeys = []string{"dev-api-key-change-me"}
	require.Equal(t, &want, fromDoc, "the example is the defaults")

	shipped, err := config.Load(filepath.Join(root, "config.hcl"))
	require.NoError(t, err)
	require.Len(t, shipped.Plugins, 5)
	shipped.Plugins = nil
	shipped.File = "config.hcl"
	require.Equal(t, fromDoc, shipped, "the example is the shipped config.hcl but its plugin blocks")

	// And as text: the same keys, written in the same order.
	src, err := os.ReadFile(filepath.Join(root, "config.hcl"))
	require.NoError(t, err)
	require.Equal(t, bare(example, false), bare(string(src), true))
}

// bare is an HCL file's lines without comments, blank lines, runs of
// spaces and, if asked, plugin blocks (top-level blocks end with a "}" in
// the first column).
func bare(src string, dropPlugins bool) string {
	var out []string
	inPlugin := false
	for _, line := range strings.Split(src, "\n") {
		if dropPlugins && strings.HasPrefix(line, "plugin ") {
			inPlugin = true
		}
		if inPlugin {
			inPlugin = line != "}"
			continue
		}
		line, _, _ = strings.Cut(line, "#")
		if line = strings.Join(strings.Fields(line), " "); line != "" {
			out = append(out, line)
		}
	}
	return strings.Join(out, "\n")
}

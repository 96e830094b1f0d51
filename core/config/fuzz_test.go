package config_test

import (
	"errors"
	"os"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/heraldhq/herald/core/config"
)

// FuzzParse checks that no input makes Parse panic, and that it always
// answers either a config or a non-empty Diagnostics with positions.
func FuzzParse(f *testing.F) {
	if shipped, err := os.ReadFile("../../config.hcl"); err == nil {
		f.Add(string(shipped))
	}
	f.Add(auth)
	f.Add("")
	f.Add("server {\n  listen = \"\"\n}\nbroker \"nats\" {}\n")
	f.Add("delivery {\n  max_batch = 1e400\n  max_delay = \"-1h\"\n}\n")
	f.Add("plugin \"p\" {\n  command = \"x\"\n  env = { A = null }\n  config {\n    a \"b\" \"c\" { d = [1, { e = null }] }\n    a \"b\" {}\n    x {}\n    x {}\n  }\n}\n")
	f.Add("auth {\n  token_secret = env(\"HERALD_FUZZ_UNSET\")\n  api_keys = [null, \"\", 1]\n}\n")
	f.Add("log { level = \"${env(\"A\", \"b\")}\" }\nlog {}\nsever = 1\n")

	f.Fuzz(func(t *testing.T, src string) {
		c, err := config.Parse([]byte(src), "fuzz.hcl")
		if err == nil {
			require.NotNil(t, c)
			return
		}
		require.Nil(t, c)
		var diags config.Diagnostics
		require.True(t, errors.As(err, &diags))
		require.NotEmpty(t, diags)
		for _, d := range diags {
			require.Equal(t, "fuzz.hcl", d.Filename)
			require.Positive(t, d.Line)
			require.Positive(t, d.Column)
			require.NotEmpty(t, d.Message)
		}
	})
}

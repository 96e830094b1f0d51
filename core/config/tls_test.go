package config_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/heraldhq/herald/core/config"
)

func TestTLSBlock(t *testing.T) {
	for name, tt := range map[string]struct{ src, want string }{
		"one file missing": {"server {\n  tls {\n    cert_file = \"c.pem\"\n  }\n}\n" + auth,
			`config.hcl:2:3: server.tls: needs both cert_file and key_file (PEM files)`},
		"unknown key": {"server {\n  tls {\n    cert = \"c.pem\"\n    key_file = \"k\"\n  }\n}\n" + auth,
			`config.hcl:3:5: server.tls.cert: unknown key; did you mean "cert_file"?`},
		"other nested block": {"server {\n  tsl {}\n}\n" + auth,
			`config.hcl:2:3: server.tsl: unknown block; server takes no nested blocks`},
		"twice": {"server {\n  tls {\n    cert_file = \"a\"\n    key_file = \"b\"\n  }\n  tls {}\n}\n" + auth,
			`config.hcl:6:3: server.tls: duplicate block; there can be only one`},
	} {
		t.Run(name, func(t *testing.T) {
			require.Contains(t, problems(t, tt.src), tt.want)
		})
	}

	// Files that do not hold a certificate fail validation, and relative
	// names are read from the config file's directory.
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "c.pem"), []byte("not a certificate"), 0o600))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "k.pem"), []byte("not a key"), 0o600))
	path := filepath.Join(dir, "herald.hcl")
	require.NoError(t, os.WriteFile(path, []byte("server {\n  tls {\n    cert_file = \"c.pem\"\n    key_file = \"k.pem\"\n  }\n}\n"+auth), 0o600))
	_, err := config.Load(path)
	require.ErrorContains(t, err, "server.tls: cannot load the certificate and key")
	require.ErrorContains(t, err, filepath.Join(dir, "c.pem"))
}

func TestResolveIsRelativeToTheConfigFile(t *testing.T) {
	c := &config.Config{File: "/etc/herald/herald.hcl"}
	require.Equal(t, "/etc/herald/bin/plugins/chat", c.Resolve("bin/plugins/chat"))
	require.Equal(t, "/abs/x", c.Resolve("/abs/x"))
	require.Equal(t, "rel", (&config.Config{}).Resolve("rel"))
}

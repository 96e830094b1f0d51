package server

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/heraldhq/herald/core/config"
)

func TestChangedKeysNamesConfigKeys(t *testing.T) {
	a := config.Defaults()
	b := config.Defaults()
	require.Empty(t, changedKeys(&a, &b))
	b.Server.AllowedOrigins = []string{"https://x.example"}
	b.Auth.APIKeys = []string{"k"}
	b.Delivery.MaxBatch = 3
	b.Broker.Kind = "other"
	b.Server.TLS = &config.TLS{CertFile: "c", KeyFile: "k"}
	b.Plugins = []config.Plugin{{Name: "x"}}
	b.File = "elsewhere.hcl"
	require.Equal(t, []string{"server.allowed_origins", "server.tls", "auth.api_keys", "delivery.max_batch", "broker.kind"}, changedKeys(&a, &b))
}

func TestSnake(t *testing.T) {
	for in, want := range map[string]string{"AllowedOrigins": "allowed_origins", "APIKeys": "api_keys", "TLS": "tls",
		"URL": "url", "MaxFrameBytes": "max_frame_bytes", "BusyOutboxRatio": "busy_outbox_ratio", "Listen": "listen"} {
		require.Equal(t, want, snake(in), in)
	}
}

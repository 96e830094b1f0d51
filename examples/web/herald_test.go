package main

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/heraldhq/herald/internal/heraldtest"
)

// make demo uses the herald that already serves the config (say, from
// make run) instead of starting a second one on the same data dirs; with
// none running it starts one and stops it when the demo ends.
func TestDemoReusesARunningHeraldOrStartsOne(t *testing.T) {
	bin := heraldtest.Binary(t, "cmd/herald")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	running := heraldtest.Start(t, heraldtest.Options{})
	h, err := ensureHerald(ctx, bin, running.ConfigPath, running.URL)
	require.NoError(t, err)
	require.Nil(t, h.cmd, "the running herald is used")
	h.stop()
	require.True(t, healthy(ctx, running.URL), "and left running")

	addr := heraldtest.FreeAddr(t)
	cfg := heraldtest.WriteConfig(t, addr, heraldtest.Options{})
	h, err = ensureHerald(ctx, bin, cfg, "http://"+addr)
	require.NoError(t, err)
	require.NotNil(t, h.cmd, "none was running: one is started")
	require.True(t, healthy(ctx, "http://"+addr))
	h.stop()
	require.False(t, healthy(ctx, "http://"+addr), "and stopped with the demo")
}

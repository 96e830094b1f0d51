package main

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/heraldhq/herald/core/pluginhost"
	"github.com/heraldhq/herald/core/state/boltstate"
)

// A second herald on the same state.dir: the plugin's State open waits for
// the file's lock, and must give up with the store's own message before
// the plugin's start limit ends, or the operator reads only "context
// deadline exceeded".
func TestBoltOpenerGivesUpOnALockedFileWithinTheStart(t *testing.T) {
	dir := t.TempDir()
	held, err := boltstate.Open(filepath.Join(dir, "chat.db"), boltstate.Options{})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, held.Close()) })

	for _, limit := range []time.Duration{pluginhost.DefaultStartTimeout, time.Second} {
		ctx, cancel := context.WithTimeout(context.Background(), limit)
		_, err := boltOpener{dir: dir}.OpenState(ctx, "chat")
		require.ErrorContains(t, err, "still locked")
		require.ErrorContains(t, err, "(another herald using it?)")
		require.NoError(t, ctx.Err(), "the store's error came after the start limit (%s)", limit)
		cancel()
	}
}

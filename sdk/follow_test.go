package sdk_test

import (
	"context"
	"testing"

	"github.com/heraldhq/herald/sdk"
	"github.com/heraldhq/herald/sdk/sdktest"
	"github.com/stretchr/testify/require"
)

func TestFollowReplaysThenFollowsLive(t *testing.T) {
	sdktest.CheckGoroutines(t)
	p := &testPlugin{}
	h := sdktest.Start(t, p, nil)
	emit := func(ch string) {
		t.Helper()
		_, err := h.Call("emit", sdktest.Backend(), map[string]any{"channel": ch})
		require.NoError(t, err)
	}
	emit("t:a")
	emit("t:b")
	emit("t:a")

	ctx := context.Background()
	// From seq 1: seq 2 is replayed, then live ones follow, and only t:a's.
	f, err := sdk.FollowChannel(ctx, p.host, "t:a", &sdk.Position{Seq: 1, Epoch: sdktest.Epoch})
	require.NoError(t, err)
	require.True(t, f.Recovered())
	require.Equal(t, sdk.Position{Seq: 1, Epoch: sdktest.Epoch}, f.Start())
	got, err := f.Next()
	require.NoError(t, err)
	require.Len(t, got, 1)
	require.Equal(t, uint64(2), got[0].Seq)
	require.Equal(t, "t:a", got[0].Channel)
	require.Equal(t, "e", got[0].Event)
	require.JSONEq(t, `{"n":1}`, string(got[0].Object))
	emit("t:b")
	emit("t:a")
	got, err = f.Next()
	require.NoError(t, err)
	require.Equal(t, uint64(3), got[0].Seq)
	f.Close()
	_, err = f.Next()
	require.ErrorIs(t, err, sdk.ErrFollowClosed)
	f.Close() // twice is fine

	// Without since: from the current position on.
	f, err = sdk.FollowChannel(ctx, p.host, "t:a", nil)
	require.NoError(t, err)
	require.True(t, f.Recovered())
	require.Equal(t, uint64(3), f.Start().Seq)
	emit("t:a")
	got, err = f.Next()
	require.NoError(t, err)
	require.Equal(t, uint64(4), got[0].Seq)
	f.Close()

	// A since the history cannot bridge: not recovered, live from now.
	f, err = sdk.FollowChannel(ctx, p.host, "t:a", &sdk.Position{Seq: 1, Epoch: "another"})
	require.NoError(t, err)
	require.False(t, f.Recovered())
	require.Equal(t, uint64(4), f.Start().Seq)
	f.Close()

	// Its context ends it too.
	cctx, cancel := context.WithCancel(ctx)
	f, err = sdk.FollowChannel(cctx, p.host, "t:a", nil)
	require.NoError(t, err)
	cancel()
	_, err = f.Next()
	require.ErrorIs(t, err, sdk.ErrFollowClosed)
}

func TestFollowOnlyOwnChannels(t *testing.T) {
	p := &testPlugin{}
	sdktest.Start(t, p, nil)
	_, err := sdk.FollowChannel(context.Background(), p.host, "chat:group:1", nil)
	require.Equal(t, sdk.CodeForbidden, sdk.AsError(err).Code)
}

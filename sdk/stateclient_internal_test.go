package sdk

import (
	"errors"
	"testing"

	pluginpb "github.com/heraldhq/herald/sdk/proto"
	"github.com/stretchr/testify/require"
)

// A State error says what failed once, whether Herald's message is the
// whole error or a detail, and stays errors.Is its sentinel.
func TestStateErrorSaysItOnce(t *testing.T) {
	for _, tc := range []struct {
		msg, want string
	}{
		{`state create "a/b": state: revision conflict`, `state create "a/b": state: revision conflict`},
		{`state: revision conflict`, `state create "a/b": state: revision conflict`},
		{`key exists`, `state create "a/b": state: revision conflict (key exists)`},
		{``, `state create "a/b": state: revision conflict`},
	} {
		err := stateErr("create", "a/b", pluginpb.StateStatus_STATE_CONFLICT, tc.msg)
		require.EqualError(t, err, tc.want, "message %q", tc.msg)
		require.True(t, errors.Is(err, ErrConflict))
	}
	require.NoError(t, stateErr("get", "k", pluginpb.StateStatus_STATE_OK, ""))
	require.ErrorIs(t, stateErr("get", "k", pluginpb.StateStatus_STATE_NOT_FOUND, "no such key"), ErrNotFound)
}

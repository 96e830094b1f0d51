package sdktest_test

import (
	"context"
	"errors"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/heraldhq/herald/sdk"
	"github.com/heraldhq/herald/sdk/sdktest"
)

// emitter emits one notification to each channel its params list, all in
// one Emit (one batch), and returns what Host.Emit returned.
type emitter struct{}

func (emitter) Manifest() sdk.Manifest {
	return sdk.Manifest{Name: "emitter", Version: "1", Prefixes: []string{"emitter"}, AllowAllSubscriptions: true,
		Methods: []sdk.Method{{Name: "emit", Handler: func(ctx context.Context, c *sdk.Call) (any, error) {
			var p struct{ Channels []string }
			if err := c.Bind(&p); err != nil {
				return nil, err
			}
			ns := make([]sdk.Notification, len(p.Channels))
			for i, ch := range p.Channels {
				ns[i] = sdk.Notification{Channel: ch, Event: "e", ObjectType: "t", Object: map[string]int{"i": i}}
			}
			_, err := c.Host.Emit(ctx, ns...)
			return "ok", err
		}}}}
}

func emitTo(h *sdktest.Harness, channels ...string) error {
	_, err := h.Call("emit", sdktest.Backend(), map[string]any{"channels": channels})
	return err
}

// Without the block's emit_channels, as under Herald without the key, a
// plugin emits to its own prefixes only: an emit batch holding any other
// channel is refused whole with Herald's error (-32003, its message, data
// naming the channel), and nothing of it is published.
func TestHarnessRefusesAnEmitOutsideThePluginsChannels(t *testing.T) {
	h := sdktest.Start(t, emitter{}, nil)

	err := emitTo(h, "emitter:a", "news", "emitter:b")
	var e *sdk.Error
	require.True(t, errors.As(err, &e), "%v", err)
	require.Equal(t, sdk.CodeForbidden, e.Code)
	require.Equal(t, `plugin "emitter" may not emit to channel "news": a plugin emits to the channels of its own prefixes and to those its plugin block lists in emit_channels; nothing of this batch was published`, e.Message)
	require.JSONEq(t, `{"channel":"news"}`, string(e.Data))
	require.Empty(t, h.Emitted(), "nothing of the refused batch, not even its own channels")

	for _, ch := range []string{"config", "$server", "emitterx:a", "emitter", "chat:1"} {
		require.Error(t, emitTo(h, ch), ch)
	}
	require.Empty(t, h.Emitted())

	require.NoError(t, emitTo(h, "emitter:a"))
	ns := h.Emitted()
	require.Len(t, ns, 1)
	require.Equal(t, uint64(1), ns[0].Seq, "a refused batch took no seq")
}

// With the block's emit_channels, exact names and "*" patterns pass, as
// under Herald; anything else is still refused.
func TestHarnessAllowsTheBlocksEmitChannels(t *testing.T) {
	h := sdktest.Start(t, emitter{}, nil, sdktest.EmitChannels("news", "alerts:*"))

	require.NoError(t, emitTo(h, "emitter:a", "news", "alerts:fire", "alerts:x:y"))
	require.Len(t, h.Emitted(), 4)

	for _, ch := range []string{"newsroom", "news:1", "alerts", "config", "sport"} {
		err := emitTo(h, "news", ch)
		var e *sdk.Error
		require.True(t, errors.As(err, &e), "%s: %v", ch, err)
		require.Equal(t, sdk.CodeForbidden, e.Code, ch)
		require.Contains(t, e.Message, `channel "`+ch+`"`)
	}
	require.Len(t, h.Emitted(), 4, "refused batches publish nothing")

	// "config" is the core's: a pattern never reaches it, its exact name does.
	h2 := sdktest.Start(t, emitter{}, nil, sdktest.EmitChannels("co*"))
	require.NoError(t, emitTo(h2, "colour"))
	require.Error(t, emitTo(h2, "config"))
	h3 := sdktest.Start(t, emitter{}, nil, sdktest.EmitChannels("config"))
	require.NoError(t, emitTo(h3, "config"))

	// A shared State's harnesses take the block too.
	st := sdktest.NewState()
	h4 := st.Start(t, emitter{}, nil, sdktest.EmitChannels("news"))
	require.NoError(t, emitTo(h4, "news"))
}

// An emit_channels entry that Herald's config refuses fails the start.
func TestHarnessRefusesAnEmitChannelsEntryHeraldRefuses(t *testing.T) {
	for entry, want := range map[string]string{
		"*":       `emit_channels[1]: "*" alone is not allowed`,
		"$server": `emit_channels[1]: "$server" is herald's own channel`,
		"a*b":     `only at the end`,
	} {
		_, err := sdktest.StartErr(t, emitter{}, nil, sdktest.EmitChannels("news", entry))
		require.ErrorContains(t, err, want, entry)
	}
}

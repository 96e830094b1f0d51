package sdk

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	pluginpb "github.com/heraldhq/herald/sdk/proto"
	"github.com/stretchr/testify/require"
)

type waiter struct{ err error }

func (w *waiter) Manifest() Manifest {
	return Manifest{Name: "w", Methods: []Method{{Name: "wait", Handler: func(ctx context.Context, _ *Call) (any, error) {
		<-ctx.Done()
		if w.err != nil {
			return nil, w.err
		}
		return nil, fmt.Errorf("waited: %w", ctx.Err())
	}}}}
}

func (w *waiter) Configure(context.Context, Host, Config) error { return nil }

func (w *waiter) Authorize(ctx context.Context, _ Caller, _ []string) ([]Refusal, error) {
	<-ctx.Done()
	return nil, ctx.Err()
}

// A handler that returns its context's error once its call's context ended
// (the deadline gRPC passes it fired, or the host went away) ran out of time:
// it answers -32050 (unavailable, as the host answers a call it gave up on),
// not -32603. Its own coded error, or any other error, stays as it is.
func TestHandlerGivingUpOnItsContextIsUnavailable(t *testing.T) {
	expired, cancel := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
	defer cancel()
	cancelled, cancel2 := context.WithCancel(context.Background())
	cancel2()
	for name, ctx := range map[string]context.Context{"deadline": expired, "cancelled": cancelled} {
		t.Run(name, func(t *testing.T) {
			s, err := newServer(&waiter{}, hclog.NewNullLogger(), 0)
			require.NoError(t, err)
			s.host = &host{}
			rep, err := s.Call(ctx, &pluginpb.CallRequest{Method: "wait"})
			require.NoError(t, err)
			require.EqualValues(t, CodePluginUnavailable, rep.GetError().GetCode(), rep.GetError().GetMessage())
			require.Contains(t, rep.GetError().GetMessage(), "the call of w.wait ended before it finished ("+ctx.Err().Error()+")")

			arep, err := s.Authorize(ctx, &pluginpb.AuthorizeRequest{Channels: []string{"w:a"}})
			require.NoError(t, err)
			require.EqualValues(t, CodePluginUnavailable, arep.GetError().GetCode(), arep.GetError().GetMessage())
		})
	}
	t.Run("coded and other errors stay", func(t *testing.T) {
		for err, code := range map[error]int{
			LimitExceeded("too many"): CodeLimitExceeded,
			errors.New("disk full"):   CodeInternal,
		} {
			s, e := newServer(&waiter{err: err}, hclog.NewNullLogger(), 0)
			require.NoError(t, e)
			s.host = &host{}
			rep, e := s.Call(cancelled, &pluginpb.CallRequest{Method: "wait"})
			require.NoError(t, e)
			require.EqualValues(t, code, rep.GetError().GetCode())
		}
	})
}

package sdktest_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/stretchr/testify/require"

	"github.com/heraldhq/herald/sdk"
	"github.com/heraldhq/herald/sdk/sdktest"
)

// strict answers what its params say, so that a test gives it each answer
// Herald checks; its authorizer answers what the channel asked names.
type strict struct {
	drained *atomic.Bool
	hung    chan struct{} // holds the "hang" method until the test closes it
}

var (
	_ sdk.Configurer = strict{}
	_ sdk.Authorizer = strict{}
	_ sdk.Drainer    = strict{}
)

func (s strict) Manifest() sdk.Manifest {
	return sdk.Manifest{Name: "strict", Version: "1", Prefixes: []string{"strict"},
		Methods: []sdk.Method{
			{Name: "bind", Handler: func(_ context.Context, c *sdk.Call) (any, error) {
				var p struct{}
				return "bound", c.Bind(&p)
			}},
			{Name: "raw", Handler: func(_ context.Context, c *sdk.Call) (any, error) {
				var p struct{ Answer []byte } // base64: any bytes
				if err := c.Bind(&p); err != nil {
					return nil, err
				}
				return json.RawMessage(p.Answer), nil
			}},
			{Name: "fail", Handler: func(_ context.Context, c *sdk.Call) (any, error) {
				return nil, sdk.Errorf(1000, "nope")
			}},
			{Name: "presence", Handler: func(ctx context.Context, c *sdk.Call) (any, error) {
				var p struct{ Channel string }
				if err := c.Bind(&p); err != nil {
					return nil, err
				}
				return c.Host.Presence(ctx, p.Channel)
			}},
			{Name: "ask", Handler: func(ctx context.Context, c *sdk.Call) (any, error) {
				var p struct{ Method string }
				if err := c.Bind(&p); err != nil {
					return nil, err
				}
				return c.Host.CallClient(ctx, c.Caller.ConnID, p.Method, nil)
			}},
			{Name: "emit", Handler: func(ctx context.Context, c *sdk.Call) (any, error) {
				var p struct{ Object []byte } // base64: any bytes
				if err := c.Bind(&p); err != nil {
					return nil, err
				}
				_, err := c.Host.Emit(ctx, sdk.Notification{Channel: "strict:x", Event: "e", ObjectType: "t", Object: p.Object})
				return "ok", err
			}},
			{Name: "deadline", Timeout: time.Minute, Handler: func(ctx context.Context, c *sdk.Call) (any, error) {
				d, _ := ctx.Deadline()
				return time.Until(d).String(), nil
			}},
			{Name: "hang", Handler: func(ctx context.Context, c *sdk.Call) (any, error) {
				<-s.hung // answers only after the harness gave up
				return nil, ctx.Err()
			}},
		}}
}

func (strict) Configure(_ context.Context, _ sdk.Host, cfg sdk.Config) error {
	if cfg.Map()["fail"] != nil {
		return errors.New("configure: told to fail")
	}
	return nil
}

func (s strict) Drain(context.Context) error {
	if s.drained != nil {
		s.drained.Store(true)
	}
	return nil
}

// Authorize refuses as the channel asked says: "strict:stray" has a
// channel that was not asked refused, "strict:twice" is refused twice,
// "strict:long" with a reason of 3000 bytes, "strict:code" with code 1000.
func (strict) Authorize(_ context.Context, _ sdk.Caller, channels []string) ([]sdk.Refusal, error) {
	var out []sdk.Refusal
	for _, ch := range channels {
		switch ch {
		case "strict:stray":
			out = append(out, sdk.Refuse("strict:elsewhere", "no"))
		case "strict:twice":
			out = append(out, sdk.Refuse(ch, "no"), sdk.Refuse(ch, "no again"))
		case "strict:long":
			out = append(out, sdk.Refuse(ch, strings.Repeat("é", 1500)))
		case "strict:code":
			out = append(out, sdk.Refusal{Channel: ch, Code: 1000, Reason: "odd code"})
		case "strict:fail":
			return nil, sdk.Errorf(1000, "authorizer failed")
		}
	}
	return out, nil
}

func sdkErr(t *testing.T, err error) *sdk.Error {
	t.Helper()
	var e *sdk.Error
	require.True(t, errors.As(err, &e), "want an *sdk.Error, got %v", err)
	return e
}

// A call without params reaches the plugin as Herald passes it, as {}:
// Bind succeeds.
func TestCallWithoutParamsBindsAsUnderHerald(t *testing.T) {
	h := sdktest.Start(t, strict{}, nil)
	for _, params := range []any{nil, json.RawMessage("null"), json.RawMessage(" ")} {
		res, err := h.Call("bind", sdktest.Backend(), params)
		require.NoError(t, err, "%v", params)
		require.JSONEq(t, `"bound"`, string(res))
	}
}

// A result that is not one JSON value is Herald's -32603, with Herald's
// message (core/pluginhost's TestCallResultThatIsNotOneJSONValueIsRefused).
func TestResultIsHeldToHeraldsCheck(t *testing.T) {
	h := sdktest.Start(t, strict{}, nil)
	for _, ok := range []string{`{"a":[1,2]}`, `null`, ` "x" `, `3`} {
		res, err := h.Call("raw", sdktest.Backend(), map[string][]byte{"answer": []byte(ok)})
		require.NoError(t, err, ok)
		require.JSONEq(t, ok, string(res))
	}
	for _, bad := range []string{`{"a":1} x`, `{"a":`, `1 2`, `nope`} {
		_, err := h.Call("raw", sdktest.Backend(), map[string][]byte{"answer": []byte(bad)})
		e := sdkErr(t, err)
		require.Equal(t, sdk.CodeInternal, e.Code, bad)
		require.Equal(t, `plugin "strict" answered raw with a result that is not one valid JSON value`, e.Message, bad)
	}
	_, err := h.Call("raw", sdktest.Backend(), map[string][]byte{"answer": []byte("\"\xff\"")})
	require.Equal(t, `plugin "strict" answered raw with bytes that are not UTF-8`, sdkErr(t, err).Message)
}

// An error code outside Herald's table is -32603 for a call and -32003
// for a refusal, as Herald maps them.
func TestErrorCodesOutsideHeraldsTableAreMapped(t *testing.T) {
	h := sdktest.Start(t, strict{}, nil)
	_, err := h.Call("fail", sdktest.Backend(), nil)
	e := sdkErr(t, err)
	require.Equal(t, sdk.CodeInternal, e.Code)
	require.Equal(t, `nope (plugin "strict"'s error code 1000 is not one of Herald's)`, e.Message)

	rs, err := h.Authorize(sdktest.Backend(), "strict:code")
	require.NoError(t, err)
	require.Equal(t, []sdk.Refusal{{Channel: "strict:code", Code: sdk.CodeForbidden, Reason: "odd code"}}, rs)

	_, err = h.Authorize(sdktest.Backend(), "strict:fail")
	require.Equal(t, sdk.CodeInternal, sdkErr(t, err).Code)
}

// Herald checks an authorizer's answer: a refusal of a channel it was not
// asked about fails the whole check (-32603), a channel refused twice is
// listed once, and a long reason is cut.
func TestAuthorizerAnswersAreHeldToHeraldsCheck(t *testing.T) {
	h := sdktest.Start(t, strict{}, nil)
	_, err := h.Authorize(sdktest.Backend(), "strict:stray", "strict:ok")
	e := sdkErr(t, err)
	require.Equal(t, sdk.CodeInternal, e.Code)
	require.Equal(t, `plugin "strict" answered a subscription check with a refusal of "strict:elsewhere", a channel it was not asked about`, e.Message)

	rs, err := h.Authorize(sdktest.Backend(), "strict:twice")
	require.NoError(t, err)
	require.Equal(t, []sdk.Refusal{{Channel: "strict:twice", Code: sdk.CodeForbidden, Reason: "no"}}, rs)

	rs, err = h.Authorize(sdktest.Backend(), "strict:long")
	require.NoError(t, err)
	require.Len(t, rs, 1)
	require.True(t, strings.HasSuffix(rs[0].Reason, "... (cut)"), rs[0].Reason)
	require.LessOrEqual(t, len(rs[0].Reason), 1024+len("... (cut)"))
	require.True(t, utf8.ValidString(rs[0].Reason))
}

// onNotificationReceived is Herald's own delivery: a plugin cannot call
// it on a client, and the test's client function is not asked.
func TestCallClientRefusesHeraldsOwnDelivery(t *testing.T) {
	h := sdktest.Start(t, strict{}, nil)
	h.Connect("c1", "alice")
	asked := false
	h.OnCallClient(func(string, string, json.RawMessage) (json.RawMessage, error) {
		asked = true
		return json.RawMessage(`"ok"`), nil
	})
	_, err := h.Call("ask", h.Client("c1"), map[string]string{"method": "onNotificationReceived"})
	e := sdkErr(t, err)
	require.Equal(t, sdk.CodeMethodNotFound, e.Code)
	require.Equal(t, "onNotificationReceived is Herald's own delivery and cannot be called: emit notifications instead", e.Message)
	require.False(t, asked)

	res, err := h.Call("ask", h.Client("c1"), map[string]string{"method": "where"})
	require.NoError(t, err)
	require.JSONEq(t, `"ok"`, string(res))
}

// A plugin reads the presence of its own channels only.
func TestPresenceOfAnotherChannelIsRefused(t *testing.T) {
	h := sdktest.Start(t, strict{}, nil)
	_, err := h.Call("presence", sdktest.Backend(), map[string]string{"channel": "news"})
	e := sdkErr(t, err)
	require.Equal(t, sdk.CodeForbidden, e.Code)
	require.Equal(t, `plugin "strict" may read the presence of only channels of its own prefixes, not "news"`, e.Message)

	res, err := h.Call("presence", sdktest.Backend(), map[string]string{"channel": "strict:x"})
	require.NoError(t, err)
	require.JSONEq(t, `{"Count":0,"Users":null}`, string(res))
}

// An emitted object that is not one JSON value in UTF-8 is refused, and
// nothing of the batch is recorded.
func TestEmitObjectIsHeldToHeraldsCheck(t *testing.T) {
	h := sdktest.Start(t, strict{}, nil)
	for bad, msg := range map[string]string{
		`{"a":`:     "plugin strict: notification 0: object is not valid JSON",
		`{} {}`:     "plugin strict: notification 0: object is not valid JSON",
		"\"a\xff\"": "plugin strict: notification 0: object is not valid UTF-8 (the first bad byte is at offset 2)",
	} {
		_, err := h.Call("emit", sdktest.Backend(), map[string][]byte{"object": []byte(bad)})
		e := sdkErr(t, err)
		require.Equal(t, sdk.CodeInvalidParams, e.Code, bad)
		require.Equal(t, msg, e.Message, bad)
	}
	require.Empty(t, h.Emitted())
	_, err := h.Call("emit", sdktest.Backend(), map[string][]byte{"object": []byte(`{"a":1}`)})
	require.NoError(t, err)
	require.Len(t, h.Emitted(), 1)
}

// A plugin that failed to configure is killed without Drain, as Herald
// kills it; a configured one is drained.
func TestUnconfiguredPluginIsNotDrained(t *testing.T) {
	var drained atomic.Bool
	h, err := sdktest.StartErr(t, strict{drained: &drained}, map[string]any{"fail": true})
	require.ErrorContains(t, err, "told to fail")
	h.Close()
	require.False(t, drained.Load())

	h = sdktest.Start(t, strict{drained: &drained}, nil)
	h.Close()
	require.True(t, drained.Load())
}

// A method's own Timeout, longer than sdktest.Timeout, is the call's, as
// Herald gives it.
func TestMethodTimeoutIsHonoured(t *testing.T) {
	h := sdktest.Start(t, strict{}, nil)
	res, err := h.Call("deadline", sdktest.Backend(), nil)
	require.NoError(t, err)
	var left string
	require.NoError(t, json.Unmarshal(res, &left))
	d, err := time.ParseDuration(left)
	require.NoError(t, err)
	require.Greater(t, d, sdktest.Timeout, "the call got sdktest.Timeout, not the method's minute")
}

// A call that outlasts sdktest.Timeout fails as under Herald (-32050),
// naming the bound to raise.
func TestCallPastTimeoutNamesIt(t *testing.T) {
	hung := make(chan struct{})
	h := sdktest.Start(t, strict{hung: hung}, nil)
	old := sdktest.Timeout
	sdktest.Timeout = 50 * time.Millisecond
	defer func() { sdktest.Timeout = old }()
	_, err := h.Call("hang", sdktest.Backend(), nil)
	close(hung)
	e := sdkErr(t, err)
	require.Equal(t, sdk.CodePluginUnavailable, e.Code)
	require.Contains(t, e.Message, `plugin "strict" did not answer hang within sdktest.Timeout (50ms)`)
}

package pluginhost

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/heraldhq/herald/core/rpc"
	pluginpb "github.com/heraldhq/herald/sdk/proto"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func callerPB(c Caller) *pluginpb.Caller {
	return &pluginpb.Caller{ConnId: c.ConnID, UserId: c.UserID, ClaimsJson: c.Claims, Token: c.Token, Backend: c.Backend}
}

// target finds the running instance of plugin, or the error a caller gets.
// Loaded reports whether a plugin of that name is configured (running,
// restarting or failed).
func (m *Manager) Loaded(plugin string) bool { return m.get(plugin) != nil }

func (m *Manager) target(plugin string) (*instance, error) {
	s := m.get(plugin)
	if s == nil {
		return nil, rpc.Errorf(rpc.CodeUnknownNamespace, "unknown plugin %q", plugin)
	}
	inst, st := s.running()
	if inst == nil {
		return nil, rpc.Errorf(rpc.CodePluginUnavailable, "plugin %q is unavailable (%s): retry later", plugin, st)
	}
	if st == StateUnresponsive {
		// It has not answered its liveness pings: a call would only wait
		// out its timeout. Refused at once, until it answers again or is
		// restarted.
		return nil, rpc.Errorf(rpc.CodePluginUnavailable, "plugin %q is unavailable (unresponsive: it has not answered its liveness pings): retry later", plugin)
	}
	return inst, nil
}

// exitNoticeTime bounds how long a failed call waits to learn whether the
// plugin's process is exiting.
const exitNoticeTime = 250 * time.Millisecond

// transportError turns a failed gRPC call into the caller's error. The
// plugin is unavailable to the call (-32050, retry later) when its process
// went away during the call (or was already down) and when it did not answer
// within timeout (how long the call was given: limits.call_timeout, or what
// the plugin declares for the method): a hung plugin is as gone as a dead
// one for that call. In both cases what the call did before is unknown and
// kept (a handler may have emitted, or written its state, before the plugin
// exited or stalled): the message says so when the call may have effects
// (sideEffects false: a subscription check, which changes nothing, is
// simply retried). A cancelled call and any other failure are internal.
func (m *Manager) transportError(inst *instance, what string, timeout string, sideEffects bool, err error) error {
	exited := func() error {
		if !sideEffects {
			return rpc.Errorf(rpc.CodePluginUnavailable, "plugin %q is unavailable (it exited during %s): retry later", inst.name, what)
		}
		return rpc.Errorf(rpc.CodePluginUnavailable, "plugin %q is unavailable (it exited during %s): what the call did before "+
			"the plugin exited is kept (what it emitted may have been published), so retry later only what is safe to repeat", inst.name, what)
	}
	if inst.crashed() || status.Code(err) == codes.Unavailable {
		return exited()
	}
	if errors.Is(err, context.DeadlineExceeded) || status.Code(err) == codes.DeadlineExceeded {
		return timedOut(inst, what, timeout, sideEffects)
	}
	// Any other failure of the transport is most often the process dying:
	// its exit is noticed a moment after the call fails.
	if inst.exitsWithin(exitNoticeTime) {
		return exited()
	}
	if errors.Is(err, context.Canceled) || status.Code(err) == codes.Canceled {
		return rpc.Errorf(rpc.CodeInternal, "%s on plugin %q was cancelled", what, inst.name)
	}
	return rpc.Errorf(rpc.CodeInternal, "plugin %q: %s: %v", inst.name, what, err)
}

// timedOut is the error of a call the plugin did not answer within timeout.
func timedOut(inst *instance, what, timeout string, sideEffects bool) *rpc.Error {
	if !sideEffects {
		return rpc.Errorf(rpc.CodePluginUnavailable, "plugin %q did not answer %s within %s: it is unavailable to this subscription check; retry later",
			inst.name, what, timeout)
	}
	return rpc.Errorf(rpc.CodePluginUnavailable, "plugin %q did not answer %s within %s: it is unavailable to this call, "+
		"which may or may not have taken effect, so retry later only what is safe to repeat", inst.name, what, timeout)
}

// lateAnswer: an error answer that arrives once the call's deadline (the one
// gRPC hands the plugin) has passed is that timeout. The plugin's copy of the
// deadline fires a moment before the host's own timer, and a handler that
// honours its context answers its ctx.Err() then (-32603 from an SDK built
// before sdk mapped that to -32050, -32050 with the SDK's own words after):
// the caller gets the host's -32050 either way, as if its timer had won.
func lateAnswer(ctx context.Context) bool {
	d, ok := ctx.Deadline()
	return ok && !time.Now().Before(d)
}

// timeoutText names how long a call of method was given, for
// transportError: "limits.call_timeout (10s)", or the plugin's own
// declared timeout when that is longer.
func (m *Manager) timeoutText(plugin, method string) string {
	if t := m.MethodTimeout(plugin, method); t > m.opts.CallTimeout {
		return fmt.Sprintf("%s (the timeout it declares for %s)", t, method)
	}
	return fmt.Sprintf("limits.call_timeout (%s)", m.opts.CallTimeout)
}

// Authorize asks plugin about channels of its prefixes at subscribe time and
// returns the refused ones (nil: all allowed). Errors are *rpc.Error.
func (m *Manager) Authorize(ctx context.Context, plugin string, caller Caller, channels []string) ([]Refusal, error) {
	const label = "$authorize"
	inst, err := m.target(plugin)
	if err != nil {
		m.met.callError(plugin, label, err.(*rpc.Error).Code)
		return nil, err
	}
	m.met.calls.WithLabelValues(plugin, label).Inc()
	if !inst.manifest.GetAuthorizes() {
		if inst.manifest.GetAllowAllSubscriptions() {
			return nil, nil
		}
		// A plugin that says nothing about who may read its channels
		// keeps them closed (see the warning at its start).
		out := make([]Refusal, len(channels))
		for i, ch := range channels {
			out[i] = Refusal{Channel: ch, Code: rpc.CodeForbidden,
				Reason: fmt.Sprintf("plugin %q implements no authorizer and does not allow open subscriptions", plugin)}
		}
		return out, nil
	}
	ctx, cancel := context.WithTimeout(ctx, m.opts.CallTimeout)
	defer cancel()
	started := time.Now()
	rep, err := inst.rpc.Authorize(ctx, &pluginpb.AuthorizeRequest{Caller: callerPB(caller), Channels: channels})
	m.met.observeCall(plugin, started)
	if err != nil {
		e := m.transportError(inst, "authorize", fmt.Sprintf("limits.call_timeout (%s)", m.opts.CallTimeout), false, err)
		m.met.callError(plugin, label, e.(*rpc.Error).Code)
		return nil, e
	}
	if e := rep.GetError(); e != nil {
		re := fromPBError(plugin, e)
		if lateAnswer(ctx) {
			re = timedOut(inst, "authorize", fmt.Sprintf("limits.call_timeout (%s)", m.opts.CallTimeout), false)
		}
		m.met.callError(plugin, label, re.Code)
		return nil, re
	}
	out, e := refusals(plugin, channels, rep.GetRefusals())
	if e != nil {
		m.met.callError(plugin, label, e.Code)
		return nil, e
	}
	return out, nil
}

// Call routes `<plugin>.<method>` (method without the plugin's name).
// Errors are *rpc.Error: -32004 unknown plugin, -32050 plugin down, -32601
// unknown method, -32003 a client calling a backend-only method, or the
// plugin's own coded error.
// Holds the plugin made during the call are released at once (CallHeld
// lets the caller release them after writing the reply).
func (m *Manager) Call(ctx context.Context, plugin, method string, caller Caller, params json.RawMessage) (json.RawMessage, error) {
	var holds []string
	res, err := m.call(ctx, plugin, method, caller, params, &holds)
	m.ReleaseHolds(caller.ConnID, holds)
	return res, err
}

func (m *Manager) call(ctx context.Context, plugin, method string, caller Caller, params json.RawMessage, holds *[]string) (json.RawMessage, error) {
	inst, err := m.target(plugin)
	if err != nil {
		return nil, err
	}
	backendOnly, ok := inst.methods[method]
	if !ok {
		return nil, rpc.Errorf(rpc.CodeMethodNotFound, "method %s.%s not found; %s has %s", plugin, method, plugin, methodList(plugin, inst.methods))
	}
	m.met.calls.WithLabelValues(plugin, method).Inc()
	if backendOnly && !caller.Backend {
		m.met.callError(plugin, method, rpc.CodeForbidden)
		return nil, rpc.Errorf(rpc.CodeForbidden, "method %s.%s is for backends (API key) only", plugin, method)
	}
	if caller.ConnID != "" { // it may call this connection back meanwhile
		inst.enterCall(caller.ConnID)
		defer inst.leaveCall(caller.ConnID)
	}
	ctx, cancel := context.WithTimeout(ctx, m.MethodTimeout(plugin, method))
	defer cancel()
	started := time.Now()
	rep, err := inst.rpc.Call(ctx, &pluginpb.CallRequest{Method: method, Caller: callerPB(caller), Params: params})
	m.met.observeCall(plugin, started)
	if err != nil {
		e := m.transportError(inst, method, m.timeoutText(plugin, method), true, err)
		m.met.callError(plugin, method, e.(*rpc.Error).Code)
		return nil, e
	}
	*holds = rep.GetReleaseHolds()
	if e := rep.GetError(); e != nil {
		re := limitOfState(fromPBError(plugin, e))
		if lateAnswer(ctx) {
			re = timedOut(inst, method, m.timeoutText(plugin, method), true)
		}
		m.met.callError(plugin, method, re.Code)
		return nil, re
	}
	res := json.RawMessage(rep.GetResult())
	if len(res) == 0 {
		res = json.RawMessage("null")
	}
	if e := checkResult(plugin, method, res); e != nil {
		m.met.callError(plugin, method, e.Code)
		return nil, e
	}
	return res, nil
}

// Notify hands a lifecycle event to every running plugin that wants it
// (connection events: all plugins with an event hook; subscription events:
// the channel's owner). It never blocks: each plugin has a bounded queue
// (8192 events); on overflow the event is dropped, counted in
// herald_plugin_events_dropped_total, and the plugin then gets a Reset and
// a replay of the current connections instead of the queued events. A
// plugin that is down gets the replay when it is back.
func (m *Manager) Notify(ev Event) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	var pe *pluginpb.Event
	for _, s := range m.plugins {
		inst, _ := s.running()
		if inst == nil || !inst.wants(ev) {
			continue
		}
		if pe == nil { // encoded once, shared by every plugin (read-only)
			pe = &pluginpb.Event{Kind: kindPB[ev.Kind], ConnId: ev.ConnID, UserId: ev.UserID,
				ClaimsJson: ev.Claims, Channel: ev.Channel, Volatile: ev.Volatile}
		}
		inst.enqueue(pe)
	}
}

// methodList names a plugin's methods for a -32601, as herald's own -32601
// lists the core's: at most 20, sorted, then how many more.
func methodList(plugin string, methods map[string]bool) string {
	if len(methods) == 0 {
		return "no methods"
	}
	names := make([]string, 0, len(methods))
	for name := range methods {
		names = append(names, plugin+"."+name)
	}
	slices.Sort(names)
	if len(names) > 20 {
		return strings.Join(names[:20], ", ") + fmt.Sprintf(" and %d more", len(names)-20)
	}
	return strings.Join(names, ", ")
}

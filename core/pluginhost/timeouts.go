package pluginhost

import "time"

// MaxMethodTimeout caps what a plugin may declare for one method: a plugin
// is code the operator did not write, and a call holds one of its
// connection's limits.max_inflight_calls while it runs.
const MaxMethodTimeout = 10 * time.Minute

// MethodTimeout is how long one call of plugin.method may run: the larger
// of limits.call_timeout and what the plugin declared for the method (the
// last manifest known, also while the plugin restarts), at most
// MaxMethodTimeout.
func (m *Manager) MethodTimeout(plugin, method string) time.Duration {
	t := m.opts.CallTimeout
	s := m.get(plugin)
	if s == nil {
		return t
	}
	s.mu.Lock()
	man := s.manifest
	s.mu.Unlock()
	for _, me := range man.GetMethods() {
		if me.GetName() == method {
			declared := min(time.Duration(me.GetTimeoutMs())*time.Millisecond, MaxMethodTimeout)
			return max(t, declared)
		}
	}
	return t
}

package pluginhost

import (
	"time"

	"github.com/heraldhq/herald/sdk/hostcheck"
)

// MaxMethodTimeout caps what a plugin may declare for one method
// (hostcheck.MaxMethodTimeout, which sdktest applies too).
const MaxMethodTimeout = hostcheck.MaxMethodTimeout

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
			return hostcheck.MethodTimeout(t, me.GetTimeoutMs())
		}
	}
	return t
}

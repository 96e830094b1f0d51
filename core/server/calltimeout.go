package server

import "time"

// methodTimeouter is the plugin host's per-method time bound
// (pluginhost.Manager): a plugin may declare that a method waits longer
// than limits.call_timeout on purpose, such as kb.waitFor.
type methodTimeouter interface {
	MethodTimeout(plugin, method string) time.Duration
}

// pluginCallTimeout bounds one call of plugin.method.
func (s *Server) pluginCallTimeout(plugin, method string) time.Duration {
	if mt, ok := s.plugins.(methodTimeouter); ok {
		return max(s.callTimeout, mt.MethodTimeout(plugin, method))
	}
	return s.callTimeout
}

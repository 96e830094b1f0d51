package pluginhost

// Declares reports whether plugin declares method in its manifest: the
// running one's, or the last one known while the plugin is down. The core
// labels its call metrics with declared methods only, so that names a
// client invents never become series.
func (m *Manager) Declares(plugin, method string) bool {
	s := m.get(plugin)
	if s == nil {
		return false
	}
	s.mu.Lock()
	man := s.manifest
	s.mu.Unlock()
	for _, me := range man.GetMethods() {
		if me.GetName() == method {
			return true
		}
	}
	return false
}

package pluginhost

import (
	"slices"
	"strings"

	"github.com/heraldhq/herald/sdk/hostcheck"
	pluginpb "github.com/heraldhq/herald/sdk/proto"
)

// Token expiry. A plugin may declare prefixes (manifest
// expiry_kept_prefixes, sdk.ExpiryKeeper) whose subscriptions outlive the
// connection's token: it checks the token at subscribe time only. The core
// asks KeptOnExpiry when a connection's expiry grace ends.

// checkExpiryKept refuses a manifest that keeps a prefix it does not own
// (hostcheck.ExpiryKept).
func checkExpiryKept(name string, man *pluginpb.Manifest) error {
	return hostcheck.ExpiryKept(name, man)
}

// KeptOnExpiry reports whether a subscription to channel survives the expiry
// of the connection's token: its prefix's owner declared it kept. A plugin
// that is down keeps its claims, and so this answer.
func (m *Manager) KeptOnExpiry(channel string) bool {
	prefix, _, ok := strings.Cut(channel, ":")
	if !ok {
		return false
	}
	m.mu.RLock()
	owner, ok := m.owners[prefix]
	s := m.plugins[owner]
	m.mu.RUnlock()
	if !ok || s == nil {
		return false
	}
	s.mu.Lock()
	man := s.manifest
	s.mu.Unlock()
	return slices.Contains(man.GetExpiryKeptPrefixes(), prefix)
}

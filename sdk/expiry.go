package sdk

import pluginpb "github.com/heraldhq/herald/sdk/proto"

// ExpiryKeeper is an optional hook for plugins whose channels are checked at
// subscribe time only: subscriptions to channels of the returned prefixes
// (each one of the manifest's Prefixes) outlive the connection's token. When
// the token expires the host still sends token_expired, but the expiry grace
// (auth.expiry_grace) does not drop these subscriptions; every other
// subscription of the connection is dropped as usual. Without the hook, every
// subscription to the plugin's channels needs a live token.
//
// The host refuses to start a plugin that names a prefix it does not own.
type ExpiryKeeper interface {
	ExpiryKeptPrefixes() []string
}

// expiryManifest fills the manifest's expiry_kept_prefixes from the hook.
func expiryManifest(p Plugin, m *pluginpb.Manifest) {
	if k, ok := p.(ExpiryKeeper); ok {
		m.ExpiryKeptPrefixes = append([]string(nil), k.ExpiryKeptPrefixes()...)
	}
}

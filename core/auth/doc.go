// Package auth checks who is talking to herald: HS256 tokens for clients
// (minted by applications or by `herald token`), API keys for backends, and
// the Origin of browser WebSocket upgrades.
//
// It knows nothing of channels or connections.
package auth

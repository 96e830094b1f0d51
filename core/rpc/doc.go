// Package rpc is the JSON-RPC 2.0 codec of herald's WebSocket protocol: it
// splits a frame into messages (single or batch), tells requests,
// notifications and responses apart, and appends replies to byte slices
// without reflection on the hot path.
//
// It knows nothing of WebSockets, channels or plugins; CONTRACT.md section 3
// fixes its error codes (errors.go).
package rpc

// Package codes holds the error codes of Herald's contract (CONTRACT.md
// section 3): JSON-RPC 2.0's own and Herald's. It has no dependencies, so
// that the core, the plugin SDK and the clients share one list.
package codes

const (
	ParseError        = -32700 // the frame is not JSON
	InvalidRequest    = -32600 // not a JSON-RPC message
	MethodNotFound    = -32601
	InvalidParams     = -32602
	Internal          = -32603
	Unauthenticated   = -32001 // no, bad or expired token
	Forbidden         = -32003 // channel or method not allowed for this user
	UnknownNamespace  = -32004 // unknown channel namespace or plugin
	LimitExceeded     = -32005 // a per-connection bound
	RateLimited       = -32029 // limits.calls_per_second
	PluginUnavailable = -32050 // crashed or restarting: retry later
)

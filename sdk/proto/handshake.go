package pluginpb

import (
	"context"
	"errors"
	"os"
	"strconv"

	plugin "github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"
)

// ProtocolVersion is the version of this .proto that host and plugin speak.
// A later, incompatible protocol gets version 2 and both sides list every
// version they speak in VersionedPlugins, so version 1 plugins keep working.
const ProtocolVersion = 1

// PluginKey is the single entry of the go-plugin plugin map.
const PluginKey = "herald"

// Handshake is the go-plugin handshake. The magic cookie never changes; it
// only tells a plugin binary started by hand that it is not a program.
var Handshake = plugin.HandshakeConfig{
	MagicCookieKey:   "HERALD_PLUGIN_COOKIE",
	MagicCookieValue: "d0a7c3c1-herald-plugin-9b1f",
}

// EnvMaxMessageBytes is set by the host in the plugin's environment: the
// largest gRPC message either side accepts or sends, in bytes. Both sides
// must agree, and the plugin's gRPC server exists before the first call, so
// it travels in the environment.
const EnvMaxMessageBytes = "HERALD_PLUGIN_MAX_MESSAGE_BYTES"

// DefaultMaxMessageBytes is the message limit when none is configured. Emit
// batches stay far below it (see the SDK's batching bounds).
const DefaultMaxMessageBytes = 16 << 20

// MaxMessageBytesFromEnv reads EnvMaxMessageBytes, or the default.
func MaxMessageBytesFromEnv() int {
	if n, err := strconv.Atoi(os.Getenv(EnvMaxMessageBytes)); err == nil && n > 0 {
		return n
	}
	return DefaultMaxMessageBytes
}

// ServerOptions are the message limits for a gRPC server on either side.
func ServerOptions(maxBytes int) []grpc.ServerOption {
	return []grpc.ServerOption{grpc.MaxRecvMsgSize(maxBytes), grpc.MaxSendMsgSize(maxBytes)}
}

// DialOptions are the message limits for a gRPC client on either side.
func DialOptions(maxBytes int) []grpc.DialOption {
	return []grpc.DialOption{grpc.WithDefaultCallOptions(
		grpc.MaxCallRecvMsgSize(maxBytes), grpc.MaxCallSendMsgSize(maxBytes))}
}

// PluginSets is the versioned plugin map both sides pass to go-plugin.
// The host passes a GRPCPlugin without NewServer; the SDK passes one with it.
func PluginSets(p *GRPCPlugin) map[int]plugin.PluginSet {
	return map[int]plugin.PluginSet{ProtocolVersion: {PluginKey: p}}
}

// GRPCPlugin adapts the protocol to go-plugin. The plugin side fills NewServer;
// the host side dispenses a *Conn.
type GRPCPlugin struct {
	plugin.NetRPCUnsupportedPlugin

	// NewServer builds the plugin's service; it gets the broker so that it can
	// dial the host's service once Configure names it.
	NewServer func(*plugin.GRPCBroker) PluginServer
}

// GRPCServer registers the plugin's service (plugin side).
func (p *GRPCPlugin) GRPCServer(b *plugin.GRPCBroker, s *grpc.Server) error {
	if p.NewServer == nil {
		return errors.New("herald plugin: no server implementation")
	}
	RegisterPluginServer(s, p.NewServer(b))
	return nil
}

// GRPCClient returns the host's view of one plugin process.
func (p *GRPCPlugin) GRPCClient(ctx context.Context, b *plugin.GRPCBroker, c *grpc.ClientConn) (any, error) {
	return &Conn{Done: ctx, Broker: b, Plugin: NewPluginClient(c)}, nil
}

// Conn is what the host dispenses: the plugin's client, the broker to serve
// the Host service on, and Done, which go-plugin cancels when the plugin
// process exits (the immediate crash signal).
type Conn struct {
	Done   context.Context
	Broker *plugin.GRPCBroker
	Plugin PluginClient
}

// EnvLogLevel is set by the host in the plugin's environment: the level the
// SDK's logger starts at ("trace" ... "error"), so that a plugin does not
// format lines the host would drop.
const EnvLogLevel = "HERALD_PLUGIN_LOG_LEVEL"

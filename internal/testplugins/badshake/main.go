// Command badshake answers go-plugin's handshake with protocol version 99,
// which Herald does not speak.
package main

import (
	plugin "github.com/hashicorp/go-plugin"
	pluginpb "github.com/heraldhq/herald/sdk/proto"
)

func main() {
	plugin.Serve(&plugin.ServeConfig{
		HandshakeConfig: pluginpb.Handshake,
		VersionedPlugins: map[int]plugin.PluginSet{99: {pluginpb.PluginKey: &pluginpb.GRPCPlugin{
			NewServer: func(*plugin.GRPCBroker) pluginpb.PluginServer { return pluginpb.UnimplementedPluginServer{} },
		}}},
		GRPCServer: plugin.DefaultGRPCServer,
	})
}

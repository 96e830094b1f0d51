package pluginhost

import "github.com/heraldhq/herald/sdk/hostcheck"

// What a plugin's manifest may not claim because the core has it: channel
// prefixes of the core's own channels, and HTTP paths the core serves
// before the plugins' routes (which are its fallback). The checks are
// sdk/hostcheck's, which sdktest applies to a plugin's manifest too.

// checkPrefix says what is wrong with a manifest's channel prefix, or ""
// (hostcheck.Prefix).
func checkPrefix(pre string) string { return hostcheck.Prefix(pre) }

// coreCollision reports the core path that a plugin route (method and
// pattern, a valid http.ServeMux pattern) collides with, or ""
// (hostcheck.CoreCollision).
func coreCollision(method, pattern string) string { return hostcheck.CoreCollision(method, pattern) }

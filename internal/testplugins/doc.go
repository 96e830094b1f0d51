// Package testplugins holds plugin binaries that core/pluginhost's tests
// build and run: tester (every hook, on demand crashes, configurable claims)
// and badshake (speaks another protocol version); and emitter, the emit
// loop that cmd/plugin-bench runs inside a real herald.
package testplugins

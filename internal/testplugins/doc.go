// Package testplugins holds plugin binaries that core/pluginhost's tests
// build and run: tester (every hook, on demand crashes, configurable claims)
// and badshake (speaks another protocol version).
package testplugins

package sdk

import (
	"os"
	"runtime/pprof"
	"sync"

	"github.com/hashicorp/go-hclog"
)

// EnvCPUProfile, when set in a plugin's environment (its block's env), makes
// Serve write a CPU profile of the plugin process to that path, from start
// until the plugin stops. For measuring; it costs a little CPU.
const EnvCPUProfile = "HERALD_PLUGIN_CPUPROFILE"

// startCPUProfile starts the profile EnvCPUProfile asks for and returns what
// stops it and writes it out; safe to call more than once.
func startCPUProfile(log hclog.Logger) func() {
	path := os.Getenv(EnvCPUProfile)
	if path == "" {
		return func() {}
	}
	f, err := os.Create(path)
	if err != nil {
		log.Warn("cpu profile", "error", err)
		return func() {}
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		log.Warn("cpu profile", "error", err)
		_ = f.Close()
		return func() {}
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			pprof.StopCPUProfile()
			if err := f.Close(); err != nil {
				log.Warn("cpu profile", "error", err)
			}
		})
	}
}

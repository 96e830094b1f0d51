// Package statetest is the conformance suite every state.Store passes: the
// semantics of sdk.State, whatever keeps the data (a bbolt file on one node,
// a JetStream bucket in a cluster).
package statetest

import (
	"testing"

	"github.com/heraldhq/herald/core/state"
)

// Factory makes the storage the suite's cases run on.
type Factory struct {
	// New makes fresh, empty storage for one case, its store bounded by
	// maxBytes (0: unbounded), and returns open, which opens a Store on
	// it. open may be called again after the previous Store is closed (the
	// data must still be there) and, when Shared is set, while other
	// Stores on the same storage are open. The factory closes what open
	// returns at the end of the test (closing it twice must be harmless).
	New func(t *testing.T, maxBytes int64) (open func(t *testing.T) state.Store)
	// Shared says several Stores may be open on one storage at once, as the
	// nodes of a cluster are on one bucket.
	Shared bool
}

// Run runs every case against the factory's stores.
func Run(t *testing.T, f Factory) {
	t.Run("Basics", func(t *testing.T) { runBasics(t, f) })
	t.Run("List", func(t *testing.T) { runList(t, f) })
	t.Run("CAS", func(t *testing.T) { runCAS(t, f) })
	t.Run("TTL", func(t *testing.T) { runTTL(t, f) })
	t.Run("Watch", func(t *testing.T) { runWatch(t, f) })
	t.Run("Bounds", func(t *testing.T) { runBounds(t, f) })
	t.Run("Reopen", func(t *testing.T) { runReopen(t, f) })
	if f.Shared {
		t.Run("Shared", func(t *testing.T) { runShared(t, f) })
	}
}

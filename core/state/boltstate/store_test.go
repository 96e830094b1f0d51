package boltstate_test

import (
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/heraldhq/herald/core/state"
	"github.com/heraldhq/herald/core/state/boltstate"
	"github.com/heraldhq/herald/core/state/statetest"
)

func TestConformance(t *testing.T) {
	statetest.Run(t, statetest.Factory{
		New: func(t *testing.T, maxBytes int64) func(t *testing.T) state.Store {
			path := filepath.Join(t.TempDir(), "state.db")
			return func(t *testing.T) state.Store {
				s, err := boltstate.Open(path, boltstate.Options{MaxBytes: maxBytes})
				require.NoError(t, err)
				t.Cleanup(func() { _ = s.Close() })
				return s
			}
		},
	})
}

func BenchmarkStore(b *testing.B) {
	s, err := boltstate.Open(filepath.Join(b.TempDir(), "state.db"), boltstate.Options{})
	require.NoError(b, err)
	defer s.Close()
	statetest.Bench(b, s)
}

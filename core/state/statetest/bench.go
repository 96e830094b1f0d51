package statetest

import (
	"context"
	"errors"
	"strconv"
	"testing"

	"github.com/heraldhq/herald/core/state"
)

// Bench measures a store's writes: Put of distinct keys, and the
// Get+Update of one counter that a compare-and-set loop makes.
func Bench(b *testing.B, s state.Store) {
	ctx := context.Background()
	value := make([]byte, 128)
	b.Run("Put", func(b *testing.B) {
		for i := 0; b.Loop(); i++ {
			if _, err := s.Put(ctx, "bench/put/"+strconv.Itoa(i%1024), value, 0); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("GetUpdate", func(b *testing.B) {
		if _, err := s.Put(ctx, "bench/counter", value, 0); err != nil {
			b.Fatal(err)
		}
		for b.Loop() {
			e, err := s.Get(ctx, "bench/counter")
			if err != nil {
				b.Fatal(err)
			}
			if _, err := s.Update(ctx, "bench/counter", value, e.Revision, 0); err != nil && !errors.Is(err, state.ErrConflict) {
				b.Fatal(err)
			}
		}
	})
	b.Run("Get", func(b *testing.B) {
		for b.Loop() {
			if _, err := s.Get(ctx, "bench/counter"); err != nil {
				b.Fatal(err)
			}
		}
	})
}

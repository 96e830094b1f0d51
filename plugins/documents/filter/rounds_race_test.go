//go:build race

package filter

// Fewer rounds under the race detector, which slows matching ~10x.
const diffRounds = 4

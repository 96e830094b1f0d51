package config

import (
	"fmt"
	"strings"
)

// suggest returns `; did you mean "x"?` for the valid name closest to name,
// or otherwise (nothing close enough) the fallback.
func suggest(name string, valid []string, fallback string) string {
	best, bestDist := "", -1
	for _, v := range valid {
		dist := editDistance(name, v)
		if len(name) >= 3 && (strings.HasPrefix(v, name) || strings.HasPrefix(name, v)) {
			// "warning" for "warn", "max_sub" for "max_subscriptions".
			dist = 0
		}
		if bestDist < 0 || dist < bestDist {
			best, bestDist = v, dist
		}
	}
	// A third of the length catches typos and transpositions in long names
	// (max_batchs, calls_per_sec) without pairing unrelated short ones.
	if bestDist >= 0 && (bestDist <= 2 || bestDist <= len(name)/3) && bestDist < len(name) {
		return fmt.Sprintf("; did you mean %q?", best)
	}
	return fallback
}

// editDistance is the Levenshtein distance between a and b, in bytes (config
// names are ASCII).
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
